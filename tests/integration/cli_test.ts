// The `kvstore client` CLI as a subprocess against a real cluster: its output
// and exit codes (0 success, 1 not found, 2 error) for SET, GET, DEL, GETFF
// and GETFB, and a one-line error when nothing listens.
//
// GETFB's fallback needs a follower that answers "not found" for a key the
// leader has. A real follower lacks a key only for a moment, so the test
// points GETFB at a stand-in "follower" that answers nil to every GET: that
// deterministically exercises the CLI's fallback path.

import assert from "node:assert/strict";
import { encodeBulk, RequestParser } from "../../src/codec/resp.ts";
import { freePorts, runCli, startCluster, waitForValue } from "./harness.ts";

/** A RESP server on a free loopback port that answers nil to every command. */
function nilServer(): { port: number } & Disposable {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const nil = encodeBulk(null);
  const conns = new Set<Deno.Conn>();
  (async () => {
    for await (const conn of listener) {
      conns.add(conn);
      (async () => {
        const parser = new RequestParser();
        const buf = new Uint8Array(4096);
        for (;;) {
          const n = await conn.read(buf);
          if (n === null) break;
          parser.push(buf.subarray(0, n));
          while (parser.next().kind === "command") await conn.write(nil);
        }
      })().catch(() => {}).finally(() => {
        conns.delete(conn);
        try {
          conn.close();
        } catch {
          // already closed
        }
      });
    }
  })().catch(() => {});
  return {
    port: (listener.addr as Deno.NetAddr).port,
    [Symbol.dispose]() {
      listener.close();
      for (const c of conns) {
        try {
          c.close();
        } catch {
          // already closed
        }
      }
    },
  };
}

Deno.test("kvstore client CLI: output and exit codes against a real cluster", async (t) => {
  await using cluster = await startCluster(4);
  const leader = cluster.node(await cluster.waitForCluster());
  const follower = cluster.nodes.find((n) => n.id !== leader.id)!;
  const lp = String(leader.clientPort);
  const followerRead = `127.0.0.1:${follower.readPort}`;
  // A failed step does not throw here: count failures so the nodes' logs are
  // printed (no cluster.pass()) when any step failed.
  let failedSteps = 0;
  const step = async (name: string, fn: () => Promise<void>) => {
    if (!(await t.step(name, fn))) failedSteps++;
  };

  await step("SET prints OK and exits 0; GET prints the value and exits 0", async () => {
    const set = await runCli(["127.0.0.1", lp, "SET", "city", "Vilnius"]);
    assert.deepEqual(set, { code: 0, stdout: "OK\n", stderr: "" });
    const get = await runCli(["127.0.0.1", lp, "GET", "city"]);
    assert.deepEqual(get, { code: 0, stdout: "Vilnius\n", stderr: "" });
  });

  await step("GET of a missing key prints NOT_FOUND and exits 1", async () => {
    const get = await runCli(["127.0.0.1", lp, "GET", "no-such-key"]);
    assert.deepEqual(get, { code: 1, stdout: "NOT_FOUND\n", stderr: "" });
  });

  await step("DEL prints how many keys it removed", async () => {
    assert.equal((await runCli(["127.0.0.1", lp, "SET", "gone", "x"])).code, 0);
    assert.deepEqual(await runCli(["127.0.0.1", lp, "DEL", "gone"]), {
      code: 0,
      stdout: "1\n",
      stderr: "",
    });
    assert.deepEqual(await runCli(["127.0.0.1", lp, "GET", "gone"]), {
      code: 1,
      stdout: "NOT_FOUND\n",
      stderr: "",
    });
  });

  await step("GETFF reads from the follower's read port", async () => {
    await waitForValue(cluster, follower.readPort, "city", "Vilnius", 5000);
    const got = await runCli(["127.0.0.1", lp, "GETFF", "city", followerRead]);
    assert.deepEqual(got, { code: 0, stdout: "Vilnius\n", stderr: "" });
    const missing = await runCli(["127.0.0.1", lp, "GETFF", "no-such-key", followerRead]);
    assert.deepEqual(missing, { code: 1, stdout: "NOT_FOUND\n", stderr: "" });
  });

  await step("GETFB: the follower's value, else the leader's, else NOT_FOUND", async () => {
    // The follower has it: its answer is printed.
    const got = await runCli(["127.0.0.1", lp, "GETFB", "city", followerRead]);
    assert.deepEqual(got, { code: 0, stdout: "Vilnius\n", stderr: "" });
    // Missing on the follower and on the leader.
    const missing = await runCli(["127.0.0.1", lp, "GETFB", "no-such-key", followerRead]);
    assert.deepEqual(missing, { code: 1, stdout: "NOT_FOUND\n", stderr: "" });
    // The "follower" answers nil: GETFB falls back to the leader, GETFF does not.
    using stub = nilServer();
    const stubAddress = `127.0.0.1:${stub.port}`;
    const fallback = await runCli(["127.0.0.1", lp, "GETFB", "city", stubAddress]);
    assert.deepEqual(fallback, { code: 0, stdout: "Vilnius\n", stderr: "" });
    const noFallback = await runCli(["127.0.0.1", lp, "GETFF", "city", stubAddress]);
    assert.deepEqual(noFallback, { code: 1, stdout: "NOT_FOUND\n", stderr: "" });
  });

  await step(
    "-x reads the last argument from stdin, byte for byte, beyond the command line's limit",
    async () => {
      // 1 MiB of every byte value: execve caps one argument at 128 KiB, and a
      // value with NUL bytes cannot be an argument at all.
      const value = new Uint8Array(1 << 20).map((_, i) => (i * 7 + (i >> 8)) & 0xff);
      const set = await runCli(["-x", "127.0.0.1", lp, "SET", "blob"], 20_000, value);
      assert.deepEqual(set, { code: 0, stdout: "OK\n", stderr: "" });
      const got = await cluster.call(leader.clientPort, ["GET", "blob"], 5000);
      assert.equal(got.kind, "bulk");
      assert.deepEqual(got.kind === "bulk" ? got.value : null, value);
      const wrong = await runCli(["-x", "127.0.0.1", lp, "GETFF", "blob"], 20_000, value);
      assert.equal(wrong.code, 2);
      assert.match(wrong.stderr, /GETFF needs <key> <followerHost:port> \(not from -x\)/);
    },
  );

  await step("a dead port with --timeout-ms 500 exits 2 with one error line", async () => {
    const [dead] = freePorts(1);
    const r = await runCli(["--timeout-ms", "500", "127.0.0.1", String(dead), "GET", "k"]);
    assert.equal(r.code, 2);
    assert.equal(r.stdout, "");
    assert.match(r.stderr, /^error: [^\n]+\n$/, JSON.stringify(r.stderr));
    assert.ok(r.stderr.includes(`127.0.0.1:${dead}`), `names the address: ${r.stderr}`);
  });

  if (failedSteps === 0) cluster.pass();
});
