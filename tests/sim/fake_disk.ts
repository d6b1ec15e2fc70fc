// A simulated node's disk: what survives a crash. The term file and the
// commit hint are replaced atomically (temp file + rename), so they are either
// old or new. WAL writes (appends and truncations) sit in the page cache until
// an fsync; a power loss keeps an arbitrary prefix of them, which is harsher
// than the kill -9 of the real fault tests (the page cache survives that).
//
// Used by sim_node.ts (writes, fsyncs) and world.ts (crashes, restarts).

import type { LogEntry } from "../../src/raft/log.ts";
import type { Prng } from "../../src/raft/prng.ts";

export type WalWrite =
  | { readonly kind: "append"; readonly entry: LogEntry }
  | { readonly kind: "truncate"; readonly fromIndex: number };

export interface CommitHintRecord {
  readonly index: number;
  readonly term: number;
  /** Identity of the entry the hint vouches for (the real hint hashes its line). */
  readonly entryId: string;
}

export class FakeDisk {
  currentTerm = 0;
  votedFor: number | null = null;
  commitHint: CommitHintRecord | null = null;
  /** The durable WAL: entries[i] holds index i + 1. */
  readonly wal: LogEntry[] = [];
  /** Written, not yet fsynced, in order. */
  #pending: WalWrite[] = [];

  get pendingCount(): number {
    return this.#pending.length;
  }

  write(w: WalWrite): void {
    this.#pending.push(w);
  }

  /** Makes the first `count` pending writes durable (an fsync that began
   * when there were `count` of them). */
  sync(count: number): void {
    const done = this.#pending.splice(0, count);
    for (const w of done) this.#applyWrite(w);
  }

  /** Power loss: some prefix of the unsynced writes reached the platter. */
  crash(rng: Prng): number {
    const kept = rng.intBetween(0, this.#pending.length);
    this.sync(kept);
    const lost = this.#pending.length;
    this.#pending = [];
    return lost;
  }

  /** Process crash (the OS survives): every write is in the page cache. */
  processCrash(): void {
    this.sync(this.#pending.length);
  }

  /** The data directory is wiped (a replaced disk). */
  wipe(): void {
    this.currentTerm = 0;
    this.votedFor = null;
    this.commitHint = null;
    this.wal.length = 0;
    this.#pending = [];
  }

  #applyWrite(w: WalWrite): void {
    if (w.kind === "truncate") {
      if (w.fromIndex <= this.wal.length) this.wal.length = w.fromIndex - 1;
      return;
    }
    if (w.entry.index !== this.wal.length + 1) {
      throw new Error(
        `Fake disk: append of index ${w.entry.index} onto a WAL of ${this.wal.length} entries`,
      );
    }
    this.wal.push(w.entry);
  }
}
