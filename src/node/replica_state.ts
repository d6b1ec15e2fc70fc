// What every role process holds for its node: the WAL file, the in-memory
// Raft log mirroring it, the key-value state machine, and the commit and
// apply positions. The leader and follower roles both build on it; it is the
// only code that changes the WAL, so the log and the file never disagree.
//
// Invariants (checked): lastApplied ≤ commitIndex ≤ log.lastIndex; a
// committed entry is never truncated; entries are applied once, in order.

import { encodeWalLine, type WalRecord } from "../codec/wal_line.ts";
import type { Log } from "../log.ts";
import { type LogEntry, RaftLog } from "../raft/log.ts";
import { invariant, type LogIndex } from "../raft/types.ts";
import { type ApplyResult, KvStore } from "../kv/store.ts";
import { WalFile, type WalOpenOptions } from "../storage/wal_file.ts";
import { lineHash, readCommitHint, writeCommitHint } from "../storage/commit_hint.ts";

/** A backlog of hundreds of thousands of committed entries (a restart whose
 * commit hint was lost) applied in one go blocked the event loop for seconds
 * on a busy machine: liveness pings and fences went unanswered and the role
 * was killed, only to face the same backlog again. */
export const applyEntriesPerCallMax = 20_000;

export function walPath(dataDir: string, nodeId: number): string {
  return `${dataDir.replace(/\/+$/, "") || "."}/node${nodeId}.log`;
}

export class ReplicaState {
  readonly wal: WalFile;
  readonly log: RaftLog;
  readonly kv = new KvStore();
  /** Byte offset in the WAL file where entry i starts is offsets[i - 1]. */
  #offsets: number[];
  #endOffset: number;
  #commitIndex: LogIndex = 0;
  #lastApplied: LogIndex = 0;

  private constructor(wal: WalFile, entries: readonly LogEntry[], offsets: number[], end: number) {
    this.wal = wal;
    this.log = new RaftLog(entries);
    this.#offsets = offsets;
    this.#endOffset = end;
  }

  /** Loads the WAL (creating it if missing). A torn tail is cut off with a
   * WARN; damage before the last line throws, naming the file and line. */
  static async open(
    path: string,
    log: Log,
    commitHintPath?: string,
    walOptions: WalOpenOptions = {},
  ): Promise<ReplicaState> {
    const opened = await WalFile.open(path, walOptions);
    if (opened.tornTail !== null) {
      const t = opened.tornTail;
      log.warn(
        `${path}: cut off a torn last line (${t.bytes} bytes at offset ${t.offset}: ${t.reason})`,
      );
    }
    const entries: LogEntry[] = opened.entries.map((e) => ({
      index: e.index,
      term: e.term,
      record: e.record,
      line: e.line,
    }));
    const offsets = opened.entries.map((e) => e.offset);
    const last = opened.entries.at(-1);
    const end = last ? last.offset + last.line.length : 0;
    const state = new ReplicaState(opened.wal, entries, offsets, end);
    if (commitHintPath !== undefined) {
      state.#commitHintPath = commitHintPath;
      const read = await readCommitHint(commitHintPath);
      if (read === "unreadable") log.warn(`ignoring ${commitHintPath}: it does not parse`);
      const hint = typeof read === "string" ? null : read;
      const entry = hint === null ? undefined : state.log.entry(hint.index);
      if (
        hint !== null && entry !== undefined && entry.term === hint.term &&
        lineHash(entry.line) === hint.lineHash
      ) {
        // Our log holds the very entry the hint vouches for, so everything up
        // to it is committed (Log Matching).
        // Yield between chunks: a fence may be waiting for an answer.
        while (state.commitTo(hint.index)) await new Promise((r) => setTimeout(r, 0));
        // Only a trusted hint vouches for when we were last up to date.
        state.#savedContactEpochMs = hint.leaderContactEpochMs;
      } else if (hint !== null && hint.index > 0) {
        log.warn(
          `ignoring ${commitHintPath}: the WAL does not hold entry ${hint.index} of term ${hint.term}`,
        );
        // Do not let it match some later, different log by chance.
        await writeCommitHint(commitHintPath, {
          index: 0,
          term: 0,
          lineHash: 0,
          leaderContactEpochMs: null,
        }).catch(() => {});
      }
      state.#savedCommitIndex = state.commitIndex;
    }
    log.info(
      `loaded ${path}: ${entries.length} entries, last term ${last?.term ?? 0}, ` +
        `known committed up to ${state.commitIndex}`,
    );
    return state;
  }

  #commitHintPath: string | null = null;
  #savedCommitIndex: LogIndex = 0;
  /** The leader contact time in the hint file (read at open, then as saved). */
  #savedContactEpochMs: number | null = null;
  #savingHint = false;

  /** When the trusted commit hint says this node was last up to date with a
   * leader (wall clock, ms since the epoch); null: not known. */
  get hintLeaderContactEpochMs(): number | null {
    return this.#savedContactEpochMs;
  }

  /** Records the commit index for the next start (see commit_hint.ts), with
   * `leaderContactEpochMs`, the last time this node knew it held everything
   * its leader had committed (null: unknown). The caller takes that time in
   * the same synchronous step as this call, so the index written is at least
   * what was committed then. Cheap to call often; writes only when the index
   * or the contact time moved. */
  async saveCommitHint(leaderContactEpochMs: number | null): Promise<void> {
    const path = this.#commitHintPath;
    const index = this.#commitIndex;
    if (path === null || this.#savingHint) return;
    const contactMoved = leaderContactEpochMs !== null &&
      (this.#savedContactEpochMs === null || leaderContactEpochMs > this.#savedContactEpochMs);
    if (index < this.#savedCommitIndex || (index === this.#savedCommitIndex && !contactMoved)) {
      return;
    }
    const entry = this.log.entry(index);
    if (entry === undefined) return;
    // Never write an older contact time over a newer one.
    const contact = contactMoved ? leaderContactEpochMs : this.#savedContactEpochMs;
    this.#savingHint = true;
    try {
      await writeCommitHint(path, {
        index,
        term: entry.term,
        lineHash: lineHash(entry.line),
        leaderContactEpochMs: contact,
      });
      this.#savedCommitIndex = index;
      this.#savedContactEpochMs = contact;
    } catch {
      // Only a hint: the next start asks a leader instead.
    } finally {
      this.#savingHint = false;
    }
  }

  get commitIndex(): LogIndex {
    return this.#commitIndex;
  }

  get lastApplied(): LogIndex {
    return this.#lastApplied;
  }

  /** Appends entries to the log and buffers their lines for the WAL; the
   * caller makes them durable with `wal.sync()` before acknowledging. */
  append(entries: readonly LogEntry[]): void {
    const lines: Uint8Array[] = [];
    for (const e of entries) {
      this.log.append(e);
      this.#offsets.push(this.#endOffset);
      this.#endOffset += e.line.length;
      lines.push(e.line);
    }
    this.wal.append(lines);
  }

  /** Raft §5.3: drop a conflicting suffix. Only uncommitted entries may go. */
  async truncateFrom(index: LogIndex): Promise<void> {
    invariant(
      index > this.#commitIndex,
      `Refusing to truncate committed entry ${index} (commitIndex ${this.#commitIndex})`,
    );
    if (index > this.log.lastIndex) return;
    const offset = this.#offsets[index - 1]!;
    await this.wal.sync();
    await this.wal.truncate(offset);
    this.log.truncateFrom(index);
    this.#offsets.length = index - 1;
    this.#endOffset = offset;
  }

  /** Moves the commit index toward `index` (never back), applying as it
   * goes, at most `applyEntriesPerCallMax` entries per call. Returns true when
   * more remains; then `resume`, if given, is called on a later turn of the
   * event loop (once, however many calls asked) to go on, so pings, fences
   * and clients are served in between.
   * The commit index only ever covers applied entries, so a node's commit
   * index is a lower bound of the truth, and a write is acknowledged (on
   * apply) before any read index can exceed it. */
  commitTo(
    index: LogIndex,
    onApply?: (index: LogIndex, result: ApplyResult) => void,
    resume?: () => void,
  ): boolean {
    const target = Math.min(index, this.log.lastIndex);
    if (target <= this.#commitIndex) return false;
    const stop = Math.min(target, this.#lastApplied + applyEntriesPerCallMax);
    while (this.#lastApplied < stop) {
      const i = this.#lastApplied + 1;
      const entry = this.log.entry(i);
      invariant(entry !== undefined, `Entry ${i} missing below commit target ${target}`);
      const result = this.kv.apply(entry.record);
      this.#lastApplied = i;
      this.#commitIndex = i;
      onApply?.(i, result);
    }
    const more = this.#lastApplied < target;
    if (more && resume !== undefined && !this.#resumeScheduled) {
      this.#resumeScheduled = true;
      setTimeout(() => {
        this.#resumeScheduled = false;
        resume();
      }, 0);
    }
    return more;
  }

  #resumeScheduled = false;

  /** Builds the next entry for `record` in `term` (the leader's proposals). */
  nextEntry(
    term: number,
    record: DistributiveOmit<WalRecord, "index">,
  ): LogEntry {
    const full = { ...record, index: this.log.lastIndex + 1 } as WalRecord;
    return { index: full.index, term, record: full, line: encodeWalLine(full) };
  }
}

type DistributiveOmit<T, K extends PropertyKey> = T extends unknown ? Omit<T, K> : never;
