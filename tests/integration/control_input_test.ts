// What a node's control port does with messages no honest peer sends, and the
// supervisor's liveness check when the supervisor itself is the one paused.

import assert from "node:assert/strict";
import { termMax } from "../../src/config/limits.ts";
import { killPid, startCluster, text, waitUntil } from "./harness.ts";

function termOf(info: string): number {
  return Number(/term:(\d+)/.exec(info)![1]);
}

Deno.test("control port: a heartbeat whose term jumps far ahead is ignored, so it cannot wedge the cluster", async () => {
  // Regression: one line with term 2^40 (termMax) moved every node there;
  // every campaign then asked for 2^40 + 1, which all nodes refuse.
  await using cluster = await startCluster(4);
  await cluster.waitForCluster();
  const leader = await cluster.waitForLeader();
  const target = cluster.nodes.find((n) => n.id !== leader)!;
  const conn = await Deno.connect({ hostname: "127.0.0.1", port: target.controlPort });
  try {
    // The last one is malformed (above termMax): the node hangs up after it.
    for (const term of [2 ** 21 + 5, termMax, termMax + 1]) {
      await conn.write(
        new TextEncoder().encode(JSON.stringify({ kind: "Heartbeat", from: leader, term }) + "\n"),
      );
    }
    await new Promise((r) => setTimeout(r, 300));
  } finally {
    try {
      conn.close();
    } catch {
      // closed by the node already
    }
  }
  for (const n of cluster.nodes) {
    const term = termOf(text(await cluster.call(n.clientPort, ["INFO"])));
    assert.ok(term < 1000, `node ${n.id} stayed at a sane term, got ${term}`);
  }
  assert.equal(text(await cluster.call(cluster.node(leader).clientPort, ["SET", "k", "v"])), "OK");
  assert.match(cluster.log(target.id), /ignoring a Heartbeat with term 2097157/);
  assert.match(cluster.log(target.id), new RegExp(`ignoring a Heartbeat with term ${termMax}`));
  assert.match(cluster.log(target.id), /dropping malformed control message/);
  cluster.pass();
});

Deno.test("liveness: a paused supervisor does not kill its healthy role process when it wakes", async () => {
  // Regression: after SIGSTOP/SIGCONT of the supervisor alone, its ping timer
  // fired before it read the waiting pongs, and it killed the role.
  await using cluster = await startCluster(4);
  await cluster.waitForCluster();
  const leader = await cluster.waitForLeader();
  const f = cluster.nodes.find((n) => n.id !== leader)!;
  const role = cluster.rolePid(f.id);
  const sup = cluster.supervisorPid(f.id)!;
  killPid(sup, "SIGSTOP");
  await new Promise((r) => setTimeout(r, 2500));
  killPid(sup, "SIGCONT");
  await new Promise((r) => setTimeout(r, 1500));
  assert.equal(cluster.rolePid(f.id), role, "the same role process still runs");
  assert.doesNotMatch(cluster.log(f.id), /has not answered/);
  await waitUntil(async () => (await cluster.leaderId()) !== null, 10000, "a leader");
  cluster.pass();
});

Deno.test("control port: a connection flood is capped, and the node keeps working", async () => {
  // Regression: the control port accepted without limit; a flood used up the
  // supervisor's file descriptors, its accept loop stopped for good, and its
  // next term-file write failed.
  await using cluster = await startCluster(4);
  await cluster.waitForCluster();
  const leader = await cluster.waitForLeader();
  const target = cluster.nodes.find((n) => n.id !== leader)!;
  const conns: Deno.Conn[] = [];
  try {
    for (let i = 0; i < 40; i++) {
      conns.push(await Deno.connect({ hostname: "127.0.0.1", port: target.controlPort }));
    }
    // Connections over the cap (4 per node: 16 here) are closed at once.
    let closed = 0;
    await Promise.all(conns.map(async (c) => {
      const timer = setTimeout(() => c.close(), 1000);
      try {
        if ((await c.read(new Uint8Array(16))) === null) closed++;
      } catch {
        // timed out: still open, which is what the first ones are
      } finally {
        clearTimeout(timer);
      }
    }));
    assert.ok(closed >= 40 - 16, `at least 24 of 40 closed by the node, got ${closed}`);
  } finally {
    for (const c of conns) {
      try {
        c.close();
      } catch {
        // already closed
      }
    }
  }
  assert.equal(text(await cluster.call(cluster.node(leader).clientPort, ["SET", "k", "v"])), "OK");
  await waitUntil(
    async () => text(await cluster.call(target.readPort, ["GET", "k"])) === "v",
    5000,
    "the flooded node to keep replicating",
  );
  cluster.pass();
});
