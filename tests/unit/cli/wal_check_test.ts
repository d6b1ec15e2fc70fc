// `kvstore wal check` (src/cli/wal_check.ts): what it reports for an intact
// WAL, each kind of torn last line a crash can leave, and damage; for a
// snapshot file, intact or damaged each way; for a compacted WAL with and
// without the snapshot it continues; and the subcommand's exit codes, run as
// a real process.

import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import { crc32 } from "node:zlib";
import {
  describeSnapshot,
  describeWal,
  isSnapshotBytes,
  snapshotBesidePath,
} from "../../../src/cli/wal_check.ts";
import {
  encodeSnapshotHeader,
  encodeSnapshotPairs,
  encodeSnapshotTrailer,
  type SnapshotMeta,
} from "../../../src/codec/snapshot.ts";
import type { KvPair } from "../../../src/kv/store.ts";
import { concatBytes } from "../../../src/net/write_all.ts";
import { lineHash } from "../../../src/storage/commit_hint.ts";

const utf8 = new TextEncoder();
const good = "1\tTERM\t1\n2\tSET\ta\t1\n3\tDEL\ta\n4\tSET\tb\t2\n5\tTERM\t3\n6\tSET\tc\tx\n";

function concat(...parts: (string | Uint8Array)[]): Uint8Array {
  return concatBytes(parts.map((p) => typeof p === "string" ? utf8.encode(p) : p));
}

Deno.test("wal check: an intact WAL gives its entries, terms and keys, exit 0", () => {
  const r = describeWal("node1.log", utf8.encode(good));
  assert.equal(r.exitCode, 0);
  assert.deepEqual(r.lines, [
    "node1.log: intact, 6 entries, 56 bytes",
    "  seq 1–6",
    "  terms: 1 from seq 1; 3 from seq 5",
    "  3 SETs, 1 DEL; 2 keys if all are applied (the last entries may not be committed yet)",
  ]);
});

Deno.test("wal check: an empty WAL is intact", () => {
  const r = describeWal("node1.log", new Uint8Array());
  assert.equal(r.exitCode, 0);
  assert.deepEqual(r.lines, ["node1.log: intact, 0 entries, 0 bytes"]);
});

Deno.test("wal check: each torn last line a crash can leave is reported as repairable, exit 1", () => {
  const cases: [string, Uint8Array, RegExp][] = [
    ["no newline", concat(good, "7\tSET\td\tpart"), /no newline/],
    ["zero bytes", concat(good, new Uint8Array(4096)), /zero bytes/],
    ["undecodable", concat(good, "7\tSET\td\n"), /undecodable/],
    ["an empty line", concat(good, "\n"), /Last line is empty/],
  ];
  for (const [what, bytes, reason] of cases) {
    const r = describeWal("node1.log", bytes);
    assert.equal(r.exitCode, 1, what);
    assert.match(r.lines[0]!, /^node1\.log: torn last line at byte 56 /, what);
    assert.match(r.lines[0]!, reason, what);
    assert.ok(r.lines.includes("  Before it: 6 entries, 56 bytes"), `${what}: ${r.lines}`);
  }
});

Deno.test("wal check: damage before the last line is reported with its line, exit 3", () => {
  const cases: [string, string, RegExp][] = [
    ["a gap in seq", "1\tTERM\t1\n3\tSET\ta\t1\n4\tSET\tb\t1\n", /line 2: .*expected 2/],
    ["a term going down", "1\tTERM\t2\n2\tTERM\t1\n3\tSET\ta\t1\n", /line 2:/],
    ["garbage mid-file", "1\tTERM\t1\nhello\n3\tSET\ta\t1\n", /line 2:/],
  ];
  for (const [what, text, where] of cases) {
    const r = describeWal("node1.log", utf8.encode(text));
    assert.equal(r.exitCode, 3, what);
    assert.match(r.lines[0]!, /^node1\.log: DAMAGED at /, what);
    assert.match(r.lines[0]!, where, what);
  }
});

Deno.test("wal check: exit codes of the real subcommand", async () => {
  const main = fileURLToPath(new URL("../../../main.ts", import.meta.url));
  const dir = await Deno.makeTempDir();
  try {
    await Deno.writeTextFile(`${dir}/ok.log`, good);
    await Deno.writeTextFile(`${dir}/torn.log`, good + "7\tSET");
    await Deno.writeTextFile(`${dir}/bad.log`, "1\tTERM\t1\n9\tSET\ta\t1\n2\tSET\tb\t1\n");
    const run = async (...args: string[]) => {
      const out = await new Deno.Command(Deno.execPath(), {
        args: ["run", "-A", main, "wal", ...args],
        stdout: "piped",
        stderr: "piped",
      }).output();
      return { code: out.code, stderr: new TextDecoder().decode(out.stderr) };
    };
    assert.equal((await run("check", `${dir}/ok.log`)).code, 0);
    assert.equal((await run("check", `${dir}/torn.log`)).code, 1);
    assert.equal((await run("check", `${dir}/bad.log`)).code, 3);
    const missing = await run("check", `${dir}/missing.log`);
    assert.equal(missing.code, 2);
    assert.match(missing.stderr, /^error: cannot read .*missing\.log: /);
    assert.equal((await run("verify", `${dir}/ok.log`)).code, 2);
    // A FIFO would block a read forever: refused at once.
    await new Deno.Command("mkfifo", { args: [`${dir}/fifo`] }).output();
    const fifo = await run("check", `${dir}/fifo`);
    assert.deepEqual([fifo.code, fifo.stderr], [2, `error: ${dir}/fifo is not a regular file\n`]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

// A snapshot as a node writes it: header, pairs, then the END line with the
// key count and the CRC-32 of everything before it. `body` replaces the
// encoded pairs and `keys` the count, to build damaged ones.
function snapshot(
  meta: SnapshotMeta,
  pairs: readonly KvPair[],
  damage: { body?: string; keys?: number } = {},
): Uint8Array {
  const before = concat(
    encodeSnapshotHeader(meta),
    damage.body ?? encodeSnapshotPairs(pairs),
  );
  return concat(before, encodeSnapshotTrailer(damage.keys ?? pairs.length, crc32(before)));
}

// After a compaction at index 41 (term 3): the snapshot holds a, b and c;
// the WAL goes on at seq 42 with no TERM line until a new leader's at 44.
const entry41 = "41\tSET\tc\t3\n";
const snapMeta: SnapshotMeta = { index: 41, term: 3, lineHash: lineHash(utf8.encode(entry41)) };
const snapPairs: KvPair[] = [["a", "1"], ["b", "2"], ["c", "3"]];
const tail = "42\tSET\td\t4\n43\tDEL\ta\n44\tTERM\t5\n45\tSET\te\t5\n";

/** `wal check node1.log` with node1.snap (snapMeta, snapPairs) beside it. */
const besideSnapshot = (wal: Uint8Array) =>
  describeWal("node1.log", wal, { name: "node1.snap", bytes: snapshot(snapMeta, snapPairs) });

Deno.test("wal check: an intact snapshot gives its version, index, term, keys and checksum, exit 0", () => {
  const bytes = snapshot(snapMeta, snapPairs);
  assert.ok(isSnapshotBytes(bytes));
  const r = describeSnapshot("node1.snap", bytes);
  assert.equal(r.exitCode, 0);
  const crc = crc32(bytes.subarray(0, bytes.length - "END\t3\t00000000\n".length));
  assert.deepEqual(r.lines, [
    `node1.snap: intact snapshot, 3 keys, ${bytes.length} bytes`,
    "  version 1; covers the log up to index 41 (term 3)",
    `  checksum ok (CRC-32 ${crc.toString(16).padStart(8, "0")})`,
  ]);
});

Deno.test("wal check: an empty snapshot at index 0 is intact", () => {
  const r = describeSnapshot("node1.snap", snapshot({ index: 0, term: 0, lineHash: 0 }, []));
  assert.equal(r.exitCode, 0);
  assert.match(r.lines[0]!, /^node1\.snap: intact snapshot, 0 keys, /);
  assert.equal(r.lines[1], "  version 1; covers no log entries (index 0)");
});

Deno.test("wal check: each way a snapshot can be damaged is named, exit 3", () => {
  const good = snapshot(snapMeta, snapPairs);
  const flipped = good.slice();
  flipped[flipped.indexOf(0x0a) + 1] = 0x78; // the first key, "a" → "x"
  const cases: [string, Uint8Array, RegExp, RegExp][] = [
    [
      "checksum mismatch",
      flipped,
      /^node1\.snap: DAMAGED snapshot: Checksum mismatch: /,
      /MISMATCH/,
    ],
    [
      "cut short",
      good.subarray(0, good.length - 12),
      /^node1\.snap: DAMAGED snapshot: .*cut short/,
      /not checked/,
    ],
    [
      "a bad line",
      snapshot(snapMeta, [], { body: "a\t1\nno tab here\n", keys: 2 }),
      /^node1\.snap: DAMAGED snapshot at line 3: Line has no TAB$/,
      /checksum ok/,
    ],
    [
      "a key count mismatch",
      snapshot(snapMeta, snapPairs, { keys: 4 }),
      /^node1\.snap: DAMAGED snapshot: END line says 4 keys, file holds 3$/,
      /checksum ok/,
    ],
    [
      "an unknown version",
      concat("KVSNAP\t9\t41\t3\t0\n", good.subarray(good.indexOf(0x0a) + 1)),
      /^node1\.snap: DAMAGED snapshot at line 1: Unknown snapshot version "9"$/,
      /not checked/,
    ],
  ];
  for (const [what, bytes, headline, checksum] of cases) {
    const r = describeSnapshot("node1.snap", bytes);
    assert.equal(r.exitCode, 3, what);
    assert.match(r.lines[0]!, headline, what);
    assert.ok(
      r.lines.some((l) => /^ {2}checksum /.test(l) && checksum.test(l)),
      `${what}: ${r.lines}`,
    );
    assert.ok(r.lines.some((l) => /empty that node's data directory/i.test(l)), what);
  }
  // Where the header and the END line still read, the report says what they promise.
  const r = describeSnapshot("node1.snap", flipped);
  assert.equal(
    r.lines[1],
    `  version 1; covers the log up to index 41 (term 3); END line says 3 keys; ${good.length} bytes`,
  );
});

Deno.test("wal check: an unfinished snapshot transfer is named a leftover a node removes, exit 3", () => {
  const good = snapshot(snapMeta, snapPairs);
  const r = describeSnapshot("node1.snap.recv", good.subarray(0, 30));
  assert.equal(r.exitCode, 3);
  assert.ok(r.lines.some((l) => /node removes it at start/.test(l)), r.lines.join("\n"));
});

Deno.test("wal check: a compacted WAL continues the snapshot beside it and counts its keys, exit 0", () => {
  const r = describeWal("d/node1.log", utf8.encode(tail), {
    name: "d/node1.snap",
    bytes: snapshot(snapMeta, snapPairs),
  });
  assert.equal(r.exitCode, 0);
  assert.deepEqual(r.lines, [
    "d/node1.log: intact, 4 entries, 41 bytes",
    "  continues snapshot d/node1.snap at index 41 (term 3, 3 keys): they fit, the WAL starts " +
    "right after it",
    "  seq 42–45",
    "  terms: 3 from seq 42 (the snapshot's); 5 from seq 44",
    "  2 SETs, 1 DEL after the snapshot's 3 keys; 4 keys if all are applied (the last entries " +
    "may not be committed yet)",
  ]);
});

Deno.test("wal check: an empty WAL after a compaction of everything fits its snapshot", () => {
  const r = describeWal("node1.log", new Uint8Array(), {
    name: "node1.snap",
    bytes: snapshot(snapMeta, snapPairs),
  });
  assert.equal(r.exitCode, 0);
  assert.deepEqual(r.lines, [
    "node1.log: intact, 0 entries, 0 bytes",
    "  continues snapshot node1.snap at index 41 (term 3, 3 keys): they fit, the WAL holds " +
    "nothing after it yet",
    "  0 SETs, 0 DELs after the snapshot's 3 keys; 3 keys if all are applied",
  ]);
});

Deno.test("wal check: a WAL still holding the snapshot's last entry fits when it is the very entry", () => {
  const wal = utf8.encode(`40\tSET\tb\t2\n${entry41}${tail}`);
  const r = besideSnapshot(wal);
  assert.equal(r.exitCode, 0, r.lines.join("\n"));
  assert.match(
    r.lines[1]!,
    /they fit, the WAL still holds index 41, .* \(seq 40–41 are in both\)$/,
  );
  // 40 and 41 are in the snapshot's keys already: not applied twice.
  assert.match(r.lines.at(-1)!, /^ {2}2 SETs, 1 DEL after the snapshot's 3 keys; 4 keys /);
});

Deno.test("wal check: lines the snapshot covers, then the entry right after it, fit (a snapshot installed beyond the log)", () => {
  const wal = utf8.encode(`38\tSET\ta\t0\n39\tSET\tb\t0\n${tail}`);
  const r = besideSnapshot(wal);
  assert.equal(r.exitCode, 0, r.lines.join("\n"));
  assert.match(
    r.lines[1]!,
    /they fit, the WAL still holds seq 38–39, which the snapshot covers, then goes on right after it$/,
  );
  assert.equal(r.lines[2], "  seq 38–39, then 42–45");
  // Only 42–45 are applied on top of the snapshot.
  assert.match(r.lines.at(-1)!, /^ {2}2 SETs, 1 DEL after the snapshot's 3 keys; 4 keys /);
});

Deno.test("wal check: a WAL whose entry at the snapshot's index differs does not fit, exit 3", () => {
  const wal = utf8.encode(`40\tSET\tb\t2\n41\tSET\tc\tOTHER\n${tail}`);
  const r = besideSnapshot(wal);
  assert.equal(r.exitCode, 3);
  assert.match(
    r.lines[0]!,
    /^node1\.log: DAMAGED: it does not fit node1\.snap: the snapshot ends at index 41 \(term 3\), but this WAL holds a different entry there \(line 2, /,
  );
});

Deno.test("wal check: a compacted WAL without its snapshot is damaged: entries before it are missing, exit 3", () => {
  for (const beside of [{ name: "node1.snap", bytes: null }, undefined]) {
    const r = describeWal("node1.log", utf8.encode(tail), beside);
    assert.equal(r.exitCode, 3);
    assert.match(
      r.lines[0]!,
      /^node1\.log: DAMAGED: it starts at seq 42 \(after a compaction\), but there is no (node1\.snap|snapshot) beside it: entries 1–41 are missing$/,
    );
  }
});

Deno.test("wal check: a gap between the snapshot and the WAL is damage, exit 3", () => {
  const r = describeWal("node1.log", utf8.encode(tail), {
    name: "node1.snap",
    bytes: snapshot({ ...snapMeta, index: 39 }, snapPairs),
  });
  assert.equal(r.exitCode, 3);
  assert.equal(
    r.lines[0],
    "node1.log: DAMAGED: it starts at seq 42, but node1.snap ends at index 39 (term 3): " +
      "entries 40–41 are missing",
  );
});

Deno.test("wal check: a WAL beside a damaged snapshot is not checked, exit 3", () => {
  const r = describeWal("node1.log", utf8.encode(tail), {
    name: "node1.snap",
    bytes: snapshot(snapMeta, snapPairs, { keys: 9 }),
  });
  assert.equal(r.exitCode, 3);
  assert.match(r.lines[0]!, /^node1\.log: not checked: the snapshot beside it.* is damaged$/);
  assert.match(r.lines[1]!, /^ {2}node1\.snap: DAMAGED snapshot: END line says 9 keys/);
});

Deno.test("wal check: the snapshot beside nodeN.log is nodeN.snap", () => {
  assert.equal(snapshotBesidePath("/data/node2.log"), "/data/node2.snap");
  assert.equal(snapshotBesidePath("copy"), "copy.snap");
  assert.ok(!isSnapshotBytes(utf8.encode(good)));
});

Deno.test("wal check: snapshots and compacted WALs through the real subcommand", async () => {
  const main = fileURLToPath(new URL("../../../main.ts", import.meta.url));
  const dir = await Deno.makeTempDir();
  try {
    const run = async (file: string) => {
      const out = await new Deno.Command(Deno.execPath(), {
        args: ["run", "-A", main, "wal", "check", file],
        stdout: "piped",
        stderr: "piped",
      }).output();
      return { code: out.code, stdout: new TextDecoder().decode(out.stdout) };
    };
    await Deno.writeFile(`${dir}/node1.snap`, snapshot(snapMeta, snapPairs));
    await Deno.writeTextFile(`${dir}/node1.log`, tail);
    await Deno.writeTextFile(`${dir}/node2.log`, tail); // no node2.snap
    // A snapshot is known by its header, whatever its name.
    await Deno.writeFile(`${dir}/copy.bin`, snapshot(snapMeta, snapPairs, { keys: 1 }));
    const snap = await run(`${dir}/node1.snap`);
    assert.equal(snap.code, 0);
    assert.match(snap.stdout, /node1\.snap: intact snapshot, 3 keys/);
    const wal = await run(`${dir}/node1.log`);
    assert.equal(wal.code, 0);
    assert.match(wal.stdout, /continues snapshot .*node1\.snap at index 41 \(term 3, 3 keys\)/);
    assert.match(wal.stdout, /4 keys if all are applied/);
    const orphan = await run(`${dir}/node2.log`);
    assert.equal(orphan.code, 3);
    assert.match(orphan.stdout, /no .*node2\.snap beside it: entries 1–41 are missing/);
    const copy = await run(`${dir}/copy.bin`);
    assert.equal(copy.code, 3);
    assert.match(copy.stdout, /copy\.bin: DAMAGED snapshot: END line says 1 keys, file holds 3/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
