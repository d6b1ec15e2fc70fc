// The node's snapshot file (`nodeN.snap`, format in src/codec/snapshot.ts):
// written beside the WAL by the role process that owns it, read back at start.
//
// Written as `nodeN.snap.tmp`, fsynced, renamed over `nodeN.snap`, and the
// directory fsynced: a crash at any point leaves either the old snapshot or
// the new one under the real name, never a part of one. A leftover temporary
// file is only ever an unfinished write and is removed.

import { crc32 } from "node:zlib";
import {
  encodeSnapshotHeader,
  encodeSnapshotPairs,
  encodeSnapshotTrailer,
  parseSnapshotHeader,
  type SnapshotMeta,
  snapshotParser,
} from "../codec/snapshot.ts";
import type { SnapshotCursor } from "../kv/store.ts";
import { syncParentDirectory } from "./wal_file.ts";

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
      let pairs = cursor.next(pairsPerChunk);
      pairs !== null;
      pairs = cursor.next(pairsPerChunk)
    ) {
      keys += pairs.length;
      await put(encodeSnapshotPairs(pairs), true);
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
 * SnapshotDamagedError if it does not check out. Yields between chunks of
 * lines so a large one loads without starving the event loop. */
export async function readSnapshotFile(path: string): Promise<LoadedSnapshot | null> {
  // Leftovers of a write or a transfer that did not finish: never the snapshot.
  await Deno.remove(`${path}.tmp`).catch(() => {});
  await Deno.remove(receivePath(path)).catch(() => {});
  let bytes: Uint8Array;
  try {
    bytes = await Deno.readFile(path);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return null;
    throw e;
  }
  const parsed = await parseSnapshotBytes(bytes);
  if (!parsed.ok) throw new SnapshotDamagedError(path, parsed.error);
  return { meta: parsed.meta, pairs: parsed.pairs, bytes: bytes.length };
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
