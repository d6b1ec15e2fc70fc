// RESP2, the Redis wire protocol, in both directions: the server's incremental
// request parser (multibulk and inline commands), the reply encoders, and the
// client's command encoder and incremental reply parser.
//
// Callers: the client-connection shell in src/net (RequestParser + encoders),
// the client library in src/client (encodeCommand + ReplyParser), and tests.
//
// It must stay PURE: no Deno.*, no timers, no clocks, no randomness. Malformed
// input is bad input from the network, so the parsers never throw on it; they
// return a typed error and stay in that state. Declared lengths are checked
// against src/config/limits.ts before anything is allocated or awaited, so a
// hostile client cannot make us buffer more than it actually sends.
//
// Request parser states (the reply parser is the same idea plus a stack of
// open arrays):
//
//   idle ──'*'──▶ count ──n>0──▶ bulkHeader ──▶ bulkData ──last arg──▶ idle
//    │              └──n<=0 (skip)──▶ idle          ▲           │
//    │                                              └─more args─┘
//    └──other──▶ inline ──'\n'──▶ idle
//   any state ──framing error──▶ error (sticky)

import {
  argCountMax as defaultArgCountMax,
  bulkBytesMax as defaultBulkBytesMax,
  commandBytesMax as defaultCommandBytesMax,
  inlineBytesMax as defaultInlineBytesMax,
} from "../config/limits.ts";

export type Reply =
  | { kind: "simple"; value: string }
  | { kind: "error"; value: string }
  | { kind: "integer"; value: number }
  | { kind: "bulk"; value: Uint8Array | null } // null = nil bulk ($-1)
  | { kind: "array"; value: Reply[] | null }; // null = nil array (*-1)

export interface RequestLimits {
  argCountMax: number;
  bulkBytesMax: number;
  inlineBytesMax: number;
  /** Whole multibulk command, framing included: without it, many large
   * arguments could make one command need gigabytes before it completes. */
  commandBytesMax?: number;
}

export type ParsedRequest =
  | { kind: "command"; args: Uint8Array[] } // args.length >= 1
  | { kind: "incomplete" } // need more bytes
  | { kind: "error"; message: string }; // reply "-ERR Protocol error: <message>", then close

export type ParsedReply =
  | { kind: "reply"; reply: Reply }
  | { kind: "incomplete" }
  | { kind: "error"; message: string }; // malformed reply stream

type FramingError = { kind: "error"; message: string };

const CR = 0x0d;
const LF = 0x0a;
const PLUS = 0x2b;
const MINUS = 0x2d;
const COLON = 0x3a;
const DOLLAR = 0x24;
const STAR = 0x2a;
const ZERO = 0x30;
const BACKSLASH = 0x5c;
const DOUBLE_QUOTE = 0x22;
const SINGLE_QUOTE = 0x27;

/** Longest `*<n>` / `$<n>` line, prefix included, before its CR. Real lengths
 * need at most 21 bytes; anything longer is garbage we refuse to keep buffering. */
const lengthLineBytesMax = 64;

/** Most digits accepted in a declared length. 18 digits stay exact in a double
 * and exceed every limit, so longer numbers can only be hostile. */
const lengthDigitsMax = 18;

/** Most digits in an integer reply: int64 needs 19. Values beyond 2^53 lose
 * precision in a JS number; our server never sends them. */
const integerDigitsMax = 19;

/** Deepest array nesting the reply parser accepts. Real Redis replies nest a
 * handful of levels; callers may walk replies recursively, so a hostile server
 * must not be able to hand them a million-level tree. */
const replyDepthMax = 128;

/** Commands up to this size (framing included) get one copy whose views are
 * their args: one allocation instead of one per arg, which dominated parsing
 * time. Larger ones copy each arg separately, so that a value the store keeps
 * never pins more than this many bytes of its neighbours. */
const sharedCommandBytesMax = 1024;

/** A fresh connection's buffer: holds many pipelined small commands. */
const initialCapacityBytes = 16 * 1024;

/** Buffers grown past this (by a large value) are dropped once drained, so an
 * idle connection does not pin megabytes. */
const idleCapacityBytesMax = 1024 * 1024;

const textEncoder = new TextEncoder();
const textDecoder = new TextDecoder();

const requestIncomplete: ParsedRequest = Object.freeze({ kind: "incomplete" });
const replyIncomplete: ParsedReply = Object.freeze({ kind: "incomplete" });

const defaultRequestLimits: RequestLimits = Object.freeze({
  argCountMax: defaultArgCountMax,
  bulkBytesMax: defaultBulkBytesMax,
  inlineBytesMax: defaultInlineBytesMax,
  commandBytesMax: defaultCommandBytesMax,
});

// Results of ByteQueue.findLengthLine besides the CR's offset.
const lineIncomplete = -1;
const lineTooLong = -2;
const lineBadEnd = -3;

/**
 * Received bytes not yet handed out as commands or replies. All offsets in its API are relative to the
 * first unconsumed byte, so they survive compaction. It copies pushed chunks
 * (callers may reuse theirs) and hands out copies, never views, because its
 * storage is rewritten by later pushes.
 */
class ByteQueue {
  #buf: Uint8Array = new Uint8Array(initialCapacityBytes);
  // Invariant: 0 <= #start <= #end <= #buf.length.
  #start = 0;
  #end = 0;

  get length(): number {
    return this.#end - this.#start;
  }

  /** `wantBytes` is how many bytes (from the first unconsumed one) the element
   * being parsed needs in total, or 0 if unknown; it lets a large bulk grow the
   * buffer to its exact size instead of overshooting by up to 2x. */
  append(chunk: Uint8Array, wantBytes: number): void {
    const n = chunk.length;
    if (n === 0) return;
    if (this.#end + n > this.#buf.length) this.#makeRoom(n, wantBytes);
    this.#buf.set(chunk, this.#end);
    this.#end += n;
  }

  #makeRoom(n: number, wantBytes: number): void {
    const live = this.#end - this.#start;
    const need = live + n;
    const capacity = this.#buf.length;
    // Moving `live` bytes to the front is paid for when at least as many bytes
    // were consumed since the front was last used (so total moves stay linear
    // in bytes received), or when it is the only move the current element
    // needs. Otherwise grow geometrically.
    const paidFor = live <= this.#start;
    const lastMove = wantBytes >= need && wantBytes <= capacity;
    if (need <= capacity && (paidFor || lastMove)) {
      this.#buf.copyWithin(0, this.#start, this.#end);
    } else {
      let grown = Math.max(need, capacity * 2);
      if (wantBytes >= need) grown = Math.min(grown, wantBytes);
      const next = new Uint8Array(grown);
      next.set(this.#buf.subarray(this.#start, this.#end));
      this.#buf = next;
    }
    this.#start = 0;
    this.#end = live;
  }

  consume(n: number): void {
    this.#start += n;
    if (this.#start < this.#end) return;
    this.#start = 0;
    this.#end = 0;
    if (this.#buf.length > idleCapacityBytesMax) this.#buf = new Uint8Array(initialCapacityBytes);
  }

  /** Frees the storage; used once a parser has failed for good. */
  release(): void {
    this.#buf = new Uint8Array(0);
    this.#start = 0;
    this.#end = 0;
  }

  byteAt(offset: number): number {
    return this.#buf[this.#start + offset] ?? -1;
  }

  /** Offset of the first `byte` in [from, to), or -1. */
  indexOf(byte: number, from: number, to: number): number {
    // A plain loop: the searched ranges are short (length lines) or searched
    // once (inline lines), and it avoids allocating a view per call.
    const buf = this.#buf;
    const start = this.#start;
    for (let i = start + from, end = start + to; i < end; i++) {
      if (buf[i] === byte) return i - start;
    }
    return -1;
  }

  /** An independent copy of [from, to). */
  copy(from: number, to: number): Uint8Array {
    return this.#buf.slice(this.#start + from, this.#start + to);
  }

  /** A view of [from, to), valid only until the next append or consume. */
  peek(from: number, to: number): Uint8Array {
    return this.#buf.subarray(this.#start + from, this.#start + to);
  }

  /**
   * Locates the CR that ends a `*<n>` / `$<n>` line starting at offset
   * `from`, or reports why it cannot yet: the line is incomplete, longer than
   * `lineBytesMax` (judged the same however the bytes were split), or its CR
   * is not followed by LF.
   */
  findLengthLine(from: number, lineBytesMax: number): number {
    const length = this.length;
    const cr = this.indexOf(CR, from + 1, Math.min(length, from + lineBytesMax + 1));
    if (cr < 0) return length - from > lineBytesMax ? lineTooLong : lineIncomplete;
    if (cr + 1 >= length) return lineIncomplete;
    return this.byteAt(cr + 1) === LF ? cr : lineBadEnd;
  }

  /** Strict decimal like Redis's string2ll: optional '-', no '+', no leading
   * zeros, no "-0", no spaces. NaN when malformed. */
  parseInteger(from: number, to: number, digitsMax: number): number {
    const buf = this.#buf;
    let i = this.#start + from;
    const end = this.#start + to;
    const negative = i < end && buf[i] === MINUS;
    if (negative) i++;
    const digits = end - i;
    if (digits < 1 || digits > digitsMax) return NaN;
    if (buf[i] === ZERO && (digits > 1 || negative)) return NaN;
    let value = 0;
    for (; i < end; i++) {
      const digit = (buf[i] ?? -1) - ZERO;
      if (digit < 0 || digit > 9) return NaN;
      value = value * 10 + digit;
    }
    return negative ? -value : value;
  }
}

function describeByte(byte: number): string {
  return byte >= 0x20 && byte < 0x7f
    ? String.fromCharCode(byte)
    : `\\x${byte.toString(16).padStart(2, "0")}`;
}

type RequestPhase = "idle" | "count" | "bulkHeader" | "bulkData" | "inline" | "error";

/**
 * Server-side incremental request parser. Feed it whatever the socket gives
 * (`push`), then call `next` until it says "incomplete". Each call does work
 * proportional to the new bytes only: it keeps its place inside a request.
 */
export class RequestParser {
  readonly #limits: Required<RequestLimits>;
  readonly #queue = new ByteQueue();
  #phase: RequestPhase = "idle";
  #error: FramingError = { kind: "error", message: "" };
  /** Inline line bytes already searched for '\n' (none was there). */
  #inlineScannedBytes = 0;
  // A multibulk command stays in the queue until its last arg arrives; these
  // locate its args there. Offsets are relative to the queue's first byte,
  // which is the command's '*'.
  #argsExpected = 0;
  /** Where parsing resumes inside the current command. */
  #cursor = 0;
  #argOffsets: number[] = [];
  #argLengths: number[] = [];
  #bulkBytes = 0;

  constructor(limits: RequestLimits = defaultRequestLimits) {
    const { argCountMax, bulkBytesMax, inlineBytesMax } = limits;
    for (
      const [name, value] of [
        ["argCountMax", argCountMax],
        ["bulkBytesMax", bulkBytesMax],
        ["inlineBytesMax", inlineBytesMax],
      ] as const
    ) {
      if (!Number.isSafeInteger(value) || value < 1) {
        throw new RangeError(`Request limit ${name} must be a positive integer, got ${value}`);
      }
    }
    const commandBytesMax = limits.commandBytesMax ?? defaultCommandBytesMax;
    if (!Number.isSafeInteger(commandBytesMax) || commandBytesMax < 1) {
      throw new RangeError(
        `Request limit commandBytesMax must be a positive integer, got ${commandBytesMax}`,
      );
    }
    this.#limits = { argCountMax, bulkBytesMax, inlineBytesMax, commandBytesMax };
  }

  /** Bytes received and not yet returned as a command, a partly received one included. */
  get bufferedBytes(): number {
    return this.#queue.length;
  }

  push(chunk: Uint8Array): void {
    if (this.#phase === "error") return; // the connection is being closed; keep nothing
    const wantBytes = this.#phase === "bulkData" ? this.#cursor + this.#bulkBytes + 2 : 0;
    this.#queue.append(chunk, wantBytes);
  }

  next(): ParsedRequest {
    const queue = this.#queue;
    for (;;) {
      switch (this.#phase) {
        case "error":
          return this.#error;

        case "idle":
          if (queue.length === 0) return requestIncomplete;
          this.#phase = queue.byteAt(0) === STAR ? "count" : "inline";
          break;

        case "count": {
          const cr = queue.findLengthLine(0, lengthLineBytesMax);
          if (cr === lineIncomplete) return requestIncomplete;
          if (cr === lineTooLong) return this.#fail("too big mbulk count string");
          const count = cr < 0 ? NaN : queue.parseInteger(1, cr, lengthDigitsMax);
          if (Number.isNaN(count) || count > this.#limits.argCountMax) {
            return this.#fail("invalid multibulk length");
          }
          if (count <= 0) {
            // Redis treats "*0" and "*-1" as nothing to do, not as an error.
            queue.consume(cr + 2);
            this.#phase = "idle";
            break;
          }
          this.#argsExpected = count;
          this.#cursor = cr + 2;
          this.#phase = "bulkHeader";
          break;
        }

        case "bulkHeader": {
          const cursor = this.#cursor;
          if (queue.length <= cursor) return requestIncomplete;
          const first = queue.byteAt(cursor);
          if (first !== DOLLAR) return this.#fail(`expected '$', got '${describeByte(first)}'`);
          const cr = queue.findLengthLine(cursor, lengthLineBytesMax);
          if (cr === lineIncomplete) return requestIncomplete;
          if (cr === lineTooLong) return this.#fail("too big bulk count string");
          const bulkBytes = cr < 0 ? NaN : queue.parseInteger(cursor + 1, cr, lengthDigitsMax);
          if (Number.isNaN(bulkBytes) || bulkBytes < 0 || bulkBytes > this.#limits.bulkBytesMax) {
            return this.#fail("invalid bulk length");
          }
          // The cursor counts from the start of this command.
          if (cr + 2 + bulkBytes + 2 > this.#limits.commandBytesMax) {
            return this.#fail(`command larger than ${this.#limits.commandBytesMax} bytes`);
          }
          this.#cursor = cr + 2;
          this.#bulkBytes = bulkBytes;
          this.#phase = "bulkData";
          break;
        }

        case "bulkData": {
          const cursor = this.#cursor;
          const end = cursor + this.#bulkBytes;
          const available = queue.length;
          // Check the terminator as soon as each byte of it is here, so a bad
          // stream fails at the same point however it was split.
          if (
            (available > end && queue.byteAt(end) !== CR) ||
            (available > end + 1 && queue.byteAt(end + 1) !== LF)
          ) {
            return this.#fail("expected CRLF after bulk data");
          }
          if (available < end + 2) return requestIncomplete;
          this.#argOffsets.push(cursor);
          this.#argLengths.push(this.#bulkBytes);
          this.#cursor = end + 2;
          if (this.#argOffsets.length < this.#argsExpected) {
            this.#phase = "bulkHeader";
            break;
          }
          this.#phase = "idle";
          return { kind: "command", args: this.#takeArgs() };
        }

        case "inline": {
          const inlineBytesMax = this.#limits.inlineBytesMax;
          const searchEnd = Math.min(queue.length, inlineBytesMax + 1);
          const lf = queue.indexOf(LF, this.#inlineScannedBytes, searchEnd);
          if (lf < 0) {
            if (queue.length > inlineBytesMax) return this.#fail("too big inline request");
            this.#inlineScannedBytes = queue.length;
            return requestIncomplete;
          }
          const lineEnd = lf > 0 && queue.byteAt(lf - 1) === CR ? lf - 1 : lf;
          const args = splitInlineArgs(queue.peek(0, lineEnd));
          queue.consume(lf + 1);
          this.#inlineScannedBytes = 0;
          if (args === null) return this.#fail("unbalanced quotes in request");
          this.#phase = "idle";
          if (args.length > 0) return { kind: "command", args };
          break; // blank line: nothing to run, like Redis
        }
      }
    }
  }

  /** Copies the finished command's args out of the queue and consumes it. */
  #takeArgs(): Uint8Array[] {
    const queue = this.#queue;
    const offsets = this.#argOffsets;
    const lengths = this.#argLengths;
    const commandBytes = this.#cursor;
    const args = new Array<Uint8Array>(offsets.length);
    // Views of one block are safe to hand out: nothing writes to it afterwards.
    const block = commandBytes <= sharedCommandBytesMax ? queue.copy(0, commandBytes) : null;
    for (let i = 0; i < offsets.length; i++) {
      const offset = offsets[i] ?? 0;
      const end = offset + (lengths[i] ?? 0);
      args[i] = block === null ? queue.copy(offset, end) : block.subarray(offset, end);
    }
    queue.consume(commandBytes);
    offsets.length = 0;
    lengths.length = 0;
    this.#cursor = 0;
    return args;
  }

  #fail(message: string): FramingError {
    this.#phase = "error";
    this.#error = { kind: "error", message };
    this.#queue.release();
    this.#argOffsets.length = 0;
    this.#argLengths.length = 0;
    return this.#error;
  }
}

/** C's isspace(), which Redis uses to skip blanks between inline arguments. */
function isSpace(byte: number): boolean {
  return byte === 0x20 || (byte >= 0x09 && byte <= 0x0d);
}

function hexValue(byte: number): number {
  if (byte >= 0x30 && byte <= 0x39) return byte - 0x30;
  if (byte >= 0x61 && byte <= 0x66) return byte - 0x61 + 10;
  if (byte >= 0x41 && byte <= 0x46) return byte - 0x41 + 10;
  return -1;
}

function escapedByte(byte: number): number {
  switch (byte) {
    case 0x6e: // n
      return 0x0a;
    case 0x72: // r
      return 0x0d;
    case 0x74: // t
      return 0x09;
    case 0x62: // b
      return 0x08;
    case 0x61: // a
      return 0x07;
    default: // \\, \" and any other byte stand for themselves
      return byte;
  }
}

/**
 * Splits an inline command line the way Redis's sdssplitargs does, so
 * `redis-cli`-style and telnet users see the same behaviour. One deliberate
 * difference: NUL is an ordinary byte here (C string handling makes Redis stop
 * at it). Returns null for unbalanced quotes, or a closing quote followed by
 * something other than a blank.
 */
function splitInlineArgs(line: Uint8Array): Uint8Array[] | null {
  const args: Uint8Array[] = [];
  const n = line.length;
  // Tokens are written one after another into `out`; escapes only ever
  // shrink text, so they all fit. Short lines hand out views of it (one
  // allocation, never written again), long ones copies, as for multibulk.
  const out = new Uint8Array(n);
  const shareOut = n <= sharedCommandBytesMax;
  let written = 0;
  let p = 0;
  for (;;) {
    while (p < n && isSpace(line[p] ?? 0)) p++;
    if (p >= n) return args;
    const tokenStart = written;
    let inDouble = false;
    let inSingle = false;
    let done = false;
    while (!done) {
      if (p >= n) {
        if (inDouble || inSingle) return null;
        break;
      }
      const c = line[p] ?? 0;
      const after = p + 1 < n ? (line[p + 1] ?? -1) : -1;
      if (inDouble) {
        if (c === BACKSLASH && after === 0x78 /* x */) {
          const high = p + 2 < n ? hexValue(line[p + 2] ?? -1) : -1;
          const low = p + 3 < n ? hexValue(line[p + 3] ?? -1) : -1;
          if (high >= 0 && low >= 0) {
            out[written++] = high * 16 + low;
            p += 3;
          } else {
            out[written++] = escapedByte(after);
            p++;
          }
        } else if (c === BACKSLASH && after >= 0) {
          out[written++] = escapedByte(after);
          p++;
        } else if (c === DOUBLE_QUOTE) {
          if (after >= 0 && !isSpace(after)) return null;
          done = true;
        } else {
          out[written++] = c;
        }
      } else if (inSingle) {
        if (c === BACKSLASH && after === SINGLE_QUOTE) {
          out[written++] = SINGLE_QUOTE;
          p++;
        } else if (c === SINGLE_QUOTE) {
          if (after >= 0 && !isSpace(after)) return null;
          done = true;
        } else {
          out[written++] = c;
        }
      } else if (c === 0x20 || c === LF || c === CR || c === 0x09) {
        done = true;
      } else if (c === DOUBLE_QUOTE) {
        inDouble = true;
      } else if (c === SINGLE_QUOTE) {
        inSingle = true;
      } else {
        out[written++] = c;
      }
      p++;
    }
    args.push(shareOut ? out.subarray(tokenStart, written) : out.slice(tokenStart, written));
  }
}

// ---------------------------------------------------------------- encoders

function sanitizeLine(s: string): string {
  // A CR or LF would end the line early and desynchronise the client.
  return s.replace(/[\r\n]/g, " ");
}

/** Bytes TextEncoder will produce for `s` (lone surrogates become U+FFFD). */
function utf8Length(s: string): number {
  let bytes = 0;
  for (let i = 0; i < s.length; i++) {
    const unit = s.charCodeAt(i);
    if (unit < 0x80) bytes += 1;
    else if (unit < 0x800) bytes += 2;
    else if (
      unit >= 0xd800 && unit <= 0xdbff && i + 1 < s.length &&
      (s.charCodeAt(i + 1) & 0xfc00) === 0xdc00
    ) {
      bytes += 4;
      i++;
    } else bytes += 3;
  }
  return bytes;
}

function headerLength(n: number): number {
  return 1 + String(n).length + 2;
}

/** Writes `<prefix><n>\r\n` at `pos`; returns the position after it. */
function writeHeader(out: Uint8Array, pos: number, prefix: number, n: number): number {
  out[pos++] = prefix;
  const digits = String(n);
  for (let i = 0; i < digits.length; i++) out[pos++] = digits.charCodeAt(i);
  out[pos++] = CR;
  out[pos++] = LF;
  return pos;
}

function encodeLine(prefix: number, s: string): Uint8Array {
  const body = textEncoder.encode(sanitizeLine(s));
  const out = new Uint8Array(body.length + 3);
  out[0] = prefix;
  out.set(body, 1);
  out[body.length + 1] = CR;
  out[body.length + 2] = LF;
  return out;
}

function assertInteger(n: number): void {
  if (!Number.isSafeInteger(n)) {
    throw new RangeError(`RESP integer must be a safe integer, got ${n}`);
  }
}

/** `+s\r\n`; CR/LF in `s` become spaces. */
export function encodeSimple(s: string): Uint8Array {
  return encodeLine(PLUS, s);
}

/** `-s\r\n`; CR/LF in `s` become spaces. */
/** The words a leader's TRYAGAIN carries when a write is in its log but not
 * committed in time: clients must not send such a write again (it may still
 * be applied), and src/client/client.ts looks for exactly these words. */
export const writeMayStillApplyText = "it may still apply";

export function encodeError(s: string): Uint8Array {
  return encodeLine(MINUS, s);
}

/** `:n\r\n`. Throws on a non-integer: that is a bug in the caller. */
export function encodeInteger(n: number): Uint8Array {
  assertInteger(n);
  const out = new Uint8Array(headerLength(n));
  writeHeader(out, 0, COLON, n);
  return out;
}

/** `$len\r\n<bytes>\r\n`, or `$-1\r\n` for nil. */
export function encodeBulk(b: Uint8Array | null): Uint8Array {
  if (b === null) return Uint8Array.of(DOLLAR, MINUS, 0x31, CR, LF);
  const out = new Uint8Array(headerLength(b.length) + b.length + 2);
  const pos = writeHeader(out, 0, DOLLAR, b.length);
  out.set(b, pos);
  out[pos + b.length] = CR;
  out[pos + b.length + 1] = LF;
  return out;
}

/** `*N\r\n` followed by already-encoded replies, or `*-1\r\n` for nil. */
export function encodeArray(items: readonly Uint8Array[] | null): Uint8Array {
  if (items === null) return Uint8Array.of(STAR, MINUS, 0x31, CR, LF);
  let size = headerLength(items.length);
  for (const item of items) size += item.length;
  const out = new Uint8Array(size);
  let pos = writeHeader(out, 0, STAR, items.length);
  for (const item of items) {
    out.set(item, pos);
    pos += item.length;
  }
  return out;
}

function replySize(r: Reply): number {
  switch (r.kind) {
    case "simple":
    case "error":
      return 1 + utf8Length(sanitizeLine(r.value)) + 2;
    case "integer":
      assertInteger(r.value);
      return headerLength(r.value);
    case "bulk":
      return r.value === null ? 5 : headerLength(r.value.length) + r.value.length + 2;
    case "array": {
      if (r.value === null) return 5;
      let size = headerLength(r.value.length);
      for (const item of r.value) size += replySize(item);
      return size;
    }
  }
}

function writeReply(r: Reply, out: Uint8Array, pos: number): number {
  switch (r.kind) {
    case "simple":
    case "error": {
      out[pos++] = r.kind === "simple" ? PLUS : MINUS;
      pos += textEncoder.encodeInto(sanitizeLine(r.value), out.subarray(pos)).written;
      out[pos++] = CR;
      out[pos++] = LF;
      return pos;
    }
    case "integer":
      return writeHeader(out, pos, COLON, r.value);
    case "bulk": {
      if (r.value === null) return writeHeader(out, pos, DOLLAR, -1);
      pos = writeHeader(out, pos, DOLLAR, r.value.length);
      out.set(r.value, pos);
      pos += r.value.length;
      out[pos++] = CR;
      out[pos++] = LF;
      return pos;
    }
    case "array": {
      if (r.value === null) return writeHeader(out, pos, STAR, -1);
      pos = writeHeader(out, pos, STAR, r.value.length);
      for (const item of r.value) pos = writeReply(item, out, pos);
      return pos;
    }
  }
}

/** Any reply, nested arrays included, in one exactly-sized allocation. */
export function encodeReply(r: Reply): Uint8Array {
  const out = new Uint8Array(replySize(r));
  const end = writeReply(r, out, 0);
  if (end !== out.length) throw new Error(`Reply size mismatch: sized ${out.length}, wrote ${end}`);
  return out;
}

/** Client side: a command as a multibulk request; strings are sent as UTF-8. */
export function encodeCommand(args: readonly (string | Uint8Array)[]): Uint8Array {
  let size = headerLength(args.length);
  for (const arg of args) {
    const length = typeof arg === "string" ? utf8Length(arg) : arg.length;
    size += headerLength(length) + length + 2;
  }
  const out = new Uint8Array(size);
  let pos = writeHeader(out, 0, STAR, args.length);
  for (const arg of args) {
    if (typeof arg === "string") {
      pos = writeHeader(out, pos, DOLLAR, utf8Length(arg));
      pos += textEncoder.encodeInto(arg, out.subarray(pos)).written;
    } else {
      pos = writeHeader(out, pos, DOLLAR, arg.length);
      out.set(arg, pos);
      pos += arg.length;
    }
    out[pos++] = CR;
    out[pos++] = LF;
  }
  return out;
}

// ------------------------------------------------------------ reply parser

interface OpenArray {
  readonly items: Reply[];
  readonly expected: number;
}

/**
 * Client-side incremental reply parser. Nested arrays are kept on an explicit
 * stack of open arrays, so a reply split anywhere resumes where it stopped and
 * no input can recurse the parser.
 */
export class ReplyParser {
  readonly #bulkBytesMax: number;
  readonly #queue = new ByteQueue();
  readonly #open: OpenArray[] = [];
  #error: FramingError | null = null;
  /** Length of the bulk whose data we are waiting for, or -1. */
  #bulkBytes = -1;
  /** Bytes of a +/-/: line already searched for CR (none was there). */
  #lineScannedBytes = 0;

  constructor(bulkBytesMax: number = defaultBulkBytesMax) {
    if (!Number.isSafeInteger(bulkBytesMax) || bulkBytesMax < 1) {
      throw new RangeError(`bulkBytesMax must be a positive integer, got ${bulkBytesMax}`);
    }
    this.#bulkBytesMax = bulkBytesMax;
  }

  push(chunk: Uint8Array): void {
    if (this.#error !== null) return;
    this.#queue.append(chunk, this.#bulkBytes >= 0 ? this.#bulkBytes + 2 : 0);
  }

  next(): ParsedReply {
    for (;;) {
      if (this.#error !== null) return this.#error;
      const element = this.#nextElement();
      if (element === null) return replyIncomplete;
      if (element === "open") continue;
      if ("message" in element) return element;
      const whole = this.#attach(element);
      if (whole !== null) return { kind: "reply", reply: whole };
    }
  }

  /** Adds a finished element to the innermost open array, closing every array
   * that becomes full; returns the top-level reply once there is one. */
  #attach(element: Reply): Reply | null {
    let done = element;
    for (;;) {
      const top = this.#open[this.#open.length - 1];
      if (top === undefined) return done;
      top.items.push(done);
      if (top.items.length < top.expected) return null;
      this.#open.pop();
      done = { kind: "array", value: top.items };
    }
  }

  /** One element: a finished Reply, "open" after an array header, null if more
   * bytes are needed, or the (now sticky) error. */
  #nextElement(): Reply | "open" | FramingError | null {
    const queue = this.#queue;
    if (this.#bulkBytes >= 0) {
      const bulkBytes = this.#bulkBytes;
      const available = queue.length;
      if (
        (available > bulkBytes && queue.byteAt(bulkBytes) !== CR) ||
        (available > bulkBytes + 1 && queue.byteAt(bulkBytes + 1) !== LF)
      ) {
        return this.#fail("expected CRLF after bulk data");
      }
      if (available < bulkBytes + 2) return null;
      const value = queue.copy(0, bulkBytes);
      queue.consume(bulkBytes + 2);
      this.#bulkBytes = -1;
      return { kind: "bulk", value };
    }
    if (queue.length === 0) return null;
    const type = queue.byteAt(0);
    switch (type) {
      case PLUS:
      case MINUS:
      case COLON: {
        const lineBytesMax = this.#bulkBytesMax + 1;
        const searchFrom = Math.max(1, this.#lineScannedBytes);
        const cr = queue.indexOf(CR, searchFrom, Math.min(queue.length, lineBytesMax + 1));
        if (cr < 0) {
          if (queue.length > lineBytesMax) return this.#fail("reply line too long");
          this.#lineScannedBytes = queue.length;
          return null;
        }
        if (cr + 1 >= queue.length) {
          this.#lineScannedBytes = cr;
          return null;
        }
        if (queue.byteAt(cr + 1) !== LF) return this.#fail("expected CRLF after reply line");
        let reply: Reply;
        if (type === COLON) {
          const value = queue.parseInteger(1, cr, integerDigitsMax);
          if (Number.isNaN(value)) return this.#fail("invalid integer reply");
          reply = { kind: "integer", value };
        } else {
          const value = textDecoder.decode(queue.peek(1, cr));
          reply = type === PLUS ? { kind: "simple", value } : { kind: "error", value };
        }
        queue.consume(cr + 2);
        this.#lineScannedBytes = 0;
        return reply;
      }
      case DOLLAR:
      case STAR: {
        const cr = queue.findLengthLine(0, lengthLineBytesMax);
        if (cr === lineIncomplete) return null;
        const isBulk = type === DOLLAR;
        const invalid = isBulk ? "invalid bulk length" : "invalid multibulk length";
        const n = cr < 0 ? NaN : queue.parseInteger(1, cr, lengthDigitsMax);
        if (Number.isNaN(n) || n < -1) return this.#fail(invalid);
        if (isBulk && n > this.#bulkBytesMax) return this.#fail(invalid);
        queue.consume(cr + 2);
        if (n === -1) {
          return isBulk ? { kind: "bulk", value: null } : { kind: "array", value: null };
        }
        if (isBulk) {
          this.#bulkBytes = n;
          return "open";
        }
        if (n === 0) return { kind: "array", value: [] };
        if (this.#open.length >= replyDepthMax) return this.#fail("reply nested too deeply");
        this.#open.push({ items: [], expected: n });
        return "open";
      }
      default:
        return this.#fail(`unexpected reply type byte '${describeByte(type)}'`);
    }
  }

  #fail(message: string): FramingError {
    this.#error = { kind: "error", message };
    this.#queue.release();
    this.#open.length = 0;
    return this.#error;
  }
}
