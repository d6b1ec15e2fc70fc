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

import { Buffer } from "node:buffer";
import { bytesToLatin1, latin1Into } from "../kv/latin1.ts";
import type { KvPair } from "../kv/store.ts";
import { escapeField, fieldNeedsEscape, unescapeFieldView } from "./wal_line.ts";

const TAB = 0x09;
const BACKSLASH = 0x5c;
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

/** One pair's line from its key and value already escaped (for a value
 * escaped in steps, see escapeFieldSteps). */
export function encodeSnapshotLine(escapedKey: Uint8Array, escapedValue: Uint8Array): Uint8Array {
  const out = new Uint8Array(escapedKey.length + escapedValue.length + 2);
  out.set(escapedKey, 0);
  out[escapedKey.length] = TAB;
  out.set(escapedValue, escapedKey.length + 1);
  out[out.length - 1] = LF;
  return out;
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

/** The END line: where it starts, and what it promises. */
export type ParsedSnapshotTrailer =
  | { readonly ok: true; readonly start: number; readonly keys: number; readonly crc32: string }
  | { readonly ok: false; readonly error: string };

/** Reads the END line from `tail`, the last bytes of a file (`fileBytes`
 * long); `start` is the END line's offset in the file. */
export function parseSnapshotTrailer(tail: Uint8Array, fileBytes: number): ParsedSnapshotTrailer {
  if (tail.length === 0 || tail[tail.length - 1] !== LF) {
    return { ok: false, error: "Snapshot does not end with a newline (cut short?)" };
  }
  const at = tail.lastIndexOf(LF, tail.length - 2) + 1;
  const trailer = decoder.decode(tail.subarray(at, tail.length - 1)).split("\t");
  const keys = decimal(trailer[1]);
  if (
    (at === 0 && tail.length < fileBytes) || trailer[0] !== "END" || trailer.length !== 3 ||
    keys === null || !/^[0-9a-f]{8}$/.test(trailer[2]!)
  ) {
    return { ok: false, error: "Snapshot has no END line (cut short?)" };
  }
  return { ok: true, start: fileBytes - (tail.length - at), keys, crc32: trailer[2]! };
}

/** Longest END line: "END", a count and a checksum, with room to spare. */
export const snapshotTrailerBytesMax = 64;

/**
 * The key/value lines of a snapshot, fed in pieces of any size (a piece may
 * end inside a line; the rest of it is kept for the next). Pure. The caller
 * checks the checksum; this checks the lines themselves.
 */
export class SnapshotBodyParser {
  readonly pairs = new Map<string, string>();
  #carry: Uint8Array | null = null;
  /** Line number (1-based, the header is line 1) of the next line. */
  #lineNumber: number;

  constructor(firstLineNumber = 2) {
    this.#lineNumber = firstLineNumber;
  }

  /** Parses the whole lines in `piece` (after what was carried over); null
   * when fine, or what is wrong and on which line. */
  feed(piece: Uint8Array): { error: string; lineNumber: number } | null {
    let bytes = piece;
    if (this.#carry !== null) {
      const joined = new Uint8Array(this.#carry.length + piece.length);
      joined.set(this.#carry, 0);
      joined.set(piece, this.#carry.length);
      bytes = joined;
      this.#carry = null;
    }
    // Most fields hold no escape: those become strings straight from the
    // bytes, one native call each. Only a field with a backslash is unescaped.
    const raw = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    let backslash = bytes.indexOf(BACKSLASH);
    const field = (start: number, end: number): string | { error: string } => {
      if (backslash !== -1 && backslash < start) backslash = bytes.indexOf(BACKSLASH, start);
      if (backslash === -1 || backslash >= end) return raw.toString("latin1", start, end);
      const unescaped = unescapeFieldView(bytes, start, end);
      return typeof unescaped === "string" ? { error: unescaped } : bytesToLatin1(unescaped);
    };
    const pairs = this.pairs;
    let at = 0;
    for (;;) {
      const nl = bytes.indexOf(LF, at);
      if (nl < 0) break;
      const lineNumber = this.#lineNumber++;
      const tab = bytes.indexOf(TAB, at);
      if (tab < 0 || tab > nl) return { error: "Line has no TAB", lineNumber };
      const key = field(at, tab);
      if (typeof key !== "string") return { error: `Key: ${key.error}`, lineNumber };
      const value = field(tab + 1, nl);
      if (typeof value !== "string") return { error: `Value: ${value.error}`, lineNumber };
      const size = pairs.size;
      pairs.set(key, value);
      if (pairs.size === size) return { error: "Key appears twice", lineNumber };
      at = nl + 1;
    }
    if (at < bytes.length) this.#carry = bytes.slice(at);
    return null;
  }

  /** Call after the last piece: a line left without its newline is damage. */
  finish(): { error: string; lineNumber: number } | null {
    return this.#carry === null
      ? null
      : { error: "Last line before END has no newline", lineNumber: this.#lineNumber };
  }
}

/** Bytes per piece when a whole snapshot in memory is parsed with yields. */
const pieceBytes = 4 * 1024 * 1024;

/**
 * Parses and checks a whole snapshot file: header, every line, key count and
 * checksum. A generator that yields between pieces of about 4 MiB (some
 * 35,000 lines of 100-byte values), so a caller can let its event loop run
 * while a large snapshot loads (see parseSnapshot for the plain call).
 */
export function* snapshotParser(
  bytes: Uint8Array,
  crc32: (bytes: Uint8Array) => number,
): Generator<void, ParsedSnapshot> {
  const header = parseSnapshotHeader(bytes);
  if (!header.ok) return { ok: false, error: header.error, lineNumber: 1 };
  const trailer = parseSnapshotTrailer(
    bytes.subarray(Math.max(0, bytes.length - snapshotTrailerBytesMax)),
    bytes.length,
  );
  if (!trailer.ok || trailer.start < header.bytes) {
    return {
      ok: false,
      error: trailer.ok ? "Snapshot has no END line (cut short?)" : trailer.error,
      lineNumber: 0,
    };
  }
  const got = (crc32(bytes.subarray(0, trailer.start)) >>> 0).toString(16).padStart(8, "0");
  if (got !== trailer.crc32) {
    return {
      ok: false,
      error: `Checksum mismatch: END line says ${trailer.crc32}, bytes give ${got}`,
      lineNumber: 0,
    };
  }
  const body = new SnapshotBodyParser();
  for (let at = header.bytes; at < trailer.start; at += pieceBytes) {
    const bad = body.feed(bytes.subarray(at, Math.min(trailer.start, at + pieceBytes)));
    if (bad !== null) return { ok: false, ...bad };
    yield;
  }
  const bad = body.finish();
  if (bad !== null) return { ok: false, ...bad };
  return checkKeyCount(header.meta, body.pairs, trailer.keys);
}

/** The END line's key count against what the lines held. */
export function checkKeyCount(
  meta: SnapshotMeta,
  pairs: Map<string, string>,
  keys: number,
): ParsedSnapshot {
  if (pairs.size !== keys) {
    return {
      ok: false,
      error: `END line says ${keys} keys, file holds ${pairs.size}`,
      lineNumber: 0,
    };
  }
  return { ok: true, meta, pairs };
}

export function parseSnapshot(
  bytes: Uint8Array,
  crc32: (bytes: Uint8Array) => number,
): ParsedSnapshot {
  const steps = snapshotParser(bytes, crc32);
  for (;;) {
    const r = steps.next();
    if (r.done) return r.value;
  }
}
