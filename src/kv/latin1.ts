// Byte strings ⇄ JavaScript strings with one character per byte (char code =
// byte value). The state machine keeps keys and values in this form: V8
// stores such a string in one compact heap object of its length plus a small
// header, where a Uint8Array costs a typed-array object, an ArrayBuffer
// object and a separate backing store, about 250 bytes more per value. With a
// million 100-byte values that is the difference between about 1.7× and
// 3.3× the raw data in memory. Pure.

import { Buffer } from "node:buffer";

// UTF-8 and latin1 agree on ASCII, and the native UTF-8 codec is several
// times faster than building strings a character at a time; bytes ≥ 0x80
// take the slower exact path.
const utf8Decoder = new TextDecoder();
const utf8Encoder = new TextEncoder();

/** From this size on, node:buffer's native latin1 codec is faster than the
 * paths below (its fixed cost per call is higher); a 16 MiB binary value
 * took ~100 ms the slow way and takes a few ms this way. */
const nativeBytesMin = 4096;

/** Characters per String.fromCharCode call: far below any engine's argument limit. */
const charsPerCall = 8192;

export function bytesToLatin1(bytes: Uint8Array): string {
  if (bytes.length >= nativeBytesMin) {
    return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString("latin1");
  }
  let ascii = true;
  for (let i = 0; i < bytes.length; i++) {
    if (bytes[i]! >= 0x80) {
      ascii = false;
      break;
    }
  }
  if (ascii) return utf8Decoder.decode(bytes);
  let out = "";
  for (let at = 0; at < bytes.length; at += charsPerCall) {
    const part = bytes.subarray(at, Math.min(at + charsPerCall, bytes.length));
    out += String.fromCharCode.apply(null, part as unknown as number[]);
  }
  return out;
}

/** Bytes a latin1 string (as made by bytesToLatin1) stands for. */
export function latin1ToBytes(text: string): Uint8Array {
  if (text.length >= nativeBytesMin) {
    const b = Buffer.from(text, "latin1");
    return new Uint8Array(b.buffer, b.byteOffset, b.byteLength);
  }
  const out = new Uint8Array(text.length);
  latin1Into(text, out, 0);
  return out;
}

/** Writes the bytes `text` stands for into `out` at `at`; `out` must have
 * room for text.length bytes. */
export function latin1Into(text: string, out: Uint8Array, at: number): void {
  const target = out.subarray(at, at + text.length);
  const { read, written } = utf8Encoder.encodeInto(text, target);
  // All ASCII: UTF-8 wrote one byte per character, which is the answer.
  if (read === text.length && written === text.length) return;
  for (let i = 0; i < text.length; i++) target[i] = text.charCodeAt(i);
}
