// Snapshots and compaction with real processes (Raft §7): nodes started with a
// small --snapshot-entries write snapshots and drop the WAL lines they cover,
// keeping the request's line form and the original seq numbers; a follower
// whose data directory was wiped joins from the leader's snapshot while the
// leader goes on compacting; and the whole cluster restarts from snapshot plus
// WAL tail with every acknowledged value.

import assert from "node:assert/strict";
import { Connection } from "../../src/client/connection.ts";
import { readWalLines, startCluster, text, tryGet, waitUntil } from "./harness.ts";

const snapshotArgs = ["--snapshot-entries", "200"];
const keyCount = 300;

/** SETs key{i % 300} = `${prefix}${i}` for i < count, pipelined on one connection. */
async function writeRound(port: number, prefix: string, count: number): Promise<void> {
  await using conn = await Connection.connect("127.0.0.1", port, 2000);
  const replies = await Promise.all(
    Array.from(
      { length: count },
      (_, i) => conn.call(["SET", `key${i % keyCount}`, `${prefix}${i}`], 15_000),
    ),
  );
  assert.deepEqual(new Set(replies.map(text)), new Set(["OK"]));
}

/** The last value written to key k by writeRound(prefix, 1000). */
function lastOf(prefix: string, k: number): string {
  return `${prefix}${k < 1000 % keyCount ? 900 + k : 600 + k}`;
}

Deno.test("snapshots: WALs are compacted, a wiped follower joins from the leader's snapshot, and a full restart keeps everything", async () => {
  await using cluster = await startCluster(4, { start: false });
  for (const n of cluster.nodes) cluster.start(n.id, snapshotArgs);
  const leader = cluster.node(await cluster.waitForCluster());
  await writeRound(leader.clientPort, "a", 1000);

  // Every node snapshots on its own and compacts its WAL: the WAL no longer
  // starts at seq 1, and its lines keep their seq and the request's form.
  for (const n of cluster.nodes) {
    await waitUntil(
      async () => {
        const lines = await readWalLines(cluster, n.id);
        return lines.length < 600 &&
          Number(
              (await Deno.readTextFile(`${cluster.dir}/node${n.id}.snap`).catch(() => ""))
                .split("\t")[2] ?? 0,
            ) >= 800;
      },
      10_000,
      `node ${n.id} to snapshot and compact its WAL`,
    );
    const lines = await readWalLines(cluster, n.id);
    const seqs = lines.map((l) => Number(l.split("\t")[0]));
    const snapIndex = Number(
      (await Deno.readTextFile(`${cluster.dir}/node${n.id}.snap`)).split("\t")[2],
    );
    for (const [i, line] of lines.entries()) {
      assert.match(line, /^\d+\t(SET\tkey\d+\ta\d+|TERM\t\d+)$/, `node ${n.id} WAL line ${i + 1}`);
      if (i > 0) assert.equal(seqs[i], seqs[i - 1]! + 1, "seqs count up without gaps");
    }
    if (lines.length > 0) assert.ok(seqs[0]! <= snapIndex + 1, "no gap after the snapshot");
  }

  // A follower loses its data directory; meanwhile the leader compacts past
  // everything it had, so it can only join from the snapshot.
  const wiped = cluster.nodes.find((n) => n.id !== leader.id)!;
  await cluster.stop(wiped.id, "SIGKILL");
  for (const ext of ["log", "snap", "commit", "state"]) {
    await Deno.remove(`${cluster.dir}/node${wiped.id}.${ext}`).catch(() => {});
  }
  await writeRound(leader.clientPort, "b", 1000);
  cluster.start(wiped.id, snapshotArgs);
  await waitUntil(
    async () => (await tryGet(cluster, wiped.readPort, "key99")) === lastOf("b", 99),
    15_000,
    `node ${wiped.id} to serve the latest values`,
  );
  for (let k = 0; k < keyCount; k++) {
    assert.equal(await tryGet(cluster, wiped.readPort, `key${k}`), lastOf("b", k), `key${k}`);
  }
  assert.match(cluster.log(wiped.id), /installed the leader's snapshot: 301 keys/);
  assert.match(cluster.log(leader.id), /snapshot to node \d installed/);

  // Everything killed at once; every node comes back from snapshot + WAL tail.
  for (const n of cluster.nodes) await cluster.stop(n.id, "SIGKILL");
  for (const n of cluster.nodes) cluster.start(n.id, snapshotArgs);
  await cluster.waitForCluster();
  for (const n of cluster.nodes) {
    await waitUntil(
      async () => (await tryGet(cluster, n.readPort, "key99")) === lastOf("b", 99),
      15_000,
      `node ${n.id} to serve after the restart`,
    );
    for (let k = 0; k < keyCount; k++) {
      assert.equal(await tryGet(cluster, n.readPort, `key${k}`), lastOf("b", k), `key${k}`);
    }
    assert.match(cluster.log(n.id), /loaded snapshot .*: 301 keys up to entry/);
  }
  cluster.pass();
});
