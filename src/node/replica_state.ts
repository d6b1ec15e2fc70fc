// What every role process holds for its node: the snapshot and WAL files, the
// in-memory Raft log mirroring the WAL, the key-value state machine, and the
// commit and apply positions. The leader and follower roles both build on it;
// it is the only code that changes the WAL or the snapshot, so the log and the
// files never disagree.
//
// Snapshots and compaction (Raft §7). Once the WAL holds enough entries past
// the last snapshot, the applied state is written to `nodeN.snap` (temporary
// file, fsync, rename, directory fsync) while writes go on, and then the WAL
// lines it covers are dropped from the file. In memory a few more entries
// than the snapshot covers are kept (`retainEntries`), so a follower a little
// behind still catches up from the log instead of needing the whole snapshot.
// A follower too far behind gets the leader's snapshot (installSnapshot).
//
// Crash safety of the two files: the snapshot's rename is the commit point.
// Before it, the old snapshot and the WAL describe the node; after it, the new
// snapshot and the same WAL do (WAL lines it covers are ignored at load), and
// the later compaction of the WAL changes nothing a restart would see.
//
// Invariants (checked): snapshot index ≤ lastApplied ≤ commitIndex ≤
// log.lastIndex; a committed entry is never truncated; entries are applied
// once, in order.

import type { SnapshotMeta } from "../codec/snapshot.ts";
import { encodeWalLine, type WalRecord } from "../codec/wal_line.ts";
import type { Log } from "../log.ts";
import { type LogEntry, RaftLog } from "../raft/log.ts";
import { invariant, type LogIndex } from "../raft/types.ts";
import { type ApplyResult, KvStore } from "../kv/store.ts";
import { WalFile, type WalOpenOptions } from "../storage/wal_file.ts";
import { lineHash, readCommitHint, writeCommitHint } from "../storage/commit_hint.ts";
import {
  installSnapshotFile,
  readSnapshotFile,
  receivePath,
  SnapshotDamagedError,
  writeSnapshotFile,
} from "../storage/snapshot_file.ts";
import { snapshotBytesDefault, snapshotEntriesDefault } from "../config/limits.ts";

/** A backlog of hundreds of thousands of committed entries (a restart whose
 * commit hint was lost) applied in one go blocked the event loop for seconds
 * on a busy machine: liveness pings and fences went unanswered and the role
 * was killed, only to face the same backlog again. */
export const applyEntriesPerCallMax = 20_000;

export function walPath(dataDir: string, nodeId: number): string {
  return `${dataDir.replace(/\/+$/, "") || "."}/node${nodeId}.log`;
}

/** When to take a snapshot (see README "Data on disk"). */
export interface SnapshotPolicy {
  /** Entries past the last snapshot that start a new one. */
  readonly entries: number;
  /** WAL bytes that start a new one… */
  readonly walBytes: number;
  /** …and in-memory entries kept below the snapshot for lagging followers:
   * at most this many, of at most `retainBytes` of WAL lines together (with
   * large values, a count alone could hold gigabytes). */
  readonly retainEntries: number;
  readonly retainBytes: number;
}

/** The retention that goes with a snapshot threshold: a quarter of it. */
export function snapshotPolicy(entries: number, walBytes: number): SnapshotPolicy {
  return {
    entries,
    walBytes,
    retainEntries: Math.floor(entries / 4),
    retainBytes: Math.floor(walBytes / 4),
  };
}

export const defaultSnapshotPolicy: SnapshotPolicy = snapshotPolicy(
  snapshotEntriesDefault,
  snapshotBytesDefault,
);

/** After a snapshot could not be written (disk full, say), wait this long
 * before trying again: each try writes the whole state. */
const snapshotRetryMs = 10_000;

export interface SnapshotTaken {
  readonly meta: SnapshotMeta;
  readonly keys: number;
  readonly bytes: number;
  /** Wall time from start to the snapshot being durable, and then to the
   * WAL being compacted. */
  readonly writeMs: number;
  readonly compactMs: number;
}

export class ReplicaState {
  readonly wal: WalFile;
  readonly log: RaftLog;
  readonly kv: KvStore;
  /** WAL byte offset (logical, see WalFile) where entry offsetBase + 1 + i starts. */
  #offsets: number[];
  #offsetBase: LogIndex;
  #endOffset: number;
  #commitIndex: LogIndex = 0;
  #lastApplied: LogIndex = 0;
  /** The snapshot on disk (index 0: none). */
  #snapshot: SnapshotMeta;
  #snapshotFileBytes = 0;
  #snapshotPath: string | null = null;
  #policy: SnapshotPolicy = defaultSnapshotPolicy;
  /** A snapshot being written or installed: one at a time. */
  #snapshotBusy: Promise<void> | null = null;
  #snapshotRetryAtMs = 0;
  #log: Log;

  private constructor(
    wal: WalFile,
    entries: readonly LogEntry[],
    offsets: number[],
    end: number,
    snapshot: SnapshotMeta,
    kv: KvStore,
    log: Log,
  ) {
    this.wal = wal;
    this.log = new RaftLog(entries, { lastIndex: snapshot.index, lastTerm: snapshot.term });
    this.kv = kv;
    this.#offsets = offsets;
    this.#offsetBase = snapshot.index;
    this.#endOffset = end;
    this.#snapshot = snapshot;
    this.#commitIndex = snapshot.index;
    this.#lastApplied = snapshot.index;
    this.#log = log;
  }

  /** Loads the snapshot (if any) and the WAL (creating it if missing). A
   * torn WAL tail is cut off with a WARN; damage before the last line, a
   * damaged snapshot, or a WAL that disagrees with the snapshot throws,
   * naming the file. */
  static async open(
    path: string,
    log: Log,
    commitHintPath?: string,
    walOptions: WalOpenOptions = {},
    snapshotOptions: { readonly path?: string; readonly policy?: SnapshotPolicy } = {},
  ): Promise<ReplicaState> {
    const snapPath = snapshotOptions.path ?? null;
    const loaded = snapPath === null ? null : await readSnapshotFile(
      snapPath,
      (leftover) => log.info(`removed ${leftover}, left by a snapshot that did not finish`),
    );
    const snapshot: SnapshotMeta = loaded?.meta ?? { index: 0, term: 0, lineHash: 0 };
    const opened = await WalFile.open(path, {
      ...walOptions,
      snapshot: { index: snapshot.index, term: snapshot.term },
    });
    if (opened.tornTail !== null) {
      const t = opened.tornTail;
      log.warn(
        `${path}: cut off a torn last line (${t.bytes} bytes at offset ${t.offset}: ${t.reason})`,
      );
    }
    // Lines the snapshot covers may still be in the WAL (a crash between a
    // snapshot and the compaction after it): the snapshot holds them now.
    // The one at its index must be the very entry the snapshot ends with.
    const atSnapshot = opened.entries.find((e) => e.index === snapshot.index);
    if (
      atSnapshot !== undefined && snapPath !== null &&
      lineHash(atSnapshot.line) !== snapshot.lineHash
    ) {
      opened.wal.close();
      throw new SnapshotDamagedError(
        snapPath,
        `it ends at entry ${snapshot.index}, but ${path} holds a different entry there`,
      );
    }
    const kept = opened.entries.filter((e) => e.index > snapshot.index);
    const entries: LogEntry[] = kept.map((e) => ({
      index: e.index,
      term: e.term,
      record: e.record,
      line: e.line,
    }));
    const offsets = kept.map((e) => e.offset);
    const last = opened.entries.at(-1);
    const end = last ? last.offset + last.line.length : opened.wal.startOffset;
    const kv = new KvStore(loaded?.pairs);
    const state = new ReplicaState(opened.wal, entries, offsets, end, snapshot, kv, log);
    state.#snapshotPath = snapPath;
    state.#snapshotFileBytes = loaded?.bytes ?? 0;
    if (snapshotOptions.policy !== undefined) state.#policy = snapshotOptions.policy;
    if (loaded !== null) {
      log.info(
        `loaded snapshot ${snapPath}: ${kv.size} keys up to entry ${snapshot.index} ` +
          `(term ${snapshot.term}), ${loaded.bytes} bytes`,
      );
    }
    if (commitHintPath !== undefined) {
      state.#commitHintPath = commitHintPath;
      const read = await readCommitHint(commitHintPath);
      if (read === "unreadable") log.warn(`ignoring ${commitHintPath}: it does not parse`);
      const hint = typeof read === "string" ? null : read;
      const entry = hint === null ? undefined : state.log.entry(hint.index);
      const namesSnapshotEnd = hint !== null && hint.index > 0 &&
        hint.index === snapshot.index && hint.term === snapshot.term &&
        hint.lineHash === snapshot.lineHash;
      if (namesSnapshotEnd) {
        // The entry is compacted away, but the snapshot vouches for it.
        state.#savedContactEpochMs = hint!.leaderContactEpochMs;
      } else if (hint !== null && hint.index > 0 && hint.index < snapshot.index) {
        // Older than the snapshot, which is committed anyway: nothing to add,
        // and its contact time is older than what the snapshot shows.
        log.info(`ignoring ${commitHintPath}: the snapshot covers entry ${hint.index}`);
      } else if (
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
      `loaded ${path}: ${entries.length} entries after the snapshot, last term ` +
        `${state.log.lastTerm}, known committed up to ${state.commitIndex}`,
    );
    return state;
  }

  /** INFO lines about the snapshot and the WAL. */
  infoLines(): string[] {
    return [
      `snapshot_index:${this.#snapshot.index}`,
      `snapshot_bytes:${this.#snapshotFileBytes}`,
      `snapshot_in_progress:${this.#snapshotBusy === null ? 0 : 1}`,
      `wal_bytes:${this.walBytes}`,
      `log_first_index:${this.log.snapshotIndex + 1}`,
    ];
  }

  /** Logs from now on as `log` (the role's prefix changes on promotion). */
  useLog(log: Log): void {
    this.#log = log;
  }

  /** The snapshot on disk (index 0: none) and its file. */
  get snapshot(): SnapshotMeta {
    return this.#snapshot;
  }

  get snapshotFile(): string | null {
    return this.#snapshot.index > 0 ? this.#snapshotPath : null;
  }

  /** Where a snapshot from the leader is received before it is installed. */
  get snapshotReceivePath(): string {
    invariant(this.#snapshotPath !== null, "No snapshot path configured");
    return receivePath(this.#snapshotPath);
  }

  get snapshotRunning(): boolean {
    return this.#snapshotBusy !== null;
  }

  /** WAL bytes in the file now (after the last compaction). */
  get walBytes(): number {
    return this.#endOffset - this.wal.startOffset;
  }

  /** Starts a snapshot if the policy says it is time (and none runs). The
   * promise settles when it is done; null when none was started. */
  maybeSnapshot(nowMs: number): Promise<SnapshotTaken | null> | null {
    if (this.#snapshotPath === null || this.#snapshotBusy !== null) return null;
    if (nowMs < this.#snapshotRetryAtMs) return null;
    const entries = this.#lastApplied - this.#snapshot.index;
    if (entries <= 0) return null;
    const byEntries = entries >= this.#policy.entries;
    const byBytes = this.walBytes >= this.#policy.walBytes;
    // A large store is not rewritten for a WAL much smaller than itself.
    const worthIt = this.walBytes >= this.#snapshotFileBytes / 4;
    if (!(byEntries || byBytes) || !worthIt) return null;
    return this.takeSnapshot().catch((e) => {
      this.#snapshotRetryAtMs = nowMs + snapshotRetryMs;
      this.#log.warn(
        `snapshot failed, keeping the WAL as it is; retrying in ${snapshotRetryMs} ms: ` +
          `${(e as Error).message}`,
      );
      return null;
    });
  }

  /** Writes the applied state as the snapshot, then compacts the WAL and the
   * in-memory log. Writes and reads go on meanwhile. Throws (leaving the old
   * snapshot and the WAL as they were) if the snapshot cannot be written. */
  takeSnapshot(): Promise<SnapshotTaken> {
    invariant(this.#snapshotPath !== null, "No snapshot path configured");
    invariant(this.#snapshotBusy === null, "A snapshot is already running");
    const path = this.#snapshotPath;
    // Everything below is read in this synchronous step, so the cursor's view
    // is exactly the state after entry `index`.
    const index = this.#lastApplied;
    const entry = this.log.entry(index);
    invariant(entry !== undefined, `Entry ${index} to snapshot is not in the log`);
    const meta: SnapshotMeta = { index, term: entry.term, lineHash: lineHash(entry.line) };
    const walOffset = this.#offsetOf(index) + entry.line.length;
    const cursor = this.kv.beginSnapshot();
    const startMs = performance.now();
    let done = () => {};
    this.#snapshotBusy = new Promise((r) => (done = r));
    return (async () => {
      try {
        let written;
        try {
          written = await writeSnapshotFile(path, meta, cursor);
        } finally {
          cursor.end();
        }
        const writeMs = performance.now() - startMs;
        this.#snapshot = meta;
        this.#snapshotFileBytes = written.bytes;
        // The snapshot is durable: the WAL lines up to it can go.
        const compacted = await this.wal.compactPrefix(walOffset);
        if (!compacted) {
          // Another snapshot now would not help the WAL: wait as after a failure.
          this.#snapshotRetryAtMs = performance.now() + snapshotRetryMs;
          this.#log.warn(
            `snapshot at ${index} written, but the WAL could not be compacted (disk full?); ` +
              `it keeps the old lines, which a restart ignores`,
          );
        }
        // Offsets at or below the snapshot are never needed again: truncation
        // only ever cuts above the commit index.
        this.#offsets = this.#offsets.slice(index - this.#offsetBase);
        this.#offsetBase = index;
        this.#compactLog(this.#retainFrom(index) - 1);
        const taken: SnapshotTaken = {
          meta,
          keys: written.keys,
          bytes: written.bytes,
          writeMs,
          compactMs: performance.now() - startMs - writeMs,
        };
        this.#log.info(
          `snapshot at entry ${index} (term ${meta.term}): ${written.keys} keys, ` +
            `${written.bytes} bytes in ${Math.round(writeMs)} ms; WAL now ${this.walBytes} bytes`,
        );
        return taken;
      } finally {
        this.#snapshotBusy = null;
        done();
      }
    })();
  }

  /** The lowest index to keep in memory below a snapshot at `index`, within
   * the policy's entry and byte bounds; further down to the retain floor
   * (see setRetainFloor), within a snapshot threshold's worth. */
  #retainFrom(index: LogIndex): LogIndex {
    const { retainEntries, retainBytes } = this.#policy;
    let from = index + 1;
    let bytes = 0;
    const keepOneMore = (maxEntries: number, maxBytes: number): boolean => {
      if (from <= index + 1 - maxEntries || from - 1 <= this.log.snapshotIndex) return false;
      const next = bytes + this.log.entry(from - 1)!.line.length;
      if (next > maxBytes) return false;
      bytes = next;
      from--;
      return true;
    };
    while (keepOneMore(retainEntries, retainBytes));
    const floor = this.#retainFloor();
    if (floor !== null) {
      while (from > floor + 1 && keepOneMore(this.#policy.entries, this.#policy.walBytes));
    }
    return from;
  }

  #retainFloor: () => LogIndex | null = () => null;

  /**
   * A leader sending its snapshot to a follower (or seeing one catch up
   * after installing it) needs the entries right after that snapshot when
   * the transfer ends. Compacting them away meanwhile would send it yet
   * another snapshot, and under a steady write load a large state could be
   * resent forever. `floor()` names the lowest index such a follower holds
   * (null: none); the entries after it are kept across snapshots, up to one
   * snapshot threshold (`entries`, `walBytes`) of them so that memory stays
   * bounded: past that the follower gets the newer snapshot after all.
   */
  setRetainFloor(floor: () => LogIndex | null): void {
    this.#retainFloor = floor;
  }

  /** Forgets in-memory entries up to `index` (never above the snapshot). */
  #compactLog(index: LogIndex): void {
    const to = Math.min(index, this.#snapshot.index);
    if (to <= this.log.snapshotIndex) return;
    this.log.compactTo(to);
  }

  #offsetOf(index: LogIndex): number {
    const offset = this.#offsets[index - this.#offsetBase - 1];
    invariant(offset !== undefined, `No WAL offset for entry ${index}`);
    return offset;
  }

  /**
   * Raft §7, InstallSnapshot on a follower: `tempPath` is a complete, fsynced
   * snapshot file from the leader, parsed into `pairs`. Replaces the state
   * with it. Entries after it are kept if the log holds its last entry; then
   * the WAL is compacted. Order matters for a crash at any point:
   *   1. a log that disagrees with the snapshot at its index has only
   *      uncommitted entries from there on (Log Matching): cut them first,
   *      so no WAL line after the snapshot can contradict it;
   *   2. rename the snapshot into place: from now on it is the node's state;
   *   3. drop the WAL lines it covers.
   */
  async installSnapshot(
    tempPath: string,
    meta: SnapshotMeta,
    pairs: Map<string, string>,
    fileBytes: number,
  ): Promise<void> {
    invariant(this.#snapshotPath !== null, "No snapshot path configured");
    while (this.#snapshotBusy !== null) await this.#snapshotBusy;
    if (meta.index <= this.#lastApplied) {
      // We already hold (and applied) everything it covers.
      await Deno.remove(tempPath).catch(() => {});
      return;
    }
    let done = () => {};
    this.#snapshotBusy = new Promise((r) => (done = r));
    try {
      const haveIt = this.log.termAt(meta.index) === meta.term;
      if (!haveIt && meta.index <= this.log.lastIndex) await this.truncateFrom(meta.index);
      await installSnapshotFile(tempPath, this.#snapshotPath);
      this.#snapshot = meta;
      this.#snapshotFileBytes = fileBytes;
      // Entries after the snapshot stay only if the log holds its last entry.
      const keepFrom = haveIt ? meta.index + 1 : this.log.lastIndex + 1;
      const walOffset = keepFrom > this.log.lastIndex ? this.#endOffset : this.#offsetOf(keepFrom);
      this.#offsets = this.#offsets.slice(keepFrom - this.#offsetBase - 1);
      this.#offsetBase = meta.index;
      this.log.installSnapshot({ lastIndex: meta.index, lastTerm: meta.term });
      invariant(
        this.#offsets.length === this.log.lastIndex - meta.index,
        `WAL offsets (${this.#offsets.length}) do not match the log after the snapshot`,
      );
      // The state is now exactly the snapshot's; entries after it are applied
      // as the leader's commit index reaches them.
      this.kv.replaceAll(pairs);
      this.#lastApplied = meta.index;
      this.#commitIndex = meta.index;
      this.#log.info(
        `installed the leader's snapshot: ${pairs.size} keys up to entry ${meta.index} ` +
          `(term ${meta.term}); ${this.log.lastIndex - meta.index} log entries after it kept`,
      );
      if (!(await this.wal.compactPrefix(walOffset))) {
        this.#log.warn(`could not compact the WAL after installing the snapshot (disk full?)`);
      }
    } finally {
      this.#snapshotBusy = null;
      done();
    }
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
    const snap = this.#snapshot;
    const named = entry !== undefined
      ? { term: entry.term, lineHash: lineHash(entry.line) }
      : index === snap.index && index > 0
      ? { term: snap.term, lineHash: snap.lineHash }
      : null;
    if (named === null) return;
    // Never write an older contact time over a newer one.
    const contact = contactMoved ? leaderContactEpochMs : this.#savedContactEpochMs;
    this.#savingHint = true;
    try {
      await writeCommitHint(path, { index, ...named, leaderContactEpochMs: contact });
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
    const offset = this.#offsetOf(index);
    await this.wal.sync();
    await this.wal.truncate(offset);
    this.log.truncateFrom(index);
    this.#offsets.length = index - this.#offsetBase - 1;
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
      this.log.slim(i);
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
