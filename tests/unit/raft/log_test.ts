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
