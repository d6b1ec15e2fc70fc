// Unit tests of src/kv/store.ts: applying SET/DEL/TERM records and binary-safe reads.

import assert from "node:assert/strict";
import type { WalRecord } from "../../../src/codec/wal_line.ts";
import { KvStore } from "../../../src/kv/store.ts";

const utf8 = new TextEncoder();
const b = (s: string): Uint8Array => utf8.encode(s);
const show = (v: Uint8Array | undefined): string | undefined =>
  v === undefined ? undefined : new TextDecoder().decode(v);

const set = (index: number, key: Uint8Array | string, value: Uint8Array | string): WalRecord => ({
  op: "SET",
  index,
  key: typeof key === "string" ? b(key) : key,
  value: typeof value === "string" ? b(value) : value,
});
const del = (index: number, key: Uint8Array | string): WalRecord => ({
  op: "DEL",
  index,
  key: typeof key === "string" ? b(key) : key,
});

Deno.test("an empty store has no keys", () => {
  const kv = new KvStore();
  assert.equal(kv.size, 0);
  assert.equal(kv.get(b("user01")), undefined);
});

Deno.test("SET stores a value that GET returns; a second SET overwrites it", () => {
  const kv = new KvStore();
  assert.deepEqual(kv.apply(set(1, "user01", "Kaspa")), { kind: "set" });
  assert.equal(show(kv.get(b("user01"))), "Kaspa");
  kv.apply(set(2, "user01", "Vilnius"));
  assert.equal(show(kv.get(b("user01"))), "Vilnius");
  assert.equal(kv.size, 1);
});

Deno.test("DEL removes a key and reports whether it existed", () => {
  const kv = new KvStore();
  kv.apply(set(1, "user01", "Kaspa"));
  kv.apply(set(2, "city", "Vilnius"));
  assert.deepEqual(kv.apply(del(3, "user01")), { kind: "del", existed: true });
  assert.equal(kv.get(b("user01")), undefined);
  assert.deepEqual(kv.apply(del(4, "user01")), { kind: "del", existed: false });
  assert.deepEqual(kv.apply(del(5, "nobody")), { kind: "del", existed: false });
  assert.equal(show(kv.get(b("city"))), "Vilnius");
  assert.equal(kv.size, 1);
});

Deno.test("a TERM marker is a no-op for the state machine", () => {
  const kv = new KvStore();
  kv.apply(set(1, "a", "1"));
  assert.deepEqual(kv.apply({ op: "TERM", index: 2, term: 7 }), { kind: "noop" });
  assert.equal(kv.size, 1);
  assert.equal(show(kv.get(b("a"))), "1");
});

Deno.test("state machine safety: replaying the request's example WAL gives the same map", () => {
  const records = [set(1, "user01", "Kaspa"), set(2, "city", "Vilnius"), del(3, "user01")];
  const a = new KvStore();
  const c = new KvStore();
  for (const r of records) a.apply(r);
  for (const r of records) c.apply(r);
  for (const kv of [a, c]) {
    assert.equal(kv.size, 1);
    assert.equal(kv.get(b("user01")), undefined);
    assert.equal(show(kv.get(b("city"))), "Vilnius");
  }
});

Deno.test("keys are binary-safe: every byte value, NUL and invalid UTF-8 are distinct keys", () => {
  const kv = new KvStore();
  for (let byte = 0; byte < 256; byte++) kv.apply(set(byte + 1, Uint8Array.of(byte), `v${byte}`));
  assert.equal(kv.size, 256);
  for (let byte = 0; byte < 256; byte++) {
    assert.equal(show(kv.get(Uint8Array.of(byte))), `v${byte}`);
  }
  // Two invalid UTF-8 sequences that a lossy decode would both map to U+FFFD.
  kv.apply(set(300, Uint8Array.of(0xff, 0xfe), "x"));
  kv.apply(set(301, Uint8Array.of(0xfe, 0xff), "y"));
  assert.equal(show(kv.get(Uint8Array.of(0xff, 0xfe))), "x");
  assert.equal(show(kv.get(Uint8Array.of(0xfe, 0xff))), "y");
  // The empty key is a key like any other.
  kv.apply(set(302, new Uint8Array(0), "empty"));
  assert.equal(show(kv.get(new Uint8Array(0))), "empty");
});

Deno.test("keys that are views into a larger buffer are read by their own bytes only", () => {
  const kv = new KvStore();
  const backing = b("xxuser01yy");
  kv.apply(set(1, backing.subarray(2, 8), "Kaspa"));
  assert.equal(show(kv.get(b("user01"))), "Kaspa");
  assert.equal(show(kv.get(b("xxuser01yy").subarray(2, 8))), "Kaspa");
  assert.equal(kv.get(backing), undefined);
});

Deno.test("values are binary-safe and returned byte for byte", () => {
  const kv = new KvStore();
  const value = new Uint8Array(1024);
  for (let i = 0; i < value.length; i++) value[i] = (i * 131) & 0xff;
  kv.apply(set(1, "blob", value));
  assert.deepEqual(kv.get(b("blob")), value);
  kv.apply(set(2, "empty", new Uint8Array(0)));
  assert.deepEqual(kv.get(b("empty")), new Uint8Array(0));
});
