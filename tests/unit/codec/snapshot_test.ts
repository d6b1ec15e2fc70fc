// Unit tests of the snapshot codec (src/codec/snapshot.ts): the exact bytes
// of header, pair lines and trailer; round trips of binary keys and values;
// and that every kind of damage is reported as a value, never thrown. Pure:
// the files are byte strings built here, the checksum is node:zlib's CRC-32.

import assert from "node:assert/strict";
import { crc32 } from "node:zlib";
import {
  encodeSnapshotHeader,
  encodeSnapshotPairs,
  encodeSnapshotTrailer,
  type ParsedSnapshot,
  parseSnapshot,
  parseSnapshotHeader,
  parseSnapshotTrailer,
  SnapshotBodyParser,
  type SnapshotMeta,
  snapshotParser,
  snapshotTrailerBytesMax,
  snapshotVersion,
} from "../../../src/codec/snapshot.ts";
import type { KvPair } from "../../../src/kv/store.ts";

const utf8 = new TextEncoder();
const text = (s: string): Uint8Array => utf8.encode(s);
const show = (bytes: Uint8Array): string => new TextDecoder().decode(bytes);
const crc = (bytes: Uint8Array): number => crc32(bytes);

function concat(parts: readonly Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((sum, p) => sum + p.length, 0));
  let w = 0;
  for (const p of parts) {
    out.set(p, w);
    w += p.length;
  }
  return out;
}

const meta: SnapshotMeta = { index: 42, term: 3, lineHash: 0xdeadbeef };

/** A whole snapshot file the way snapshot_file.ts writes one. */
function snapshotBytes(m: SnapshotMeta, pairs: readonly KvPair[]): Uint8Array {
  const body = concat([encodeSnapshotHeader(m), encodeSnapshotPairs(pairs)]);
  return concat([body, encodeSnapshotTrailer(pairs.length, crc(body))]);
}

/** `body` (header and pair lines, however crafted) with a correct END line
 * for `keys`: for damage the checksum does not catch. */
function withTrailer(body: string | Uint8Array, keys: number): Uint8Array {
  const bytes = typeof body === "string" ? text(body) : body;
  return concat([bytes, encodeSnapshotTrailer(keys, crc(bytes))]);
}

function damage(bytes: Uint8Array): { error: string; lineNumber: number } {
  let parsed: ParsedSnapshot | undefined;
  assert.doesNotThrow(() => (parsed = parseSnapshot(bytes, crc)));
  assert.ok(parsed !== undefined && !parsed.ok, "expected damage");
  return { error: parsed.error, lineNumber: parsed.lineNumber };
}

function parsedPairs(bytes: Uint8Array): Map<string, string> {
  const parsed = parseSnapshot(bytes, crc);
  assert.ok(parsed.ok, parsed.ok ? "" : `line ${parsed.lineNumber}: ${parsed.error}`);
  return parsed.pairs;
}

const header = "KVSNAP\t1\t42\t3\t3735928559\n";

// ---- encoding -----------------------------------------------------------------

Deno.test("snapshot header is KVSNAP, version, index, term and line hash, TAB-separated", () => {
  assert.equal(snapshotVersion, 1);
  assert.equal(show(encodeSnapshotHeader(meta)), header);
  assert.equal(
    show(encodeSnapshotHeader({ index: 0, term: 0, lineHash: 0 })),
    "KVSNAP\t1\t0\t0\t0\n",
  );
  // A hash held as a negative int32 is written unsigned.
  assert.equal(
    show(encodeSnapshotHeader({ index: 1, term: 1, lineHash: -1 })),
    "KVSNAP\t1\t1\t1\t4294967295\n",
  );
});

Deno.test("snapshot trailer is END, key count and the CRC-32 as 8 lowercase hex digits", () => {
  assert.equal(show(encodeSnapshotTrailer(2, 0xabc)), "END\t2\t00000abc\n");
  assert.equal(show(encodeSnapshotTrailer(0, -1)), "END\t0\tffffffff\n");
});

Deno.test("pair lines are key TAB value LF, escaped like WAL fields", () => {
  assert.equal(show(encodeSnapshotPairs([])), "");
  assert.equal(
    show(encodeSnapshotPairs([["user01", "Kaspa"], ["city", "Vilnius"]])),
    "user01\tKaspa\ncity\tVilnius\n",
  );
  // TAB, LF, backslash, NUL; a byte ≥ 0x80 outside UTF-8; valid UTF-8 stays literal.
  const pairs: KvPair[] = [["a\tb", "x\ny\\z\x00"], ["\xff", "\xc4\x85"]];
  assert.equal(show(encodeSnapshotPairs(pairs)), "a\\tb\tx\\ny\\\\z\\0\n\\xff\tą\n");
});

Deno.test("a file with a header and an END line of its CRC is exactly what snapshotBytes builds", () => {
  const bytes = snapshotBytes(meta, [["user01", "Kaspa"]]);
  const body = text(`${header}user01\tKaspa\n`);
  const want = `${header}user01\tKaspa\nEND\t1\t${crc(body).toString(16).padStart(8, "0")}\n`;
  assert.equal(show(bytes), want);
});

// ---- round trips ----------------------------------------------------------------

Deno.test("parseSnapshot returns the header's meta and every pair", () => {
  const bytes = snapshotBytes(meta, [["user01", "Kaspa"], ["city", "Vilnius"], ["empty", ""]]);
  const parsed = parseSnapshot(bytes, crc);
  assert.deepEqual(parsed, {
    ok: true,
    meta,
    pairs: new Map([["user01", "Kaspa"], ["city", "Vilnius"], ["empty", ""]]),
  });
});

Deno.test("an empty snapshot (index 0, no keys) parses to an empty map", () => {
  const bytes = snapshotBytes({ index: 0, term: 0, lineHash: 0 }, []);
  assert.deepEqual(parseSnapshot(bytes, crc), {
    ok: true,
    meta: { index: 0, term: 0, lineHash: 0 },
    pairs: new Map(),
  });
});

Deno.test("binary keys and values that need escapes round-trip byte for byte", () => {
  const pairs: KvPair[] = [];
  // Every byte value as a key of its own, and in a value.
  for (let b = 0; b < 256; b++) pairs.push([String.fromCharCode(b), `v${String.fromCharCode(b)}`]);
  let all = "";
  for (let b = 0; b < 256; b++) all += String.fromCharCode(b);
  pairs.push(["all bytes", all]);
  pairs.push(["", "the empty key"]);
  pairs.push(["backslashes", "\\\\x41\\n"]);
  pairs.push(["utf8 and not", "\xc4\x85\xc4\xff\xed\xa0\x80\xf4\x90\x80\x80"]);
  // A long value with escapes throughout: the encoder's buffer has to grow.
  let long = "";
  for (let i = 0; i < 50_000; i++) long += String.fromCharCode((i * 131) & 0xff);
  pairs.push(["long", long]);
  const bytes = snapshotBytes(meta, pairs);
  assert.deepEqual(parsedPairs(bytes), new Map(pairs));
  // Nothing raw that would break the line structure.
  const lines = show(bytes).split("\n");
  assert.equal(lines.length, pairs.length + 3, "header, one line per pair, END, and ''");
});

Deno.test("encodeSnapshotPairs of pairs needing no escape is the plain bytes", () => {
  const pairs: KvPair[] = [["k1", "v1"], ["k2", "ąž"]];
  // "ąž" as latin1 is its UTF-8 bytes, which are valid UTF-8 and stay literal.
  const latin1Pairs: KvPair[] = [["k1", "v1"], ["k2", "\xc4\x85\xc5\xbe"]];
  assert.equal(show(encodeSnapshotPairs(latin1Pairs)), `k1\tv1\nk2\t${pairs[1]![1]}\n`);
});

Deno.test("snapshotParser yields between pieces of the body and ends with the same result", () => {
  // About 6 MB of pair lines: more than one 4 MiB piece, so a line straddles
  // the boundary between two pieces.
  const value = "v".repeat(100);
  const pairs: KvPair[] = Array.from({ length: 60_000 }, (_, i) => [`key${i}`, `${value}${i}`]);
  const bytes = snapshotBytes(meta, pairs);
  assert.ok(bytes.length > 4 * 1024 * 1024 + 1000);
  const steps = snapshotParser(bytes, crc);
  let yields = 0;
  let result: ParsedSnapshot;
  for (;;) {
    const r = steps.next();
    if (r.done) {
      result = r.value;
      break;
    }
    yields++;
  }
  assert.equal(yields, 2, "one yield after each piece");
  assert.ok(result.ok);
  assert.deepEqual(result.pairs, new Map(pairs));
});

Deno.test("parseSnapshotHeader reads the header alone, whatever follows", () => {
  const bytes = concat([text(header), text("garbage that is not a pair line")]);
  assert.deepEqual(parseSnapshotHeader(bytes), { ok: true, meta, bytes: header.length });
});

// ---- damage: reported, never thrown -----------------------------------------------

Deno.test("damage: a wrong magic word is not a snapshot", () => {
  const bytes = withTrailer("KVSNAQ\t1\t42\t3\t0\n", 0);
  assert.deepEqual(damage(bytes), { error: "Not a snapshot (no KVSNAP header)", lineNumber: 1 });
  // A WAL file handed over by mistake.
  assert.deepEqual(damage(text("1\tTERM\t1\n2\tSET\ta\tb\n")), {
    error: "Not a snapshot (no KVSNAP header)",
    lineNumber: 1,
  });
});

Deno.test("damage: an unknown version is named", () => {
  assert.deepEqual(damage(withTrailer("KVSNAP\t2\t42\t3\t0\n", 0)), {
    error: 'Unknown snapshot version "2"',
    lineNumber: 1,
  });
  assert.deepEqual(damage(text("KVSNAP\n")), {
    error: "Unknown snapshot version undefined",
    lineNumber: 1,
  });
});

Deno.test("damage: a malformed header is reported with its fields", () => {
  const malformed = [
    "KVSNAP\t1\t42\t3\n", // no line hash
    "KVSNAP\t1\t42\t3\t0\textra\n", // a field too many
    "KVSNAP\t1\t042\t3\t0\n", // leading zero
    "KVSNAP\t1\t-1\t3\t0\n", // negative
    "KVSNAP\t1\t42\tthree\t0\n", // not a number
    "KVSNAP\t1\t42\t0\t0\n", // an index without a term
    "KVSNAP\t1\t0\t3\t0\n", // a term without an index
    "KVSNAP\t1\t42\t3\t4294967296\n", // hash above 32 bits
    "KVSNAP\t1\t99999999999999999\t3\t0\n", // beyond a safe integer
  ];
  for (const line of malformed) {
    const got = damage(withTrailer(line, 0));
    assert.equal(got.lineNumber, 1, line);
    assert.equal(
      got.error,
      `Malformed snapshot header ${JSON.stringify(line.slice(0, -1).replaceAll("\t", " "))}`,
    );
  }
});

Deno.test("damage: no header line at all (empty, no newline, or far too long)", () => {
  for (
    const bytes of [new Uint8Array(0), text("KVSNAP\t1\t42"), text(`KVSNAP\t1${"1".repeat(300)}\n`)]
  ) {
    assert.deepEqual(damage(bytes), { error: "No snapshot header line", lineNumber: 1 });
  }
});

Deno.test("damage: a file cut short is missing its END line", () => {
  const bytes = snapshotBytes(meta, [["user01", "Kaspa"], ["city", "Vilnius"]]);
  // Cut inside the END line: no final newline.
  assert.deepEqual(damage(bytes.subarray(0, bytes.length - 3)), {
    error: "Snapshot does not end with a newline (cut short?)",
    lineNumber: 0,
  });
  // Cut at a line boundary: the last line is a pair, not END.
  const withoutTrailer = text(`${header}user01\tKaspa\ncity\tVilnius\n`);
  assert.deepEqual(damage(withoutTrailer), {
    error: "Snapshot has no END line (cut short?)",
    lineNumber: 0,
  });
  // Only the header survived.
  assert.deepEqual(damage(text(header)), {
    error: "Snapshot has no END line (cut short?)",
    lineNumber: 0,
  });
  // An END line with a missing field.
  assert.deepEqual(damage(text(`${header}END\t0\n`)), {
    error: "Snapshot has no END line (cut short?)",
    lineNumber: 0,
  });
});

Deno.test("damage: one flipped byte in a value is a checksum mismatch", () => {
  const bytes = snapshotBytes(meta, [["user01", "Kaspa"], ["city", "Vilnius"]]);
  const at = show(bytes).indexOf("Vilnius") + 2;
  const flipped = bytes.slice();
  flipped[at] = flipped[at]! ^ 0x01; // "l" → "m": still a well-formed line
  const want = show(bytes).split("\n").at(-2)!.split("\t")[2]!;
  const got = crc(flipped.subarray(0, show(bytes).lastIndexOf("END"))).toString(16).padStart(
    8,
    "0",
  );
  assert.deepEqual(damage(flipped), {
    error: `Checksum mismatch: END line says ${want}, bytes give ${got}`,
    lineNumber: 0,
  });
  // So is a damaged header, once the header itself still parses.
  const header2 = bytes.slice();
  header2[show(bytes).indexOf("42")] = 0x35; // index 42 → 52
  assert.match(damage(header2).error, /^Checksum mismatch/);
});

Deno.test("damage: the END line's key count must match the lines", () => {
  assert.deepEqual(damage(withTrailer(`${header}a\t1\nb\t2\n`, 3)), {
    error: "END line says 3 keys, file holds 2",
    lineNumber: 0,
  });
  assert.deepEqual(damage(withTrailer(`${header}a\t1\nb\t2\n`, 1)), {
    error: "END line says 1 keys, file holds 2",
    lineNumber: 0,
  });
});

Deno.test("damage: a key that appears twice names its second line", () => {
  assert.deepEqual(damage(withTrailer(`${header}a\t1\nb\t2\na\t3\n`, 3)), {
    error: "Key appears twice",
    lineNumber: 4,
  });
});

Deno.test("damage: a pair line without a TAB", () => {
  assert.deepEqual(damage(withTrailer(`${header}a\t1\njustakey\nb\t2\n`, 3)), {
    error: "Line has no TAB",
    lineNumber: 3,
  });
  // An empty line is a line without a TAB too.
  assert.deepEqual(damage(withTrailer(`${header}\na\t1\n`, 1)), {
    error: "Line has no TAB",
    lineNumber: 2,
  });
});

Deno.test("damage: a bad escape in a key or a value names which and the line", () => {
  assert.deepEqual(damage(withTrailer(`${header}a\t1\nb\\q\t2\n`, 2)), {
    error: 'Key: Unknown escape "\\q"',
    lineNumber: 3,
  });
  assert.deepEqual(damage(withTrailer(`${header}a\tend\\\n`, 1)), {
    error: "Value: Backslash at end of field",
    lineNumber: 2,
  });
  // Non-canonical: "A" spelt \x41.
  assert.deepEqual(damage(withTrailer(`${header}a\t\\x41\n`, 1)), {
    error: 'Value: Non-canonical escape "\\x41"',
    lineNumber: 2,
  });
  // A malformed hex escape, in a key.
  assert.deepEqual(damage(withTrailer(`${header}\\xg0\tv\n`, 1)), {
    error: 'Key: Malformed escape "\\xg0"',
    lineNumber: 2,
  });
});

Deno.test("damage never throws: every prefix of a valid file is reported, not thrown", () => {
  const bytes = snapshotBytes(meta, [["user01", "Kaspa"], ["bin\t\xff", "\x00\n"], ["c", ""]]);
  for (let cut = 0; cut < bytes.length; cut++) {
    const parsed = parseSnapshot(bytes.subarray(0, cut), crc);
    assert.equal(parsed.ok, false, `a file cut to ${cut} bytes is damage`);
  }
  assert.equal(parseSnapshot(bytes, crc).ok, true);
});

// ---- the streaming pieces: END line from the tail, body fed in pieces -------------

Deno.test("parseSnapshotTrailer finds the END line in the file's last bytes and where it starts", () => {
  const bytes = snapshotBytes(meta, [["user01", "Kaspa"], ["city", "Vilnius"]]);
  const tail = bytes.subarray(Math.max(0, bytes.length - snapshotTrailerBytesMax));
  const trailer = parseSnapshotTrailer(tail, bytes.length);
  assert.ok(trailer.ok);
  assert.equal(trailer.start, show(bytes).lastIndexOf("END"));
  assert.equal(trailer.keys, 2);
  assert.equal(trailer.crc32, crc(bytes.subarray(0, trailer.start)).toString(16).padStart(8, "0"));
  // A whole small file as its own tail.
  const small = snapshotBytes({ index: 0, term: 0, lineHash: 0 }, []);
  const whole = parseSnapshotTrailer(small, small.length);
  assert.ok(whole.ok);
  assert.equal(whole.start, small.length - encodeSnapshotTrailer(0, 0).length);
});

Deno.test("parseSnapshotTrailer refuses a tail without a whole END line", () => {
  const noEnd = { ok: false, error: "Snapshot has no END line (cut short?)" };
  assert.deepEqual(parseSnapshotTrailer(new Uint8Array(0), 0), {
    ok: false,
    error: "Snapshot does not end with a newline (cut short?)",
  });
  assert.deepEqual(parseSnapshotTrailer(text("END\t1\t0000abcd"), 100), {
    ok: false,
    error: "Snapshot does not end with a newline (cut short?)",
  });
  assert.deepEqual(parseSnapshotTrailer(text("x\tEND\t1\t0000abcd\n"), 100), noEnd);
  // Uppercase or short hex is not what the writer writes.
  assert.deepEqual(parseSnapshotTrailer(text("a\tb\nEND\t1\t0000ABCD\n"), 100), noEnd);
  assert.deepEqual(parseSnapshotTrailer(text("a\tb\nEND\t1\tabcd\n"), 100), noEnd);
  // A tail of a longer file with no newline before its last line: the last
  // line is longer than any END line, so it is not one.
  const longLine = text(`${"k".repeat(snapshotTrailerBytesMax)}\n`);
  assert.deepEqual(
    parseSnapshotTrailer(longLine.subarray(longLine.length - snapshotTrailerBytesMax), 1000),
    noEnd,
  );
});

Deno.test("SnapshotBodyParser gives the same pairs however the body is cut into pieces", () => {
  const pairs: KvPair[] = [["user01", "Kaspa"], ["a\tb", "x\\y\n"], ["\xff", ""], ["", "e"]];
  const body = encodeSnapshotPairs(pairs);
  for (const size of [1, 2, 3, 5, 7, body.length]) {
    const parser = new SnapshotBodyParser();
    for (let at = 0; at < body.length; at += size) {
      assert.equal(parser.feed(body.subarray(at, at + size)), null, `pieces of ${size}`);
    }
    assert.equal(parser.finish(), null);
    assert.deepEqual(parser.pairs, new Map(pairs), `pieces of ${size}`);
  }
});

Deno.test("SnapshotBodyParser counts line numbers across pieces", () => {
  const parser = new SnapshotBodyParser();
  assert.equal(parser.feed(text("a\t1\nb\t")), null);
  assert.equal(parser.feed(text("2\nc")), null);
  assert.deepEqual(parser.feed(text("\t3\na\t4\n")), { error: "Key appears twice", lineNumber: 5 });
  // Another first line number (a body that follows some other header).
  const later = new SnapshotBodyParser(10);
  assert.deepEqual(later.feed(text("ok\tline\nno tab\n")), {
    error: "Line has no TAB",
    lineNumber: 11,
  });
});

Deno.test("SnapshotBodyParser.finish reports a last line left without its newline", () => {
  const parser = new SnapshotBodyParser();
  assert.equal(parser.feed(text("a\t1\nb\t2")), null);
  assert.deepEqual(parser.finish(), {
    error: "Last line before END has no newline",
    lineNumber: 3,
  });
  assert.deepEqual(parser.pairs, new Map([["a", "1"]]));
});

Deno.test("SnapshotBodyParser: a bad escape split across two pieces is still found", () => {
  const parser = new SnapshotBodyParser();
  assert.equal(parser.feed(text("a\t1\nkey\\")), null);
  assert.deepEqual(parser.feed(text("q\tv\n")), {
    error: 'Key: Unknown escape "\\q"',
    lineNumber: 3,
  });
});
