// Unit tests of src/kv/latin1.ts: byte strings ⇄ one-character-per-byte
// strings. Both the ASCII fast path (the native UTF-8 codec) and the exact
// path for bytes ≥ 0x80, and node:buffer's latin1 codec for inputs of 4 KiB
// and more, must give char code = byte value, for every byte, for empty input
// and for inputs longer than one String.fromCharCode chunk.

import assert from "node:assert/strict";
import { bytesToLatin1, latin1Into, latin1ToBytes } from "../../../src/kv/latin1.ts";

/** Char codes of a string, for comparing with bytes. */
const codes = (text: string): number[] => Array.from(text, (c) => c.charCodeAt(0));

/** Bytes of a seeded pattern: `highByte` decides whether bytes ≥ 0x80 appear. */
function pattern(length: number, highByte: boolean): Uint8Array {
  const out = new Uint8Array(length);
  for (let i = 0; i < length; i++) out[i] = highByte ? (i * 131 + 7) & 0xff : (i * 31 + 3) & 0x7f;
  return out;
}

Deno.test("bytesToLatin1 maps each of the 256 byte values to the character with that code", () => {
  const all = new Uint8Array(256);
  for (let b = 0; b < 256; b++) all[b] = b;
  const text = bytesToLatin1(all);
  assert.equal(text.length, 256);
  assert.deepEqual(codes(text), Array.from(all));
  assert.deepEqual(latin1ToBytes(text), all);
});

Deno.test("every single byte round-trips alone, including NUL, 0x7f, 0x80 and 0xff", () => {
  for (let b = 0; b < 256; b++) {
    const text = bytesToLatin1(Uint8Array.of(b));
    assert.equal(text, String.fromCharCode(b), `byte 0x${b.toString(16)}`);
    assert.deepEqual(latin1ToBytes(text), Uint8Array.of(b));
  }
});

Deno.test("empty input gives the empty string and back", () => {
  assert.equal(bytesToLatin1(new Uint8Array(0)), "");
  assert.deepEqual(latin1ToBytes(""), new Uint8Array(0));
  const out = Uint8Array.of(1, 2, 3);
  latin1Into("", out, 1);
  assert.deepEqual(out, Uint8Array.of(1, 2, 3));
});

Deno.test("ASCII fast path: plain text comes out as the same text", () => {
  const bytes = new TextEncoder().encode("user01\tKaspa\x00\x7f city=Vilnius");
  const text = bytesToLatin1(bytes);
  assert.equal(text, "user01\tKaspa\x00\x7f city=Vilnius");
  assert.deepEqual(latin1ToBytes(text), bytes);
});

Deno.test("non-ASCII path: valid UTF-8 is NOT decoded as UTF-8 but kept byte for byte", () => {
  // "ą" is C4 85 in UTF-8: two characters here, not one.
  const bytes = new TextEncoder().encode("ąž");
  assert.equal(bytes.length, 4);
  const text = bytesToLatin1(bytes);
  assert.equal(text.length, 4);
  assert.deepEqual(codes(text), [0xc4, 0x85, 0xc5, 0xbe]);
  assert.deepEqual(latin1ToBytes(text), bytes);
});

Deno.test("non-ASCII path: a UTF-8 byte order mark and invalid UTF-8 survive unchanged", () => {
  // A UTF-8 decoder would drop the BOM or turn FF FE into U+FFFD.
  for (const bytes of [Uint8Array.of(0xef, 0xbb, 0xbf, 0x41), Uint8Array.of(0xff, 0xfe, 0x00)]) {
    const text = bytesToLatin1(bytes);
    assert.deepEqual(codes(text), Array.from(bytes));
    assert.deepEqual(latin1ToBytes(text), bytes);
  }
});

Deno.test("a high byte only at the very end still takes the exact path", () => {
  const bytes = new Uint8Array(10_000).fill(0x61);
  bytes[bytes.length - 1] = 0xe9;
  const text = bytesToLatin1(bytes);
  assert.equal(text.length, 10_000);
  assert.equal(text.charCodeAt(9_999), 0xe9);
  assert.deepEqual(latin1ToBytes(text), bytes);
});

Deno.test("long inputs round-trip on every path: around the 4 KiB native threshold and across 8192-character chunks", () => {
  for (const length of [4095, 4096, 4097, 8191, 8192, 8193, 16_384, 20_000, 100_003]) {
    for (const highByte of [false, true]) {
      const bytes = pattern(length, highByte);
      const text = bytesToLatin1(bytes);
      assert.equal(text.length, length, `length ${length}, high bytes ${highByte}`);
      // Spot checks at the chunk edges, then the whole round trip.
      for (const at of [0, 8191, 8192, length - 1]) {
        if (at < length) assert.equal(text.charCodeAt(at), bytes[at]);
      }
      assert.deepEqual(codes(text), Array.from(bytes));
      assert.deepEqual(latin1ToBytes(text), bytes);
    }
  }
});

Deno.test("bytesToLatin1 reads only the bytes of a view, not its whole buffer", () => {
  const backing = Uint8Array.of(0xff, 0x41, 0xe9, 0x42, 0xff);
  assert.equal(bytesToLatin1(backing.subarray(1, 4)), "A\xe9B");
  assert.equal(bytesToLatin1(backing.subarray(1, 2)), "A");
  assert.equal(bytesToLatin1(backing.subarray(2, 2)), "");
});

Deno.test("latin1Into writes at the offset and leaves the bytes around it alone (both paths)", () => {
  for (const text of ["abc", "a\xe9\xff"]) {
    const out = new Uint8Array(7).fill(0x2e);
    latin1Into(text, out, 2);
    assert.deepEqual(Array.from(out), [0x2e, 0x2e, ...codes(text), 0x2e, 0x2e], text);
  }
});

Deno.test("latin1Into of a long non-ASCII string inside a larger buffer is exact", () => {
  const bytes = pattern(20_000, true);
  const text = bytesToLatin1(bytes);
  const out = new Uint8Array(20_010).fill(0x5a);
  latin1Into(text, out, 5);
  assert.deepEqual(out.subarray(5, 20_005), bytes);
  assert.deepEqual(Array.from(out.subarray(0, 5)), [0x5a, 0x5a, 0x5a, 0x5a, 0x5a]);
  assert.deepEqual(Array.from(out.subarray(20_005)), [0x5a, 0x5a, 0x5a, 0x5a, 0x5a]);
});

Deno.test("latin1ToBytes returns a fresh array each time", () => {
  const a = latin1ToBytes("key");
  const b = latin1ToBytes("key");
  a[0] = 0;
  assert.deepEqual(b, new TextEncoder().encode("key"));
});

Deno.test("large inputs (native path) read only their view and come back as fresh bytes", () => {
  const backing = pattern(10_000, true);
  const view = backing.subarray(1000, 9000);
  const text = bytesToLatin1(view);
  assert.equal(text.length, 8000);
  assert.deepEqual(codes(text), Array.from(view));
  const bytes = latin1ToBytes(text);
  assert.deepEqual(bytes, view);
  bytes[0] = bytes[0]! ^ 0xff;
  assert.equal(bytesToLatin1(view), text, "changing the result leaves the source alone");
  // A large all-ASCII string too.
  const ascii = "k".repeat(5000) + "\x00\x7f";
  assert.deepEqual(latin1ToBytes(ascii), new Uint8Array([...new Array(5000).fill(0x6b), 0, 0x7f]));
});
