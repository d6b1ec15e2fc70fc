// Unit tests of the snapshot file (src/storage/snapshot_file.ts) against real
// files in a temporary directory: write from a KvStore cursor while entries
// keep being applied, read back and check, the temporary file's fate, damage
// reported as SnapshotDamagedError, and the header-only read.

import assert from "node:assert/strict";
import { crc32 } from "node:zlib";
import {
  encodeSnapshotHeader,
  encodeSnapshotTrailer,
  type SnapshotMeta,
} from "../../../src/codec/snapshot.ts";
import type { WalRecord } from "../../../src/codec/wal_line.ts";
import { KvStore, type SnapshotCursor } from "../../../src/kv/store.ts";
import {
  installSnapshotFile,
  loadSnapshotFile,
  parseSnapshotBytes,
  readSnapshotFile,
  readSnapshotMeta,
  receivePath,
  SnapshotDamagedError,
  snapshotPath,
  writeSnapshotFile,
} from "../../../src/storage/snapshot_file.ts";
import { exists, withTempDir } from "../../support/temp_dir.ts";

const utf8 = new TextEncoder();
const b = (s: string): Uint8Array => utf8.encode(s);

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

const meta: SnapshotMeta = { index: 12, term: 2, lineHash: 0x1234abcd };

/** Writes a snapshot of `kv` as it is now, ending the cursor as callers must. */
async function writeStore(path: string, m: SnapshotMeta, kv: KvStore) {
  const cursor = kv.beginSnapshot();
  try {
    return await writeSnapshotFile(path, m, cursor);
  } finally {
    cursor.end();
  }
}

/** A store's whole state as latin1 pairs, read through a cursor. */
function stateOf(kv: KvStore): Map<string, string> {
  const cursor = kv.beginSnapshot();
  try {
    const out = new Map<string, string>();
    for (let pairs = cursor.next(1000); pairs !== null; pairs = cursor.next(1000)) {
      for (const [k, v] of pairs) out.set(k, v);
    }
    return out;
  } finally {
    cursor.end();
  }
}

function concat(parts: readonly Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((sum, p) => sum + p.length, 0));
  let w = 0;
  for (const p of parts) {
    out.set(p, w);
    w += p.length;
  }
  return out;
}

Deno.test("snapshotPath and receivePath name nodeN.snap in the data directory", () => {
  assert.equal(snapshotPath("/var/kv", 2), "/var/kv/node2.snap");
  assert.equal(snapshotPath("/var/kv//", 2), "/var/kv/node2.snap");
  assert.equal(snapshotPath("", 1), "./node1.snap");
  assert.equal(receivePath("/var/kv/node2.snap"), "/var/kv/node2.snap.recv");
});

Deno.test("writeSnapshotFile then readSnapshotFile round-trips meta and every pair", async () => {
  await withTempDir(async (dir) => {
    const path = snapshotPath(dir, 1);
    const kv = new KvStore();
    kv.apply(set(1, "user01", "Kaspa"));
    kv.apply(set(2, "city", "Vilnius"));
    kv.apply(set(3, Uint8Array.of(0x00, 0x09, 0x0a, 0xff), Uint8Array.of(0x5c, 0x0d, 0x80)));
    kv.apply(set(4, "empty", ""));
    kv.apply(del(5, "user01"));
    const written = await writeStore(path, meta, kv);
    const size = (await Deno.stat(path)).size;
    assert.deepEqual(written, { bytes: size, keys: 3 });
    assert.equal(await exists(`${path}.tmp`), false, "the temporary file is renamed away");

    const loaded = await readSnapshotFile(path);
    assert.ok(loaded !== null);
    assert.deepEqual(loaded.meta, meta);
    assert.equal(loaded.bytes, size);
    assert.deepEqual(loaded.pairs, stateOf(kv));
    // The state rebuilt from the file answers reads like the original.
    const rebuilt = new KvStore(loaded.pairs);
    assert.deepEqual(
      rebuilt.get(Uint8Array.of(0x00, 0x09, 0x0a, 0xff)),
      Uint8Array.of(0x5c, 0x0d, 0x80),
    );
    assert.equal(rebuilt.get(b("user01")), undefined);
    assert.equal(rebuilt.size, 3);
  });
});

Deno.test("the file is text: the header, one line per key, and the END line", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/node3.snap`;
    const kv = new KvStore();
    kv.apply(set(1, "a", "1"));
    await writeStore(path, { index: 1, term: 1, lineHash: 7 }, kv);
    const bytes = await Deno.readFile(path);
    const body = b("KVSNAP\t1\t1\t1\t7\na\t1\n");
    assert.deepEqual(bytes, concat([body, encodeSnapshotTrailer(1, crc32(body))]));
  });
});

Deno.test("an empty store writes an empty snapshot that reads back as no pairs", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/node1.snap`;
    const written = await writeStore(path, { index: 0, term: 0, lineHash: 0 }, new KvStore());
    assert.equal(written.keys, 0);
    const loaded = await readSnapshotFile(path);
    assert.deepEqual(loaded?.meta, { index: 0, term: 0, lineHash: 0 });
    assert.equal(loaded?.pairs.size, 0);
  });
});

Deno.test("writeSnapshotFile keeps the view of the snapshot's start while entries are applied between chunks", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/node1.snap`;
    const kv = new KvStore();
    const keys = 10_000; // more than one chunk of pairs
    for (let i = 0; i < keys; i++) kv.apply(set(i + 1, `key${i}`, `value ${i}`));
    const before = stateOf(kv);
    const cursor = kv.beginSnapshot();
    let writing = true;
    const done = writeSnapshotFile(path, meta, cursor).finally(() => (writing = false));
    // Writes go on while the snapshot is taken: changes to every key, deletes,
    // and new keys, in turns between the writer's chunks.
    let index = keys + 1;
    let round = 0;
    while (writing) {
      for (let i = round; i < keys; i += 97) {
        kv.apply(set(index++, `key${i}`, `changed in round ${round}`));
        kv.apply(del(index++, `key${(i + 1) % keys}`));
      }
      kv.apply(set(index++, `new${round}`, "added later"));
      round++;
      await new Promise((r) => setTimeout(r, 0));
    }
    const written = await done;
    cursor.end();
    assert.ok(round > 1, "entries were applied while the file was being written");
    assert.equal(written.keys, keys);
    const loaded = await readSnapshotFile(path);
    assert.ok(loaded !== null);
    assert.deepEqual(loaded.pairs, before);
    assert.notDeepEqual(stateOf(kv), before, "the live state moved on");
  });
});

Deno.test("writeSnapshotFile replaces an older snapshot atomically", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/node1.snap`;
    const kv = new KvStore();
    kv.apply(set(1, "a", "old"));
    await writeStore(path, { index: 1, term: 1, lineHash: 1 }, kv);
    kv.apply(set(2, "a", "new"));
    kv.apply(set(3, "b", "new"));
    await writeStore(path, { index: 3, term: 1, lineHash: 3 }, kv);
    const loaded = await readSnapshotFile(path);
    assert.deepEqual(loaded?.meta, { index: 3, term: 1, lineHash: 3 });
    assert.deepEqual(loaded?.pairs, new Map([["a", "new"], ["b", "new"]]));
    assert.deepEqual(Array.from(Deno.readDirSync(dir)).map((e) => e.name), ["node1.snap"]);
  });
});

Deno.test("a snapshot larger than one read piece (4 MiB) reads back whole", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/node1.snap`;
    const kv = new KvStore();
    const value = "x".repeat(100);
    // Some values need escapes, so escaped fields fall on piece boundaries too.
    for (let i = 0; i < 50_000; i++) {
      kv.apply(set(i + 1, `key${i}`, i % 7 === 0 ? `${value}\t\\${i}` : `${value}${i}`));
    }
    const written = await writeStore(path, meta, kv);
    assert.ok(written.bytes > 4 * 1024 * 1024, `${written.bytes} bytes`);
    assert.equal(written.keys, 50_000);
    const loaded = await readSnapshotFile(path);
    assert.ok(loaded !== null);
    assert.equal(loaded.bytes, written.bytes);
    assert.deepEqual(loaded.pairs, stateOf(kv));
  });
});

Deno.test("a snapshot of values of several MiB each round-trips (chunks bounded by bytes)", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/node1.snap`;
    const kv = new KvStore();
    for (let i = 0; i < 4; i++) {
      // Binary values: some bytes need escapes, so the file is larger still.
      const value = new Uint8Array(3 * 1024 * 1024);
      for (let j = 0; j < value.length; j++) value[j] = (j * 131 + i) & 0xff;
      kv.apply(set(i + 1, `big${i}`, value));
    }
    kv.apply(set(5, "small", "s"));
    const written = await writeStore(path, meta, kv);
    assert.equal(written.keys, 5);
    const loaded = await readSnapshotFile(path);
    assert.ok(loaded !== null);
    assert.equal(loaded.bytes, written.bytes);
    assert.deepEqual(loaded.pairs, stateOf(kv));
  });
});

Deno.test("a failed snapshot write leaves the previous snapshot in place and no .tmp file", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/node1.snap`;
    const kv = new KvStore();
    kv.apply(set(1, "a", "1"));
    await writeStore(path, { index: 1, term: 1, lineHash: 1 }, kv);
    const old = await Deno.readFile(path);
    // A cursor that breaks halfway (the state machine's bug, say).
    const failing: SnapshotCursor = {
      keys: 2,
      next: () => {
        throw new Error("cursor broke (injected)");
      },
      end: () => {},
    };
    await assert.rejects(
      writeSnapshotFile(path, { index: 2, term: 1, lineHash: 2 }, failing),
      /cursor broke/,
    );
    assert.equal(await exists(`${path}.tmp`), false);
    assert.deepEqual(await Deno.readFile(path), old);
  });
});

Deno.test("readSnapshotFile of a missing file is null", async () => {
  await withTempDir(async (dir) => {
    assert.equal(await readSnapshotFile(`${dir}/node1.snap`), null);
    assert.equal(await readSnapshotMeta(`${dir}/node1.snap`), null);
  });
});

Deno.test("readSnapshotFile removes a leftover .tmp or .recv file, never taking it for the snapshot", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/node1.snap`;
    await Deno.writeTextFile(`${path}.tmp`, "half a snapshot");
    await Deno.writeTextFile(receivePath(path), "half a transfer");
    assert.equal(await readSnapshotFile(path), null, "no snapshot: leftovers are not one");
    assert.equal(await exists(`${path}.tmp`), false);
    assert.equal(await exists(receivePath(path)), false);

    const kv = new KvStore();
    kv.apply(set(1, "a", "1"));
    await writeStore(path, meta, kv);
    await Deno.writeTextFile(`${path}.tmp`, "half of a newer snapshot");
    const loaded = await readSnapshotFile(path);
    assert.deepEqual(loaded?.pairs, new Map([["a", "1"]]));
    assert.equal(await exists(`${path}.tmp`), false);
  });
});

Deno.test("a damaged snapshot file throws SnapshotDamagedError naming the path", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/node2.snap`;
    const kv = new KvStore();
    kv.apply(set(1, "user01", "Kaspa"));
    kv.apply(set(2, "city", "Vilnius"));
    await writeStore(path, meta, kv);
    const bytes = await Deno.readFile(path);
    const at = new TextDecoder().decode(bytes).indexOf("Kaspa");
    bytes[at] = bytes[at]! ^ 0x20; // "K" → "k"
    await Deno.writeFile(path, bytes);
    await assert.rejects(readSnapshotFile(path), (error: unknown) => {
      assert.ok(error instanceof SnapshotDamagedError);
      assert.equal(error.name, "SnapshotDamagedError");
      assert.equal(error.path, path);
      assert.match(
        error.message,
        new RegExp(`^Snapshot file "${path}" is damaged: Checksum mismatch: END line says`),
      );
      return true;
    });
    assert.deepEqual(await Deno.readFile(path), bytes, "a damaged file is left as it was");
  });
});

Deno.test("a damaged line is named by its line number in the error", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/node2.snap`;
    // Checksum and key count right, but a key twice: only a buggy writer does that.
    const body = concat([encodeSnapshotHeader(meta), b("a\t1\nb\t2\na\t3\n")]);
    await Deno.writeFile(path, concat([body, encodeSnapshotTrailer(3, crc32(body))]));
    await assert.rejects(
      readSnapshotFile(path),
      (error: unknown) =>
        error instanceof SnapshotDamagedError &&
        error.message === `Snapshot file "${path}" is damaged: line 4: Key appears twice`,
    );
  });
});

Deno.test("a snapshot cut short or of another format is damage, not an empty state", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/node1.snap`;
    const kv = new KvStore();
    kv.apply(set(1, "a", "1"));
    await writeStore(path, meta, kv);
    const bytes = await Deno.readFile(path);
    await Deno.writeFile(path, bytes.subarray(0, bytes.length - 5));
    await assert.rejects(readSnapshotFile(path), SnapshotDamagedError);
    await Deno.writeFile(path, new Uint8Array(0));
    await assert.rejects(readSnapshotFile(path), SnapshotDamagedError);
    // A WAL file put in its place by mistake.
    await Deno.writeTextFile(path, "1\tTERM\t1\n2\tSET\ta\t1\n");
    await assert.rejects(readSnapshotFile(path), SnapshotDamagedError);
    // A header and an END line, but the pairs between them went missing.
    const body = encodeSnapshotHeader(meta);
    await Deno.writeFile(path, concat([body, encodeSnapshotTrailer(1, crc32(body))]));
    await assert.rejects(readSnapshotFile(path), /END line says 1 keys, file holds 0/);
  });
});

Deno.test("readSnapshotMeta reads the header only: the rest of the file is not checked", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/node1.snap`;
    // A header followed by garbage and no END line.
    await Deno.writeFile(path, concat([encodeSnapshotHeader(meta), b("no tab here\n\\q\tx")]));
    assert.deepEqual(await readSnapshotMeta(path), meta);
    await assert.rejects(readSnapshotFile(path), SnapshotDamagedError);

    // A real snapshot bigger than the header read.
    const kv = new KvStore();
    for (let i = 0; i < 100; i++) kv.apply(set(i + 1, `key${i}`, "x".repeat(100)));
    await writeStore(path, { index: 100, term: 4, lineHash: 0xffffffff }, kv);
    assert.deepEqual(await readSnapshotMeta(path), { index: 100, term: 4, lineHash: 0xffffffff });
  });
});

Deno.test("readSnapshotMeta of a file without a snapshot header throws SnapshotDamagedError", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/node1.snap`;
    await Deno.writeTextFile(path, "KVSNAP\t9\t1\t1\t0\n");
    await assert.rejects(readSnapshotMeta(path), (error: unknown) => {
      assert.ok(error instanceof SnapshotDamagedError);
      assert.equal(error.path, path);
      assert.equal(
        error.message,
        `Snapshot file "${path}" is damaged: Unknown snapshot version "9"`,
      );
      return true;
    });
    await Deno.writeFile(path, new Uint8Array(0));
    await assert.rejects(readSnapshotMeta(path), /No snapshot header line/);
  });
});

Deno.test("installSnapshotFile moves a received snapshot into place", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/node1.snap`;
    const kv = new KvStore();
    kv.apply(set(1, "from", "leader"));
    await writeStore(receivePath(path), meta, kv);
    await installSnapshotFile(receivePath(path), path);
    assert.equal(await exists(receivePath(path)), false);
    const loaded = await readSnapshotFile(path);
    assert.deepEqual(loaded?.pairs, new Map([["from", "leader"]]));
  });
});

Deno.test("loadSnapshotFile reports damage as a value naming the line, and null for no file", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/node1.snap`;
    assert.equal(await loadSnapshotFile(path), null);
    const body = concat([encodeSnapshotHeader(meta), b("a\t1\nno tab\n")]);
    const bytes = concat([body, encodeSnapshotTrailer(2, crc32(body))]);
    await Deno.writeFile(path, bytes);
    assert.deepEqual(await loadSnapshotFile(path), { ok: false, error: "line 3: Line has no TAB" });
    // The in-memory parse with the real checksum agrees.
    const inMemory = await parseSnapshotBytes(bytes);
    assert.equal(inMemory.ok, false);
    assert.equal(inMemory.ok ? "" : inMemory.error, "line 3: Line has no TAB");
    // And a good file loads whole, with its size.
    const good = concat([encodeSnapshotHeader(meta), b("a\t1\n")]);
    await Deno.writeFile(path, concat([good, encodeSnapshotTrailer(1, crc32(good))]));
    const loaded = await loadSnapshotFile(path);
    assert.ok(loaded !== null && loaded.ok);
    assert.deepEqual(loaded.pairs, new Map([["a", "1"]]));
    assert.equal(loaded.bytes, (await Deno.stat(path)).size);
  });
});
