// The in-memory Raft log a role process keeps beside its WAL file: every entry
// with its term, its decoded record and its exact WAL line (so replication
// streams the very bytes that are on disk). Pure: the WAL file is written by
// the shells; this module only keeps the order and the Log Matching checks.

import type { WalRecord } from "../codec/wal_line.ts";
import { invariant, type LogIndex, type LogPosition, type Term } from "./types.ts";

export interface LogEntry {
  readonly index: LogIndex;
  readonly term: Term;
  readonly record: WalRecord;
  /** The encoded WAL line, trailing newline included. */
  readonly line: Uint8Array;
}

export class RaftLog {
  /** entries[i] holds index i + 1; the log has no holes. */
  #entries: LogEntry[] = [];

  constructor(entries: readonly LogEntry[] = []) {
    for (const e of entries) this.append(e);
  }

  get lastIndex(): LogIndex {
    return this.#entries.length;
  }

  get lastTerm(): Term {
    return this.#entries.at(-1)?.term ?? 0;
  }

  get position(): LogPosition {
    return { lastIndex: this.lastIndex, lastTerm: this.lastTerm };
  }

  /** Term of the entry at `index`; 0 for index 0; undefined past the end. */
  termAt(index: LogIndex): Term | undefined {
    if (index === 0) return 0;
    return this.#entries[index - 1]?.term;
  }

  entry(index: LogIndex): LogEntry | undefined {
    return this.#entries[index - 1];
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

  /** Drops the entries from `index` on (Raft §5.3, a follower's conflicting suffix). */
  truncateFrom(index: LogIndex): void {
    invariant(index >= 1, `Cannot truncate from index ${index}`);
    if (index <= this.lastIndex) this.#entries.length = index - 1;
  }

  /** Entries [from, to], both inclusive, clamped to the log. */
  slice(from: LogIndex, to: LogIndex): LogEntry[] {
    return this.#entries.slice(Math.max(from, 1) - 1, Math.min(to, this.lastIndex));
  }

  /** First index holding `term`, searching back from `index` (conflict hints). */
  firstIndexOfTermAt(index: LogIndex): LogIndex {
    const term = this.termAt(index);
    let i = index;
    while (i > 1 && this.termAt(i - 1) === term) i--;
    return i;
  }
}
