// Log divergence with real processes (Raft §5.3, §5.4.1): node 4 starts with
// two uncommitted entries from term 2 that the other nodes never had, while
// nodes 1–3 hold a term-3 suffix. Node 4 cannot win an election (its last
// log term is older), and the new leader truncates node 4's stale suffix so
// that its WAL becomes a copy of the leader's.

import assert from "node:assert/strict";
import { readWal, startCluster, tryGet, waitForValue, waitUntil } from "./harness.ts";

const majorityWal = "1\tTERM\t1\n2\tSET\ta\t1\n3\tTERM\t3\n4\tSET\tb\tgood\n";
const staleWal = "1\tTERM\t1\n2\tSET\ta\t1\n3\tTERM\t2\n4\tSET\tb\tstale\n5\tSET\tc\tstale\n";

Deno.test("divergence §5.3: a follower's extra entries from an old term are truncated", async () => {
  await using cluster = await startCluster(4, { start: false });
  for (const n of cluster.nodes) {
    await Deno.writeTextFile(`${cluster.dir}/node${n.id}.log`, n.id === 4 ? staleWal : majorityWal);
    await Deno.writeTextFile(
      `${cluster.dir}/node${n.id}.state`,
      JSON.stringify({ currentTerm: 3, votedFor: null }) + "\n",
    );
  }
  for (const n of cluster.nodes) cluster.start(n.id);

  const leaderId = await cluster.waitForCluster(20_000);
  // §5.4.1: voters refuse a candidate whose last log term (2) is older than theirs (3).
  assert.notEqual(leaderId, 4, "node 4 must not win with an older last log term");
  const leader = cluster.node(leaderId);
  const node4 = cluster.node(4);

  assert.equal(await tryGet(cluster, leader.clientPort, "b"), "good");
  assert.equal(await tryGet(cluster, leader.clientPort, "c"), "(nil)");
  await waitForValue(cluster, node4.readPort, "b", "good", 10_000);
  assert.equal(await tryGet(cluster, node4.readPort, "c"), "(nil)");
  assert.equal(await tryGet(cluster, node4.readPort, "a"), "1");

  let mine = "";
  let theirs = "";
  await waitUntil(
    async () => {
      mine = await readWal(cluster, 4);
      theirs = await readWal(cluster, leaderId);
      return mine === theirs;
    },
    10_000,
    "node 4's WAL to equal the leader's",
  ).catch((e) => {
    throw new Error(`${(e as Error).message}:\n${mine}\n---- leader:\n${theirs}`);
  });
  assert.ok(!mine.includes("stale"), `node4.log still holds stale entries:\n${mine}`);
  assert.ok(mine.startsWith(majorityWal), `node4.log starts with the committed prefix:\n${mine}`);
  cluster.pass();
});
