// A node whose term/vote file cannot be written (here: a directory sits where
// its temporary file goes, as a full or failing disk would refuse it) must
// neither vote nor campaign nor adopt a term, must stay up while the other
// three elect a leader, and must join by itself once the file can be written.
// Before, the first failed write stopped its supervisor for good ("cannot
// continue safely"). Needs no root, unlike tests/fault/disk_full_test.ts.

import assert from "node:assert/strict";
import { readTermFile, termFilePath } from "../../src/storage/term_file.ts";
import { startCluster, tryGet, waitForValue } from "./harness.ts";

Deno.test("supervisor §5.2: a node that cannot write its term file casts no vote, stays up, and joins once it can", async () => {
  await using cluster = await startCluster(4, { start: false });
  const stuck = 4;
  const statePath = termFilePath(cluster.dir, stuck);
  const blocker = `${statePath}.tmp`;
  await Deno.mkdir(blocker);
  await Deno.writeTextFile(`${blocker}/not-ours`, "x");
  for (const n of cluster.nodes) cluster.start(n.id);
  const leader = await cluster.waitForLeader();
  assert.notEqual(leader, stuck);
  await cluster.call(cluster.node(leader).clientPort, ["SET", "k", "v1"]);
  // Long enough for several elections' worth of vote requests and heartbeats.
  await new Promise((r) => setTimeout(r, 1500));
  cluster.assertAlive();

  const log = cluster.log(stuck);
  assert.match(log, /\[ERROR\] ignoring a .*Cannot write term\/vote file .*node4\.state/);
  assert.doesNotMatch(log, /granted vote to|starting election for term|following node/);
  assert.deepEqual(await readTermFile(statePath), {
    ok: true,
    value: { currentTerm: 0, votedFor: null },
  });
  // Its follower role knows of no leader: it serves no data yet.
  assert.notEqual(await tryGet(cluster, cluster.node(stuck).readPort, "k"), "v1");

  await Deno.remove(blocker, { recursive: true });
  await waitForValue(cluster, cluster.node(stuck).readPort, "k", "v1");
  assert.match(cluster.log(stuck), /\[INFO\] wrote .*node4\.state \(term \d+\) after \d+ failed/);
  const state = await readTermFile(statePath);
  assert.ok(state.ok && state.value.currentTerm > 0, JSON.stringify(state));
  assert.equal(cluster.log(stuck).match(/^---- node \d+ started/gm)?.length, 1);
  cluster.pass();
});
