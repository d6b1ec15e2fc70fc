// Unit tests of src/kv/store.ts: applying SET/DEL/TERM records, binary-safe reads,
// replaceAll and point-in-time snapshot cursors.

import assert from "node:assert/strict";
import type { WalRecord } from "../../../src/codec/wal_line.ts";
import { KvStore, type SnapshotCursor } from "../../../src/kv/store.ts";

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

// ---- latin1 storage, replaceAll and point-in-time snapshots ------------------

/** Every pair a cursor gives, read in chunks of `max`, as a plain map. */
function drain(cursor: SnapshotCursor, max = 2): Map<string, string> {
  const out = new Map<string, string>();
  for (let pairs = cursor.next(max); pairs !== null; pairs = cursor.next(max)) {
    assert.ok(pairs.length <= max, `a chunk holds at most ${max} pairs`);
    for (const [k, v] of pairs) {
      assert.ok(!out.has(k), `key ${JSON.stringify(k)} given twice`);
      out.set(k, v);
    }
  }
  return out;
}

Deno.test("KvStore: keys and values are held as one-character-per-byte (latin1) strings", () => {
  const kv = new KvStore();
  kv.apply(set(1, Uint8Array.of(0xc4, 0x85), Uint8Array.of(0x00, 0xff, 0x41)));
  const cursor = kv.beginSnapshot();
  try {
    assert.deepEqual(drain(cursor), new Map([["\xc4\x85", "\x00\xffA"]]));
  } finally {
    cursor.end();
  }
});

Deno.test("KvStore: the constructor and replaceAll take latin1 pairs that get() returns as bytes", () => {
  const kv = new KvStore(new Map([["a", "1"]]));
  assert.equal(kv.size, 1);
  assert.equal(show(kv.get(b("a"))), "1");
  kv.replaceAll(new Map([["\xff\x00", "\x80"], ["city", "Vilnius"]]));
  assert.equal(kv.size, 2);
  assert.equal(kv.get(b("a")), undefined, "the old state is gone whole");
  assert.deepEqual(kv.get(Uint8Array.of(0xff, 0x00)), Uint8Array.of(0x80));
  assert.equal(show(kv.get(b("city"))), "Vilnius");
  // Entries after the snapshot apply on top of it.
  kv.apply(del(10, "city"));
  kv.apply(set(11, "a", "2"));
  assert.equal(kv.get(b("city")), undefined);
  assert.equal(show(kv.get(b("a"))), "2");
});

Deno.test("beginSnapshot: with no writes meanwhile the cursor gives every pair once", () => {
  const kv = new KvStore();
  for (let i = 1; i <= 7; i++) kv.apply(set(i, `k${i}`, `v${i}`));
  const cursor = kv.beginSnapshot();
  try {
    assert.equal(cursor.keys, 7);
    const got = drain(cursor, 3);
    assert.deepEqual(got, new Map(Array.from({ length: 7 }, (_, i) => [`k${i + 1}`, `v${i + 1}`])));
    assert.equal(cursor.next(3), null, "stays done");
  } finally {
    cursor.end();
  }
});

Deno.test("beginSnapshot of an empty store gives no pairs", () => {
  const kv = new KvStore();
  const cursor = kv.beginSnapshot();
  assert.equal(cursor.keys, 0);
  assert.equal(cursor.next(10), null);
  cursor.end();
});

Deno.test("beginSnapshot: a point-in-time view while SET and DEL keep being applied", () => {
  const kv = new KvStore();
  for (let i = 1; i <= 6; i++) kv.apply(set(i, `k${i}`, `v${i}`));
  const cursor = kv.beginSnapshot();
  try {
    assert.equal(cursor.keys, 6);
    const first = cursor.next(2); // keys the cursor has seen
    assert.ok(first !== null && first.length === 2);
    const seen = first.map(([k]) => k);
    const unseen = ["k1", "k2", "k3", "k4", "k5", "k6"].filter((k) => !seen.includes(k));
    const [u1, u2, u3, u4] = unseen as [string, string, string, string];
    // Changes to keys already read, and to keys not yet read.
    let index = 10;
    kv.apply(set(index++, seen[0]!, "changed"));
    kv.apply(del(index++, seen[1]!));
    kv.apply(set(index++, u1, "changed"));
    kv.apply(set(index++, u1, "changed twice")); // only the first change is remembered
    kv.apply(del(index++, u2));
    kv.apply(del(index++, u3));
    kv.apply(set(index++, u3, "back again"));
    // Keys added after the start: never part of the snapshot.
    kv.apply(set(index++, "new1", "x"));
    kv.apply(set(index++, "new2", "y"));
    kv.apply(del(index++, "new2"));
    const rest = drain(cursor, 1);
    for (const [k, v] of first) rest.set(k, v);
    assert.deepEqual(
      rest,
      new Map(Array.from({ length: 6 }, (_, i) => [`k${i + 1}`, `v${i + 1}`])),
      "every key with its value as of beginSnapshot",
    );
    assert.equal(rest.has("new1"), false);
    // The live state moved on meanwhile.
    assert.equal(show(kv.get(b(u1))), "changed twice");
    assert.equal(kv.get(b(u2)), undefined);
    assert.equal(show(kv.get(b(u3))), "back again");
    assert.equal(show(kv.get(b(u4))), `v${u4.slice(1)}`);
    assert.equal(show(kv.get(b("new1"))), "x");
  } finally {
    cursor.end();
  }
});

Deno.test("beginSnapshot: a key deleted after the start appears with its old value", () => {
  const kv = new KvStore();
  kv.apply(set(1, "user01", "Kaspa"));
  kv.apply(set(2, "city", "Vilnius"));
  const cursor = kv.beginSnapshot();
  try {
    kv.apply(del(3, "user01"));
    kv.apply(del(4, "city"));
    assert.equal(kv.size, 0);
    assert.deepEqual(drain(cursor), new Map([["user01", "Kaspa"], ["city", "Vilnius"]]));
  } finally {
    cursor.end();
  }
});

Deno.test("beginSnapshot: a second snapshot while one is open throws; after end() one may begin", () => {
  const kv = new KvStore();
  kv.apply(set(1, "a", "1"));
  const first = kv.beginSnapshot();
  assert.throws(() => kv.beginSnapshot(), /already being taken/);
  first.end();
  const second = kv.beginSnapshot();
  second.end();
});

Deno.test("end() stops recording: later changes show through and a new snapshot sees them", () => {
  const kv = new KvStore();
  kv.apply(set(1, "a", "1"));
  kv.apply(set(2, "b", "1"));
  const first = kv.beginSnapshot();
  first.end();
  kv.apply(set(3, "a", "2"));
  kv.apply(del(4, "b"));
  // Nothing was remembered for the ended cursor: it reads the live state.
  assert.deepEqual(drain(first), new Map([["a", "2"]]));
  const second = kv.beginSnapshot();
  try {
    assert.equal(second.keys, 1);
    assert.deepEqual(drain(second), new Map([["a", "2"]]));
  } finally {
    second.end();
  }
});

Deno.test("end() of an older cursor does not stop a newer snapshot's recording", () => {
  const kv = new KvStore();
  kv.apply(set(1, "a", "1"));
  const old = kv.beginSnapshot();
  old.end();
  const current = kv.beginSnapshot();
  try {
    old.end(); // late or repeated end of the finished snapshot
    kv.apply(set(2, "a", "2"));
    assert.throws(() => kv.beginSnapshot(), /already being taken/);
    assert.deepEqual(drain(current), new Map([["a", "1"]]));
  } finally {
    current.end();
  }
});

Deno.test("replaceAll during a snapshot: the open cursor keeps its view and a new snapshot may begin", () => {
  const kv = new KvStore();
  kv.apply(set(1, "a", "1"));
  kv.apply(set(2, "b", "2"));
  const cursor = kv.beginSnapshot();
  kv.replaceAll(new Map([["z", "26"]]));
  kv.apply(set(3, "a", "changed"));
  assert.deepEqual(drain(cursor), new Map([["a", "1"], ["b", "2"]]));
  const next = kv.beginSnapshot(); // replaceAll ended the recording
  try {
    assert.deepEqual(drain(next), new Map([["z", "26"], ["a", "changed"]]));
  } finally {
    next.end();
    cursor.end();
  }
});

Deno.test("a stored value does not pin the buffer it arrived in (it is a copy)", () => {
  const kv = new KvStore();
  const key = b("k");
  const value = b("original");
  kv.apply(set(1, key, value));
  value.fill(0x21);
  key.fill(0x21);
  assert.equal(show(kv.get(b("k"))), "original");
  // And get() returns a fresh array each time.
  const got = kv.get(b("k"))!;
  got.fill(0);
  assert.equal(show(kv.get(b("k"))), "original");
});

Deno.test("cursor.next stops early once a chunk holds bytesMax bytes of keys and values, giving at least one", () => {
  const kv = new KvStore();
  for (let i = 1; i <= 6; i++) kv.apply(set(i, `k${i}`, "vv")); // 4 bytes a pair
  const cursor = kv.beginSnapshot();
  try {
    const first = cursor.next(10, 5);
    assert.equal(first?.length, 2, "4 bytes < 5, then 8 bytes: stop");
    const second = cursor.next(10, 1);
    assert.equal(second?.length, 1, "a pair larger than bytesMax still comes, alone");
    const third = cursor.next(2, 1000);
    assert.equal(third?.length, 2, "max still bounds the count");
    const rest = cursor.next(10);
    assert.equal(rest?.length, 1);
    assert.equal(cursor.next(10, 5), null);
    const all = [...first!, ...second!, ...third!, ...rest!];
    assert.deepEqual(
      new Map(all),
      new Map(Array.from({ length: 6 }, (_, i) => [`k${i + 1}`, "vv"])),
    );
  } finally {
    cursor.end();
  }
});

Deno.test("cursor.next counts bytes by the snapshot's view: a value replaced after the start counts at its old size", () => {
  const kv = new KvStore();
  kv.apply(set(1, "a", "x"));
  kv.apply(set(2, "b", "y"));
  const cursor = kv.beginSnapshot();
  try {
    kv.apply(set(3, "a", "z".repeat(1000)));
    kv.apply(set(4, "b", "z".repeat(1000)));
    // Both old pairs are 2 bytes: both fit in 10.
    assert.deepEqual(cursor.next(10, 10), [["a", "x"], ["b", "y"]]);
  } finally {
    cursor.end();
  }
});
