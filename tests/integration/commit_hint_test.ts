// A restarted node serves reads from its read port at once, from what it knew
// was committed before (nodeN.commit), even while no leader can be elected.
// The staleness bound on such reads has its own test (staleness_test.ts);
// here it is set far out of the way (`--max-staleness-ms 600000`) so that
// only the hint's own rules decide.

import assert from "node:assert/strict";
import { lineHash } from "../../src/storage/commit_hint.ts";
import { startCluster, text, waitForValue, waitUntil } from "./harness.ts";

const noStaleness = ["--max-staleness-ms", "600000"];

Deno.test("commit hint: with no quorum, a restarted node's read port still serves committed data", async () => {
  await using cluster = await startCluster(4, { start: false });
  for (const n of cluster.nodes) cluster.start(n.id, noStaleness);
  await cluster.waitForCluster();
  const leader = await cluster.waitForLeader();
  assert.equal(
    (await cluster.call(cluster.node(leader).clientPort, ["SET", "city", "Vilnius"])).kind,
    "simple",
  );
  for (const n of cluster.nodes) await waitForValue(cluster, n.readPort, "city", "Vilnius");
  const info = text(await cluster.call(cluster.node(leader).clientPort, ["INFO"]));
  const committed = Number(/commit_index:(\d+)/.exec(info)![1]);
  // Every node records its commit index within a few hundred milliseconds.
  await waitUntil(
    async () => {
      for (const n of cluster.nodes) {
        const text = await Deno.readTextFile(`${cluster.dir}/node${n.id}.commit`).catch(() => "0");
        const index = Number(text.trim().split(" ")[0]);
        if (!(index >= committed)) return false;
      }
      return true;
    },
    5000,
    "every node's nodeN.commit",
  );
  const followers = cluster.nodes.filter((n) => n.id !== leader);
  await cluster.stop(followers[0]!.id);
  await cluster.stop(followers[1]!.id);
  // Two of four left: no leader is possible. Restart one of them.
  await cluster.stop(leader);
  cluster.start(leader, noStaleness);
  await waitForValue(cluster, cluster.node(leader).readPort, "city", "Vilnius", 10000);
  cluster.pass();
});

Deno.test("commit hint: a hint that does not name an entry of this WAL is ignored, never trusted", async () => {
  // Regression: a hint of 999999999999 was clamped to the WAL's end and made
  // an uncommitted last entry readable; the follower then looped forever
  // refusing to truncate it.
  await using cluster = await startCluster(4, { start: false });
  const wal = "1\tTERM\t1\n2\tSET\tx\tcommitted\n3\tTERM\t2\n4\tSET\tx\tNEVER-COMMITTED\n";
  const lines = wal.split("\n").slice(0, 4).map((l) => new TextEncoder().encode(l + "\n"));
  await Deno.writeTextFile(`${cluster.dir}/node1.log`, wal);
  const read = cluster.node(1).readPort;
  for (
    const bogus of ["999999999999", `4 2 ${lineHash(lines[3]!) ^ 1}`, `4 1 ${lineHash(lines[3]!)}`]
  ) {
    await Deno.writeTextFile(`${cluster.dir}/node1.commit`, bogus + "\n");
    cluster.start(1, noStaleness); // alone: no leader can tell it anything
    await cluster.waitForPorts();
    const reply = text(await cluster.call(read, ["GET", "x"]));
    assert.match(
      reply,
      /^-TRYAGAIN/,
      `hint ${JSON.stringify(bogus)} must not be trusted: ${reply}`,
    );
    await cluster.stop(1);
  }
  // A hint naming entry 2 exactly as the WAL holds it is trusted up to there
  // (with a contact time: without one, reads would be -STALE until a leader
  // is heard from).
  await Deno.writeTextFile(
    `${cluster.dir}/node1.commit`,
    `2 1 ${lineHash(lines[1]!)} ${Date.now()}\n`,
  );
  cluster.start(1, noStaleness);
  await cluster.waitForPorts();
  assert.equal(text(await cluster.call(read, ["GET", "x"])), "committed");
  cluster.pass();
});
