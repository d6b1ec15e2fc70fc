// The pure rules of log replication (Raft §5.3, §5.4.2), shared by the leader
// and follower role processes: the follower's consistency check for an
// AppendEntries batch, and the leader's commit rule. No I/O here.

import type { WalRecord } from "../codec/wal_line.ts";
import type { LogEntry, RaftLog } from "./log.ts";
import type { LogIndex, Term } from "./types.ts";

export type AppendDecision =
  /** prevLogIndex/prevLogTerm do not match: the leader should retry from `hintIndex`. */
  | { readonly kind: "reject"; readonly hintIndex: LogIndex }
  /** Cut the log from `truncateFrom` (if set), then append `append`. */
  | {
    readonly kind: "accept";
    readonly truncateFrom: LogIndex | null;
    readonly append: readonly LogEntry[];
    readonly matchIndex: LogIndex;
  };

/** Raft §5.3: the follower side of AppendEntries. `entries` start at prevIndex + 1. */
export function decideAppend(
  log: RaftLog,
  prevIndex: LogIndex,
  prevTerm: Term,
  entries: readonly LogEntry[],
): AppendDecision {
  // No entry comes before index 1: a leader asking about one is confused
  // (a stale reply moved its nextIndex below 1); it must not read as a match.
  if (prevIndex < 0) return { kind: "reject", hintIndex: 1 };
  const matchIndex = prevIndex + entries.length;
  if (prevIndex < log.snapshotIndex) {
    // Raft §7: what our snapshot covers is committed, so it matches the
    // leader's log; check only what lies beyond it.
    const covered = log.snapshotIndex - prevIndex;
    if (entries.length <= covered) {
      return { kind: "accept", truncateFrom: null, append: [], matchIndex };
    }
    entries = entries.slice(covered);
    prevIndex = log.snapshotIndex;
    prevTerm = log.snapshotTerm;
  }
  if (prevIndex > log.lastIndex) return { kind: "reject", hintIndex: log.lastIndex + 1 };
  if (log.termAt(prevIndex) !== prevTerm) {
    // Skip back over the whole conflicting term at once instead of one entry
    // per round trip.
    return { kind: "reject", hintIndex: log.firstIndexOfTermAt(prevIndex) };
  }
  let i = 0;
  // Entries we already hold with the same term are identical (Log Matching):
  // skip them, so a duplicated or re-sent batch never truncates anything.
  while (i < entries.length) {
    const e = entries[i]!;
    const have = log.termAt(e.index);
    if (have === undefined || have !== e.term) break;
    i++;
  }
  const rest = entries.slice(i);
  const first = rest[0];
  const truncateFrom = first !== undefined && first.index <= log.lastIndex ? first.index : null;
  return { kind: "accept", truncateFrom, append: rest, matchIndex };
}

/** Gives each record of a replicated batch its term: a TERM marker starts a
 * new term; every other record carries the term before it. Returns an error
 * text for a batch no honest leader sends. */
export function assignTerms(
  prevIndex: LogIndex,
  prevTerm: Term,
  leaderTerm: Term,
  records: readonly { record: WalRecord; line: Uint8Array }[],
): LogEntry[] | string {
  const out: LogEntry[] = [];
  let term = prevTerm;
  for (const [n, { record, line }] of records.entries()) {
    const index = prevIndex + 1 + n;
    if (record.index !== index) return `Entry seq ${record.index} where ${index} was expected`;
    if (record.op === "TERM") {
      if (record.term < term || record.term > leaderTerm) {
        return `Term marker ${record.term} out of order at seq ${index}`;
      }
      term = record.term;
    } else if (term === 0) {
      return `Entry at seq ${index} has no term marker before it`;
    }
    out.push({ index, term, record, line });
  }
  return out;
}

/** Raft §5.3/§5.4.2: the highest index stored on a quorum whose entry is from
 * the leader's own term; entries of older terms commit only beneath it. */
export function commitIndexFor(
  matchIndexes: readonly LogIndex[],
  quorum: number,
  log: RaftLog,
  currentTerm: Term,
  commitIndex: LogIndex,
): LogIndex {
  const sorted = [...matchIndexes].sort((a, b) => b - a);
  const candidate = sorted[quorum - 1] ?? 0;
  if (candidate > commitIndex && log.termAt(candidate) === currentTerm) return candidate;
  return commitIndex;
}
