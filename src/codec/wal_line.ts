// One WAL line ⇄ one log record: `<seq>\t<op>\t<key>\t<value>\n`, with SET,
// DEL and the leader's TERM marker. The WAL file layer (src/storage/wal_file.ts)
// and replication (which ships these exact lines to followers) call it.
// PURE: no Deno.*, no timers, no clocks, no randomness, and the decoder never
// throws on bad bytes — a WAL tail or a peer message may be garbage, and
// that is bad input to report, not a bug. Encoding an impossible record
// (index 0, term 0) is a bug in our own code, so `encodeWalLine` throws.
//
// Fields are escaped so that arbitrary key/value bytes round-trip while plain
// text stays readable in the file. The encoding is canonical: every byte string
// has exactly one escaped form, and the decoder refuses any other form. So a
// line that decodes re-encodes to the very same bytes, which lets followers
// store lines verbatim and lets tests compare WAL files byte for byte.

export type WalRecord =
  | { op: "SET"; index: number; key: Uint8Array; value: Uint8Array }
  | { op: "DEL"; index: number; key: Uint8Array }
  | { op: "TERM"; index: number; term: number };

export interface DecodeOptions {
  /** Return a key or value that needs no unescaping as a view of `line`
   * instead of a copy. For callers that keep `line` alive anyway (the Raft log
   * holds every line): it saves two allocations per entry on the hot path. */
  readonly share?: boolean;
}

export type DecodeResult = { ok: true; record: WalRecord } | { ok: false; error: string };

const TAB = 0x09;
const LF = 0x0a;
const CR = 0x0d;
const NUL = 0x00;
const BACKSLASH = 0x5c;
const DEL_BYTE = 0x7f;
const DIGIT_0 = 0x30;
const DIGIT_9 = 0x39;
const LETTER_X = 0x78;

const OP_SET = new Uint8Array([0x53, 0x45, 0x54]); // "SET"
const OP_DEL = new Uint8Array([0x44, 0x45, 0x4c]); // "DEL"
const OP_TERM = new Uint8Array([0x54, 0x45, 0x52, 0x4d]); // "TERM"

/** Longest decimal we accept for seq and term: 16 digits covers every safe
 * integer, and refusing longer runs keeps the parser's arithmetic exact. */
const decimalDigitsMax = 16;

/** How much of an offending field an error message quotes, in input bytes.
 * Enough to recognise it; a 16 MiB value must not end up in a log line. */
const quotedBytesMax = 48;

// Byte classes for the escaper's scan; one table lookup per byte keeps the
// common all-plain-text case a tight loop.
const LITERAL = 0; // printable ASCII except backslash: written as is
const SHORT_ESCAPE = 1; // `\\`, TAB, LF, CR, NUL: two-byte escape
const HEX_ESCAPE = 2; // other control bytes and 0x7F: `\xHH`
const HIGH = 3; // ≥ 0x80: literal inside valid UTF-8, `\xHH` otherwise

const BYTE_CLASS: Uint8Array = (() => {
  const table = new Uint8Array(256);
  for (let b = 0; b < 256; b++) {
    if (b === BACKSLASH || b === TAB || b === LF || b === CR || b === NUL) {
      table[b] = SHORT_ESCAPE;
    } else if (b < 0x20 || b === DEL_BYTE) table[b] = HEX_ESCAPE;
    else if (b >= 0x80) table[b] = HIGH;
    else table[b] = LITERAL;
  }
  return table;
})();

/** The letter after the backslash for bytes with a short escape. */
const SHORT_ESCAPE_LETTER: ReadonlyMap<number, number> = new Map([
  [BACKSLASH, BACKSLASH],
  [TAB, 0x74], // t
  [LF, 0x6e], // n
  [CR, 0x72], // r
  [NUL, DIGIT_0], // 0
]);

// Lowercase only, so each byte has exactly one spelling.
const HEX_DIGITS = new TextEncoder().encode("0123456789abcdef");

const utf8Decoder = new TextDecoder();

/**
 * Length of the well-formed UTF-8 sequence starting at `bytes[i]` (reading no
 * further than `end`), or 0 if there is none. Well-formed means RFC 3629:
 * no overlong forms, no surrogates, nothing above U+10FFFF — exactly what a
 * strict UTF-8 decoder accepts, so what we write literally any editor shows.
 */
function utf8SequenceLength(bytes: Uint8Array, i: number, end: number): number {
  const b0 = bytes[i]!;
  if (b0 < 0xc2) return 0; // continuation byte or overlong 2-byte lead
  if (b0 < 0xe0) return i + 1 < end && isContinuation(bytes[i + 1]!) ? 2 : 0;
  if (b0 < 0xf0) {
    if (i + 2 >= end) return 0;
    const b1 = bytes[i + 1]!;
    const low = b0 === 0xe0 ? 0xa0 : 0x80; // E0 80..9F would be overlong
    const high = b0 === 0xed ? 0x9f : 0xbf; // ED A0..BF would be a surrogate
    return b1 >= low && b1 <= high && isContinuation(bytes[i + 2]!) ? 3 : 0;
  }
  if (b0 < 0xf5) {
    if (i + 3 >= end) return 0;
    const b1 = bytes[i + 1]!;
    const low = b0 === 0xf0 ? 0x90 : 0x80; // F0 80..8F would be overlong
    const high = b0 === 0xf4 ? 0x8f : 0xbf; // F4 90.. would pass U+10FFFF
    return b1 >= low && b1 <= high && isContinuation(bytes[i + 2]!) &&
        isContinuation(bytes[i + 3]!)
      ? 4
      : 0;
  }
  return 0;
}

function isContinuation(b: number): boolean {
  return (b & 0xc0) === 0x80;
}

/** Index of the first byte in [start, end) that must be escaped, or -1. */
function firstEscapeIndex(bytes: Uint8Array, start: number, end: number): number {
  let i = start;
  while (i < end) {
    const cls = BYTE_CLASS[bytes[i]!]!;
    if (cls === LITERAL) {
      i++;
      continue;
    }
    if (cls === HIGH) {
      const length = utf8SequenceLength(bytes, i, end);
      if (length > 0) {
        i += length;
        continue;
      }
    }
    return i;
  }
  return -1;
}

/** SHORT_ESCAPE_LETTER as a table: one lookup per byte on the hot path. */
const SHORT_ESCAPE_TABLE: Uint8Array = (() => {
  const t = new Uint8Array(256);
  for (const [b, letter] of SHORT_ESCAPE_LETTER) t[b] = letter;
  return t;
})();

/**
 * Escapes one field for a WAL line. Returns `bytes` itself (not a copy) when
 * nothing needs escaping, which is the common case for text keys and values.
 *
 * Two passes (size, then fill) so a large value is allocated once, exactly.
 * Both are plain loops over bytes: a 16 MiB binary value has millions of
 * tiny literal runs, and a callback or a subarray per run made escaping it
 * take most of a second, long enough to delay heartbeats.
 */
export function escapeField(bytes: Uint8Array): Uint8Array {
  const first = firstEscapeIndex(bytes, 0, bytes.length);
  if (first < 0) return bytes;
  return runToEnd(escapeSteps(bytes, first, Number.MAX_SAFE_INTEGER));
}

/** escapeField in steps: yields after about every `stepBytes` input bytes
 * of each pass, so a caller escaping a 16 MiB value can let its event loop
 * run in between. Same result as escapeField. */
export function* escapeFieldSteps(
  bytes: Uint8Array,
  stepBytes: number,
): Generator<void, Uint8Array> {
  const first = firstEscapeIndex(bytes, 0, bytes.length);
  if (first < 0) return bytes;
  return yield* escapeSteps(bytes, first, stepBytes);
}

function* escapeSteps(
  bytes: Uint8Array,
  first: number,
  stepBytes: number,
): Generator<void, Uint8Array> {
  const end = bytes.length;
  let size = first;
  let pauseAt = first + stepBytes;
  for (let i = first; i < end;) {
    if (i >= pauseAt) {
      yield;
      pauseAt = i + stepBytes;
    }
    const cls = BYTE_CLASS[bytes[i]!]!;
    if (cls === LITERAL) {
      size++;
      i++;
    } else if (cls === HIGH) {
      const length = utf8SequenceLength(bytes, i, end);
      size += length > 0 ? length : 4;
      i += length > 0 ? length : 1;
    } else {
      size += cls === SHORT_ESCAPE ? 2 : 4;
      i++;
    }
  }
  const out = new Uint8Array(size);
  out.set(bytes.subarray(0, first), 0);
  let w = first;
  pauseAt = first + stepBytes;
  for (let i = first; i < end;) {
    if (i >= pauseAt) {
      yield;
      pauseAt = i + stepBytes;
    }
    const b = bytes[i]!;
    const cls = BYTE_CLASS[b]!;
    if (cls === LITERAL) {
      out[w++] = b;
      i++;
      continue;
    }
    if (cls === HIGH) {
      const length = utf8SequenceLength(bytes, i, end);
      if (length > 0) {
        for (let k = 0; k < length; k++) out[w++] = bytes[i + k]!;
        i += length;
        continue;
      }
    }
    out[w++] = BACKSLASH;
    if (cls === SHORT_ESCAPE) {
      out[w++] = SHORT_ESCAPE_TABLE[b]!;
    } else {
      // HEX_ESCAPE, or a high byte outside valid UTF-8.
      out[w++] = LETTER_X;
      out[w++] = HEX_DIGITS[b >> 4]!;
      out[w++] = HEX_DIGITS[b & 0x0f]!;
    }
    i++;
  }
  return out;
}

/**
 * Reverses `escapeField`. Returns null when `field` is not something
 * `escapeField` could have produced: an unknown or malformed escape, a raw
 * byte that should have been escaped, or a non-canonical escape such as
 * `\x41` for "A". The result never aliases `field`.
 */
export function unescapeField(field: Uint8Array): Uint8Array | null {
  const result = unescapeRange(field, 0, field.length);
  return typeof result === "string" ? null : result;
}

/** Like unescapeField for field[start, end) of `bytes`, but a field that
 * needs no unescaping comes back as a view of `bytes`, and an error as text. */
export function unescapeFieldView(
  bytes: Uint8Array,
  start: number,
  end: number,
): Uint8Array | string {
  return unescapeRange(bytes, start, end, true);
}

/** True when bytes[start, end) would change under escapeField. */
export function fieldNeedsEscape(bytes: Uint8Array, start: number, end: number): boolean {
  return firstEscapeIndex(bytes, start, end) >= 0;
}

/** Unescapes field[start, end) into a fresh array, or explains why not. */
function unescapeRange(
  line: Uint8Array,
  start: number,
  end: number,
  share = false,
): Uint8Array | string {
  // Fast path: no backslash and nothing raw that needed escaping.
  const first = firstEscapeIndex(line, start, end);
  if (first < 0) return share ? line.subarray(start, end) : line.slice(start, end);
  return runToEnd(unescapeSteps(line, start, end, first, Number.MAX_SAFE_INTEGER));
}

function runToEnd<T>(steps: Generator<void, T>): T {
  for (;;) {
    const r = steps.next();
    if (r.done) return r.value;
  }
}

/** The slow path of unescapeRange from `first`, the first byte that needs
 * work; yields after about every `stepBytes` input bytes, so a caller can
 * spread a very large field over several turns of its event loop. */
function* unescapeSteps(
  line: Uint8Array,
  start: number,
  end: number,
  first: number,
  stepBytes: number,
): Generator<void, Uint8Array | string> {
  // Unescaping never lengthens, so one allocation of the escaped size suffices.
  const out = new Uint8Array(end - start);
  out.set(line.subarray(start, first), 0);
  let w = first - start;
  // Where escaped high bytes landed in `out`: each `\xHH` takes four input
  // bytes, so this many slots always suffice.
  let escapedHigh: Int32Array | null = null;
  let escapedHighCount = 0;
  let i = first;
  let pauseAt = first + stepBytes;
  while (i < end) {
    if (i >= pauseAt) {
      yield;
      pauseAt = i + stepBytes;
    }
    const b = line[i]!;
    const cls = BYTE_CLASS[b]!;
    if (cls === LITERAL) {
      out[w++] = b;
      i++;
      continue;
    }
    if (cls === HIGH) {
      const length = utf8SequenceLength(line, i, end);
      if (length === 0) return `Unescaped byte 0x${hex2(b)}`;
      for (let k = 0; k < length; k++) out[w++] = line[i + k]!;
      i += length;
      continue;
    }
    if (b !== BACKSLASH) return `Unescaped byte 0x${hex2(b)}`;
    if (i + 1 >= end) return "Backslash at end of field";
    const letter = line[i + 1]!;
    const short = shortEscapeByte(letter);
    if (short !== null) {
      out[w++] = short;
      i += 2;
      continue;
    }
    if (letter !== LETTER_X) return `Unknown escape "\\${quoteByte(letter)}"`;
    const hi = i + 2 < end ? hexValue(line[i + 2]!) : -1;
    const lo = i + 3 < end ? hexValue(line[i + 3]!) : -1;
    if (hi < 0 || lo < 0) {
      return `Malformed escape "${quoteText(line, i, Math.min(end, i + 4))}"`;
    }
    const value = (hi << 4) | lo;
    const valueClass = BYTE_CLASS[value]!;
    // Bytes with a shorter canonical form must not be spelt `\xHH`.
    if (valueClass === LITERAL || valueClass === SHORT_ESCAPE) {
      return `Non-canonical escape "${quoteText(line, i, i + 4)}"`;
    }
    if (valueClass === HIGH) {
      escapedHigh ??= new Int32Array(((end - first) >> 2) + 1);
      escapedHigh[escapedHighCount++] = w;
    }
    out[w++] = value;
    i += 4;
  }
  const result = out.subarray(0, w);
  // An escaped high byte is canonical only if, in context, it does not start
  // valid UTF-8 (which the escaper would have written literally). Literal
  // sequences were checked above, so the escaper walks the result in step
  // with this loop, and each escaped high byte is judged by what follows it.
  for (let k = 0; k < escapedHighCount; k++) {
    if (utf8SequenceLength(result, escapedHigh![k]!, w) > 0) {
      return "Non-canonical escape of UTF-8 bytes";
    }
  }
  return result;
}

function shortEscapeByte(letter: number): number | null {
  switch (letter) {
    case BACKSLASH:
      return BACKSLASH;
    case 0x74: // t
      return TAB;
    case 0x6e: // n
      return LF;
    case 0x72: // r
      return CR;
    case DIGIT_0:
      return NUL;
    default:
      return null;
  }
}

/** Value of a lowercase hex digit, or -1 (uppercase is not canonical). */
function hexValue(b: number): number {
  if (b >= DIGIT_0 && b <= DIGIT_9) return b - DIGIT_0;
  if (b >= 0x61 && b <= 0x66) return b - 0x61 + 10;
  return -1;
}

/** Encodes a record as one WAL line, including the trailing "\n". */
export function encodeWalLine(r: WalRecord): Uint8Array {
  assertPositiveSafeInteger(r.index, "index");
  switch (r.op) {
    case "TERM": {
      assertPositiveSafeInteger(r.term, "term");
      return joinLine(r.index, OP_TERM, [decimalBytes(r.term)]);
    }
    case "SET":
      return joinLine(r.index, OP_SET, [escapeField(r.key), escapeField(r.value)]);
    case "DEL":
      return joinLine(r.index, OP_DEL, [escapeField(r.key)]);
    default: {
      const unknown: never = r;
      throw new Error(`Unknown op ${JSON.stringify((unknown as { op: unknown }).op)}`);
    }
  }
}

function assertPositiveSafeInteger(n: number, name: string): void {
  if (!Number.isSafeInteger(n) || n < 1) {
    throw new RangeError(`WAL record ${name} must be a positive safe integer, got ${n}`);
  }
}

/** A SET line from a key and value already escaped (escapeFieldSteps), for
 * callers that escape a large value before they know its index. */
export function encodeEscapedSetLine(
  index: number,
  escapedKey: Uint8Array,
  escapedValue: Uint8Array,
): Uint8Array {
  assertPositiveSafeInteger(index, "index");
  return joinLine(index, OP_SET, [escapedKey, escapedValue]);
}

function joinLine(index: number, op: Uint8Array, fields: readonly Uint8Array[]): Uint8Array {
  const digits = decimalLength(index);
  let size = digits + 1 + op.length + 1; // seq TAB op … LF
  for (const field of fields) size += 1 + field.length;
  const out = new Uint8Array(size);
  writeDecimal(out, digits, index);
  let w = digits;
  out[w++] = TAB;
  out.set(op, w);
  w += op.length;
  for (const field of fields) {
    out[w++] = TAB;
    out.set(field, w);
    w += field.length;
  }
  out[w] = LF;
  return out;
}

function decimalLength(n: number): number {
  let digits = 1;
  while (n >= 10) {
    n = Math.floor(n / 10);
    digits++;
  }
  return digits;
}

/** Writes `n` in decimal so that its last digit lands at out[end - 1]. */
function writeDecimal(out: Uint8Array, end: number, n: number): void {
  let i = end;
  do {
    out[--i] = DIGIT_0 + (n % 10);
    n = Math.floor(n / 10);
  } while (n > 0);
}

function decimalBytes(n: number): Uint8Array {
  const out = new Uint8Array(decimalLength(n));
  writeDecimal(out, out.length, n);
  return out;
}

/** Parses a positive decimal without leading zeros from line[start, end), or -1. */
function parsePositiveDecimal(line: Uint8Array, start: number, end: number): number {
  const length = end - start;
  if (length < 1 || length > decimalDigitsMax || line[start] === DIGIT_0) return -1;
  let n = 0;
  for (let i = start; i < end; i++) {
    const b = line[i]!;
    if (b < DIGIT_0 || b > DIGIT_9) return -1;
    n = n * 10 + (b - DIGIT_0);
  }
  return Number.isSafeInteger(n) ? n : -1;
}

function rangeEquals(line: Uint8Array, start: number, end: number, want: Uint8Array): boolean {
  if (end - start !== want.length) return false;
  for (let i = 0; i < want.length; i++) if (line[start + i] !== want[i]) return false;
  return true;
}

/**
 * Decodes one WAL line given WITHOUT its trailing "\n". Never throws; the
 * record's key and value are fresh copies (unless `share`), so `line` may be reused after.
 */
export function decodeWalLine(line: Uint8Array, options: DecodeOptions = {}): DecodeResult {
  return runToEnd(decodeWalLineSteps(line, options, Number.MAX_SAFE_INTEGER));
}

/**
 * decodeWalLine in steps: yields after about every `stepBytes` bytes of a
 * value being unescaped, so a caller decoding a line with a 16 MiB value
 * (up to 64 MiB escaped) can let its event loop answer pings and fences in
 * between. Same result as decodeWalLine.
 */
export function* decodeWalLineSteps(
  line: Uint8Array,
  options: DecodeOptions,
  stepBytes: number,
): Generator<void, DecodeResult> {
  const share = options.share === true;
  if (line.length === 0) return fail("Empty line");

  // Field boundaries. A record has at most 4 fields, so only the first 4
  // tabs matter (a 4th tab means too many fields). indexOf is native.
  const tab1 = line.indexOf(TAB);
  const tab2 = tab1 < 0 ? -1 : line.indexOf(TAB, tab1 + 1);
  const tab3 = tab2 < 0 ? -1 : line.indexOf(TAB, tab2 + 1);
  const tab4 = tab3 < 0 ? -1 : line.indexOf(TAB, tab3 + 1);
  const fieldCount = tab1 < 0 ? 1 : tab2 < 0 ? 2 : tab3 < 0 ? 3 : tab4 < 0 ? 4 : 5;
  const seqEnd = tab1 < 0 ? line.length : tab1;

  const index = parsePositiveDecimal(line, 0, seqEnd);
  if (index < 0) return fail(`Invalid seq "${quoteText(line, 0, seqEnd)}"`);
  if (fieldCount < 2) return fail(`Missing op after seq ${index}`);

  const opStart = seqEnd + 1;
  const opEnd = tab2 < 0 ? line.length : tab2;
  const thirdEnd = tab3 < 0 ? line.length : tab3;

  if (rangeEquals(line, opStart, opEnd, OP_SET)) {
    if (fieldCount !== 4) return fail(`SET needs 4 fields, got ${fieldCountText(fieldCount)}`);
    const key = unescapeRange(line, opEnd + 1, thirdEnd, share);
    if (typeof key === "string") return fail(`${key} in key`);
    const valueStart = thirdEnd + 1;
    const firstEscape = firstEscapeIndex(line, valueStart, line.length);
    const value = firstEscape < 0
      ? (share ? line.subarray(valueStart) : line.slice(valueStart))
      : yield* unescapeSteps(line, valueStart, line.length, firstEscape, stepBytes);
    if (typeof value === "string") {
      return fail(`${value} in value`);
    }
    return { ok: true, record: { op: "SET", index, key, value } };
  }

  if (rangeEquals(line, opStart, opEnd, OP_DEL)) {
    if (fieldCount !== 3) return fail(`DEL needs 3 fields, got ${fieldCountText(fieldCount)}`);
    const key = unescapeRange(line, opEnd + 1, line.length, share);
    if (typeof key === "string") {
      return fail(`${key} in key`);
    }
    return { ok: true, record: { op: "DEL", index, key } };
  }

  if (rangeEquals(line, opStart, opEnd, OP_TERM)) {
    if (fieldCount !== 3) return fail(`TERM needs 3 fields, got ${fieldCountText(fieldCount)}`);
    const term = parsePositiveDecimal(line, opEnd + 1, line.length);
    if (term < 0) return fail(`Invalid term "${quoteText(line, opEnd + 1, line.length)}"`);
    return { ok: true, record: { op: "TERM", index, term } };
  }

  return fail(`Unknown op "${quoteText(line, opStart, opEnd)}"`);
}

function fail(error: string): DecodeResult {
  return { ok: false, error };
}

/** "5 or more" when we stopped counting tabs early. */
function fieldCountText(fieldCount: number): string {
  return fieldCount > 4 ? "5 or more" : String(fieldCount);
}

function hex2(b: number): string {
  return b.toString(16).padStart(2, "0");
}

function quoteByte(b: number): string {
  return quoteText(new Uint8Array([b]), 0, 1);
}

/**
 * Bytes of line[start, end) as they appear in the file, for an error message:
 * printable ASCII (backslash included, so escapes read as written) and valid
 * UTF-8 as is, every other byte as `\xHH` so it cannot garble a log line, and
 * cut short when long. Error path only, so string building is fine here.
 */
function quoteText(line: Uint8Array, start: number, end: number): string {
  const cut = Math.min(end, start + quotedBytesMax);
  let shown = "";
  let i = start;
  while (i < cut) {
    const b = line[i]!;
    const length = b >= 0x80 ? utf8SequenceLength(line, i, cut) : 0;
    if (length > 0) {
      shown += utf8Decoder.decode(line.subarray(i, i + length));
      i += length;
    } else {
      shown += b >= 0x20 && b < DEL_BYTE ? String.fromCharCode(b) : `\\x${hex2(b)}`;
      i++;
    }
  }
  return cut < end ? `${shown}…` : shown;
}
