// A restarted node serves reads from its read port at once, from what it knew
// was committed before (nodeN.commit), even while no leader can be elected.

import assert from "node:assert/strict";
import { startCluster, waitForValue, waitUntil } from "./harness.ts";

Deno.test("commit hint: with no quorum, a restarted node's read port still serves committed data", async () => {
  await using cluster = await startCluster(4);
  await cluster.waitForCluster();
  const leader = await cluster.waitForLeader();
  assert.equal(
    (await cluster.call(cluster.node(leader).clientPort, ["SET", "city", "Vilnius"])).kind,
    "simple",
  );
  for (const n of cluster.nodes) await waitForValue(cluster, n.readPort, "city", "Vilnius");
  // Every node records its commit index within a few hundred milliseconds.
  await waitUntil(
    async () => {
      for (const n of cluster.nodes) {
        const text = await Deno.readTextFile(`${cluster.dir}/node${n.id}.commit`).catch(() => "0");
        if (Number(text.trim()) < 2) return false;
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
  cluster.start(leader);
  await waitForValue(cluster, cluster.node(leader).readPort, "city", "Vilnius", 10000);
  cluster.pass();
});
