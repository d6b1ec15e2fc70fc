// Vocabulary shared by the pure Raft pieces and the shells that drive them.
// Names follow the Raft paper (Ongaro & Ousterhout, 2014) exactly.

/** A Raft term. Terms only grow on a node; 0 means "before any election". */
export type Term = number;

/** A Raft log index, 1-based; it is the WAL's `seq`. 0 means "empty log". */
export type LogIndex = number;

/** Where a log ends: the paper's (lastLogIndex, lastLogTerm). */
export interface LogPosition {
  readonly lastIndex: LogIndex;
  readonly lastTerm: Term;
}

/** Raft §5.4.1: is a log ending at `a` at least as up to date as one ending at `b`?
 * The later last term wins; with equal last terms the longer log wins. */
export function atLeastAsUpToDate(a: LogPosition, b: LogPosition): boolean {
  if (a.lastTerm !== b.lastTerm) return a.lastTerm > b.lastTerm;
  return a.lastIndex >= b.lastIndex;
}

export function quorumOf(nodeCount: number): number {
  return Math.floor(nodeCount / 2) + 1;
}

/** Thrown when one of our own invariants breaks: a bug, never bad input. */
export class InvariantError extends Error {
  override name = "InvariantError";
}

export function invariant(condition: unknown, message: string): asserts condition {
  if (!condition) throw new InvariantError(message);
}
