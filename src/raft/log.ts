// The in-memory Raft log a role process keeps beside its WAL file: every entry
// after the last snapshot, with its term, its exact WAL line (so replication
// streams the very bytes that are on disk) and, until it is applied, its
// decoded record. Pure:
// the WAL file is written by the shells; this module only keeps the order and
// the Log Matching checks.
//
// Entries up to `snapshotIndex` are compacted away (Raft §7): only the index
// and term of the last of them are kept, which is all the consistency check
// of the next entry needs.

import { decodeWalLine, type WalRecord } from "../codec/wal_line.ts";
import { invariant, type LogIndex, type LogPosition, type Term } from "./types.ts";

export interface LogEntry {
  readonly index: LogIndex;
  readonly term: Term;
  readonly record: WalRecord;
  /** The encoded WAL line, trailing newline included. */
  readonly line: Uint8Array;
}

export class RaftLog {
  /** entries[i] holds index snapshotIndex + i + 1; the log has no holes. */
  #entries: LogEntry[] = [];
  #snapshotIndex: LogIndex;
  #snapshotTerm: Term;

  constructor(entries: readonly LogEntry[] = [], snapshot: LogPosition = noSnapshot) {
    invariant(
      (snapshot.lastIndex > 0) === (snapshot.lastTerm > 0),
      `Snapshot at index ${snapshot.lastIndex} with term ${snapshot.lastTerm}`,
    );
    this.#snapshotIndex = snapshot.lastIndex;
    this.#snapshotTerm = snapshot.lastTerm;
    for (const e of entries) this.append(e);
  }

  /** Last index a snapshot covers; entries up to it are gone from the log. */
  get snapshotIndex(): LogIndex {
    return this.#snapshotIndex;
  }

  get snapshotTerm(): Term {
    return this.#snapshotTerm;
  }

  get lastIndex(): LogIndex {
    return this.#snapshotIndex + this.#entries.length;
  }

  get lastTerm(): Term {
    return this.#entries.at(-1)?.term ?? this.#snapshotTerm;
  }

  get position(): LogPosition {
    return { lastIndex: this.lastIndex, lastTerm: this.lastTerm };
  }

  /** Term of the entry at `index`; 0 for index 0; undefined past the end
   * and below the snapshot (compacted). */
  termAt(index: LogIndex): Term | undefined {
    if (index === 0) return 0;
    if (index === this.#snapshotIndex) return this.#snapshotTerm;
    if (index < this.#snapshotIndex) return undefined;
    return this.#entries[index - this.#snapshotIndex - 1]?.term;
  }

  /** The entry at `index`; undefined past the end and at or below the snapshot. */
  entry(index: LogIndex): LogEntry | undefined {
    if (index <= this.#snapshotIndex) return undefined;
    return this.#entries[index - this.#snapshotIndex - 1];
  }

  append(entry: LogEntry): void {
    invariant(
      entry.index === this.lastIndex + 1,
      `Log append out of order: index ${entry.index} after ${this.lastIndex}`,
    );
    invariant(
      entry.term >= this.lastTerm,
      `Log term going back: ${entry.term} after ${this.lastTerm} at ${entry.index}`,
    );
    this.#entries.push(entry);
  }

  /**
   * Keeps only the line of the entry at `index`, once it is applied: the log
   * holds entries long after (for followers that lag, until a snapshot and
   * beyond), and the decoded record's key and value, with the request or
   * batch buffer they may be views of, cost more than the line itself.
   */
  slim(index: LogIndex): void {
    const at = index - this.#snapshotIndex - 1;
    const e = this.#entries[at];
    if (e === undefined || e instanceof AppliedEntry) return;
    this.#entries[at] = new AppliedEntry(e.index, e.term, e.line);
  }

  /** Drops the entries from `index` on (Raft §5.3, a follower's conflicting suffix). */
  truncateFrom(index: LogIndex): void {
    invariant(
      index > this.#snapshotIndex,
      `Cannot truncate from ${index}, at or below the snapshot at ${this.#snapshotIndex}`,
    );
    if (index <= this.lastIndex) this.#entries.length = index - this.#snapshotIndex - 1;
  }

  /** Raft §7: forgets the entries up to `index`, which a snapshot now covers. */
  compactTo(index: LogIndex): void {
    if (index <= this.#snapshotIndex) return;
    const term = this.termAt(index);
    invariant(
      term !== undefined,
      `Cannot compact to ${index}, past the log's end ${this.lastIndex}`,
    );
    this.#entries = this.#entries.slice(index - this.#snapshotIndex);
    this.#snapshotIndex = index;
    this.#snapshotTerm = term;
  }

  /** Raft §7: a snapshot from the leader replaces the log up to its index.
   * Entries after it are kept if the log holds the snapshot's last entry;
   * otherwise the log disagrees with it and is discarded whole. */
  installSnapshot(snapshot: LogPosition): void {
    const { lastIndex: index, lastTerm: term } = snapshot;
    invariant(index > 0 && term > 0, `Snapshot at index ${index} with term ${term}`);
    // What we compacted is committed: an older snapshot adds nothing.
    if (index <= this.#snapshotIndex) return;
    if (this.termAt(index) === term) {
      this.compactTo(index);
      return;
    }
    this.#entries = [];
    this.#snapshotIndex = index;
    this.#snapshotTerm = term;
  }

  /** Entries [from, to], both inclusive, clamped to the log. */
  slice(from: LogIndex, to: LogIndex): LogEntry[] {
    const base = this.#snapshotIndex;
    return this.#entries.slice(
      Math.max(from - base, 1) - 1,
      Math.max(0, Math.min(to, this.lastIndex) - base),
    );
  }

  /** First index holding `term`, searching back from `index` (conflict hints);
   * never below the first entry after the snapshot. */
  firstIndexOfTermAt(index: LogIndex): LogIndex {
    const term = this.termAt(index);
    let i = index;
    while (i > this.#snapshotIndex + 1 && this.termAt(i - 1) === term) i--;
    return i;
  }
}

const noSnapshot: LogPosition = { lastIndex: 0, lastTerm: 0 };

/** An entry whose record is decoded again from its line if asked for (see
 * RaftLog.slim); nothing asks for it in normal operation. */
class AppliedEntry implements LogEntry {
  readonly index: LogIndex;
  readonly term: Term;
  readonly line: Uint8Array;

  constructor(index: LogIndex, term: Term, line: Uint8Array) {
    this.index = index;
    this.term = term;
    this.line = line;
  }

  get record(): WalRecord {
    const decoded = decodeWalLine(this.line.subarray(0, this.line.length - 1));
    invariant(decoded.ok, `Entry ${this.index}'s own line does not decode`);
    return decoded.record;
  }
}
