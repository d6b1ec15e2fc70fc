// Hostile and broken clients against a real cluster: malformed RESP, seeded
// random bytes, unknown commands, wrong arity, oversized keys, values and
// declared lengths, clients that hang up mid-request, and inline commands.
// Each gets a clear reply (or just a closed connection), the node's role
// process keeps running, other connections keep working, and a write
// acknowledged before all of it still reads back on every node.

import assert from "node:assert/strict";
import { Connection } from "../../src/client/connection.ts";
import { keyBytesMax, valueBytesMax } from "../../src/config/limits.ts";
import { Prng } from "../../src/raft/prng.ts";
import { startCluster, type TestCluster, text, waitForValue } from "./harness.ts";
import { concatBytes } from "../../src/net/write_all.ts";

const encoder = new TextEncoder();
const decoder = new TextDecoder();

interface Exchange {
  /** Everything the server sent, decoded as UTF-8. */
  readonly reply: string;
  /** True when the server closed the connection within the wait. */
  readonly closed: boolean;
}

/** Sends raw bytes on a fresh TCP connection and collects what comes back
 * until the server closes it or `waitMs` passes (then we close it). */
async function exchange(
  port: number,
  request: string | Uint8Array,
  waitMs = 3000,
): Promise<Exchange> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  const bytes = typeof request === "string" ? encoder.encode(request) : request;
  const chunks: Uint8Array[] = [];
  let timedOut = false;
  let closed = false;
  const timer = setTimeout(() => {
    timedOut = true;
    try {
      conn.close();
    } catch {
      // already closed
    }
  }, waitMs);
  try {
    // Write and read at once: the server may answer (and close) before it
    // has read everything we send.
    const writing = (async () => {
      let at = 0;
      while (at < bytes.length) at += await conn.write(bytes.subarray(at));
    })().catch(() => {});
    const buf = new Uint8Array(64 * 1024);
    for (;;) {
      const n = await conn.read(buf);
      if (n === null) {
        closed = true;
        break;
      }
      chunks.push(buf.slice(0, n));
    }
    await writing;
  } catch (e) {
    // Our own timeout closed it, or the server reset it (closed with unread input).
    if (!timedOut && e instanceof Deno.errors.ConnectionReset) closed = true;
    else if (!timedOut) throw e;
  } finally {
    clearTimeout(timer);
    try {
      conn.close();
    } catch {
      // already closed
    }
  }
  return { reply: decoder.decode(concatBytes(chunks)), closed };
}

/** Sends bytes and hangs up at once, without reading a reply. */
async function sendAndHangUp(port: number, request: string | Uint8Array): Promise<void> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  try {
    const bytes = typeof request === "string" ? encoder.encode(request) : request;
    await conn.write(bytes);
  } catch {
    // the server may already have closed it
  } finally {
    conn.close();
  }
}

function assertProtocolError(x: Exchange, what: string): void {
  assert.match(x.reply, /^-ERR Protocol error: [^\r\n]+\r\n$/, `${what}: ${JSON.stringify(x)}`);
  assert.ok(x.closed, `${what}: the server closes the connection`);
}

/** Role process PIDs, to prove that no role process crashed and was restarted. */
function rolePids(cluster: TestCluster): (number | null)[] {
  return cluster.nodes.map((n) => cluster.rolePid(n.id));
}

/** Seeded garbage: pure noise, mutated valid commands, or a valid prefix and noise. */
function garbage(prng: Prng): Uint8Array {
  const noise = (n: number) => Uint8Array.from({ length: n }, () => prng.intBetween(0, 255));
  const valid = encoder.encode(
    `*3\r\n$3\r\nSET\r\n$6\r\nfuzz${prng.intBetween(10, 99)}\r\n$5\r\nvalue\r\n`,
  );
  switch (prng.intBetween(0, 2)) {
    case 0:
      return noise(prng.intBetween(1, 8192));
    case 1: {
      const out = valid.slice();
      for (let i = prng.intBetween(1, 4); i > 0; i--) {
        out[prng.intBetween(0, out.length - 1)] = prng.intBetween(0, 255);
      }
      return out;
    }
    default: {
      const tail = noise(prng.intBetween(1, 512));
      const out = new Uint8Array(valid.length + tail.length);
      out.set(valid);
      out.set(tail, valid.length);
      return out;
    }
  }
}

const fuzzSeed = 0x5eed_2024;
const fuzzSessions = 200;
const fuzzConcurrency = 20;

Deno.test("bad input: malformed, hostile and oversized requests never take a node down", async (t) => {
  await using cluster = await startCluster(4);
  const leader = cluster.node(await cluster.waitForCluster());
  const follower = cluster.nodes.find((n) => n.id !== leader.id)!;
  const lp = leader.clientPort;
  // A failed step does not throw here: count failures so the nodes' logs are
  // printed (no cluster.pass()) when any step failed.
  let failedSteps = 0;
  const step = async (name: string, fn: () => Promise<void>) => {
    if (!(await t.step(name, fn))) failedSteps++;
  };
  assert.equal(text(await cluster.call(lp, ["SET", "acked", "before-the-storm"])), "OK");
  const pidsBefore = rolePids(cluster);
  assert.ok(pidsBefore.every((p) => p !== null), "every role pid is logged");

  await step("malformed RESP gets a protocol error and closes only that connection", async () => {
    await using other = await Connection.connect("127.0.0.1", lp, 2000);
    assert.equal(text(await other.call(["PING"], 2000)), "PONG");
    assertProtocolError(await exchange(lp, "*2\r\n$3\r\nGET\r\n:x\r\n"), "':' instead of '$'");
    assertProtocolError(await exchange(lp, "*1\r\n$4\r\nPINGxx\r\n"), "no CRLF after bulk");
    assertProtocolError(await exchange(lp, "*abc\r\n"), "bad multibulk count");
    assertProtocolError(await exchange(lp, 'SET k "unbalanced\r\n'), "unbalanced quotes");
    // Commands before the bad one are answered; nothing after it runs.
    const mixed = await exchange(lp, "PING\r\n*1\r\n:x\r\nSET after-error 1\r\n");
    assert.match(mixed.reply, /^\+PONG\r\n-ERR Protocol error: [^\r\n]+\r\n$/);
    assert.ok(mixed.closed);
    assert.equal(text(await cluster.call(lp, ["GET", "after-error"])), "(nil)");
    // The connection opened before all that still works.
    assert.equal(text(await other.call(["GET", "acked"], 2000)), "before-the-storm");
  });

  await step(
    "declared lengths over the limits are refused before their bytes arrive",
    async () => {
      // 20,000,000 bytes is over bulkBytesMax: refused at the header, so the
      // server answers and closes without waiting for the bytes.
      assertProtocolError(
        await exchange(lp, "*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$20000000\r\n"),
        "bulk length over the limit",
      );
      assertProtocolError(await exchange(lp, "*100000000\r\n"), "arg count over the limit");
      assertProtocolError(await exchange(lp, `SET k ${"v".repeat(70 * 1024)}`), "inline too long");
    },
  );

  await step("unknown commands and wrong arity get -ERR replies", async () => {
    for (const port of [lp, follower.clientPort, follower.readPort]) {
      assert.match(
        text(await cluster.call(port, ["FLUSHALL"])),
        /^-ERR unknown command 'FLUSHALL'/,
      );
      for (const args of [["GET"], ["GET", "a", "b"], ["SET", "k"], ["DEL"]]) {
        assert.match(
          text(await cluster.call(port, args)),
          /^-ERR wrong number of arguments for '(get|set|del)' command$/,
          `${args.join(" ")} on port ${port}`,
        );
      }
    }
  });

  await step("keys and values over the limits get an error reply", async () => {
    const bigKey = "k".repeat(keyBytesMax + 1);
    for (const args of [["SET", bigKey, "v"], ["GET", bigKey], ["DEL", "ok", bigKey]]) {
      assert.match(text(await cluster.call(lp, args)), /^-ERR key is \d+ bytes, over/);
    }
    assert.match(text(await cluster.call(follower.readPort, ["GET", bigKey])), /^-ERR key is/);
    // A key exactly at the limit is fine.
    const maxKey = "m".repeat(keyBytesMax);
    assert.equal(text(await cluster.call(lp, ["SET", maxKey, "at-limit"])), "OK");
    assert.equal(text(await cluster.call(lp, ["GET", maxKey])), "at-limit");
    const bigValue = new Uint8Array(valueBytesMax + 1).fill(0x61);
    assert.match(
      text(await cluster.call(lp, ["SET", "big", bigValue], 20_000)),
      /^-ERR value is \d+ bytes, over/,
    );
    assert.equal(text(await cluster.call(lp, ["GET", "big"])), "(nil)");
  });

  await step("clients that hang up mid-request or before the reply do no harm", async () => {
    await sendAndHangUp(lp, "*3\r\n$3\r\nSET\r\n$4\r\nhalf\r\n$10\r\nabc");
    await sendAndHangUp(lp, "*3\r\n$3\r\nSET\r\n$4\r\nha");
    await sendAndHangUp(lp, "SET inline-half val");
    await sendAndHangUp(lp, "*2\r\n$3\r\nGET\r\n$5\r\nacked\r\n");
    await sendAndHangUp(follower.readPort, "*2\r\n$3\r\nGET\r\n$5\r\nacked\r\n");
    assert.equal(text(await cluster.call(lp, ["GET", "half"])), "(nil)");
    assert.equal(text(await cluster.call(lp, ["GET", "inline-half"])), "(nil)");
  });

  await step("inline commands work over raw TCP", async () => {
    assert.deepEqual(await exchange(lp, "SET k v\r\nQUIT\r\n"), {
      reply: "+OK\r\n+OK\r\n",
      closed: true,
    });
    assert.equal((await exchange(lp, "GET k\r\nQUIT\r\n")).reply, "$1\r\nv\r\n+OK\r\n");
    // Quotes group words, LF alone ends a line. (GET is sent after SET's
    // reply: pipelined read-after-write ordering is pipeline_order_test.ts.)
    assert.equal(
      (await exchange(lp, 'SET q "hello world"\nPING\nQUIT\n')).reply,
      "+OK\r\n+PONG\r\n+OK\r\n",
    );
    assert.equal((await exchange(lp, "GET q\nQUIT\n")).reply, "$11\r\nhello world\r\n+OK\r\n");
    await waitForValue(cluster, follower.readPort, "k", "v", 5000);
    assert.equal(
      (await exchange(follower.readPort, "GET k\r\nQUIT\r\n")).reply,
      "$1\r\nv\r\n+OK\r\n",
    );
  });

  await step(`seeded random bytes (seed ${fuzzSeed}) do not crash a node`, async () => {
    const prng = new Prng(fuzzSeed);
    const ports = [lp, leader.readPort, follower.clientPort, follower.readPort];
    // A batch of connections at a time; each waits briefly for whatever comes back.
    for (let i = 0; i < fuzzSessions; i += fuzzConcurrency) {
      const batch = Array.from({ length: fuzzConcurrency }, (_, j) => ({
        port: ports[(i + j) % ports.length]!,
        bytes: garbage(prng),
      }));
      await Promise.all(batch.map(({ port, bytes }) => exchange(port, bytes, 100)));
    }
    assert.equal(text(await cluster.call(lp, ["SET", "after-fuzz", "1"])), "OK");
    assert.equal(text(await cluster.call(lp, ["GET", "after-fuzz"])), "1");
  });

  // No role process crashed (a crash would log a new role pid), the leader
  // still leads, and the acknowledged write is on every node.
  assert.deepEqual(rolePids(cluster), pidsBefore, "no role process was restarted");
  assert.equal(await cluster.leaderId(), leader.id);
  assert.equal(text(await cluster.call(lp, ["GET", "acked"])), "before-the-storm");
  for (const n of cluster.nodes) {
    await waitForValue(cluster, n.readPort, "acked", "before-the-storm", 5000);
  }
  if (failedSteps === 0) cluster.pass();
});
