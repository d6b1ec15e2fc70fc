// Unit tests of the WAL line codec (src/codec/wal_line.ts): exact bytes of
// plain lines, round trips of awkward bytes, canonical escaping, and decode
// errors. Pure and fast: no files, no clock; randomness from a seeded PRNG.

import assert from "node:assert/strict";
import {
  decodeWalLine,
  encodeWalLine,
  escapeField,
  unescapeField,
  type WalRecord,
} from "../../../src/codec/wal_line.ts";

const utf8 = new TextEncoder();
const text = (s: string): Uint8Array => utf8.encode(s);
const show = (bytes: Uint8Array): string => new TextDecoder().decode(bytes);

/** Encodes, checks the line shape, decodes, and returns the decoded record. */
function roundTrip(record: WalRecord): WalRecord {
  const line = encodeWalLine(record);
  assert.equal(line[line.length - 1], 0x0a, "line ends with LF");
  assert.equal(line.indexOf(0x0a), line.length - 1, "no LF inside the line");
  assert.equal(line.indexOf(0x0d), -1, "no CR in the line");
  const decoded = decodeWalLine(line.subarray(0, line.length - 1));
  assert.ok(decoded.ok, decoded.ok ? "" : decoded.error);
  return decoded.record;
}

function decodeError(line: string | Uint8Array): string {
  const decoded = decodeWalLine(typeof line === "string" ? text(line) : line);
  assert.ok(!decoded.ok, `expected a decode error for ${JSON.stringify(String(line))}`);
  return decoded.error;
}

/** xorshift32: small, seeded, ours — failing seeds replay exactly. */
function prng(seed: number): () => number {
  let state = seed >>> 0 || 1;
  return () => {
    state ^= state << 13;
    state >>>= 0;
    state ^= state >>> 17;
    state ^= state << 5;
    state >>>= 0;
    return state;
  };
}

Deno.test("plain text stays plain: SET city Vilnius is exactly its readable line", () => {
  const line = encodeWalLine({ op: "SET", index: 2, key: text("city"), value: text("Vilnius") });
  assert.deepEqual(line, text("2\tSET\tcity\tVilnius\n"));
});

Deno.test("TERM and DEL lines have three fields and no trailing tab", () => {
  assert.deepEqual(encodeWalLine({ op: "TERM", index: 1, term: 1 }), text("1\tTERM\t1\n"));
  assert.deepEqual(
    encodeWalLine({ op: "DEL", index: 4, key: text("user01") }),
    text("4\tDEL\tuser01\n"),
  );
});

Deno.test("an empty value ends the SET line with a tab then LF", () => {
  const line = encodeWalLine({ op: "SET", index: 9, key: text("k"), value: new Uint8Array() });
  assert.deepEqual(line, text("9\tSET\tk\t\n"));
  assert.deepEqual(roundTrip({ op: "SET", index: 9, key: text("k"), value: new Uint8Array() }), {
    op: "SET",
    index: 9,
    key: text("k"),
    value: new Uint8Array(),
  });
});

Deno.test("an empty key round-trips for SET and DEL", () => {
  const set: WalRecord = { op: "SET", index: 3, key: new Uint8Array(), value: text("v") };
  assert.deepEqual(encodeWalLine(set), text("3\tSET\t\tv\n"));
  assert.deepEqual(roundTrip(set), set);
  const del: WalRecord = { op: "DEL", index: 3, key: new Uint8Array() };
  assert.deepEqual(encodeWalLine(del), text("3\tDEL\t\n"));
  assert.deepEqual(roundTrip(del), del);
});

Deno.test("awkward bytes round-trip exactly and escape as documented", () => {
  const cases: Array<[Uint8Array, string]> = [
    [text("a\tb"), "a\\tb"],
    [text("line1\nline2"), "line1\\nline2"],
    [text("crlf\r\n"), "crlf\\r\\n"],
    [text("back\\slash"), "back\\\\slash"],
    [new Uint8Array([0x00]), "\\0"],
    [new Uint8Array([0x7f]), "\\x7f"],
    [new Uint8Array([0x01, 0x1b, 0x1f]), "\\x01\\x1b\\x1f"],
    [new Uint8Array([0xff]), "\\xff"],
    [new Uint8Array([0xc3]), "\\xc3"], // lead byte with nothing after it
    [new Uint8Array([0xc3, 0x41]), "\\xc3A"], // lead byte before ASCII
    [new Uint8Array([0xe6, 0x97]), "\\xe6\\x97"], // truncated 3-byte sequence
    [new Uint8Array([0xed, 0xa0, 0x80]), "\\xed\\xa0\\x80"], // UTF-16 surrogate
    [new Uint8Array([0xc0, 0xaf]), "\\xc0\\xaf"], // overlong "/"
    [new Uint8Array([0xf4, 0x90, 0x80, 0x80]), "\\xf4\\x90\\x80\\x80"], // above U+10FFFF
    [text("Vilnius ąčęėįšųūž 日本"), "Vilnius ąčęėįšųūž 日本"],
    [text("emoji 🦀"), "emoji 🦀"],
    [text("\\x41"), "\\\\x41"], // the four characters, not an escape
  ];
  for (const [raw, escaped] of cases) {
    assert.equal(show(escapeField(raw)), escaped, `escaping ${Array.from(raw)}`);
    assert.deepEqual(unescapeField(escapeField(raw)), raw);
    const set: WalRecord = { op: "SET", index: 7, key: raw, value: raw };
    assert.deepEqual(roundTrip(set), set);
    const del: WalRecord = { op: "DEL", index: 8, key: raw };
    assert.deepEqual(roundTrip(del), del);
  }
});

Deno.test("valid UTF-8 next to invalid bytes: only the invalid bytes are escaped", () => {
  const raw = new Uint8Array([0xff, ...text("ą"), 0xc3, ...text("日"), 0x80]);
  assert.equal(show(escapeField(raw)), "\\xffą\\xc3日\\x80");
  assert.deepEqual(unescapeField(escapeField(raw)), raw);
});

Deno.test("escapeField returns its input when nothing needs escaping", () => {
  const plain = text("user:42 ąž");
  assert.equal(escapeField(plain), plain);
});

Deno.test("decoded key and value are copies, not views of the line", () => {
  const line = text("5\tSET\tkey\tvalue");
  const decoded = decodeWalLine(line);
  assert.ok(decoded.ok && decoded.record.op === "SET");
  line.fill(0x21);
  assert.deepEqual(decoded.record.key, text("key"));
  assert.deepEqual(decoded.record.value, text("value"));
});

Deno.test("unescapeField refuses bad and non-canonical escapes", () => {
  for (
    const field of [
      "\\q", // unknown escape
      "trailing\\", // backslash at end
      "\\x4", // short hex
      "\\xzz", // not hex
      "\\xFF", // uppercase hex: not how we write it
      "\\x41", // "A" is written literally
      "\\x09", // TAB has the short form \t
      "\\x5c", // backslash has the short form \\
      "\\x00", // NUL has the short form \0
      "\\xc4\\x85", // valid UTF-8 "ą" is written literally
    ]
  ) {
    assert.equal(unescapeField(text(field)), null, field);
  }
  // Raw bytes that should have been escaped.
  for (const raw of [[0x09], [0x0d], [0x00], [0x7f], [0xff], [0xc3]]) {
    assert.equal(unescapeField(new Uint8Array(raw)), null, `raw ${raw}`);
  }
});

Deno.test("decode errors name the offending value", () => {
  assert.equal(decodeError("2\tSETX\tk\tv"), 'Unknown op "SETX"');
  assert.equal(decodeError(""), "Empty line");
  assert.equal(decodeError("02\tSET\tk\tv"), 'Invalid seq "02"');
  assert.equal(decodeError("0\tTERM\t1"), 'Invalid seq "0"');
  assert.equal(decodeError("-1\tTERM\t1"), 'Invalid seq "-1"');
  assert.equal(decodeError("x\tTERM\t1"), 'Invalid seq "x"');
  assert.equal(decodeError("99999999999999999\tTERM\t1"), 'Invalid seq "99999999999999999"');
  assert.equal(decodeError("\tTERM\t1"), 'Invalid seq ""');
  assert.equal(decodeError("7"), "Missing op after seq 7");
  assert.equal(decodeError("1\tTERM\t0"), 'Invalid term "0"');
  assert.equal(decodeError("1\tTERM\t"), 'Invalid term ""');
  assert.equal(decodeError("1\tTERM\t1\t"), "TERM needs 3 fields, got 4");
  assert.equal(decodeError("1\tTERM"), "TERM needs 3 fields, got 2");
  assert.equal(decodeError("2\tSET\tk"), "SET needs 4 fields, got 3");
  assert.equal(decodeError("2\tSET\tk\tv\tw"), "SET needs 4 fields, got 5 or more");
  assert.equal(decodeError("2\tSET\tk\tv\tw\tx"), "SET needs 4 fields, got 5 or more");
  assert.equal(decodeError("3\tDEL\tk\tv"), "DEL needs 3 fields, got 4");
  assert.equal(decodeError("2\tSET\ta\\qb\tv"), 'Unknown escape "\\q" in key');
  assert.equal(decodeError("2\tSET\tk\tv\\"), "Backslash at end of field in value");
  assert.equal(decodeError("2\tSET\tk\t\\xG1"), 'Malformed escape "\\xG1" in value');
  assert.equal(decodeError("2\tSET\tk\t\\x41"), 'Non-canonical escape "\\x41" in value');
  assert.equal(decodeError("2\tSET\tk\tv\r"), "Unescaped byte 0x0d in value");
  assert.equal(decodeError("4\tDEL\t\\xc4\\x85"), "Non-canonical escape of UTF-8 bytes in key");
  assert.equal(decodeError(new Uint8Array([0x31, 0x09, 0xff])), 'Unknown op "\\xff"');
  // A long offending value is cut short in the message.
  const longOp = decodeError(`1\t${"X".repeat(500)}\t1`);
  assert.ok(longOp.length < 100 && longOp.endsWith('…"'), longOp);
});

Deno.test("encodeWalLine refuses impossible records (a bug in the caller)", () => {
  assert.throws(() => encodeWalLine({ op: "TERM", index: 0, term: 1 }), RangeError);
  assert.throws(() => encodeWalLine({ op: "TERM", index: 1, term: 0 }), RangeError);
  assert.throws(() => encodeWalLine({ op: "DEL", index: 1.5, key: text("k") }), RangeError);
  assert.throws(
    () => encodeWalLine({ op: "DEL", index: Number.MAX_SAFE_INTEGER + 1, key: text("k") }),
    RangeError,
  );
});

Deno.test("the largest safe seq and term round-trip", () => {
  const record: WalRecord = {
    op: "TERM",
    index: Number.MAX_SAFE_INTEGER,
    term: Number.MAX_SAFE_INTEGER,
  };
  assert.deepEqual(roundTrip(record), record);
});

/** Random bytes biased towards the ones the escaper treats specially. */
function randomBytes(next: () => number): Uint8Array {
  const interesting = [
    [0x09],
    [0x0a],
    [0x0d],
    [0x5c],
    [0x00],
    [0x7f],
    [0x78], // "x", to build look-alike escapes
    [0x80],
    [0xc3],
    [0xff],
    [0xc4, 0x85], // ą
    [0xe6, 0x97, 0xa5], // 日
    [0xf0, 0x9f, 0xa6, 0x80], // 🦀
  ];
  const length = next() % 24;
  const out: number[] = [];
  while (out.length < length) {
    const pick = next() % 4;
    if (pick === 0) out.push(next() & 0xff);
    else if (pick === 1) out.push(...interesting[next() % interesting.length]!);
    else out.push(0x20 + (next() % 0x5f));
  }
  return new Uint8Array(out);
}

Deno.test("property: any key and value bytes round-trip and the line is canonical", () => {
  const seed = 0x5eed_2024;
  const next = prng(seed);
  for (let i = 0; i < 5000; i++) {
    const key = randomBytes(next);
    const value = randomBytes(next);
    const index = 1 + (next() % 1_000_000);
    const record: WalRecord = next() % 2 === 0
      ? { op: "SET", index, key, value }
      : { op: "DEL", index, key };
    const line = encodeWalLine(record);
    const decoded = decodeWalLine(line.subarray(0, line.length - 1));
    assert.ok(decoded.ok, `seed ${seed} iteration ${i}: ${decoded.ok ? "" : decoded.error}`);
    assert.deepEqual(decoded.record, record, `seed ${seed} iteration ${i}`);
    // Escaped fields never contain the separators.
    for (const field of [escapeField(key), escapeField(value)]) {
      assert.equal(field.indexOf(0x09), -1);
      assert.equal(field.indexOf(0x0a), -1);
    }
  }
});

Deno.test("property: random garbage never throws, and whatever decodes re-encodes to itself", () => {
  const seed = 0xbadc0de;
  const next = prng(seed);
  let decodedCount = 0;
  for (let i = 0; i < 20000; i++) {
    // Mutate a valid line so that many candidates are near-valid.
    const record: WalRecord = {
      op: "SET",
      index: 1 + (next() % 100),
      key: randomBytes(next),
      value: randomBytes(next),
    };
    const line = Array.from(encodeWalLine(record).subarray(0, -1));
    const edits = next() % 3;
    for (let e = 0; e < edits && line.length > 0; e++) {
      const at = next() % line.length;
      if (next() % 2 === 0) line[at] = next() & 0xff;
      else line.splice(at, 1);
    }
    const candidate = new Uint8Array(line);
    const decoded = decodeWalLine(candidate);
    if (!decoded.ok) continue;
    decodedCount++;
    const again = encodeWalLine(decoded.record);
    assert.deepEqual(again.subarray(0, -1), candidate, `seed ${seed} iteration ${i}`);
  }
  assert.ok(decodedCount > 1000, `only ${decodedCount} candidates decoded`);
});
