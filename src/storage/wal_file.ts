// The node's write-ahead log on disk (`nodeN.log`): parse it at start-up,
// append encoded lines, make them durable with group commit, and cut a
// conflicting suffix (Raft §5.3). The node's log store calls it; the Raft core
// never does. `parseWal` is pure and also serves tools and tests.
//
// It must not acknowledge anything it has not fdatasync'ed: once a write or
// fsync fails the WalFile is failed for good, because after a failed fsync
// the kernel may have dropped the dirty pages and a retry could report
// success for bytes that are gone. The process should crash and reopen.
//
// It works on bytes and lines only; which entries to append or cut is the
// caller's decision (it knows terms and commit index, this file does not).
//
// Flushes and truncates run one at a time, in call order, on one queue:
//
//   sync() ──▶ pending lines? ── no ──▶ wait for the flush holding our bytes
//                  │ yes
//                  ▼
//        a flush queued, not started? ── yes ──▶ join it (group commit)
//                  │ no
//                  ▼
//        queue a flush: when it starts it takes ALL pending lines, writes
//        them, fdatasyncs ── throws ──▶ failed (final: every call throws)

import { decodeWalLine, type WalRecord } from "../codec/wal_line.ts";

export interface WalEntry {
  readonly index: number; // == seq
  readonly term: number; // the term of the nearest TERM line at or before it
  readonly record: WalRecord;
  readonly offset: number; // byte offset of the line start in the file
  readonly line: Uint8Array; // exact bytes of the line including "\n"
}

export interface TornTail {
  readonly offset: number;
  readonly bytes: number;
  readonly reason: string;
}

export type ParseWalResult =
  | { ok: true; entries: WalEntry[]; validBytes: number; tornTail: TornTail | null }
  | { ok: false; error: string; lineNumber: number };

const LF = 0x0a;

/** Most bytes handed to one write() call. Pending lines are concatenated so a
 * group commit is one syscall, but a backlog of many megabytes is not copied
 * into one huge buffer just to save a few syscalls. */
const writeBytesMax = 8 * 1024 * 1024;

/**
 * Parses a whole WAL file. Pure. Records are fresh copies; each entry's `line`
 * is a view into `bytes`, so do not modify `bytes` while the entries live.
 *
 * A crash during an unsynced append can leave the last line cut short, or
 * leave zero bytes where the file grew before its data reached the disk. Such
 * a last line is reported as `tornTail` (never acknowledged, safe to drop).
 * Anything wrong before the last line cannot come from a torn append, so it is
 * damage and needs an operator, not a silent repair.
 */
export function parseWal(bytes: Uint8Array, snapshot: WalBase = noBase): ParseWalResult {
  const steps = walParser(bytes, Number.MAX_SAFE_INTEGER, snapshot);
  for (;;) {
    const r = steps.next();
    if (r.done) return r.value;
  }
}

/** Like parseWal, but lets the event loop run between chunks of lines, so a
 * process loading a large WAL still answers its supervisor meanwhile. */
export async function parseWalAsync(
  bytes: Uint8Array,
  snapshot: WalBase = noBase,
  chunkLines = 20_000,
): Promise<ParseWalResult> {
  const steps = walParser(bytes, chunkLines, snapshot);
  for (;;) {
    const r = steps.next();
    if (r.done) return r.value;
    await new Promise((resolve) => setTimeout(resolve, 0));
  }
}

/** The snapshot a WAL continues: the last index and term it covers. After
 * compaction the WAL starts right after it, with no TERM line of its own, so
 * the snapshot supplies the term of the lines that follow it. */
export interface WalBase {
  readonly index: number;
  readonly term: number;
}

const noBase: WalBase = { index: 0, term: 0 };

function* walParser(
  bytes: Uint8Array,
  chunkLines: number,
  snapshot: WalBase,
): Generator<void, ParseWalResult> {
  const entries: WalEntry[] = [];
  let term = 0;
  let offset = 0;
  let lineNumber = 0;
  while (offset < bytes.length) {
    lineNumber++;
    if (lineNumber % chunkLines === 0) yield;
    const newline = bytes.indexOf(LF, offset);
    const lineEnd = newline < 0 ? bytes.length : newline;
    const isLast = newline < 0 || newline + 1 === bytes.length;
    const content = bytes.subarray(offset, lineEnd);
    const torn = (reason: string): ParseWalResult => ({
      ok: true,
      entries,
      validBytes: offset,
      tornTail: { offset, bytes: bytes.length - offset, reason },
    });

    if (isLast && content.length === 0) return torn("Last line is empty");
    if (isLast && isAllZero(content)) {
      return torn(`Last line is ${content.length} zero bytes (file grew, data never written)`);
    }
    if (newline < 0) {
      return torn(`Last line has no newline (torn write of ${content.length} bytes)`);
    }

    // Entries keep their line (a view of the bytes read), so their key and
    // value may be views too.
    const decoded = decodeWalLine(content, { share: true });
    if (!decoded.ok) {
      // A torn multi-page append can persist the page holding the final "\n"
      // but not the page before it; only the last line can be such garbage.
      if (isLast) return torn(`Last line is undecodable: ${decoded.error}`);
      return { ok: false, error: decoded.error, lineNumber };
    }
    const record = decoded.record;

    // Sequence and term order: these are decodable lines in the wrong place,
    // which a torn write cannot produce, so they are damage even on the last line.
    // The first line may come after compacted ones (any seq, but no gap
    // after the snapshot); later ones follow it one by one. One jump is
    // allowed: from lines the snapshot covers straight to the entry after
    // it. A follower that installs a leader's snapshot beyond its own log,
    // or a leader whose snapshot holds entries its own WAL had not synced
    // yet, appends that entry next; until the compaction removes the old
    // lines (a crash or a full disk can delay it), they sit before it.
    const prev = entries.at(-1)?.index;
    const jumpsPastSnapshot = prev !== undefined && prev < snapshot.index &&
      record.index === snapshot.index + 1;
    const expectedIndex = prev === undefined || jumpsPastSnapshot ? record.index : prev + 1;
    if (entries.length === 0 && record.index > snapshot.index + 1) {
      return {
        ok: false,
        error: snapshot.index === 0
          ? `First entry has seq ${record.index} but there is no snapshot: entries 1 to ${
            record.index - 1
          } are missing`
          : `First entry has seq ${record.index} but the snapshot ends at ${snapshot.index}: entries ${
            snapshot.index + 1
          } to ${record.index - 1} are missing`,
        lineNumber,
      };
    }
    // Lines the snapshot covers may be left from before a compaction; the
    // snapshot's term holds from its index on, until the next TERM line.
    if (record.index === snapshot.index + 1) term = snapshot.term;
    if (record.index !== expectedIndex) {
      return {
        ok: false,
        error: `Seq ${record.index} out of sequence, expected ${expectedIndex}`,
        lineNumber,
      };
    }
    if (record.op === "TERM") {
      if (record.term < term) {
        return {
          ok: false,
          error: `Term ${record.term} is lower than the preceding term ${term}`,
          lineNumber,
        };
      }
      term = record.term;
    } else if (term === 0 && record.index === 1) {
      return {
        ok: false,
        error: `First entry is ${record.op}, expected TERM`,
        lineNumber,
      };
    }

    const next = newline + 1;
    entries.push({ index: record.index, term, record, offset, line: bytes.subarray(offset, next) });
    offset = next;
  }
  return { ok: true, entries, validBytes: offset, tornTail: null };
}

function isAllZero(bytes: Uint8Array): boolean {
  for (let i = 0; i < bytes.length; i++) if (bytes[i] !== 0) return false;
  return true;
}

/** The WAL on disk is damaged before its last line; the node must not start on it. */
export class WalDamagedError extends Error {
  readonly path: string;
  readonly lineNumber: number;

  constructor(path: string, lineNumber: number, detail: string) {
    super(`WAL file "${path}" is damaged at line ${lineNumber}: ${detail}`);
    this.name = "WalDamagedError";
    this.path = path;
    this.lineNumber = lineNumber;
  }
}

/** The part of Deno.FsFile that WalFile writes through. */
export type WalFileHandle = Pick<Deno.FsFile, "write" | "syncData" | "truncate" | "close">;

export interface WalOpenOptions {
  /** Test seam: wraps the opened file, e.g. to make syncData fail. */
  readonly wrapHandle?: (file: Deno.FsFile) => WalFileHandle;
  /** The snapshot this WAL continues, if any (see WalBase). */
  readonly snapshot?: WalBase;
}

export class WalFile {
  readonly path: string;
  #file: WalFileHandle;

  // Lines appended but not yet claimed by a flush, and their size. A flush
  // claims ALL of them when it starts, or earlier when a truncate() call seals
  // it (so lines appended after that call land after the cut).
  #pending: Uint8Array[] = [];
  #pendingBytes = 0;

  // Durability, counted in appended bytes (not file positions, so a truncate
  // leaves them alone). Invariant: #durableBytes ≤ #claimedBytes ≤ #appendedBytes.
  #appendedBytes = 0;
  #claimedBytes = 0;
  #durableBytes = 0;

  /** File length once every claimed write and every truncate called so far
   * has been carried out. Updated in call order, so the next appended line
   * always starts at #sizeBytes + #pendingBytes. */
  #sizeBytes: number;

  // Flushes and truncates run one at a time in call order, so a truncate
  // never races a write. #queueTail settles when the last queued one does.
  #queueTail: Promise<void> = Promise.resolve();
  /** A flush queued and not yet claiming lines: a sync() may join it. */
  #openFlush: Flush | null = null;
  /** The most recently queued flush; it holds any bytes no longer pending. */
  #lastFlush: Promise<void> = Promise.resolve();
  #failure: unknown = null;
  #closed = false;

  // Offsets callers see are logical: counted from the start of the file as
  // it was opened, so compaction (which drops a prefix of the file) moves no
  // offset anyone holds. The file itself starts at logical #droppedBytes.
  #droppedBytes = 0;
  /** Logical length of the file once every queued operation that has
   * finished is accounted for (what is really on disk now). */
  #fileEnd: number;
  /** While a compaction runs: the lowest logical offset any truncate cut to
   * since it started; bytes from here on may differ from what it copied. */
  #compactLowWater: number | null = null;
  readonly #wrapHandle: ((file: Deno.FsFile) => WalFileHandle) | undefined;

  private constructor(
    path: string,
    file: WalFileHandle,
    sizeBytes: number,
    wrapHandle: ((file: Deno.FsFile) => WalFileHandle) | undefined,
  ) {
    this.path = path;
    this.#file = file;
    this.#sizeBytes = sizeBytes;
    this.#fileEnd = sizeBytes;
    this.#wrapHandle = wrapHandle;
  }

  /**
   * Opens (creating if missing) and parses the WAL at `path`. A torn tail is
   * cut off and the cut made durable before returning; the caller logs it.
   * Throws WalDamagedError if the file is damaged before its last line.
   */
  static async open(
    path: string,
    options: WalOpenOptions = {},
  ): Promise<{ wal: WalFile; entries: WalEntry[]; tornTail: TornTail | null }> {
    // Append mode: every write lands at the current end of file, including
    // after truncate() moved that end, so there is no file position to manage.
    let created = false;
    let file: Deno.FsFile;
    try {
      file = await Deno.open(path, { read: true, append: true, createNew: true });
      created = true;
    } catch (error) {
      if (!(error instanceof Deno.errors.AlreadyExists)) throw error;
      file = await Deno.open(path, { read: true, append: true });
    }

    const handle = options.wrapHandle ? options.wrapHandle(file) : file;
    try {
      if (created) await syncParentDirectory(path);
      const bytes = await readAll(file);
      const parsed = await parseWalAsync(bytes, options.snapshot);
      if (!parsed.ok) throw new WalDamagedError(path, parsed.lineNumber, parsed.error);
      if (parsed.tornTail !== null) {
        await handle.truncate(parsed.validBytes);
        await handle.syncData();
      }
      const wal = new WalFile(path, handle, parsed.validBytes, options.wrapHandle);
      return { wal, entries: parsed.entries, tornTail: parsed.tornTail };
    } catch (error) {
      handle.close();
      throw error;
    }
  }

  /** File length once every write and truncate called so far is done; the
   * next appended line will start at `sizeBytes + pendingBytes`. */
  get sizeBytes(): number {
    return this.#sizeBytes;
  }

  /** Bytes appended that no sync() has yet taken on. */
  get pendingBytes(): number {
    return this.#pendingBytes;
  }

  /**
   * Buffers encoded lines, in order; nothing reaches the file until sync().
   * The arrays are kept by reference: do not modify them afterwards.
   */
  append(lines: readonly Uint8Array[]): void {
    this.#assertUsable();
    for (const line of lines) {
      // A line without its "\n" would merge with the next one on disk.
      if (line.length === 0 || line[line.length - 1] !== LF) {
        throw new Error(`WAL line must end with "\\n", got ${line.length} bytes without`);
      }
    }
    for (const line of lines) {
      this.#pending.push(line);
      this.#pendingBytes += line.length;
      this.#appendedBytes += line.length;
    }
  }

  /**
   * Makes every line appended before this call durable (write + fdatasync).
   * Calls made while a flush is in flight share the next flush, which writes
   * everything buffered by the time it starts (group commit). Rejects, and
   * fails the WalFile for good, if a write or fsync fails.
   */
  async sync(): Promise<void> {
    this.#assertUsable();
    if (this.#durableBytes >= this.#appendedBytes) return;
    if (this.#openFlush !== null) return await this.#openFlush.done;
    // Nothing pending: our bytes were claimed by the latest flush.
    if (this.#pendingBytes === 0) return await this.#lastFlush;
    const flush = new Flush();
    flush.done = this.#enqueue(() => this.#flush(flush));
    this.#openFlush = flush;
    this.#lastFlush = flush.done;
    await flush.done;
  }

  /**
   * Drops every byte from `offset` on and makes that durable. Lines appended
   * before must be covered by a sync() (awaited or not); otherwise they would
   * sit on the wrong side of the cut. The cut happens after those flushes;
   * lines appended after this call are written after the cut.
   */
  async truncate(offset: number): Promise<void> {
    this.#assertUsable();
    if (this.#pendingBytes !== 0 && this.#openFlush === null) {
      throw new Error(`Cannot truncate WAL with ${this.#pendingBytes} pending bytes; sync first`);
    }
    const sizeBeforeBytes = this.#sizeBytes + this.#pendingBytes;
    const start = this.#droppedBytes;
    if (!Number.isSafeInteger(offset) || offset < start || offset > sizeBeforeBytes) {
      // Past the end, ftruncate would pad with zeros; below the compacted
      // start the bytes are gone: refuse either (a caller bug).
      throw new RangeError(
        `Truncate offset ${offset} is outside the WAL (${start}..${sizeBeforeBytes})`,
      );
    }
    if (this.#openFlush !== null) this.#claim(this.#openFlush);
    this.#sizeBytes = offset;
    await this.#enqueue(async () => {
      await this.#file.truncate(offset - this.#droppedBytes);
      await this.#file.syncData();
      this.#fileEnd = offset;
      if (this.#compactLowWater !== null) {
        this.#compactLowWater = Math.min(this.#compactLowWater, offset);
      }
    });
  }

  /** Logical offset where the file now starts (bytes before it were dropped
   * by compactPrefix). */
  get startOffset(): number {
    return this.#droppedBytes;
  }

  /**
   * Drops every byte before logical `offset` from the file (Raft §7: a
   * snapshot durably covers the entries there), while appends and syncs go
   * on. The bytes after it are copied to `<path>.compact` in the background;
   * then, between two flushes, whatever was appended meanwhile is copied too,
   * the copy is fsynced and renamed over the WAL, and the directory fsynced.
   * A crash leaves either the old file or the new one, each consistent with
   * the snapshot. Returns false (WAL untouched and usable) if the copy could
   * not be made, e.g. the disk is full; throws, failing the WalFile, only if
   * it failed after the rename, when which file is current is unknown.
   */
  async compactPrefix(offset: number): Promise<boolean> {
    this.#assertUsable();
    if (offset <= this.#droppedBytes) return true;
    if (this.#compactLowWater !== null) throw new Error("A WAL compaction is already running");
    const temp = `${this.path}.compact`;
    this.#compactLowWater = this.#fileEnd;
    let out: Deno.FsFile | null = null;
    let source: Deno.FsFile | null = null;
    let renamed = false;
    try {
      // Append mode like the WAL itself (see open); a leftover temp file is
      // an unfinished compaction and is replaced.
      await Deno.remove(temp).catch(() => {});
      out = await Deno.open(temp, { read: true, append: true, createNew: true });
      source = await Deno.open(this.path, { read: true });
      // Phase 1, beside the flushes: copy what is on disk now.
      const copiedEnd = await copyRange(source, this.#droppedBytes, offset, this.#fileEnd, out);
      await out.syncData();
      // Phase 2, between two flushes: nothing writes the WAL meanwhile.
      const result = await this.#enqueue(async () => {
        const low = Math.min(this.#compactLowWater!, copiedEnd);
        // The caller cut below what it asked to drop: a bug, but the WAL is fine.
        if (low < offset) return false;
        try {
          await out!.truncate(low - offset);
          await copyRange(source!, this.#droppedBytes, low, this.#fileEnd, out!);
          await out!.syncData();
          await Deno.rename(temp, this.path);
        } catch {
          return false; // the old WAL is still in place and intact
        }
        renamed = true;
        await syncParentDirectory(this.path);
        const old = this.#file;
        this.#file = this.#wrapHandle ? this.#wrapHandle(out!) : out!;
        out = null;
        this.#droppedBytes = offset;
        try {
          old.close();
        } catch {
          // already closed
        }
        return true;
      });
      return result;
    } catch (e) {
      if (renamed) throw e;
      return false;
    } finally {
      this.#compactLowWater = null;
      source?.close();
      if (out !== null) {
        out.close();
        if (!renamed) await Deno.remove(temp).catch(() => {});
      }
    }
  }

  /** Closes the file. Pending lines are dropped: they were never acknowledged. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#pending = [];
    this.#pendingBytes = 0;
    this.#file.close();
  }

  [Symbol.dispose](): void {
    this.close();
  }

  #assertUsable(): void {
    if (this.#failure !== null) {
      throw new Error(`WAL file "${this.path}" failed earlier and is unusable`, {
        cause: this.#failure,
      });
    }
    if (this.#closed) throw new Error(`WAL file "${this.path}" is closed`);
  }

  /**
   * Runs `operation` after every operation queued before it. A failure makes
   * the WalFile failed, and operations still queued then fail without I/O.
   */
  #enqueue<T>(operation: () => Promise<T>): Promise<T> {
    const run = async (): Promise<T> => {
      this.#assertUsable();
      try {
        return await operation();
      } catch (error) {
        this.#failure ??= error;
        throw error;
      }
    };
    const result = this.#queueTail.then(run);
    // The tail only orders operations; each caller gets errors via `result`.
    this.#queueTail = result.then(() => {}, () => {});
    return result;
  }

  /** Moves every pending line into `flush`; no later sync() can join it. */
  #claim(flush: Flush): void {
    if (this.#openFlush === flush) this.#openFlush = null;
    flush.lines = this.#pending;
    flush.bytes = this.#pendingBytes;
    this.#pending = [];
    this.#pendingBytes = 0;
    this.#claimedBytes += flush.bytes;
    flush.coversAppendedBytes = this.#claimedBytes;
    this.#sizeBytes += flush.bytes;
  }

  async #flush(flush: Flush): Promise<void> {
    if (this.#openFlush === flush) this.#claim(flush);
    for (const chunk of batches(flush.lines, writeBytesMax)) await writeAll(this.#file, chunk);
    this.#fileEnd += flush.bytes;
    await this.#file.syncData();
    // Flushes run in claim order, so durability only ever moves forward.
    if (flush.coversAppendedBytes < this.#durableBytes) {
      throw new Error(
        `Bug: flush covering ${flush.coversAppendedBytes} bytes finished after ${this.#durableBytes}`,
      );
    }
    this.#durableBytes = flush.coversAppendedBytes;
  }
}

/** One group commit: the lines it writes are fixed when it claims them. */
class Flush {
  done: Promise<void> = Promise.resolve();
  lines: readonly Uint8Array[] = [];
  bytes = 0;
  /** #claimedBytes right after the claim: durable up to here once done. */
  coversAppendedBytes = 0;
}

/** Groups lines into buffers of at most `bytesMax` (a longer line goes alone). */
function* batches(lines: readonly Uint8Array[], bytesMax: number): Generator<Uint8Array> {
  let i = 0;
  while (i < lines.length) {
    let j = i;
    let size = 0;
    while (j < lines.length && (j === i || size + lines[j]!.length <= bytesMax)) {
      size += lines[j]!.length;
      j++;
    }
    if (j - i === 1) {
      yield lines[i]!;
    } else {
      const buffer = new Uint8Array(size);
      let w = 0;
      for (let k = i; k < j; k++) {
        buffer.set(lines[k]!, w);
        w += lines[k]!.length;
      }
      yield buffer;
    }
    i = j;
  }
}

async function writeAll(file: WalFileHandle, bytes: Uint8Array): Promise<void> {
  let written = 0;
  while (written < bytes.length) {
    const n = await file.write(bytes.subarray(written));
    if (n <= 0) throw new Error(`WAL write made no progress after ${written} bytes`);
    written += n;
  }
}

/** Copies the bytes at logical offsets [from, to) of `source`, a file that
 * starts at logical `fileStart`, to the end of `out`; stops early where the
 * source ends (it may have been cut meanwhile). Returns the logical offset
 * copied up to. */
async function copyRange(
  source: Deno.FsFile,
  fileStart: number,
  from: number,
  to: number,
  out: Deno.FsFile,
): Promise<number> {
  const buffer = new Uint8Array(1024 * 1024);
  await source.seek(from - fileStart, Deno.SeekMode.Start);
  let at = from;
  while (at < to) {
    const n = await source.read(buffer.subarray(0, Math.min(buffer.length, to - at)));
    if (n === null) break;
    for (let w = 0; w < n;) w += await out.write(buffer.subarray(w, n));
    at += n;
  }
  return at;
}

async function readAll(file: Deno.FsFile): Promise<Uint8Array> {
  // One spare byte lets the read that reports end of file find room without
  // doubling the buffer; the loop still copes with a file that grew.
  const { size } = await file.stat();
  let buffer = new Uint8Array(size + 1);
  let length = 0;
  for (;;) {
    if (length === buffer.length) {
      const grown = new Uint8Array(buffer.length * 2);
      grown.set(buffer);
      buffer = grown;
    }
    const n = await file.read(buffer.subarray(length));
    if (n === null) break;
    length += n;
  }
  return buffer.subarray(0, length);
}

/**
 * A new file's directory entry is metadata of the directory, which fdatasync
 * on the file does not cover; without this a crash could lose the whole WAL,
 * acknowledged entries included.
 */
export async function syncParentDirectory(path: string): Promise<void> {
  if (Deno.build.os === "windows") return; // directories cannot be opened for fsync there
  const slash = path.lastIndexOf("/");
  const directory = slash < 0 ? "." : slash === 0 ? "/" : path.slice(0, slash);
  const dir = await Deno.open(directory, { read: true });
  try {
    await dir.sync();
  } finally {
    dir.close();
  }
}
