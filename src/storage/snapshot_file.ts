// The node's snapshot file (`nodeN.snap`, format in src/codec/snapshot.ts):
// written beside the WAL by the role process that owns it, read back at start.
//
// Written as `nodeN.snap.tmp`, fsynced, renamed over `nodeN.snap`, and the
// directory fsynced: a crash at any point leaves either the old snapshot or
// the new one under the real name, never a part of one. A leftover temporary
// file is only ever an unfinished write and is removed.

import { crc32 } from "node:zlib";
import {
  checkKeyCount,
  encodeSnapshotHeader,
  encodeSnapshotLine,
  encodeSnapshotPairs,
  encodeSnapshotTrailer,
  parseSnapshotHeader,
  parseSnapshotTrailer,
  SnapshotBodyParser,
  type SnapshotMeta,
  snapshotParser,
  snapshotTrailerBytesMax,
} from "../codec/snapshot.ts";
import type { SnapshotCursor } from "../kv/store.ts";
import { syncParentDirectory } from "./wal_file.ts";
import { escapeField, escapeFieldSteps } from "../codec/wal_line.ts";
import { latin1ToBytes } from "../kv/latin1.ts";
import { runInSteps, stepBytes } from "../steps.ts";

export function snapshotPath(dataDir: string, nodeId: number): string {
  return `${dataDir.replace(/\/+$/, "") || "."}/node${nodeId}.snap`;
}

/** Where a snapshot from the leader is written as it arrives. */
export function receivePath(path: string): string {
  return `${path}.recv`;
}

/** Pairs encoded per write: about half a megabyte of 100-byte values, which
 * takes a few milliseconds, so writes and reads go on in between. */
const pairsPerChunk = 4096;
/** …and at most about this many bytes of keys and values, so that a run of
 * 16 MiB values is encoded one or two at a time. */
const chunkBytesMax = 1024 * 1024;

/** The snapshot file exists but is not one kvstore could have written whole. */
export class SnapshotDamagedError extends Error {
  readonly path: string;

  constructor(path: string, detail: string) {
    super(`Snapshot file "${path}" is damaged: ${detail}`);
    this.name = "SnapshotDamagedError";
    this.path = path;
  }
}

export interface SnapshotWritten {
  readonly bytes: number;
  readonly keys: number;
}

/** Writes the state `cursor` reads as the snapshot at `meta`, replacing
 * `path` atomically once it is durable. Yields to the event loop between
 * chunks. The caller ends the cursor. */
export async function writeSnapshotFile(
  path: string,
  meta: SnapshotMeta,
  cursor: SnapshotCursor,
): Promise<SnapshotWritten> {
  const temp = `${path}.tmp`;
  const file = await Deno.open(temp, { write: true, create: true, truncate: true });
  let bytes = 0;
  let keys = 0;
  let crc = 0;
  try {
    const put = async (chunk: Uint8Array, checked: boolean) => {
      if (checked) crc = crc32(chunk, crc);
      for (let at = 0; at < chunk.length;) at += await file.write(chunk.subarray(at));
      bytes += chunk.length;
    };
    await put(encodeSnapshotHeader(meta), true);
    for (
      let pairs = cursor.next(pairsPerChunk, chunkBytesMax);
      pairs !== null;
      pairs = cursor.next(pairsPerChunk, chunkBytesMax)
    ) {
      keys += pairs.length;
      // A large value is escaped in steps, with the event loop free between
      // them; the rest of the chunk in one go.
      const small = pairs.filter(([, v]) => v.length < stepBytes);
      await put(encodeSnapshotPairs(small), true);
      for (const [k, v] of pairs) {
        if (v.length < stepBytes) continue;
        const value = await runInSteps(escapeFieldSteps(latin1ToBytes(v), stepBytes));
        await put(encodeSnapshotLine(escapeField(latin1ToBytes(k)), value), true);
      }
      await new Promise((r) => setTimeout(r, 0));
    }
    await put(encodeSnapshotTrailer(keys, crc), false);
    await file.syncData();
  } catch (e) {
    file.close();
    await Deno.remove(temp).catch(() => {});
    throw e;
  }
  file.close();
  await Deno.rename(temp, path);
  await syncParentDirectory(path);
  return { bytes, keys };
}

/** Moves a complete, fsynced snapshot file (one received from the leader)
 * into place and makes the rename durable. */
export async function installSnapshotFile(temp: string, path: string): Promise<void> {
  await Deno.rename(temp, path);
  await syncParentDirectory(path);
}

export interface LoadedSnapshot {
  readonly meta: SnapshotMeta;
  readonly pairs: Map<string, string>;
  readonly bytes: number;
}

/** Reads and checks the snapshot at `path`; null if there is none. Throws
 * SnapshotDamagedError if it does not check out. Streams the file in pieces
 * and yields between them, so a large one loads without holding the whole
 * file in memory beside the state it becomes, or starving the event loop. */
export async function readSnapshotFile(
  path: string,
  onLeftoverRemoved: (path: string) => void = () => {},
): Promise<LoadedSnapshot | null> {
  // Leftovers of a write or a transfer that did not finish: never the snapshot.
  for (const leftover of [`${path}.tmp`, receivePath(path)]) {
    try {
      await Deno.remove(leftover);
      onLeftoverRemoved(leftover);
    } catch {
      // none there
    }
  }
  const parsed = await loadSnapshotFile(path);
  if (parsed === null) return null;
  if (!parsed.ok) throw new SnapshotDamagedError(path, parsed.error);
  return parsed;
}

/** Bytes read at a time while loading a snapshot. */
const readPieceBytes = 4 * 1024 * 1024;

/** Reads and checks the snapshot file at `path` (null: there is none); damage
 * comes back as an error text naming the line where there is one. */
export async function loadSnapshotFile(
  path: string,
): Promise<(LoadedSnapshot & { readonly ok: true }) | { ok: false; error: string } | null> {
  let file: Deno.FsFile;
  try {
    file = await Deno.open(path, { read: true });
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return null;
    throw e;
  }
  try {
    const size = (await file.stat()).size;
    const fail = (error: string, lineNumber = 0) => ({
      ok: false as const,
      error: lineNumber > 0 ? `line ${lineNumber}: ${error}` : error,
    });
    // The END line first: it says how far the checksum runs.
    const tail = new Uint8Array(Math.min(size, snapshotTrailerBytesMax));
    await file.seek(size - tail.length, Deno.SeekMode.Start);
    await readFull(file, tail);
    const trailer = parseSnapshotTrailer(tail, size);
    if (!trailer.ok) return fail(trailer.error);
    await file.seek(0, Deno.SeekMode.Start);
    let crc = 0;
    let at = 0;
    let body: SnapshotBodyParser | null = null;
    let meta: SnapshotMeta | null = null;
    const piece = new Uint8Array(readPieceBytes);
    while (at < trailer.start) {
      const want = Math.min(piece.length, trailer.start - at);
      const got = await readFull(file, piece.subarray(0, want));
      if (got < want) return fail("Snapshot file shrank while it was read");
      let bytes = piece.subarray(0, got);
      crc = crc32(bytes, crc);
      if (body === null) {
        const header = parseSnapshotHeader(bytes);
        if (!header.ok) return fail(header.error, 1);
        if (header.bytes > trailer.start) return fail("Snapshot has no END line (cut short?)");
        meta = header.meta;
        body = new SnapshotBodyParser();
        bytes = bytes.subarray(header.bytes);
      }
      const bad = body.feed(bytes);
      if (bad !== null) return fail(bad.error, bad.lineNumber);
      at += got;
      await new Promise((r) => setTimeout(r, 0));
    }
    if (body === null || meta === null) return fail("No snapshot header line", 1);
    const got = (crc >>> 0).toString(16).padStart(8, "0");
    if (got !== trailer.crc32) {
      return fail(`Checksum mismatch: END line says ${trailer.crc32}, bytes give ${got}`);
    }
    const bad = body.finish();
    if (bad !== null) return fail(bad.error, bad.lineNumber);
    const checked = checkKeyCount(meta, body.pairs, trailer.keys);
    if (!checked.ok) return fail(checked.error);
    return { ok: true, meta, pairs: checked.pairs, bytes: size };
  } finally {
    file.close();
  }
}

async function readFull(file: Deno.FsFile, into: Uint8Array): Promise<number> {
  let got = 0;
  while (got < into.length) {
    const n = await file.read(into.subarray(got));
    if (n === null) break;
    got += n;
  }
  return got;
}

/** snapshotParser with the real checksum, yielding to the event loop. */
export async function parseSnapshotBytes(
  bytes: Uint8Array,
): Promise<ReturnType<typeof snapshotParser> extends Generator<void, infer R> ? R : never> {
  const steps = snapshotParser(bytes, (b) => crc32(b));
  for (;;) {
    const r = steps.next();
    if (r.done) {
      const v = r.value;
      return v.ok
        ? v
        : { ...v, error: v.lineNumber > 0 ? `line ${v.lineNumber}: ${v.error}` : v.error };
    }
    await new Promise((resolve) => setTimeout(resolve, 0));
  }
}

/** The index and term a snapshot file covers, from its header alone; null
 * if there is no snapshot. For the supervisor, which only needs where the
 * log ends; the role process checks the whole file when it loads it. */
export async function readSnapshotMeta(path: string): Promise<SnapshotMeta | null> {
  let file: Deno.FsFile;
  try {
    file = await Deno.open(path, { read: true });
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return null;
    throw e;
  }
  try {
    const head = new Uint8Array(256);
    const n = (await file.read(head)) ?? 0;
    const parsed = parseSnapshotHeader(head.subarray(0, n));
    if (!parsed.ok) throw new SnapshotDamagedError(path, parsed.error);
    return parsed.meta;
  } finally {
    file.close();
  }
}
