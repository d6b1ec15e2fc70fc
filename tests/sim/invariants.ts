// Raft's safety properties, checked from outside the nodes as the simulation
// runs (Raft §5.2–§5.4, Figure 3): election safety, log matching, leader
// completeness, state machine safety, and that no acknowledged write is ever
// lost. Each check runs when the fact it concerns changes, so a violation is
// reported at the very event that caused it. Throws SimViolation.

import type { LogEntry } from "../../src/raft/log.ts";
import { entryId, type NodeEnv, type SimNode } from "./sim_node.ts";

export class SimViolation extends Error {}

export class ClusterInvariants {
  /** Election safety: the one leader of each term. */
  readonly leaders = new Map<number, number>();
  /** committed[i - 1]: identity of the entry committed at index i. */
  readonly committed: string[] = [];
  /** committedInTerm[i - 1]: the term of the node that first committed index i. */
  readonly #committedInTerm: number[] = [];
  /** Log matching: the entry (and the term before it) at each index and term. */
  readonly #canonical = new Map<string, { id: string; prevTerm: number }>();
  /** Writes a client was told succeeded, by index. */
  readonly acknowledged = new Map<number, string>();

  /** The NodeEnv hooks that report a node's facts to this checker. */
  hooks(): Pick<
    NodeEnv,
    "becameLeader" | "committed" | "truncated" | "appended" | "acknowledged"
  > {
    return {
      becameLeader: (n, term) => this.becameLeader(n, term),
      committed: (n, from, to) => this.committedRange(n, from, to),
      truncated: (n, removed) => this.truncated(n, removed),
      appended: (n, from) => this.appended(n, from),
      acknowledged: (n, index, entry) => this.acknowledgedWrite(n, index, entry),
    };
  }

  becameLeader(node: SimNode, term: number): void {
    const other = this.leaders.get(term);
    if (other !== undefined && other !== node.id) {
      throw new SimViolation(`Two leaders in term ${term}: n${other} and n${node.id}`);
    }
    this.leaders.set(term, node.id);
    // Leader completeness (§5.4): every entry committed in an earlier term is
    // in the new leader's log. (A leader of an old term can still be elected
    // late, e.g. after a pause; it commits nothing, and need not hold entries
    // committed in later terms.)
    for (let i = 1; i <= this.committed.length; i++) {
      if (this.#committedInTerm[i - 1]! >= term) continue;
      const e = node.log.entry(i);
      if (!e || entryId(e) !== this.committed[i - 1]) {
        throw new SimViolation(
          `Leader n${node.id} of term ${term} lacks committed entry ${i} ` +
            `(${this.committed[i - 1]}); it has ${e ? entryId(e) : "nothing"}`,
        );
      }
    }
  }

  appended(node: SimNode, fromIndex: number): void {
    for (let i = fromIndex; i <= node.log.lastIndex; i++) {
      const e = node.log.entry(i)!;
      const key = `${i}:${e.term}`;
      const prevTerm = node.log.termAt(i - 1)!;
      const seen = this.#canonical.get(key);
      if (!seen) {
        this.#canonical.set(key, { id: entryId(e), prevTerm });
      } else if (seen.id !== entryId(e) || seen.prevTerm !== prevTerm) {
        throw new SimViolation(
          `Log matching: n${node.id} holds "${entryId(e)}" after term ${prevTerm} at ${key}, ` +
            `another node "${seen.id}" after term ${seen.prevTerm}`,
        );
      }
    }
  }

  committedRange(node: SimNode, fromIndex: number, toIndex: number): void {
    if (fromIndex > this.committed.length + 1) {
      throw new SimViolation(
        `n${node.id} commits from ${fromIndex} but only ${this.committed.length} are known committed`,
      );
    }
    for (let i = fromIndex; i <= toIndex; i++) {
      const e = node.log.entry(i);
      if (!e) throw new SimViolation(`n${node.id} commits index ${i} beyond its log`);
      const id = entryId(e);
      const known = this.committed[i - 1];
      if (known === undefined) {
        this.committed.push(id);
        this.#committedInTerm.push(node.core.currentTerm);
      } else if (known !== id) {
        throw new SimViolation(
          `State machine safety: n${node.id} commits "${id}" at ${i}, already "${known}"`,
        );
      }
    }
  }

  truncated(node: SimNode, removed: readonly LogEntry[]): void {
    for (const e of removed) {
      if (this.committed[e.index - 1] === entryId(e)) {
        throw new SimViolation(`n${node.id} truncated committed entry ${e.index} (${entryId(e)})`);
      }
    }
  }

  acknowledgedWrite(node: SimNode, index: number, entry: LogEntry): void {
    const id = entryId(entry);
    if (this.committed[index - 1] !== id) {
      throw new SimViolation(`n${node.id} acknowledged "${id}" at ${index} before it committed`);
    }
    this.acknowledged.set(index, id);
  }

  /** A node's durable WAL equals its in-memory log up to its synced index
   * (checked over the last entries only, to keep every run linear). */
  checkDisk(node: SimNode): void {
    for (let i = Math.max(1, node.syncedIndex - 63); i <= node.syncedIndex; i++) {
      const d = node.disk.wal[i - 1];
      const m = node.log.entry(i);
      if (!d || !m || entryId(d) !== entryId(m) || d.term !== m.term) {
        throw new SimViolation(
          `n${node.id}'s WAL differs from its log at ${i} (synced ${node.syncedIndex})`,
        );
      }
    }
  }
}
