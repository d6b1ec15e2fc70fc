// Damaged snapshot files at start: what cannot be repaired stops the node
// (exit code 3) with a message naming the file, rather than serving wrong
// data; leftovers of unfinished work are removed and the node starts.

import assert from "node:assert/strict";
import { crc32 } from "node:zlib";
import {
  encodeSnapshotHeader,
  encodeSnapshotPairs,
  encodeSnapshotTrailer,
} from "../../src/codec/snapshot.ts";
import { lineHash } from "../../src/storage/commit_hint.ts";
import { startCluster, tryGet, waitUntil } from "./harness.ts";

const encoder = new TextEncoder();

/** A snapshot at index 3 (term 1) holding city=Vilnius, as a node writes it. */
function snapshotBytes(): Uint8Array {
  const last = encoder.encode("3\tSET\tcity\tVilnius\n");
  const head = encodeSnapshotHeader({ index: 3, term: 1, lineHash: lineHash(last) });
  const pairs = encodeSnapshotPairs([["city", "Vilnius"], ["name", "Jonas"]]);
  const body = new Uint8Array([...head, ...pairs]);
  return new Uint8Array([...body, ...encodeSnapshotTrailer(2, crc32(body))]);
}

Deno.test("snapshot damage: a snapshot whose checksum fails stops the node, naming the file", async () => {
  await using cluster = await startCluster(4, { start: false });
  const bytes = snapshotBytes();
  // Vilnius → Wilnius in the pairs (the header's "KVSNAP" holds a V too).
  const at = new TextDecoder("latin1").decode(bytes).indexOf("Vilnius");
  assert.ok(at > 0);
  bytes[at] = encoder.encode("W")[0]!;
  await Deno.writeFile(`${cluster.dir}/node2.snap`, bytes);
  await Deno.writeTextFile(`${cluster.dir}/node2.log`, "4\tSET\tname\tPetras\n");
  cluster.start(2);
  assert.equal(await cluster.waitExit(2, 15_000), 3);
  assert.match(cluster.log(2), /node2\.snap" is damaged: Checksum mismatch/);
  cluster.pass();
});

Deno.test("snapshot damage: a compacted WAL whose snapshot is missing stops the node", async () => {
  await using cluster = await startCluster(4, { start: false });
  await Deno.writeTextFile(`${cluster.dir}/node3.log`, "4\tSET\tname\tPetras\n");
  cluster.start(3);
  assert.equal(await cluster.waitExit(3, 15_000), 3);
  assert.match(cluster.log(3), /node3\.log/);
  cluster.pass();
});

Deno.test("snapshot damage: leftovers of an unfinished snapshot, transfer or compaction are removed and the node serves its data", async () => {
  await using cluster = await startCluster(4, { start: false });
  for (const n of cluster.nodes) {
    await Deno.writeFile(`${cluster.dir}/node${n.id}.snap`, snapshotBytes());
    await Deno.writeTextFile(`${cluster.dir}/node${n.id}.log`, "4\tSET\tname\tPetras\n");
    await Deno.writeTextFile(
      `${cluster.dir}/node${n.id}.state`,
      JSON.stringify({ currentTerm: 1, votedFor: null }),
    );
  }
  const junk = ["node1.snap.tmp", "node1.snap.recv", "node1.log.compact"];
  for (const name of junk) await Deno.writeTextFile(`${cluster.dir}/${name}`, "half written");
  for (const n of cluster.nodes) cluster.start(n.id);
  await cluster.waitForCluster();
  const node1 = cluster.node(1);
  await waitUntil(
    async () => await tryGet(cluster, node1.readPort, "name") === "Petras",
    15_000,
    "node 1 to serve the WAL tail after its snapshot",
  );
  assert.equal(await tryGet(cluster, node1.readPort, "city"), "Vilnius");
  for (const name of junk.slice(0, 2)) {
    await assert.rejects(() => Deno.stat(`${cluster.dir}/${name}`), Deno.errors.NotFound, name);
    assert.match(cluster.log(1), new RegExp(`removed .*${name.replaceAll(".", "\\.")}, left by`));
  }
  cluster.pass();
});
