// A snapshot file (`nodeN.snap`): the applied state at one log index, so the
// WAL lines up to that index can be dropped. Text, like the WAL, with the
// WAL's escaping, so `less` shows what a node holds:
//
//   KVSNAP\t1\t<index>\t<term>\t<hash>\n header: version, last index and term covered,
//                                        and the hash of that entry's WAL line
//   <key>\t<value>\n                     one line per key, in no particular order
//   …
//   END\t<keys>\t<crc32>\n               key count; CRC-32 (8 lowercase hex digits)
//                                        of every byte before this line
//
// A snapshot is written to a temporary file and renamed only once complete
// and fsynced, so a torn snapshot never carries the real name: any damage is
// real damage, and the checksum and the key count find it.
// Pure: the checksum function comes from the caller; nothing here throws on
// bad bytes, it reports them.

import { bytesToLatin1, latin1Into } from "../kv/latin1.ts";
import type { KvPair } from "../kv/store.ts";
import { escapeField, fieldNeedsEscape, unescapeFieldView } from "./wal_line.ts";

const TAB = 0x09;
const LF = 0x0a;
const encoder = new TextEncoder();
const decoder = new TextDecoder();

export const snapshotVersion = 1;

export interface SnapshotMeta {
  /** Last log index the snapshot covers. */
  readonly index: number;
  /** Term of that entry. */
  readonly term: number;
  /** lineHash (storage/commit_hint.ts) of that entry's WAL line: lets a node
   * check that a WAL still holding the entry agrees with the snapshot, and
   * trust a commit hint naming it. 0 for an empty snapshot (index 0). */
  readonly lineHash: number;
}

export function encodeSnapshotHeader(meta: SnapshotMeta): Uint8Array {
  return encoder.encode(
    `KVSNAP\t${snapshotVersion}\t${meta.index}\t${meta.term}\t${meta.lineHash >>> 0}\n`,
  );
}

export function encodeSnapshotTrailer(keys: number, crc32: number): Uint8Array {
  return encoder.encode(`END\t${keys}\t${(crc32 >>> 0).toString(16).padStart(8, "0")}\n`);
}

/** The lines of `pairs`, concatenated. */
export function encodeSnapshotPairs(pairs: readonly KvPair[]): Uint8Array {
  // Unescaped size first: most keys and values need no escaping, and those
  // that do are re-encoded below into a buffer grown to fit.
  let size = 0;
  for (const [k, v] of pairs) size += k.length + v.length + 2;
  let out: Uint8Array = new Uint8Array(size);
  let w = 0;
  const put = (text: string): void => {
    if (w + text.length > out.length) out = grow(out, w + text.length);
    latin1Into(text, out, w);
    if (!fieldNeedsEscape(out, w, w + text.length)) {
      w += text.length;
      return;
    }
    const escaped = escapeField(out.slice(w, w + text.length));
    if (w + escaped.length > out.length) out = grow(out, w + escaped.length);
    out.set(escaped, w);
    w += escaped.length;
  };
  for (const [k, v] of pairs) {
    put(k);
    if (w + 1 > out.length) out = grow(out, w + 1);
    out[w++] = TAB;
    put(v);
    if (w + 1 > out.length) out = grow(out, w + 1);
    out[w++] = LF;
  }
  return out.subarray(0, w);
}

function grow(bytes: Uint8Array, need: number): Uint8Array {
  const next = new Uint8Array(Math.max(need, bytes.length * 2));
  next.set(bytes);
  return next;
}

export type ParsedSnapshotHeader =
  | { readonly ok: true; readonly meta: SnapshotMeta; readonly bytes: number }
  | { readonly ok: false; readonly error: string };

/** Reads the header line at the start of `bytes` (the rest may be absent). */
export function parseSnapshotHeader(bytes: Uint8Array): ParsedSnapshotHeader {
  const nl = bytes.indexOf(LF);
  if (nl < 0 || nl > 200) return { ok: false, error: "No snapshot header line" };
  const parts = decoder.decode(bytes.subarray(0, nl)).split("\t");
  if (parts[0] !== "KVSNAP") return { ok: false, error: "Not a snapshot (no KVSNAP header)" };
  if (parts[1] !== String(snapshotVersion)) {
    return { ok: false, error: `Unknown snapshot version ${JSON.stringify(parts[1])}` };
  }
  const index = decimal(parts[2]);
  const term = decimal(parts[3]);
  const lineHash = decimal(parts[4]);
  if (
    parts.length !== 5 || index === null || term === null || lineHash === null ||
    lineHash > 0xffffffff || (index > 0) !== (term > 0)
  ) {
    return { ok: false, error: `Malformed snapshot header ${JSON.stringify(parts.join(" "))}` };
  }
  return { ok: true, meta: { index, term, lineHash }, bytes: nl + 1 };
}

function decimal(text: string | undefined): number | null {
  if (text === undefined || !/^(0|[1-9][0-9]{0,15})$/.test(text)) return null;
  const n = Number(text);
  return Number.isSafeInteger(n) ? n : null;
}

export type ParsedSnapshot =
  | {
    readonly ok: true;
    readonly meta: SnapshotMeta;
    /** Keys and values as latin1 strings (see kv/latin1.ts). */
    readonly pairs: Map<string, string>;
  }
  | { readonly ok: false; readonly error: string; readonly lineNumber: number };

/**
 * Parses and checks a whole snapshot file: header, every line, key count and
 * checksum. A generator that yields every `chunkLines` lines, so a caller can
 * let its event loop run while a large snapshot loads (see parseSnapshot for
 * the plain call).
 */
export function* snapshotParser(
  bytes: Uint8Array,
  crc32: (bytes: Uint8Array) => number,
  chunkLines = 50_000,
): Generator<void, ParsedSnapshot> {
  const header = parseSnapshotHeader(bytes);
  if (!header.ok) return { ok: false, error: header.error, lineNumber: 1 };
  // The trailer is the last line; it must end the file exactly.
  if (bytes.length === 0 || bytes[bytes.length - 1] !== LF) {
    return { ok: false, error: "Snapshot does not end with a newline (cut short?)", lineNumber: 0 };
  }
  const trailerStart = bytes.lastIndexOf(LF, bytes.length - 2) + 1;
  if (trailerStart < header.bytes) {
    return { ok: false, error: "Snapshot has no END line (cut short?)", lineNumber: 0 };
  }
  const trailer = decoder.decode(bytes.subarray(trailerStart, bytes.length - 1)).split("\t");
  const keys = decimal(trailer[1]);
  if (trailer[0] !== "END" || trailer.length !== 3 || keys === null) {
    return { ok: false, error: "Snapshot has no END line (cut short?)", lineNumber: 0 };
  }
  const want = trailer[2]!;
  const got = (crc32(bytes.subarray(0, trailerStart)) >>> 0).toString(16).padStart(8, "0");
  if (got !== want) {
    return {
      ok: false,
      error: `Checksum mismatch: END line says ${want}, bytes give ${got}`,
      lineNumber: 0,
    };
  }
  const pairs = new Map<string, string>();
  let at = header.bytes;
  let lineNumber = 1;
  while (at < trailerStart) {
    lineNumber++;
    if (lineNumber % chunkLines === 0) yield;
    const nl = bytes.indexOf(LF, at);
    const tab = bytes.indexOf(TAB, at);
    if (tab < 0 || tab > nl) return { ok: false, error: "Line has no TAB", lineNumber };
    const key = unescapeFieldView(bytes, at, tab);
    if (typeof key === "string") return { ok: false, error: `Key: ${key}`, lineNumber };
    const value = unescapeFieldView(bytes, tab + 1, nl);
    if (typeof value === "string") return { ok: false, error: `Value: ${value}`, lineNumber };
    const size = pairs.size;
    pairs.set(bytesToLatin1(key), bytesToLatin1(value));
    if (pairs.size === size) return { ok: false, error: "Key appears twice", lineNumber };
    at = nl + 1;
  }
  if (pairs.size !== keys) {
    return {
      ok: false,
      error: `END line says ${keys} keys, file holds ${pairs.size}`,
      lineNumber: 0,
    };
  }
  return { ok: true, meta: header.meta, pairs };
}

export function parseSnapshot(
  bytes: Uint8Array,
  crc32: (bytes: Uint8Array) => number,
): ParsedSnapshot {
  const steps = snapshotParser(bytes, crc32, Number.MAX_SAFE_INTEGER);
  for (;;) {
    const r = steps.next();
    if (r.done) return r.value;
  }
}
