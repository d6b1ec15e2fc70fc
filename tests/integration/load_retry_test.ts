// A role process that cannot load its data for a reason that is not damage
// (here: its WAL path is briefly a directory) exits to be restarted with
// backoff, and the node serves again by itself once the cause is gone.
// Damage stops the node instead (snapshot_damage_test.ts, supervisor_test.ts).

import assert from "node:assert/strict";
import { killPid, startCluster, text, waitForValue, waitUntil } from "./harness.ts";

Deno.test("load failure: a role that cannot read its WAL (not damage) is retried, and the node recovers by itself", async () => {
  await using cluster = await startCluster(4);
  const leaderId = await cluster.waitForCluster();
  const leader = cluster.node(leaderId);
  assert.equal(text(await cluster.call(leader.clientPort, ["SET", "city", "Vilnius"], 5000)), "OK");
  const follower = cluster.nodes.find((n) => n.id !== leaderId)!;
  await waitForValue(cluster, follower.readPort, "city", "Vilnius");

  const wal = `${cluster.dataDir(follower.id)}/node${follower.id}.log`;
  await Deno.rename(wal, `${wal}.aside`);
  await Deno.mkdir(wal);
  killPid(cluster.rolePid(follower.id)!, "SIGKILL");
  await waitUntil(
    () => /cannot load the node's data \(will retry\)/.test(cluster.log(follower.id)),
    10_000,
    "the restarted role to report a load failure it will retry",
  );
  assert.ok(cluster.isRunning(follower.id), "the node keeps running");

  await Deno.remove(wal);
  await Deno.rename(`${wal}.aside`, wal);
  await waitForValue(cluster, follower.readPort, "city", "Vilnius", 20_000);
  assert.doesNotMatch(cluster.log(follower.id), /cannot load the WAL .* or the snapshot beside it/);
  cluster.pass();
});
