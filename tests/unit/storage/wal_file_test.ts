// Unit tests of the WAL file (src/storage/wal_file.ts): parseWal on crafted
// byte strings (terms, torn tails, damage), and WalFile against real files in
// a temporary directory (persistence, group commit, truncate, failed fsync).

import assert from "node:assert/strict";
import { encodeWalLine, type WalRecord } from "../../../src/codec/wal_line.ts";
import {
  parseWal,
  parseWalAsync,
  WalDamagedError,
  WalFile,
  type WalFileHandle,
} from "../../../src/storage/wal_file.ts";
import { exists, withTempDir } from "../../support/temp_dir.ts";

const utf8 = new TextEncoder();
const text = (s: string): Uint8Array => utf8.encode(s);

function concat(parts: readonly Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((sum, p) => sum + p.length, 0));
  let w = 0;
  for (const p of parts) {
    out.set(p, w);
    w += p.length;
  }
  return out;
}

const term = (index: number, t: number): Uint8Array =>
  encodeWalLine({ op: "TERM", index, term: t });
const set = (index: number, key: string, value: string): Uint8Array =>
  encodeWalLine({ op: "SET", index, key: text(key), value: text(value) });
const del = (index: number, key: string): Uint8Array =>
  encodeWalLine({ op: "DEL", index, key: text(key) });

/** The example file from the format description. */
const exampleLines = [
  term(1, 1),
  set(2, "user01", "Kaspa"),
  set(3, "city", "Vilnius"),
  del(4, "user01"),
];

function damage(bytes: Uint8Array): { error: string; lineNumber: number } {
  const parsed = parseWal(bytes);
  assert.ok(!parsed.ok, "expected damage");
  return { error: parsed.error, lineNumber: parsed.lineNumber };
}

// ---- parseWal --------------------------------------------------------------

Deno.test("parseWal: an empty file is an empty log", () => {
  assert.deepEqual(parseWal(new Uint8Array()), {
    ok: true,
    entries: [],
    validBytes: 0,
    tornTail: null,
  });
});

Deno.test("parseWal: each entry's term is that of the nearest TERM line at or before it", () => {
  const lines = [...exampleLines, term(5, 3), set(6, "a", "b"), term(7, 3), del(8, "a")];
  const bytes = concat(lines);
  const parsed = parseWal(bytes);
  assert.ok(parsed.ok);
  assert.equal(parsed.tornTail, null);
  assert.equal(parsed.validBytes, bytes.length);
  assert.deepEqual(parsed.entries.map((e) => [e.index, e.term]), [
    [1, 1],
    [2, 1],
    [3, 1],
    [4, 1],
    [5, 3],
    [6, 3],
    [7, 3],
    [8, 3],
  ]);
  let offset = 0;
  for (const [i, entry] of parsed.entries.entries()) {
    assert.equal(entry.offset, offset);
    assert.deepEqual(entry.line, lines[i]);
    offset += entry.line.length;
  }
  const third = parsed.entries[2]!.record;
  assert.deepEqual(third, { op: "SET", index: 3, key: text("city"), value: text("Vilnius") });
});

Deno.test("parseWal: a last line without its newline is a torn tail", () => {
  const good = concat(exampleLines);
  const bytes = concat([good, text("5\tSET\tha")]);
  const parsed = parseWal(bytes);
  assert.ok(parsed.ok);
  assert.equal(parsed.entries.length, 4);
  assert.equal(parsed.validBytes, good.length);
  assert.equal(parsed.tornTail?.offset, good.length);
  assert.equal(parsed.tornTail?.bytes, 8);
  assert.match(parsed.tornTail.reason, /no newline/);
});

Deno.test("parseWal: a complete-looking last line without its newline is still torn", () => {
  // "5\tDEL\tcity" decodes, but the value could have been cut short.
  const good = concat(exampleLines);
  const parsed = parseWal(concat([good, text("5\tDEL\tcity")]));
  assert.ok(parsed.ok);
  assert.equal(parsed.entries.length, 4);
  assert.equal(parsed.validBytes, good.length);
});

Deno.test("parseWal: trailing zero bytes (file grew, data lost) are a torn tail", () => {
  const good = concat(exampleLines);
  for (const tail of [new Uint8Array(4096), new Uint8Array([0, 0, 0, 0x0a])]) {
    const parsed = parseWal(concat([good, tail]));
    assert.ok(parsed.ok);
    assert.equal(parsed.validBytes, good.length);
    assert.equal(parsed.tornTail?.bytes, tail.length);
    assert.match(parsed.tornTail.reason, /zero bytes/);
  }
});

Deno.test("parseWal: an undecodable last line is a torn tail", () => {
  const good = concat(exampleLines);
  // Zeros then the end of a line: the page before the final "\n" never landed.
  const garbage = concat([new Uint8Array(10), text("lue\n")]);
  const parsed = parseWal(concat([good, garbage]));
  assert.ok(parsed.ok);
  assert.equal(parsed.entries.length, 4);
  assert.equal(parsed.validBytes, good.length);
  assert.deepEqual(parsed.tornTail, {
    offset: good.length,
    bytes: garbage.length,
    reason:
      'Last line is undecodable: Invalid seq "\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00lue"',
  });
});

Deno.test("parseWal: an undecodable line before the last is damage, with its line number", () => {
  const bytes = concat([exampleLines[0]!, exampleLines[1]!, text("3\tSETX\tk\tv\n"), del(4, "k")]);
  assert.deepEqual(damage(bytes), { error: 'Unknown op "SETX"', lineNumber: 3 });
  // Zero bytes in the middle are damage too, not a torn tail.
  const zeros = concat([exampleLines[0]!, new Uint8Array([0, 0, 0x0a]), set(2, "k", "v")]);
  assert.equal(damage(zeros).lineNumber, 2);
});

Deno.test("parseWal: a seq gap or repeat is damage, even on the last line", () => {
  const gap = concat([term(1, 1), set(2, "a", "1"), set(4, "b", "2"), set(5, "c", "3")]);
  assert.deepEqual(damage(gap), { error: "Seq 4 out of sequence, expected 3", lineNumber: 3 });
  const repeat = concat([term(1, 1), set(2, "a", "1"), set(2, "a", "1")]);
  assert.deepEqual(damage(repeat), { error: "Seq 2 out of sequence, expected 3", lineNumber: 3 });
  const notFromOne = concat([term(2, 1)]);
  assert.deepEqual(damage(notFromOne), {
    error: "First entry has seq 2 but there is no snapshot: entries 1 to 1 are missing",
    lineNumber: 1,
  });
});

Deno.test("parseWal: the first entry must be a TERM line", () => {
  assert.deepEqual(damage(concat([set(1, "a", "1"), term(2, 1)])), {
    error: "First entry is SET, expected TERM",
    lineNumber: 1,
  });
});

Deno.test("parseWal: a term lower than an earlier TERM line is damage; an equal one is fine", () => {
  const lower = concat([term(1, 5), set(2, "a", "1"), term(3, 4), set(4, "b", "2")]);
  assert.deepEqual(damage(lower), {
    error: "Term 4 is lower than the preceding term 5",
    lineNumber: 3,
  });
  const equal = parseWal(concat([term(1, 5), term(2, 5)]));
  assert.ok(equal.ok);
  assert.equal(equal.entries.length, 2);
});

// ---- WalFile ----------------------------------------------------------------

Deno.test("WalFile.open creates a missing file and reports an empty log", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/node1.log`;
    const { wal, entries, tornTail } = await WalFile.open(path);
    try {
      assert.deepEqual(entries, []);
      assert.equal(tornTail, null);
      assert.equal(wal.sizeBytes, 0);
      assert.equal((await Deno.stat(path)).size, 0);
    } finally {
      wal.close();
    }
  });
});

Deno.test("WalFile: appended lines reach the file only on sync, and a reopen sees them", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/node1.log`;
    const first = await WalFile.open(path);
    try {
      first.wal.append(exampleLines);
      assert.equal(first.wal.pendingBytes, concat(exampleLines).length);
      assert.equal((await Deno.stat(path)).size, 0, "nothing written before sync");
      await first.wal.sync();
      assert.equal(first.wal.pendingBytes, 0);
      assert.equal(first.wal.sizeBytes, concat(exampleLines).length);
    } finally {
      first.wal.close();
    }
    assert.deepEqual(await Deno.readFile(path), concat(exampleLines));

    const second = await WalFile.open(path);
    try {
      assert.deepEqual(
        second.entries.map((e) => e.record),
        [
          { op: "TERM", index: 1, term: 1 },
          { op: "SET", index: 2, key: text("user01"), value: text("Kaspa") },
          { op: "SET", index: 3, key: text("city"), value: text("Vilnius") },
          { op: "DEL", index: 4, key: text("user01") },
        ] satisfies WalRecord[],
      );
      // Appends after a reopen go at the end.
      second.wal.append([set(5, "k", "v")]);
      await second.wal.sync();
    } finally {
      second.wal.close();
    }
    assert.deepEqual(await Deno.readFile(path), concat([...exampleLines, set(5, "k", "v")]));
  });
});

Deno.test("WalFile: concurrent sync calls all resolve and the file holds every line in order (group commit)", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/node1.log`;
    const gate = new Gate();
    const { wal } = await WalFile.open(path, { wrapHandle: (file) => gatedHandle(file, gate) });
    const lines: Uint8Array[] = [term(1, 1)];
    try {
      wal.append([lines[0]!]);
      const syncs: Promise<void>[] = [wal.sync()];
      await gate.waitUntilBlocked(); // the first flush is in its fdatasync
      for (let index = 2; index <= 200; index++) {
        const line = set(index, `key${index}`, `value ${index}`);
        lines.push(line);
        wal.append([line]);
        syncs.push(wal.sync());
      }
      gate.open();
      await Promise.all(syncs);
      assert.equal(wal.pendingBytes, 0);
      // The first flush covered line 1; all 199 later syncs shared one more.
      assert.equal(gate.syncDataCalls, 2);
      assert.equal(gate.writeCalls, 2, "the second flush wrote 199 lines in one write");
    } finally {
      wal.close();
    }
    assert.deepEqual(await Deno.readFile(path), concat(lines));
    const parsed = parseWal(await Deno.readFile(path));
    assert.ok(parsed.ok);
    assert.deepEqual(parsed.entries.map((e) => e.index), lines.map((_, i) => i + 1));
  });
});

Deno.test("WalFile: a sync made during a flush resolves only after its own lines are on disk", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/node1.log`;
    const gate = new Gate();
    const { wal } = await WalFile.open(path, { wrapHandle: (file) => gatedHandle(file, gate) });
    try {
      wal.append([term(1, 1)]);
      let earlyDone = false;
      let lateDone = false;
      const early = wal.sync().then(() => (earlyDone = true));
      await gate.waitUntilBlocked();
      wal.append([set(2, "late", "x")]);
      const late = wal.sync().then(() => (lateDone = true));
      await new Promise((resolve) => setTimeout(resolve, 10));
      assert.equal(earlyDone || lateDone, false, "nothing resolves before its fdatasync");
      gate.open();
      await Promise.all([early, late]);
      assert.deepEqual(await Deno.readFile(path), concat([term(1, 1), set(2, "late", "x")]));
      // A sync with nothing new to cover resolves without another fdatasync.
      await wal.sync();
      assert.equal(gate.syncDataCalls, 2);
    } finally {
      wal.close();
    }
  });
});

Deno.test("WalFile: truncate drops the suffix on disk and later appends go at the new end", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/node1.log`;
    const { wal } = await WalFile.open(path);
    try {
      wal.append(exampleLines);
      await wal.sync();
      const cut = exampleLines[0]!.length + exampleLines[1]!.length; // keep seq 1..2
      await wal.truncate(cut);
      assert.equal(wal.sizeBytes, cut);
      assert.equal((await Deno.stat(path)).size, cut);
      const replacement = [term(3, 2), set(4, "city", "Kaunas")];
      wal.append(replacement);
      await wal.sync();
      assert.equal(wal.sizeBytes, cut + concat(replacement).length);
      assert.deepEqual(
        await Deno.readFile(path),
        concat([exampleLines[0]!, exampleLines[1]!, ...replacement]),
      );
    } finally {
      wal.close();
    }
    const reopened = await WalFile.open(path);
    try {
      assert.deepEqual(reopened.entries.map((e) => [e.index, e.term]), [[1, 1], [2, 1], [3, 2], [
        4,
        2,
      ]]);
    } finally {
      reopened.wal.close();
    }
  });
});

Deno.test("WalFile: truncate waits for a sync in flight and orders before appends made after it", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/node1.log`;
    const { wal } = await WalFile.open(path);
    try {
      wal.append(exampleLines);
      const syncing = wal.sync(); // in flight while truncate is called
      const keep = exampleLines[0]!.length;
      const truncating = wal.truncate(keep);
      assert.equal(wal.sizeBytes, keep, "size already reflects the cut");
      assert.equal(wal.pendingBytes, 0, "the sync in flight took the earlier lines");
      wal.append([set(2, "after", "cut")]);
      assert.equal(wal.pendingBytes, set(2, "after", "cut").length);
      const syncingAfter = wal.sync();
      await Promise.all([syncing, truncating, syncingAfter]);
      assert.deepEqual(
        await Deno.readFile(path),
        concat([exampleLines[0]!, set(2, "after", "cut")]),
      );
    } finally {
      wal.close();
    }
  });
});

Deno.test("WalFile: truncate refuses pending lines and offsets past the end", async () => {
  await withTempDir(async (dir) => {
    const { wal } = await WalFile.open(`${dir}/node1.log`);
    try {
      wal.append([term(1, 1)]);
      await assert.rejects(wal.truncate(0), /pending bytes/);
      await wal.sync();
      await assert.rejects(wal.truncate(1000), RangeError);
      // Refusals are caller bugs, not I/O failures: the WAL stays usable.
      await wal.truncate(0);
      assert.equal(wal.sizeBytes, 0);
    } finally {
      wal.close();
    }
  });
});

Deno.test("WalFile.open cuts a torn tail off the file on disk and reports it", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/node1.log`;
    const good = concat(exampleLines);
    await Deno.writeFile(path, concat([good, text("5\tSET\tcity\tKau")]));
    const { wal, entries, tornTail } = await WalFile.open(path);
    try {
      assert.equal(entries.length, 4);
      assert.deepEqual(tornTail, {
        offset: good.length,
        bytes: 14,
        reason: "Last line has no newline (torn write of 14 bytes)",
      });
      assert.equal((await Deno.stat(path)).size, good.length, "file shortened on disk");
      assert.equal(wal.sizeBytes, good.length);
      wal.append([set(5, "city", "Kaunas")]);
      await wal.sync();
    } finally {
      wal.close();
    }
    assert.deepEqual(await Deno.readFile(path), concat([good, set(5, "city", "Kaunas")]));
  });
});

Deno.test("WalFile.open throws WalDamagedError naming the path and line on mid-file damage", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/node2.log`;
    const bytes = concat([term(1, 1), set(2, "a", "1"), set(4, "b", "2"), set(5, "c", "3")]);
    await Deno.writeFile(path, bytes);
    await assert.rejects(WalFile.open(path), (error: unknown) => {
      assert.ok(error instanceof WalDamagedError);
      assert.equal(error.lineNumber, 3);
      assert.equal(
        error.message,
        `WAL file "${path}" is damaged at line 3: Seq 4 out of sequence, expected 3`,
      );
      return true;
    });
    assert.deepEqual(await Deno.readFile(path), bytes, "a damaged file is left as it was");
  });
});

Deno.test("WalFile: a failed fsync rejects every waiting sync and the WAL refuses further use", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/node1.log`;
    let failSync = false;
    const { wal } = await WalFile.open(path, {
      wrapHandle: (file) =>
        hookedSyncHandle(file, () => {
          if (failSync) throw new Error("EIO (injected)");
        }),
    });
    try {
      wal.append([term(1, 1)]);
      await wal.sync();
      failSync = true;
      wal.append([set(2, "a", "1")]);
      const first = wal.sync();
      wal.append([set(3, "b", "2")]);
      const second = wal.sync();
      const results = await Promise.allSettled([first, second]);
      assert.deepEqual(results.map((r) => r.status), ["rejected", "rejected"]);
      failSync = false; // even once the disk "recovers", the WAL stays failed
      assert.throws(() => wal.append([set(4, "c", "3")]), /failed earlier/);
      await assert.rejects(wal.sync(), /failed earlier/);
      await assert.rejects(wal.truncate(0), /failed earlier/);
    } finally {
      wal.close();
    }
  });
});

Deno.test("WalFile: append refuses a line without its newline", async () => {
  await withTempDir(async (dir) => {
    const { wal } = await WalFile.open(`${dir}/node1.log`);
    try {
      assert.throws(() => wal.append([text("1\tTERM\t1")]), /must end with/);
      assert.equal(wal.pendingBytes, 0);
    } finally {
      wal.close();
    }
  });
});

/** Wraps a file so each syncData first calls `beforeSyncData` (which may throw). */
function hookedSyncHandle(file: Deno.FsFile, beforeSyncData: () => void): WalFileHandle {
  return {
    write: (bytes) => file.write(bytes),
    truncate: (length) => file.truncate(length),
    close: () => file.close(),
    syncData: async () => {
      beforeSyncData();
      await file.syncData();
    },
  };
}

/** Holds every fdatasync until opened, so tests can pile up syncs behind one
 * in flight without depending on how fast the disk is. */
class Gate {
  syncDataCalls = 0;
  writeCalls = 0;
  #opened = false;
  #release: (() => void) | null = null;
  readonly #released = new Promise<void>((resolve) => (this.#release = resolve));
  #blocked: (() => void) | null = null;
  readonly #blockedOnce = new Promise<void>((resolve) => (this.#blocked = resolve));

  async pass(): Promise<void> {
    this.syncDataCalls++;
    if (this.#opened) return;
    this.#blocked?.();
    await this.#released;
  }

  waitUntilBlocked(): Promise<void> {
    return this.#blockedOnce;
  }

  open(): void {
    this.#opened = true;
    this.#release?.();
  }
}

function gatedHandle(file: Deno.FsFile, gate: Gate): WalFileHandle {
  return {
    write: (bytes) => {
      gate.writeCalls++;
      return file.write(bytes);
    },
    truncate: (length) => file.truncate(length),
    close: () => file.close(),
    syncData: async () => {
      await gate.pass();
      await file.syncData();
    },
  };
}

Deno.test("parseWalAsync: yields to the event loop while parsing and agrees with parseWal", async () => {
  const lines = ["1\tTERM\t1\n"];
  for (let i = 2; i <= 2500; i++) lines.push(`${i}\tSET\tk${i}\tv${i}\n`);
  const bytes = new TextEncoder().encode(lines.join("") + "2501\tSET\ttorn");
  let ticks = 0;
  const timer = setInterval(() => ticks++, 0);
  try {
    const viaAsync = await parseWalAsync(bytes, undefined, 100);
    assert.deepEqual(viaAsync, parseWal(bytes));
    assert.ok(ticks > 0, "timers ran while it parsed");
  } finally {
    clearInterval(timer);
  }
});

// ---- a WAL that continues a snapshot (Raft §7) -----------------------------------

/** Byte offset where each line starts when `lines` are written one after another. */
function startsOf(lines: readonly Uint8Array[]): number[] {
  const out: number[] = [];
  let at = 0;
  for (const line of lines) {
    out.push(at);
    at += line.length;
  }
  return out;
}

/** TERM 1 at seq 1, then SETs up to seq `last`. */
function walLines(last: number, from = 1): Uint8Array[] {
  const lines: Uint8Array[] = [];
  for (let index = from; index <= last; index++) {
    lines.push(index === 1 ? term(1, 1) : set(index, `key${index}`, `value ${index}`));
  }
  return lines;
}

function damageWithBase(
  bytes: Uint8Array,
  base: { index: number; term: number },
): { error: string; lineNumber: number } {
  const parsed = parseWal(bytes, base);
  assert.ok(!parsed.ok, "expected damage");
  return { error: parsed.error, lineNumber: parsed.lineNumber };
}

Deno.test("parseWal §7: after compaction the first line has seq > 1 and no TERM line: it takes the snapshot's term", () => {
  const lines = [set(6, "a", "1"), del(7, "a"), term(8, 3), set(9, "b", "2")];
  const bytes = concat(lines);
  const parsed = parseWal(bytes, { index: 5, term: 2 });
  assert.ok(parsed.ok);
  assert.equal(parsed.tornTail, null);
  assert.equal(parsed.validBytes, bytes.length);
  assert.deepEqual(parsed.entries.map((e) => [e.index, e.term]), [[6, 2], [7, 2], [8, 3], [9, 3]]);
  assert.deepEqual(parsed.entries.map((e) => e.offset), startsOf(lines));
  assert.deepEqual(parsed.entries[0]!.record, {
    op: "SET",
    index: 6,
    key: text("a"),
    value: text("1"),
  });
});

Deno.test("parseWal §7: lines at or below the snapshot index still in the file are parsed and returned", () => {
  // A crash between writing the snapshot and compacting the WAL leaves them.
  const lines = [term(1, 1), set(2, "a", "1"), set(3, "b", "2"), term(4, 2), set(5, "c", "3")];
  lines.push(set(6, "d", "4"), del(7, "a"));
  const bytes = concat(lines);
  for (const base of [{ index: 5, term: 2 }, { index: 3, term: 1 }, { index: 7, term: 2 }]) {
    const parsed = parseWal(bytes, base);
    assert.ok(parsed.ok, `snapshot at ${base.index}`);
    assert.deepEqual(
      parsed.entries.map((e) => [e.index, e.term]),
      [[1, 1], [2, 1], [3, 1], [4, 2], [5, 2], [6, 2], [7, 2]],
      `snapshot at ${base.index}`,
    );
    assert.deepEqual(parsed.entries.map((e) => e.line), lines);
  }
});

Deno.test("parseWal §7: a WAL left by an earlier compaction may start below the current snapshot", () => {
  // Compacted once after 2; the snapshot has since moved on to 5.
  const lines = [set(3, "b", "2"), set(4, "c", "3"), set(5, "d", "4"), set(6, "e", "5")];
  const parsed = parseWal(concat(lines), { index: 5, term: 2 });
  assert.ok(parsed.ok);
  assert.deepEqual(parsed.entries.map((e) => e.index), [3, 4, 5, 6]);
  assert.equal(parsed.entries.at(-1)!.term, 2, "the entry after the snapshot has its term");
});

Deno.test("parseWal §7: a gap between the snapshot and the WAL's first line is damage, with the missing range", () => {
  const base = { index: 5, term: 2 };
  assert.deepEqual(damageWithBase(concat([set(7, "a", "1"), set(8, "b", "2")]), base), {
    error: "First entry has seq 7 but the snapshot ends at 5: entries 6 to 6 are missing",
    lineNumber: 1,
  });
  // Even as the only (last) line: a decodable line in the wrong place is not a torn write.
  assert.deepEqual(damageWithBase(set(9, "a", "1"), base), {
    error: "First entry has seq 9 but the snapshot ends at 5: entries 6 to 8 are missing",
    lineNumber: 1,
  });
  // Without a snapshot, a WAL must start at 1.
  assert.deepEqual(damage(concat([set(6, "a", "1")])), {
    error: "First entry has seq 6 but there is no snapshot: entries 1 to 5 are missing",
    lineNumber: 1,
  });
});

Deno.test("parseWal §7: after its first line a continued WAL still goes one seq at a time", () => {
  const base = { index: 5, term: 2 };
  assert.deepEqual(
    damageWithBase(concat([set(6, "a", "1"), set(7, "b", "2"), set(9, "c", "3")]), base),
    { error: "Seq 9 out of sequence, expected 8", lineNumber: 3 },
  );
  assert.deepEqual(damageWithBase(concat([set(6, "a", "1"), set(6, "a", "1")]), base), {
    error: "Seq 6 out of sequence, expected 7",
    lineNumber: 2,
  });
});

Deno.test("parseWal §7: lines the snapshot covers may be followed by the entry right after it, with a gap between", () => {
  // A follower installed a leader's snapshot at 9 beyond its own log (1..4),
  // then appended 10, before its WAL was compacted (crash, or full disk).
  const lines = [term(1, 1), set(2, "a", "1"), set(3, "b", "2"), set(4, "c", "3")];
  lines.push(set(10, "d", "4"), term(11, 3), set(12, "e", "5"));
  const parsed = parseWal(concat(lines), { index: 9, term: 2 });
  assert.ok(parsed.ok);
  assert.deepEqual(
    parsed.entries.map((e) => [e.index, e.term]),
    [[1, 1], [2, 1], [3, 1], [4, 1], [10, 2], [11, 3], [12, 3]],
  );
  assert.deepEqual(parsed.entries.map((e) => e.offset), startsOf(lines));
  // Only to the entry right after the snapshot, and only from below it.
  const base = { index: 9, term: 2 };
  assert.deepEqual(damageWithBase(concat([...lines.slice(0, 4), set(11, "d", "4")]), base), {
    error: "Seq 11 out of sequence, expected 5",
    lineNumber: 5,
  });
  assert.deepEqual(
    damageWithBase(concat([...lines.slice(0, 4), set(10, "d", "4")]), { index: 11, term: 2 }),
    { error: "Seq 10 out of sequence, expected 5", lineNumber: 5 },
  );
  // Without a snapshot the log has no gaps at all.
  assert.deepEqual(damage(concat([...lines.slice(0, 4), set(10, "d", "4")])), {
    error: "Seq 10 out of sequence, expected 5",
    lineNumber: 5,
  });
});

Deno.test("parseWal §7: a TERM line after the snapshot with a term below the snapshot's is damage", () => {
  assert.deepEqual(
    damageWithBase(concat([set(6, "a", "1"), term(7, 1), set(8, "b", "2")]), { index: 5, term: 2 }),
    { error: "Term 1 is lower than the preceding term 2", lineNumber: 2 },
  );
  // An equal or higher term is fine.
  const ok = parseWal(concat([term(6, 2), term(7, 4)]), { index: 5, term: 2 });
  assert.ok(ok.ok);
  assert.deepEqual(ok.entries.map((e) => e.term), [2, 4]);
});

Deno.test("parseWal §7: a WAL starting at seq 1 needs its TERM line, snapshot or not", () => {
  assert.deepEqual(damageWithBase(concat([set(1, "a", "1"), term(2, 1)]), { index: 5, term: 2 }), {
    error: "First entry is SET, expected TERM",
    lineNumber: 1,
  });
});

Deno.test("parseWal §7: a continued WAL that is empty, or ends in a torn line, is read as usual", () => {
  const base = { index: 5, term: 2 };
  assert.deepEqual(parseWal(new Uint8Array(), base), {
    ok: true,
    entries: [],
    validBytes: 0,
    tornTail: null,
  });
  const good = set(6, "a", "1");
  const parsed = parseWal(concat([good, text("7\tSET\tb\t2")]), base);
  assert.ok(parsed.ok);
  assert.deepEqual(parsed.entries.map((e) => [e.index, e.term]), [[6, 2]]);
  assert.equal(parsed.validBytes, good.length);
  assert.match(parsed.tornTail?.reason ?? "", /no newline/);
});

Deno.test("parseWalAsync §7: takes the same snapshot base and agrees with parseWal", async () => {
  const lines: Uint8Array[] = [];
  for (let index = 501; index <= 1500; index++) lines.push(set(index, `k${index}`, `v${index}`));
  const bytes = concat(lines);
  const base = { index: 500, term: 7 };
  const viaAsync = await parseWalAsync(bytes, base, 100);
  assert.deepEqual(viaAsync, parseWal(bytes, base));
  assert.ok(viaAsync.ok);
  assert.equal(viaAsync.entries.length, 1000);
  assert.ok(viaAsync.entries.every((e) => e.term === 7));
});

Deno.test("WalFile.open §7: with the snapshot base a compacted WAL opens; without it the file is damage", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/node1.log`;
    const lines = [set(6, "a", "1"), term(7, 3), set(8, "b", "2")];
    await Deno.writeFile(path, concat(lines));
    const { wal, entries } = await WalFile.open(path, { snapshot: { index: 5, term: 2 } });
    try {
      assert.deepEqual(entries.map((e) => [e.index, e.term, e.offset]), [
        [6, 2, 0],
        [7, 3, lines[0]!.length],
        [8, 3, lines[0]!.length + lines[1]!.length],
      ]);
      assert.equal(wal.startOffset, 0);
      assert.equal(wal.sizeBytes, concat(lines).length);
    } finally {
      wal.close();
    }
    await assert.rejects(WalFile.open(path), (error: unknown) => {
      assert.ok(error instanceof WalDamagedError);
      assert.equal(
        error.message,
        `WAL file "${path}" is damaged at line 1: First entry has seq 6 but there is no snapshot: entries 1 to 5 are missing`,
      );
      return true;
    });
  });
});

/** `node1.log` in `dir`, opened, with walLines(count) appended and synced. */
async function syncedWal(dir: string, count: number) {
  const path = `${dir}/node1.log`;
  const lines = walLines(count);
  const { wal } = await WalFile.open(path);
  wal.append(lines);
  await wal.sync();
  return { path, lines, starts: startsOf(lines), wal };
}

Deno.test("WalFile.compactPrefix §7: drops the bytes before an offset; appends go on after them", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/node1.log`;
    const lines = walLines(10);
    const starts = startsOf(lines);
    const total = concat(lines).length;
    const first = await WalFile.open(path);
    try {
      const { wal } = first;
      assert.equal(wal.startOffset, 0);
      wal.append(lines);
      await wal.sync();
      assert.equal(await wal.compactPrefix(starts[5]!), true); // keep seq 6 on
      assert.equal(wal.startOffset, starts[5]);
      assert.equal(wal.sizeBytes, total, "offsets are logical: the size does not move");
      assert.deepEqual(await Deno.readFile(path), concat(lines.slice(5)));
      assert.equal(await exists(`${path}.compact`), false, "the copy was renamed into place");
      const more = walLines(12, 11);
      wal.append(more);
      assert.equal(wal.pendingBytes, concat(more).length);
      await wal.sync();
      assert.equal(wal.sizeBytes, total + concat(more).length);
      assert.deepEqual(await Deno.readFile(path), concat([...lines.slice(5), ...more]));
    } finally {
      first.wal.close();
    }
    const reopened = await WalFile.open(path, { snapshot: { index: 5, term: 1 } });
    try {
      assert.deepEqual(reopened.entries.map((e) => e.index), [6, 7, 8, 9, 10, 11, 12]);
      assert.ok(reopened.entries.every((e) => e.term === 1));
      assert.equal(reopened.entries[0]!.offset, 0, "a reopened file counts from its new start");
      assert.equal(reopened.wal.startOffset, 0);
    } finally {
      reopened.wal.close();
    }
  });
});

Deno.test("WalFile.compactPrefix §7: appends and syncs made while it runs all land in the compacted file", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/node1.log`;
    const gate = new Gate();
    const { wal } = await WalFile.open(path, { wrapHandle: (file) => gatedHandle(file, gate) });
    const lines = walLines(10);
    const keepFrom = startsOf(lines)[5]!; // seq 6
    const all = [...lines];
    try {
      wal.append(lines);
      const syncs: Promise<void>[] = [wal.sync()];
      await gate.waitUntilBlocked(); // lines 1–10 written, their fdatasync held
      const compacting = wal.compactPrefix(keepFrom);
      // Appended and synced before the compaction's switch-over is queued…
      const early = walLines(20, 11);
      all.push(...early);
      wal.append(early);
      syncs.push(wal.sync());
      // …and, most likely, after it (its first copy has had time to finish).
      await new Promise((r) => setTimeout(r, 20));
      const late = walLines(30, 21);
      all.push(...late);
      wal.append(late);
      syncs.push(wal.sync());
      gate.open();
      await Promise.all(syncs);
      assert.equal(await compacting, true);
      assert.equal(wal.startOffset, keepFrom);
      assert.equal(wal.sizeBytes, concat(all).length);
      assert.deepEqual(await Deno.readFile(path), concat(all.slice(5)));
      // And appends after it too.
      const after = walLines(31, 31);
      all.push(...after);
      wal.append(after);
      await wal.sync();
      assert.deepEqual(await Deno.readFile(path), concat(all.slice(5)));
    } finally {
      wal.close();
    }
    const reopened = await WalFile.open(path, { snapshot: { index: 5, term: 1 } });
    try {
      assert.deepEqual(
        reopened.entries.map((e) => e.index),
        Array.from({ length: 26 }, (_, i) => i + 6),
      );
    } finally {
      reopened.wal.close();
    }
  });
});

Deno.test("WalFile.compactPrefix §7: unsynced lines and syncs in every turn of the event loop survive it", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/node1.log`;
    const { wal } = await WalFile.open(path);
    const all = walLines(100);
    try {
      wal.append(all);
      await wal.sync();
      wal.append([set(101, "pending", "before the compaction")]); // not synced yet
      all.push(set(101, "pending", "before the compaction"));
      const keepFrom = startsOf(all)[50]!; // seq 51
      const compacting = wal.compactPrefix(keepFrom);
      const syncs: Promise<void>[] = [];
      let index = 102;
      let done = false;
      compacting.finally(() => (done = true));
      for (let round = 0; round < 200 && (!done || round < 5); round++) {
        const batch = [set(index, `k${index}`, "x".repeat(round)), set(index + 1, "b", `${round}`)];
        index += 2;
        all.push(...batch);
        wal.append(batch);
        syncs.push(wal.sync());
        await new Promise((r) => setTimeout(r, 0));
      }
      await Promise.all(syncs);
      assert.equal(await compacting, true);
      assert.deepEqual(await Deno.readFile(path), concat(all.slice(50)));
    } finally {
      wal.close();
    }
    const reopened = await WalFile.open(path, { snapshot: { index: 50, term: 1 } });
    try {
      assert.equal(reopened.entries[0]!.index, 51);
      assert.equal(reopened.entries.length, all.length - 50);
    } finally {
      reopened.wal.close();
    }
  });
});

Deno.test("WalFile.truncate after compaction still takes logical offsets", async () => {
  await withTempDir(async (dir) => {
    const { path, lines, starts, wal } = await syncedWal(dir, 10);
    try {
      assert.equal(await wal.compactPrefix(starts[5]!), true);
      await wal.truncate(starts[8]!); // drop seq 9 on (Raft §5.3)
      assert.equal(wal.sizeBytes, starts[8]);
      assert.deepEqual(await Deno.readFile(path), concat(lines.slice(5, 8)));
      const replacement = [term(9, 2), set(10, "city", "Kaunas")];
      wal.append(replacement);
      await wal.sync();
      assert.equal(wal.sizeBytes, starts[8]! + concat(replacement).length);
      assert.deepEqual(await Deno.readFile(path), concat([...lines.slice(5, 8), ...replacement]));
      // Cutting exactly at the compacted start empties the file.
      await wal.truncate(starts[5]!);
      assert.equal((await Deno.stat(path)).size, 0);
      wal.append([set(6, "again", "1")]);
      await wal.sync();
    } finally {
      wal.close();
    }
    const reopened = await WalFile.open(path, { snapshot: { index: 5, term: 1 } });
    try {
      assert.deepEqual(reopened.entries.map((e) => [e.index, e.term]), [[6, 1]]);
    } finally {
      reopened.wal.close();
    }
  });
});

Deno.test("WalFile.compactPrefix §7: a truncate at or above the offset while it runs is carried into the new file", async () => {
  await withTempDir(async (dir) => {
    const { path, lines, starts, wal } = await syncedWal(dir, 10);
    try {
      const compacting = wal.compactPrefix(starts[5]!);
      const truncating = wal.truncate(starts[7]!); // drop seq 8 on, queued before the switch-over
      const replacement = [term(8, 2), set(9, "new", "entry")];
      wal.append(replacement);
      const syncing = wal.sync();
      await Promise.all([truncating, syncing]);
      assert.equal(await compacting, true);
      assert.equal(wal.startOffset, starts[5]);
      assert.deepEqual(await Deno.readFile(path), concat([...lines.slice(5, 7), ...replacement]));
    } finally {
      wal.close();
    }
    const reopened = await WalFile.open(path, { snapshot: { index: 5, term: 1 } });
    try {
      assert.deepEqual(reopened.entries.map((e) => [e.index, e.term]), [[6, 1], [7, 1], [8, 2], [
        9,
        2,
      ]]);
    } finally {
      reopened.wal.close();
    }
  });
});

Deno.test("WalFile.compactPrefix: a truncate below the offset while it runs makes it give up, leaving the WAL intact and usable", async () => {
  await withTempDir(async (dir) => {
    const { path, lines, starts, wal } = await syncedWal(dir, 10);
    try {
      const compacting = wal.compactPrefix(starts[5]!);
      await wal.truncate(starts[3]!); // a caller bug: it cut below what it compacts
      assert.equal(await compacting, false);
      assert.equal(wal.startOffset, 0);
      assert.equal(await exists(`${path}.compact`), false, "the copy is removed");
      assert.deepEqual(await Deno.readFile(path), concat(lines.slice(0, 3)));
      wal.append([set(4, "still", "usable")]);
      await wal.sync();
      assert.equal(await wal.compactPrefix(starts[2]!), true);
      assert.deepEqual(await Deno.readFile(path), concat([lines[2]!, set(4, "still", "usable")]));
    } finally {
      wal.close();
    }
  });
});

Deno.test("WalFile.compactPrefix: at or below the current start is a no-op; two at once are refused", async () => {
  await withTempDir(async (dir) => {
    const { path, lines, starts, wal } = await syncedWal(dir, 10);
    try {
      assert.equal(await wal.compactPrefix(0), true);
      assert.deepEqual(await Deno.readFile(path), concat(lines), "nothing to drop");
      const first = wal.compactPrefix(starts[3]!);
      await assert.rejects(wal.compactPrefix(starts[5]!), /already running/);
      assert.equal(await first, true);
      assert.equal(await wal.compactPrefix(starts[2]!), true, "already dropped");
      assert.equal(wal.startOffset, starts[3]);
      // A second compaction goes on from the first, in the same logical offsets.
      assert.equal(await wal.compactPrefix(starts[7]!), true);
      assert.equal(wal.startOffset, starts[7]);
      assert.deepEqual(await Deno.readFile(path), concat(lines.slice(7)));
      wal.append([set(11, "k", "v")]);
      await wal.sync();
      assert.deepEqual(await Deno.readFile(path), concat([...lines.slice(7), set(11, "k", "v")]));
    } finally {
      wal.close();
    }
  });
});

Deno.test("WalFile.compactPrefix replaces a .compact file left by an unfinished compaction", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/node1.log`;
    const lines = walLines(6);
    const starts = startsOf(lines);
    await Deno.writeTextFile(`${path}.compact`, "4\tSET\tleft\tover\n");
    const { wal } = await WalFile.open(path);
    try {
      wal.append(lines);
      await wal.sync();
      assert.equal(await wal.compactPrefix(starts[3]!), true);
      assert.deepEqual(await Deno.readFile(path), concat(lines.slice(3)));
      assert.equal(await exists(`${path}.compact`), false);
    } finally {
      wal.close();
    }
  });
});

Deno.test("WalFile.truncate below the compacted start is refused as a caller bug; the WAL stays usable", async () => {
  await withTempDir(async (dir) => {
    const { path, lines, starts, wal } = await syncedWal(dir, 10);
    try {
      assert.equal(await wal.compactPrefix(starts[5]!), true);
      // Those bytes are gone: there is nothing left to cut there.
      const refused = await wal.truncate(starts[2]!).then(() => null, (e: unknown) => e);
      assert.deepEqual(
        await Deno.readFile(path),
        concat(lines.slice(5)),
        "entries 6–10, after the snapshot, are still on disk",
      );
      assert.ok(refused instanceof RangeError, `refused with a RangeError, got ${refused}`);
      assert.equal(wal.sizeBytes, concat(lines).length, "a refused cut changes nothing");
      wal.append([set(11, "k", "v")]);
      await wal.sync();
      assert.deepEqual(await Deno.readFile(path), concat([...lines.slice(5), set(11, "k", "v")]));
    } finally {
      wal.close();
    }
  });
});
