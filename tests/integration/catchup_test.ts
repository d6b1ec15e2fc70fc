// Catch-up with real processes: a follower that was down while 1,000 writes
// were acknowledged by the other three comes back, streams the missing
// entries from the leader, serves the latest values on its read port, and
// ends up with the very same WAL as the leader.

import assert from "node:assert/strict";
import { Connection } from "../../src/client/connection.ts";
import { readWal, startCluster, text, tryGet, waitUntil } from "./harness.ts";

const writeCount = 1000;

Deno.test("catch-up: a follower stopped during 1,000 writes catches up when it returns", async () => {
  await using cluster = await startCluster(4);
  const leader = cluster.node(await cluster.waitForCluster());
  const lagging = cluster.nodes.find((n) => n.id !== leader.id)!;
  await cluster.stop(lagging.id, "SIGTERM");

  {
    // Pipelined on one connection; 100 keys each overwritten 10 times, so the
    // last value of every key is the one from the last round.
    await using conn = await Connection.connect("127.0.0.1", leader.clientPort, 2000);
    const replies = await Promise.all(
      Array.from(
        { length: writeCount },
        (_, i) => conn.call(["SET", `key${i % 100}`, `round${Math.floor(i / 100)}`], 15_000),
      ),
    );
    assert.deepEqual(new Set(replies.map(text)), new Set(["OK"]));
    assert.equal(text(await conn.call(["DEL", "key0"], 5000)), ":1");
  }

  cluster.start(lagging.id);
  await waitUntil(
    async () =>
      await tryGet(cluster, lagging.readPort, "key99") === "round9" &&
      await tryGet(cluster, lagging.readPort, "key0") === "(nil)",
    15_000,
    `node ${lagging.id} to serve the last values`,
  );
  for (let k = 1; k < 100; k++) {
    assert.equal(await tryGet(cluster, lagging.readPort, `key${k}`), "round9", `key${k}`);
  }

  // Its WAL converges to the leader's: same lines, same order (the leader
  // may have changed if the returning node started an election, so compare
  // with whoever leads once the cluster is quiet).
  let mine = "";
  let theirs = "";
  await waitUntil(
    async () => {
      const now = await cluster.leaderId();
      if (now === null) return false;
      mine = await readWal(cluster, lagging.id);
      theirs = await readWal(cluster, now);
      return mine === theirs;
    },
    10_000,
    `node ${lagging.id}'s WAL to equal the leader's`,
  ).catch((e) => {
    const lines = (s: string) => s.split("\n").length - 1;
    throw new Error(`${(e as Error).message}: ${lines(mine)} lines vs ${lines(theirs)}`);
  });
  assert.ok(mine.split("\n").length - 1 >= writeCount + 1, "every write is in the WAL");
  cluster.pass();
});
