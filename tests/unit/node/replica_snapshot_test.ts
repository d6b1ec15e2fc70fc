// ReplicaState with snapshots (Raft §7, src/node/replica_state.ts): a snapshot
// compacts the WAL and a reopen rebuilds the same state from snapshot + WAL
// tail; a crash between the snapshot and the compaction is harmless; a
// leader's snapshot installed on a follower keeps a matching suffix and drops
// a conflicting one, in the crash-safe order; a WAL that contradicts the
// snapshot refuses to load.

import assert from "node:assert/strict";
import { encodeWalLine, type WalRecord } from "../../../src/codec/wal_line.ts";
import { bytesToLatin1 } from "../../../src/kv/latin1.ts";
import type { Log } from "../../../src/log.ts";
import type { LogEntry } from "../../../src/raft/log.ts";
import { ReplicaState } from "../../../src/node/replica_state.ts";
import { lineHash } from "../../../src/storage/commit_hint.ts";
import { SnapshotDamagedError } from "../../../src/storage/snapshot_file.ts";
import {
  encodeSnapshotHeader,
  encodeSnapshotPairs,
  encodeSnapshotTrailer,
  type SnapshotMeta,
} from "../../../src/codec/snapshot.ts";
import { crc32 } from "node:zlib";

const quiet: Log = { debug() {}, info() {}, warn() {}, error() {} };
const utf8 = new TextEncoder();
const text = (
  b: Uint8Array | undefined,
) => (b === undefined ? undefined : new TextDecoder().decode(b));

function entry(term: number, record: WalRecord): LogEntry {
  return { index: record.index, term, record, line: encodeWalLine(record) };
}
const set = (term: number, index: number, key: string, value: string) =>
  entry(term, { op: "SET", index, key: utf8.encode(key), value: utf8.encode(value) });
const termMarker = (index: number, term: number) => entry(term, { op: "TERM", index, term });

interface Dir {
  readonly wal: string;
  readonly snap: string;
  readonly hint: string;
}

async function withDir(body: (d: Dir) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir();
  try {
    await body({ wal: `${dir}/node1.log`, snap: `${dir}/node1.snap`, hint: `${dir}/node1.commit` });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

const open = (d: Dir) => ReplicaState.open(d.wal, quiet, d.hint, {}, { path: d.snap });

/** A state holding TERM 1 and SETs k1..k{n} (entries 2..n+1), all committed and synced. */
async function filled(d: Dir, n: number): Promise<ReplicaState> {
  const state = await open(d);
  state.append([termMarker(1, 1)]);
  for (let i = 1; i <= n; i++) state.append([set(1, i + 1, `k${i}`, `v${i}`)]);
  await state.wal.sync();
  state.commitTo(n + 1);
  return state;
}

async function walSeqs(path: string): Promise<number[]> {
  const lines = (await Deno.readTextFile(path)).split("\n").filter((l) => l !== "");
  return lines.map((l) => Number(l.split("\t")[0]));
}

Deno.test("snapshot §7: takeSnapshot compacts the WAL, and a reopen rebuilds the same state from snapshot + tail", async () => {
  await withDir(async (d) => {
    const state = await filled(d, 10);
    const taken = await state.takeSnapshot();
    assert.deepEqual(taken.meta, {
      index: 11,
      term: 1,
      lineHash: lineHash(state.log.entry(11)?.line ?? set(1, 11, "k10", "v10").line),
    });
    assert.deepEqual(await walSeqs(d.wal), [], "every line is covered");
    state.append([set(1, 12, "k1", "new"), set(1, 13, "k11", "v11")]);
    await state.wal.sync();
    state.commitTo(13);
    assert.deepEqual(await walSeqs(d.wal), [12, 13], "appends after compaction keep their seq");
    state.wal.close();

    const again = await open(d);
    try {
      assert.equal(again.snapshot.index, 11);
      assert.deepEqual(again.log.position, { lastIndex: 13, lastTerm: 1 });
      assert.equal(again.log.snapshotIndex, 11);
      again.commitTo(13);
      assert.equal(text(again.kv.get(utf8.encode("k1"))), "new");
      assert.equal(text(again.kv.get(utf8.encode("k10"))), "v10");
      assert.equal(text(again.kv.get(utf8.encode("k11"))), "v11");
      assert.equal(again.kv.size, 11);
    } finally {
      again.wal.close();
    }
  });
});

Deno.test("snapshot §7: entries kept in memory below a snapshot are bounded by count and by bytes", async () => {
  for (
    const [retainEntries, retainBytes, kept] of [
      [25, 1 << 20, 11], // all 11 entries: fewer than either bound
      [4, 1 << 20, 4],
      [25, 40, 3], // lines of 12–14 bytes: three fit in 40 bytes
      [25, 0, 0],
    ] as const
  ) {
    await withDir(async (d) => {
      const policy = { entries: 100, walBytes: 1 << 20, retainEntries, retainBytes };
      const state = await ReplicaState.open(d.wal, quiet, d.hint, {}, { path: d.snap, policy });
      state.append([termMarker(1, 1)]);
      for (let i = 1; i <= 10; i++) state.append([set(1, i + 1, `k${i}`, `v${i}`)]);
      await state.wal.sync();
      state.commitTo(11);
      await state.takeSnapshot();
      const label = `retain ${retainEntries} entries, ${retainBytes} bytes`;
      assert.equal(state.log.snapshotIndex, 11 - kept, label);
      assert.equal(state.log.lastIndex, 11, label);
      state.wal.close();
    });
  }
});

Deno.test("snapshot §7: a retain floor keeps the entries a follower receiving the snapshot will need, within one threshold", async () => {
  for (
    const [floor, entries, walBytes, firstKept] of [
      [null, 100, 1 << 20, 10], // no floor: the 2 retained entries, 10 and 11
      [4, 100, 1 << 20, 5], // everything after the floor
      [9, 100, 1 << 20, 10], // a floor within the retained entries changes nothing
      [4, 5, 1 << 20, 7], // at most `entries` in all
      [4, 100, 60, 8], // at most `walBytes` in all (four lines of 12–15 bytes)
    ] as const
  ) {
    await withDir(async (d) => {
      const policy = { entries, walBytes, retainEntries: 2, retainBytes: 1 << 20 };
      const state = await ReplicaState.open(d.wal, quiet, d.hint, {}, { path: d.snap, policy });
      state.setRetainFloor(() => floor);
      state.append([termMarker(1, 1)]);
      for (let i = 1; i <= 10; i++) state.append([set(1, i + 1, `k${i}`, `v${i}`)]);
      await state.wal.sync();
      state.commitTo(11);
      await state.takeSnapshot();
      const label = `floor ${floor}, threshold ${entries} entries, ${walBytes} bytes`;
      assert.equal(state.log.snapshotIndex, firstKept - 1, label);
      assert.equal(state.log.entry(firstKept)?.index, firstKept, label);
      state.wal.close();
    });
  }
});

Deno.test("snapshot §7: a crash after the snapshot but before the compaction loads the same state (covered lines are ignored)", async () => {
  await withDir(async (d) => {
    const state = await filled(d, 5);
    const before = await Deno.readFile(d.wal);
    await state.takeSnapshot();
    state.wal.close();
    await Deno.writeFile(d.wal, before); // as if compaction never ran
    const again = await open(d);
    try {
      assert.equal(again.snapshot.index, 6);
      assert.equal(again.commitIndex, 6);
      assert.deepEqual(again.log.position, { lastIndex: 6, lastTerm: 1 });
      assert.equal(text(again.kv.get(utf8.encode("k5"))), "v5");
    } finally {
      again.wal.close();
    }
  });
});

Deno.test("snapshot: a WAL holding a different entry at the snapshot's index refuses to load", async () => {
  await withDir(async (d) => {
    const state = await filled(d, 5);
    await state.takeSnapshot();
    state.wal.close();
    const other = [termMarker(1, 1), ...[1, 2, 3, 4, 5].map((i) => set(1, i + 1, `k${i}`, "x"))];
    await Deno.writeFile(d.wal, new Uint8Array(other.flatMap((e) => [...e.line])));
    await assert.rejects(() => open(d), SnapshotDamagedError);
  });
});

/** A complete snapshot file from a leader, ending with `last`, as a
 * follower holds it once received (`nodeN.snap.recv`). */
async function receivedSnapshot(
  d: Dir,
  last: LogEntry,
  pairs: Map<string, string>,
): Promise<{ path: string; meta: SnapshotMeta }> {
  const meta: SnapshotMeta = { index: last.index, term: last.term, lineHash: lineHash(last.line) };
  const body = concat([encodeSnapshotHeader(meta), encodeSnapshotPairs([...pairs])]);
  const path = `${d.snap}.recv`;
  await Deno.writeFile(path, concat([body, encodeSnapshotTrailer(pairs.size, crc32(body))]));
  return { path, meta };
}

function concat(parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

Deno.test("InstallSnapshot §7: a log holding the snapshot's last entry keeps the entries after it", async () => {
  await withDir(async (d) => {
    const state = await filled(d, 3); // entries 1..4, committed
    state.append([set(1, 5, "a", "1"), set(1, 6, "b", "2"), set(1, 7, "c", "3")]);
    await state.wal.sync(); // 5..7 uncommitted here, but the leader's snapshot covers 5
    const pairs = new Map([["k1", "v1"], ["k2", "v2"], ["k3", "v3"], ["a", "1"]]);
    const { path, meta } = await receivedSnapshot(d, set(1, 5, "a", "1"), pairs);
    await state.installSnapshot(path, meta, pairs, 100);
    assert.equal(state.commitIndex, 5);
    assert.deepEqual(state.log.position, { lastIndex: 7, lastTerm: 1 });
    assert.equal(state.log.snapshotIndex, 5);
    assert.deepEqual(await walSeqs(d.wal), [6, 7]);
    state.commitTo(7);
    assert.equal(text(state.kv.get(utf8.encode("c"))), "3");
    assert.equal(text(state.kv.get(utf8.encode("k2"))), "v2");
    assert.equal((await Deno.readTextFile(d.snap)).split("\t")[2], "5", "the snapshot is in place");
    state.wal.close();
  });
});

Deno.test("InstallSnapshot §7: a snapshot beyond the log whose WAL compaction fails: appends go on and a restart loads it all", async () => {
  // Regression: the WAL kept 1..4 (compaction failed), the next entry 11 was
  // appended after them, and a restart refused the file as damaged.
  await withDir(async (d) => {
    const state = await filled(d, 3); // entries 1..4, committed
    await Deno.mkdir(`${d.wal}.compact/blocker`, { recursive: true }); // the copy cannot be made
    const pairs = new Map([["k1", "v1"], ["z", "9"]]);
    const { path, meta } = await receivedSnapshot(d, set(1, 10, "z", "9"), pairs);
    await state.installSnapshot(path, meta, pairs, 100);
    state.append([set(1, 11, "a", "1")]);
    await state.wal.sync();
    state.commitTo(11);
    state.wal.close();
    assert.deepEqual(await walSeqs(d.wal), [1, 2, 3, 4, 11]);
    await Deno.remove(`${d.wal}.compact`, { recursive: true });

    const again = await open(d);
    assert.deepEqual(again.log.position, { lastIndex: 11, lastTerm: 1 });
    again.commitTo(11);
    assert.equal(text(again.kv.get(utf8.encode("a"))), "1");
    assert.equal(text(again.kv.get(utf8.encode("z"))), "9");
    assert.equal(
      again.kv.get(utf8.encode("k2")),
      undefined,
      "the snapshot's state, not the old log's",
    );
    again.wal.close();
  });
});

Deno.test("InstallSnapshot §7: a crash before the compaction, a restart, more appends, another restart", async () => {
  await withDir(async (d) => {
    const state = await filled(d, 3); // entries 1..4, committed
    const before = await Deno.readFile(d.wal);
    const pairs = new Map([["k1", "v1"], ["z", "9"]]);
    const { path, meta } = await receivedSnapshot(d, set(1, 10, "z", "9"), pairs);
    await state.installSnapshot(path, meta, pairs, 100);
    state.wal.close();
    await Deno.writeFile(d.wal, before); // the compaction's rename never happened

    const second = await open(d);
    assert.deepEqual(second.log.position, { lastIndex: 10, lastTerm: 1 });
    second.append([set(1, 11, "a", "1"), set(1, 12, "b", "2")]);
    await second.wal.sync();
    second.commitTo(12);
    second.wal.close();

    const third = await open(d);
    assert.deepEqual(third.log.position, { lastIndex: 12, lastTerm: 1 });
    third.commitTo(12);
    assert.equal(text(third.kv.get(utf8.encode("b"))), "2");
    assert.equal(text(third.kv.get(utf8.encode("z"))), "9");
    third.wal.close();
  });
});

Deno.test("InstallSnapshot §7: a log that disagrees at the snapshot's index drops its uncommitted suffix first", async () => {
  await withDir(async (d) => {
    const state = await filled(d, 3); // 1..4 committed
    // An old leader's uncommitted entries of term 1 at 5..7; the snapshot has term 2 at 6.
    state.append([set(1, 5, "x", "old"), set(1, 6, "y", "old"), set(1, 7, "z", "old")]);
    await state.wal.sync();
    const pairs = new Map([["y", "new"]]);
    const { path, meta } = await receivedSnapshot(d, set(2, 6, "y", "new"), pairs);
    await state.installSnapshot(path, meta, pairs, 100);
    assert.deepEqual(state.log.position, { lastIndex: 6, lastTerm: 2 });
    assert.equal(state.commitIndex, 6);
    assert.equal(text(state.kv.get(utf8.encode("y"))), "new");
    assert.equal(state.kv.get(utf8.encode("z")), undefined);
    assert.deepEqual(await walSeqs(d.wal), [], "nothing of the old suffix is left in the WAL");
    state.wal.close();
  });
});

Deno.test("snapshot: a commit hint naming the snapshot's last entry is trusted, contact time included", async () => {
  await withDir(async (d) => {
    const state = await filled(d, 2);
    const taken = await state.takeSnapshot();
    await state.saveCommitHint(1767225600123);
    state.wal.close();
    assert.equal(
      await Deno.readTextFile(d.hint),
      `3 1 ${taken.meta.lineHash} 1767225600123\n`,
      "the hint names the compacted entry by the snapshot's hash",
    );
    const again = await open(d);
    try {
      assert.equal(again.hintLeaderContactEpochMs, 1767225600123);
      assert.equal(bytesToLatin1(again.kv.get(utf8.encode("k2"))!), "v2");
    } finally {
      again.wal.close();
    }
  });
});

Deno.test("InstallSnapshot §7: the conflicting suffix is cut before the snapshot takes its place (a crash in between loses nothing committed)", async () => {
  await withDir(async (d) => {
    const state = await filled(d, 3);
    state.append([set(1, 5, "x", "old"), set(1, 6, "y", "old")]);
    await state.wal.sync();
    const pairs = new Map([["y", "new"]]);
    const { path, meta } = await receivedSnapshot(d, set(2, 6, "y", "new"), pairs);
    // The rename into place fails, as a crash right before it would stop it.
    await Deno.mkdir(`${d.snap}/blocker`, { recursive: true });
    await assert.rejects(() => state.installSnapshot(path, meta, pairs, 100));
    state.wal.close();
    // From the snapshot's index on the log disagrees with a committed entry,
    // so nothing there was committed; entry 5 may have been, and stays.
    assert.deepEqual(await walSeqs(d.wal), [1, 2, 3, 4, 5], "entry 6 (term 1) is cut, 1..5 stay");
    await Deno.remove(d.snap, { recursive: true });
    const again = await open(d);
    try {
      assert.deepEqual(again.log.position, { lastIndex: 5, lastTerm: 1 });
    } finally {
      again.wal.close();
    }
  });
});
