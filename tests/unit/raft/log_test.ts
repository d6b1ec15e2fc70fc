// Unit tests of src/raft/log.ts: RaftLog positions, term lookup, append invariants, truncation.

import assert from "node:assert/strict";
import { encodeWalLine, type WalRecord } from "../../../src/codec/wal_line.ts";
import { type LogEntry, RaftLog } from "../../../src/raft/log.ts";
import { InvariantError } from "../../../src/raft/types.ts";

function entry(index: number, term: number): LogEntry {
  const record: WalRecord = {
    op: "SET",
    index,
    key: new TextEncoder().encode(`k${index}`),
    value: new TextEncoder().encode(`v${index}t${term}`),
  };
  return { index, term, record, line: encodeWalLine(record) };
}

/** A log whose entry i (1-based) has term terms[i - 1]. */
function logOfTerms(terms: readonly number[]): RaftLog {
  return new RaftLog(terms.map((t, i) => entry(i + 1, t)));
}

Deno.test("an empty log ends at (0, 0) and index 0 has term 0", () => {
  const log = new RaftLog();
  assert.equal(log.lastIndex, 0);
  assert.equal(log.lastTerm, 0);
  assert.deepEqual(log.position, { lastIndex: 0, lastTerm: 0 });
  assert.equal(log.termAt(0), 0);
  assert.equal(log.termAt(1), undefined);
  assert.equal(log.entry(1), undefined);
  assert.deepEqual(log.slice(1, 10), []);
});

Deno.test("position reports the last index and the last entry's term", () => {
  const log = logOfTerms([1, 1, 2, 3, 3]);
  assert.deepEqual(log.position, { lastIndex: 5, lastTerm: 3 });
  assert.equal(log.termAt(3), 2);
  assert.equal(log.termAt(6), undefined);
  assert.equal(log.entry(4)?.index, 4);
  assert.equal(log.entry(4)?.term, 3);
});

Deno.test("append refuses a gap or a repeated index (the log has no holes)", () => {
  const log = logOfTerms([1, 1]);
  assert.throws(() => log.append(entry(4, 1)), InvariantError);
  assert.throws(() => log.append(entry(2, 1)), InvariantError);
  log.append(entry(3, 1));
  assert.equal(log.lastIndex, 3);
});

Deno.test("append refuses a term going back (terms never decrease along the log)", () => {
  const log = logOfTerms([1, 3]);
  assert.throws(() => log.append(entry(3, 2)), InvariantError);
  log.append(entry(3, 3));
  log.append(entry(4, 5));
  assert.equal(log.lastTerm, 5);
});

Deno.test("the constructor applies the same invariants as append", () => {
  assert.throws(() => new RaftLog([entry(2, 1)]), InvariantError);
  assert.throws(() => new RaftLog([entry(1, 2), entry(2, 1)]), InvariantError);
});

Deno.test("truncateFrom §5.3 drops the entry at the index and everything after it", () => {
  const log = logOfTerms([1, 1, 2, 2, 2]);
  log.truncateFrom(3);
  assert.deepEqual(log.position, { lastIndex: 2, lastTerm: 1 });
  assert.equal(log.termAt(3), undefined);
  log.append(entry(3, 4));
  assert.deepEqual(log.position, { lastIndex: 3, lastTerm: 4 });
});

Deno.test("truncateFrom past the end changes nothing; from 1 empties the log; from 0 is refused", () => {
  const log = logOfTerms([1, 1]);
  log.truncateFrom(3);
  assert.equal(log.lastIndex, 2);
  log.truncateFrom(99);
  assert.equal(log.lastIndex, 2);
  assert.throws(() => log.truncateFrom(0), InvariantError);
  log.truncateFrom(1);
  assert.deepEqual(log.position, { lastIndex: 0, lastTerm: 0 });
});

Deno.test("slice returns [from, to] inclusive, clamped to the log", () => {
  const log = logOfTerms([1, 1, 2, 2, 3]);
  assert.deepEqual(log.slice(2, 4).map((e) => e.index), [2, 3, 4]);
  assert.deepEqual(log.slice(0, 2).map((e) => e.index), [1, 2]);
  assert.deepEqual(log.slice(4, 99).map((e) => e.index), [4, 5]);
  assert.deepEqual(log.slice(6, 9), []);
  assert.deepEqual(log.slice(3, 2), []);
});

Deno.test("slice returns a copy: changing it leaves the log alone", () => {
  const log = logOfTerms([1, 1, 1]);
  const part = log.slice(1, 3);
  part.length = 0;
  assert.equal(log.lastIndex, 3);
});

Deno.test("firstIndexOfTermAt finds where the term at an index begins", () => {
  const log = logOfTerms([1, 1, 2, 2, 2, 4]);
  assert.equal(log.firstIndexOfTermAt(5), 3);
  assert.equal(log.firstIndexOfTermAt(3), 3);
  assert.equal(log.firstIndexOfTermAt(2), 1);
  assert.equal(log.firstIndexOfTermAt(1), 1);
  assert.equal(log.firstIndexOfTermAt(6), 6);
  assert.equal(logOfTerms([3, 3, 3]).firstIndexOfTermAt(3), 1);
});

Deno.test("entries keep their exact WAL line bytes", () => {
  const e = entry(1, 1);
  const log = new RaftLog([e]);
  assert.equal(log.entry(1)?.line, e.line);
  assert.equal(new TextDecoder().decode(e.line), "1\tSET\tk1\tv1t1\n");
});

// ---- compaction (Raft §7) ----------------------------------------------------

/** A log compacted up to `snapshot` whose entries after it have the given terms. */
function compactedLog(snapshot: { lastIndex: number; lastTerm: number }, terms: number[]): RaftLog {
  return new RaftLog(terms.map((t, i) => entry(snapshot.lastIndex + 1 + i, t)), snapshot);
}

const indexesOf = (entries: readonly LogEntry[]): number[] => entries.map((e) => e.index);

Deno.test("§7: a log built on a snapshot continues right after the snapshot's index", () => {
  const log = compactedLog({ lastIndex: 5, lastTerm: 2 }, [2, 3, 3]);
  assert.equal(log.snapshotIndex, 5);
  assert.equal(log.snapshotTerm, 2);
  assert.deepEqual(log.position, { lastIndex: 8, lastTerm: 3 });
  assert.equal(log.entry(6)?.index, 6);
  assert.equal(log.entry(8)?.term, 3);
  log.append(entry(9, 3));
  assert.equal(log.lastIndex, 9);
});

Deno.test("§7: a log that is only a snapshot ends at the snapshot's index and term", () => {
  const log = new RaftLog([], { lastIndex: 5, lastTerm: 2 });
  assert.deepEqual(log.position, { lastIndex: 5, lastTerm: 2 });
  assert.deepEqual(log.slice(1, 10), []);
  assert.equal(log.entry(5), undefined);
  // The next entry may not go back in term from the snapshot's.
  assert.throws(() => log.append(entry(6, 1)), InvariantError);
  log.append(entry(6, 2));
  assert.deepEqual(log.position, { lastIndex: 6, lastTerm: 2 });
});

Deno.test("§7: the constructor refuses entries that do not follow the snapshot, or a snapshot without a term", () => {
  const snapshot = { lastIndex: 5, lastTerm: 2 };
  assert.throws(() => new RaftLog([entry(1, 2)], snapshot), InvariantError);
  assert.throws(() => new RaftLog([entry(7, 2)], snapshot), InvariantError);
  assert.throws(() => new RaftLog([entry(6, 1)], snapshot), InvariantError);
  assert.throws(() => new RaftLog([], { lastIndex: 5, lastTerm: 0 }), InvariantError);
  assert.throws(() => new RaftLog([], { lastIndex: 0, lastTerm: 2 }), InvariantError);
});

Deno.test("§7: termAt is known at the snapshot index, unknown below it, and 0 at index 0", () => {
  const log = compactedLog({ lastIndex: 5, lastTerm: 2 }, [3, 3]);
  assert.equal(log.termAt(0), 0);
  assert.equal(log.termAt(1), undefined, "compacted away");
  assert.equal(log.termAt(4), undefined, "compacted away");
  assert.equal(log.termAt(5), 2, "the snapshot keeps its last entry's term");
  assert.equal(log.termAt(6), 3);
  assert.equal(log.termAt(7), 3);
  assert.equal(log.termAt(8), undefined, "past the end");
});

Deno.test("§7: entry is undefined at and below the snapshot index, and past the end", () => {
  const log = compactedLog({ lastIndex: 5, lastTerm: 2 }, [3, 3]);
  for (const index of [0, 1, 4, 5, 8]) assert.equal(log.entry(index), undefined, `index ${index}`);
  assert.equal(log.entry(6)?.index, 6);
  assert.equal(log.entry(7)?.index, 7);
});

Deno.test("§7: slice across the snapshot boundary returns only the entries still held", () => {
  const log = compactedLog({ lastIndex: 5, lastTerm: 2 }, [2, 2, 3, 3]);
  assert.deepEqual(indexesOf(log.slice(1, 7)), [6, 7]);
  assert.deepEqual(indexesOf(log.slice(0, 99)), [6, 7, 8, 9]);
  assert.deepEqual(indexesOf(log.slice(5, 6)), [6]);
  assert.deepEqual(indexesOf(log.slice(6, 6)), [6]);
  assert.deepEqual(indexesOf(log.slice(8, 99)), [8, 9]);
  assert.deepEqual(log.slice(1, 5), [], "wholly compacted");
  assert.deepEqual(log.slice(3, 4), []);
  assert.deepEqual(log.slice(10, 12), []);
});

Deno.test("§7: compactTo forgets the entries up to an index and keeps its term", () => {
  const log = logOfTerms([1, 1, 2, 2, 3]);
  const kept = log.entry(4);
  log.compactTo(3);
  assert.equal(log.snapshotIndex, 3);
  assert.equal(log.snapshotTerm, 2);
  assert.deepEqual(log.position, { lastIndex: 5, lastTerm: 3 }, "the end does not move");
  assert.deepEqual(indexesOf(log.slice(1, 5)), [4, 5]);
  assert.equal(log.entry(3), undefined);
  assert.equal(log.entry(4), kept, "entries after it are the very same objects");
  assert.equal(log.termAt(3), 2);
  assert.equal(log.termAt(2), undefined);
  // Later compactions go on from there.
  log.compactTo(4);
  assert.deepEqual(indexesOf(log.slice(1, 5)), [5]);
  assert.equal(log.termAt(4), 2);
});

Deno.test("§7: compactTo at or below the snapshot changes nothing; past the end is refused", () => {
  const log = compactedLog({ lastIndex: 5, lastTerm: 2 }, [2, 3]);
  log.compactTo(5);
  log.compactTo(2);
  log.compactTo(0);
  assert.equal(log.snapshotIndex, 5);
  assert.deepEqual(indexesOf(log.slice(1, 99)), [6, 7]);
  assert.throws(() => log.compactTo(8), InvariantError);
  assert.equal(log.snapshotIndex, 5, "a refused compaction leaves the log alone");
  assert.equal(log.lastIndex, 7);
});

Deno.test("§7: compactTo the last index leaves an empty log at the snapshot, and appends go on", () => {
  const log = logOfTerms([1, 2, 2]);
  log.compactTo(3);
  assert.deepEqual(log.position, { lastIndex: 3, lastTerm: 2 });
  assert.deepEqual(log.slice(0, 99), []);
  assert.throws(() => log.append(entry(3, 2)), InvariantError);
  log.append(entry(4, 2));
  assert.deepEqual(log.position, { lastIndex: 4, lastTerm: 2 });
});

Deno.test("InstallSnapshot §7: a log holding the snapshot's last entry with the same term keeps the entries after it", () => {
  const log = logOfTerms([1, 1, 2, 2, 3]);
  log.installSnapshot({ lastIndex: 3, lastTerm: 2 });
  assert.equal(log.snapshotIndex, 3);
  assert.equal(log.snapshotTerm, 2);
  assert.deepEqual(log.position, { lastIndex: 5, lastTerm: 3 });
  assert.deepEqual(indexesOf(log.slice(1, 5)), [4, 5]);
});

Deno.test("InstallSnapshot §7: a snapshot ending at the log's last entry leaves an empty log after it", () => {
  const log = logOfTerms([1, 1, 2]);
  log.installSnapshot({ lastIndex: 3, lastTerm: 2 });
  assert.deepEqual(log.position, { lastIndex: 3, lastTerm: 2 });
  assert.deepEqual(log.slice(0, 99), []);
});

Deno.test("InstallSnapshot §7: a log whose entry at the snapshot's index has another term is discarded whole", () => {
  const log = logOfTerms([1, 1, 2, 2, 2]);
  log.installSnapshot({ lastIndex: 4, lastTerm: 3 });
  assert.equal(log.snapshotIndex, 4);
  assert.equal(log.snapshotTerm, 3);
  assert.deepEqual(log.position, { lastIndex: 4, lastTerm: 3 });
  assert.deepEqual(log.slice(0, 99), [], "entry 5 went with the conflicting entry 4");
  log.append(entry(5, 3));
  assert.equal(log.lastIndex, 5);
});

Deno.test("InstallSnapshot §7: a snapshot beyond the log's end discards it whole", () => {
  const log = logOfTerms([1, 1, 2]);
  log.installSnapshot({ lastIndex: 10, lastTerm: 4 });
  assert.deepEqual(log.position, { lastIndex: 10, lastTerm: 4 });
  assert.equal(log.snapshotIndex, 10);
  assert.equal(log.termAt(3), undefined);
  assert.equal(log.termAt(10), 4);
  assert.deepEqual(log.slice(0, 99), []);
  log.append(entry(11, 4));
  assert.deepEqual(indexesOf(log.slice(0, 99)), [11]);
});

Deno.test("InstallSnapshot §7: on an already compacted log, the same rule holds for the entries after its snapshot", () => {
  const log = compactedLog({ lastIndex: 5, lastTerm: 2 }, [2, 3, 3, 3]);
  log.installSnapshot({ lastIndex: 7, lastTerm: 3 });
  assert.equal(log.snapshotIndex, 7);
  assert.deepEqual(indexesOf(log.slice(0, 99)), [8, 9]);
  // Re-installing the snapshot the log is already at keeps everything.
  log.installSnapshot({ lastIndex: 7, lastTerm: 3 });
  assert.deepEqual(log.position, { lastIndex: 9, lastTerm: 3 });
  assert.deepEqual(indexesOf(log.slice(0, 99)), [8, 9]);
});

Deno.test("InstallSnapshot §7: a snapshot at index 0 or without a term is refused", () => {
  const log = logOfTerms([1]);
  assert.throws(() => log.installSnapshot({ lastIndex: 0, lastTerm: 0 }), InvariantError);
  assert.throws(() => log.installSnapshot({ lastIndex: 1, lastTerm: 0 }), InvariantError);
  assert.deepEqual(log.position, { lastIndex: 1, lastTerm: 1 });
});

Deno.test("§7: truncateFrom refuses to cut at or below the snapshot (it is committed)", () => {
  const log = compactedLog({ lastIndex: 5, lastTerm: 2 }, [2, 3, 3]);
  assert.throws(() => log.truncateFrom(5), InvariantError);
  assert.throws(() => log.truncateFrom(4), InvariantError);
  assert.throws(() => log.truncateFrom(1), InvariantError);
  assert.deepEqual(log.position, { lastIndex: 8, lastTerm: 3 }, "a refused cut changes nothing");
  log.truncateFrom(7);
  assert.deepEqual(log.position, { lastIndex: 6, lastTerm: 2 });
  log.truncateFrom(6);
  assert.deepEqual(log.position, { lastIndex: 5, lastTerm: 2 }, "back to the bare snapshot");
  log.truncateFrom(99);
  assert.equal(log.lastIndex, 5);
});

Deno.test("§7: firstIndexOfTermAt stops at the first entry after the snapshot", () => {
  // Term 2 runs from inside the snapshot (up to 5) on through entries 6–8.
  const log = compactedLog({ lastIndex: 5, lastTerm: 2 }, [2, 2, 2, 3, 3]);
  assert.equal(log.firstIndexOfTermAt(8), 6);
  assert.equal(log.firstIndexOfTermAt(6), 6);
  assert.equal(log.firstIndexOfTermAt(10), 9);
  assert.equal(log.firstIndexOfTermAt(9), 9);
  // A term that starts after the snapshot is found where it starts.
  const other = compactedLog({ lastIndex: 5, lastTerm: 2 }, [3, 3, 4]);
  assert.equal(other.firstIndexOfTermAt(7), 6);
  assert.equal(other.firstIndexOfTermAt(8), 8);
});

Deno.test("InstallSnapshot §7: a snapshot older than the log's own never moves the log back", () => {
  // What the log's snapshot covers is committed; an older snapshot (a late,
  // duplicated InstallSnapshot) must neither drop the entries after it nor
  // move snapshotIndex back. Refusing it as a caller bug is fine too.
  const log = compactedLog({ lastIndex: 5, lastTerm: 2 }, [2, 3, 3]);
  try {
    log.installSnapshot({ lastIndex: 3, lastTerm: 2 });
  } catch (e) {
    assert.ok(e instanceof InvariantError, `only an InvariantError, got ${e}`);
  }
  assert.equal(log.snapshotIndex, 5);
  assert.equal(log.snapshotTerm, 2);
  assert.deepEqual(log.position, { lastIndex: 8, lastTerm: 3 });
  assert.deepEqual(indexesOf(log.slice(0, 99)), [6, 7, 8]);
});

Deno.test("slim keeps an applied entry's index, term and line; its record decodes from the line", () => {
  const log = new RaftLog();
  const utf8 = new TextEncoder();
  const record: WalRecord = {
    op: "SET",
    index: 1,
    key: utf8.encode("k\tx"),
    value: utf8.encode("v\n"),
  };
  const full = { index: 1, term: 3, record, line: encodeWalLine(record) };
  log.append(full);
  log.slim(1);
  log.slim(2); // past the end: nothing to do
  const slim = log.entry(1)!;
  assert.notEqual(slim, full, "the entry object was replaced");
  assert.equal(slim.index, 1);
  assert.equal(slim.term, 3);
  assert.equal(slim.line, full.line, "the very line bytes");
  assert.deepEqual(slim.record, record);
  log.slim(1); // again: unchanged
  assert.equal(log.entry(1), slim);
});
