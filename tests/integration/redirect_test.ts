// Redirects with real processes: every port of every follower sends data
// commands that need the leader to `-REDIRECT 127.0.0.1 <leader client port>`,
// a follower's read port still answers GET from its own copy, the leader's
// read port redirects writes to its own client port, and both the client
// library and the `kvstore client` CLI follow the redirect from any port.

import assert from "node:assert/strict";
import { request } from "../../src/client/client.ts";
import { runCli, startCluster, text, waitForValue, waitUntil } from "./harness.ts";

Deno.test("redirects: followers redirect data commands to the leader's client port", async () => {
  await using cluster = await startCluster(4);
  const leader = cluster.node(await cluster.waitForCluster());
  const redirect = `-REDIRECT 127.0.0.1 ${leader.clientPort}`;
  assert.equal(text(await cluster.call(leader.clientPort, ["SET", "seen", "yes"])), "OK");
  const followers = cluster.nodes.filter((n) => n.id !== leader.id);

  for (const f of followers) {
    // A follower learns the leader from its supervisor a moment after the
    // election; until then it answers TRYAGAIN.
    await waitUntil(
      async () => text(await cluster.call(f.clientPort, ["SET", "x", "1"])) === redirect,
      5000,
      `node ${f.id}'s client port to redirect`,
    );
    for (
      const args of [["SET", "k", "v"], ["GET", "k"], ["DEL", "k"], ["DEL", "k1", "k2"]]
    ) {
      assert.equal(
        text(await cluster.call(f.clientPort, args)),
        redirect,
        `node ${f.id} client port, ${args.join(" ")}`,
      );
    }
    // The read port serves GET locally (eventually consistent) …
    await waitForValue(cluster, f.readPort, "seen", "yes", 5000);
    assert.equal(text(await cluster.call(f.readPort, ["GET", "never-written"])), "(nil)");
    // … but sends writes to the leader.
    assert.equal(text(await cluster.call(f.readPort, ["SET", "k", "v"])), redirect);
    assert.equal(text(await cluster.call(f.readPort, ["DEL", "k"])), redirect);
  }

  // The leader's read port serves GET and redirects writes to its own client port.
  await waitForValue(cluster, leader.readPort, "seen", "yes", 5000);
  assert.equal(text(await cluster.call(leader.readPort, ["SET", "k", "v"])), redirect);
  assert.equal(text(await cluster.call(leader.readPort, ["DEL", "k"])), redirect);
  cluster.pass();
});

Deno.test("redirects: request() follows the redirect from every port of every node", async () => {
  await using cluster = await startCluster(4);
  const leader = cluster.node(await cluster.waitForCluster());
  const ports = cluster.nodes.flatMap((n) => [
    { name: `node ${n.id} client`, port: n.clientPort, reads: "linearizable" },
    { name: `node ${n.id} read`, port: n.readPort, reads: "local" },
  ]);
  for (const { name, port, reads } of ports) {
    const key = `lib-${port}`;
    const set = await request("127.0.0.1", port, ["SET", key, name], { timeoutMs: 10_000 });
    assert.equal(text(set), "OK", `SET via ${name}`);
    if (reads === "linearizable") {
      // A client port's GET goes to the leader: it sees the write at once.
      const got = await request("127.0.0.1", port, ["GET", key], { timeoutMs: 10_000 });
      assert.equal(text(got), name, `GET via ${name}`);
    } else {
      // A read port answers from its own copy: it sees the write eventually.
      await waitUntil(
        async () =>
          text(await request("127.0.0.1", port, ["GET", key], { timeoutMs: 5000 })) === name,
        5000,
        `GET ${key} via ${name}`,
      );
    }
    const del = await request("127.0.0.1", port, ["DEL", key], { timeoutMs: 10_000 });
    assert.equal(text(del), ":1", `DEL via ${name}`);
  }
  // Every write went to the leader; its linearizable read sees the last DEL.
  for (const { port } of ports) {
    assert.equal(text(await cluster.call(leader.clientPort, ["GET", `lib-${port}`])), "(nil)");
  }
  cluster.pass();
});

Deno.test("redirects: the kvstore client CLI follows the redirect from any port", async () => {
  await using cluster = await startCluster(4);
  const leader = cluster.node(await cluster.waitForCluster());
  const followers = cluster.nodes.filter((n) => n.id !== leader.id);
  // Wait until every follower knows the leader, so the CLI sees a redirect,
  // not TRYAGAIN (which it would retry anyway).
  for (const f of followers) {
    await waitUntil(
      async () => text(await cluster.call(f.clientPort, ["GET", "x"])).startsWith("-REDIRECT"),
      5000,
      `node ${f.id} to know the leader`,
    );
  }
  const ports = cluster.nodes.flatMap((n) => [n.clientPort, n.readPort]);
  // Two CLI processes at a time: enough overlap to be quick on two cores.
  for (let i = 0; i < ports.length; i += 2) {
    const batch = ports.slice(i, i + 2);
    const results = await Promise.all(
      batch.map((port) =>
        runCli(["127.0.0.1", String(port), "SET", `cli-${port}`, `from ${port}`])
      ),
    );
    results.forEach((r, j) => {
      assert.deepEqual(
        { code: r.code, stdout: r.stdout },
        { code: 0, stdout: "OK\n" },
        `CLI SET via port ${batch[j]}: ${r.stderr}`,
      );
    });
  }
  for (const port of ports) {
    assert.equal(
      text(await cluster.call(leader.clientPort, ["GET", `cli-${port}`])),
      `from ${port}`,
    );
  }
  // GET through a follower's client port is redirected to the leader.
  const f = followers[0]!;
  const got = await runCli(["127.0.0.1", String(f.clientPort), "GET", `cli-${ports[0]}`]);
  assert.deepEqual({ code: got.code, stdout: got.stdout }, {
    code: 0,
    stdout: `from ${ports[0]}\n`,
  });
  cluster.pass();
});
