// `kvstore wal check FILE`: tells an operator what a WAL file or a snapshot
// file holds and whether a node would start on it, without starting one. It
// reads files only; it never repairs them (the node itself cuts a torn last
// WAL line at start).
//
// A file starting with a `KVSNAP` header is a snapshot (whatever its name)
// and is checked whole: header, every line, key count, checksum. Anything
// else is a WAL. A node loads its WAL together with the snapshot beside it
// (`nodeN.snap` for `nodeN.log`), so a WAL is checked against that snapshot
// when there is one: after compaction the WAL starts past seq 1 and is
// meaningless without it, and a WAL still holding the entry at the snapshot's
// index must hold the very entry the snapshot ends with.
//
// describeWal and describeSnapshot are pure (bytes in, report out); walMain
// reads the files.
//
// Exit codes: 0 intact, 1 a torn last WAL line (the node cuts it off at
// start: it was never acknowledged), 2 usage or an unreadable file, 3 damaged
// (the node refuses to start on it).

import { crc32 } from "node:zlib";
import {
  parseSnapshot,
  parseSnapshotHeader,
  parseSnapshotTrailer,
  snapshotTrailerBytesMax,
  snapshotVersion,
} from "../codec/snapshot.ts";
import type { SnapshotMeta } from "../codec/snapshot.ts";
import { decodeWalLine } from "../codec/wal_line.ts";
import { KvStore } from "../kv/store.ts";
import { lineHash } from "../storage/commit_hint.ts";
import { parseWal, type WalBase, type WalEntry } from "../storage/wal_file.ts";

export const walUsage = `Usage:
  kvstore wal check FILE    what a WAL file (nodeN.log) or a snapshot file (nodeN.snap)
                            holds, and whether it is intact; a WAL is checked together
                            with the snapshot beside it (nodeN.snap for nodeN.log)
`;

export interface WalReport {
  readonly exitCode: 0 | 1 | 3;
  readonly lines: readonly string[];
}

/** The snapshot file beside a WAL, as the caller found it. */
export interface SnapshotBeside {
  readonly name: string;
  /** Its bytes; null if there is no such file. */
  readonly bytes: Uint8Array | null;
}

const snapshotMagic = new TextEncoder().encode("KVSNAP");

function plural(n: number, word: string, many = `${word}s`): string {
  return `${n.toLocaleString("en-US")} ${n === 1 ? word : many}`;
}

/** Pure: whether `bytes` start like a snapshot file rather than a WAL (whose
 * lines start with a digit). */
export function isSnapshotBytes(bytes: Uint8Array): boolean {
  return bytes.length >= snapshotMagic.length &&
    snapshotMagic.every((b, i) => bytes[i] === b);
}

/** Where a node keeps the snapshot a WAL continues: `nodeN.snap` beside
 * `nodeN.log` (see storage/snapshot_file.ts). */
export function snapshotBesidePath(walPath: string): string {
  return walPath.endsWith(".log") ? `${walPath.slice(0, -4)}.snap` : `${walPath}.snap`;
}

function covers(meta: SnapshotMeta): string {
  return meta.index === 0
    ? "covers no log entries (index 0)"
    : `covers the log up to index ${meta.index} (term ${meta.term})`;
}

function hex32(n: number): string {
  return (n >>> 0).toString(16).padStart(8, "0");
}

type SnapshotCheck =
  | {
    readonly ok: true;
    readonly meta: SnapshotMeta;
    readonly pairs: Map<string, string>;
    readonly report: WalReport;
  }
  | { readonly ok: false; readonly report: WalReport };

/** Pure: the report for a snapshot file's bytes. */
export function describeSnapshot(name: string, bytes: Uint8Array): WalReport {
  return checkSnapshot(name, bytes).report;
}

function checkSnapshot(name: string, bytes: Uint8Array): SnapshotCheck {
  // The codec parser checks, in order: header, END line, checksum, lines, key
  // count. Keeping the checksum it computes, and reading the END line with
  // the codec's own reader, tells whether the checksum matched.
  const seen: { checksum: number | null } = { checksum: null };
  const parsed = parseSnapshot(bytes, (b) => (seen.checksum = crc32(b)));
  const checksum = seen.checksum;
  const size = plural(bytes.length, "byte");
  if (parsed.ok) {
    return {
      ok: true,
      meta: parsed.meta,
      pairs: parsed.pairs,
      report: {
        exitCode: 0,
        lines: [
          `${name}: intact snapshot, ${plural(parsed.pairs.size, "key")}, ${size}`,
          `  version ${snapshotVersion}; ${covers(parsed.meta)}`,
          `  checksum ok (CRC-32 ${hex32(checksum ?? 0)})`,
        ],
      },
    };
  }
  const where = parsed.lineNumber > 0 ? ` at line ${parsed.lineNumber}` : "";
  const lines = [`${name}: DAMAGED snapshot${where}: ${parsed.error}`];
  // What the header and the END line still say, where they read.
  const header = parseSnapshotHeader(bytes);
  const trailer = parseSnapshotTrailer(
    bytes.subarray(Math.max(0, bytes.length - snapshotTrailerBytesMax)),
    bytes.length,
  );
  const said: string[] = [];
  if (header.ok) said.push(`version ${snapshotVersion}`, covers(header.meta));
  if (trailer.ok) said.push(`END line says ${plural(trailer.keys, "key")}`);
  lines.push(`  ${[...said, size].join("; ")}`);
  if (checksum === null || !trailer.ok) {
    lines.push(
      header.ok
        ? "  checksum not checked: there is no END line to check it against"
        : "  checksum not checked: the file has no valid header",
    );
  } else if (hex32(checksum) !== trailer.crc32) {
    lines.push(
      `  checksum MISMATCH (END line ${trailer.crc32}, bytes ${hex32(checksum)}): these are ` +
        "not the bytes that were written",
    );
  } else {
    // Lines and the key count are looked at only once the checksum matched.
    lines.push(`  checksum ok (CRC-32 ${hex32(checksum)}), yet the content is wrong`);
  }
  if (/\.(tmp|recv)$/.test(name)) {
    lines.push(
      "  This looks like a leftover of a snapshot write or transfer that did not finish: a",
      "  node removes it at start and never loads it.",
    );
  } else {
    lines.push(
      "  A node refuses to start on this snapshot. Empty that node's data directory so that",
      "  it fetches the leader's snapshot again (one node at a time).",
    );
  }
  return { ok: false, report: { exitCode: 3, lines } };
}

/** The seq of the WAL's first line, if it decodes. */
function firstSeq(bytes: Uint8Array): number | null {
  const nl = bytes.indexOf(0x0a);
  if (nl < 0) return null;
  const decoded = decodeWalLine(bytes.subarray(0, nl));
  return decoded.ok ? decoded.record.index : null;
}

function seqRange(from: number, to: number): string {
  return from === to ? `${from}` : `${from}–${to}`;
}

const emptyDataDirAdvice = [
  "  A node refuses to start on this file. Empty the node's data directory so that it",
  "  fetches the leader's snapshot (one node at a time).",
];

/**
 * Pure: the report for a WAL file's bytes. `snapshot` is the snapshot file
 * beside it, if the caller looked for one; without it the WAL must start at
 * seq 1.
 */
export function describeWal(
  name: string,
  bytes: Uint8Array,
  snapshot?: SnapshotBeside,
): WalReport {
  let snap: {
    readonly name: string;
    readonly meta: SnapshotMeta;
    readonly pairs: Map<string, string>;
    readonly keys: number;
  } | null = null;
  if (snapshot !== undefined && snapshot.bytes !== null) {
    const checked = checkSnapshot(snapshot.name, snapshot.bytes);
    if (!checked.ok) {
      return {
        exitCode: 3,
        lines: [
          `${name}: not checked: the snapshot beside it, which a node loads with it, is damaged`,
          ...checked.report.lines.map((l) => `  ${l}`),
        ],
      };
    }
    snap = {
      name: snapshot.name,
      meta: checked.meta,
      pairs: checked.pairs,
      keys: checked.pairs.size,
    };
  }
  const base: WalBase = snap === null ? { index: 0, term: 0 } : snap.meta;

  const parsed = parseWal(bytes, base);
  if (!parsed.ok) {
    // A first line past the snapshot's end (or past seq 1 with no snapshot):
    // the entries in between are nowhere.
    const first = parsed.lineNumber === 1 ? firstSeq(bytes) : null;
    if (first !== null && first > base.index + 1) {
      const missing = `entries ${seqRange(base.index + 1, first - 1)} are missing`;
      const snapName = snapshot === undefined ? "its snapshot" : snapshot.name;
      return {
        exitCode: 3,
        lines: snap === null
          ? [
            `${name}: DAMAGED: it starts at seq ${first} (after a compaction), but there is no ` +
            `${snapshot === undefined ? "snapshot" : snapshot.name} beside it: ${missing}`,
            "  A node refuses to start on this file without the snapshot it continues. Restore",
            `  ${snapName} beside it, or empty the node's data directory so that it fetches the`,
            "  leader's snapshot (one node at a time).",
          ]
          : [
            `${name}: DAMAGED: it starts at seq ${first}, but ${snap.name} ends at index ` +
            `${snap.meta.index} (term ${snap.meta.term}): ${missing}`,
            ...emptyDataDirAdvice,
          ],
      };
    }
    const lines = [
      `${name}: DAMAGED at line ${parsed.lineNumber}: ${parsed.error}`,
      "  A node refuses to start on this file: anything wrong before the last line cannot",
      "  come from a crash during an append. Restore the file, or empty the node's data",
      "  directory so that it copies the log from the leader again (one node at a time).",
    ];
    if (snap !== null) {
      lines.push(
        `  (Read as continuing ${snap.name} at index ${snap.meta.index}, term ${snap.meta.term}.)`,
      );
    }
    return { exitCode: 3, lines };
  }
  const { entries, tornTail } = parsed;

  // The entry at the snapshot's index, if the WAL still holds it (a crash
  // between a snapshot and the compaction after it), must be the very entry
  // the snapshot ends with; otherwise the two come from different logs.
  const atSnapshot = snap === null || snap.meta.index === 0
    ? undefined
    : entries.find((e) => e.index === snap.meta.index);
  if (snap !== null && atSnapshot !== undefined) {
    const hash = lineHash(atSnapshot.line);
    if (hash !== snap.meta.lineHash) {
      return {
        exitCode: 3,
        lines: [
          `${name}: DAMAGED: it does not fit ${snap.name}: the snapshot ends at index ` +
          `${snap.meta.index} (term ${snap.meta.term}), but this WAL holds a different entry ` +
          `there (line ${entries.indexOf(atSnapshot) + 1}, line hash ${hash}, the snapshot's ` +
          `${snap.meta.lineHash})`,
          ...emptyDataDirAdvice,
        ],
      };
    }
  }

  const lines: string[] = [];
  const size = plural(bytes.length, "byte");
  if (tornTail === null) {
    lines.push(`${name}: intact, ${plural(entries.length, "entry", "entries")}, ${size}`);
  } else {
    lines.push(
      `${name}: torn last line at byte ${tornTail.offset} (${plural(tornTail.bytes, "byte")}): ` +
        tornTail.reason,
      "  A crash cut an append short; that entry was never acknowledged (its fsync had not",
      "  completed). A node starting on this file cuts it off and logs a WARN.",
      `  Before it: ${plural(entries.length, "entry", "entries")}, ` +
        `${plural(tornTail.offset, "byte")}`,
    );
  }
  if (snap !== null) lines.push(snapshotFit(snap.name, snap.meta, snap.keys, entries));
  if (entries.length > 0) {
    const first = entries[0]!;
    const last = entries.at(-1)!;
    // One gap is possible: from lines a snapshot covers to the entry after it.
    const gapAt = entries.findIndex((e, i) => i > 0 && e.index !== entries[i - 1]!.index + 1);
    lines.push(
      gapAt < 0
        ? `  seq ${first.index}–${last.index}`
        : `  seq ${seqRange(first.index, entries[gapAt - 1]!.index)}, then ${
          seqRange(entries[gapAt]!.index, last.index)
        }`,
    );
    const terms: string[] = [];
    for (const e of entries) {
      if (e.record.op === "TERM") terms.push(`${e.record.term} from seq ${e.index}`);
      else if (snap !== null && e.index === base.index + 1) {
        terms.push(`${base.term} from seq ${e.index} (the snapshot's)`);
      }
    }
    lines.push(`  terms: ${terms.length > 0 ? terms.join("; ") : "no TERM line"}`);
  }
  // Entries the snapshot covers are in its keys already. (The store takes
  // over the snapshot's map: its size from here on is no longer the snapshot's.)
  const kv = new KvStore(snap?.pairs);
  let sets = 0, dels = 0, applied = 0;
  for (const e of entries) {
    if (e.index <= base.index) continue;
    applied++;
    kv.apply(e.record);
    if (e.record.op === "SET") sets++;
    else if (e.record.op === "DEL") dels++;
  }
  if (snap !== null) {
    lines.push(
      `  ${plural(sets, "SET")}, ${plural(dels, "DEL")} after the snapshot's ` +
        `${plural(snap.keys, "key")}; ${plural(kv.size, "key")} if all are applied` +
        (applied > 0 ? " (the last entries may not be committed yet)" : ""),
    );
  } else if (entries.length > 0) {
    lines.push(
      `  ${plural(sets, "SET")}, ${plural(dels, "DEL")}; ${plural(kv.size, "key")} if all are ` +
        `applied (the last entries may not be committed yet)`,
    );
  }
  return { exitCode: tornTail === null ? 0 : 1, lines };
}

/** How a WAL that parsed against `meta` joins it (the mismatch case is
 * damage and reported before this). */
function snapshotFit(
  snapName: string,
  meta: SnapshotMeta,
  keys: number,
  entries: readonly WalEntry[],
): string {
  const first = entries[0];
  const last = entries.at(-1);
  const covered = entries.filter((e) => e.index <= meta.index);
  const how = first === undefined || last === undefined
    ? "the WAL holds nothing after it yet"
    : first.index === meta.index + 1
    ? "the WAL starts right after it"
    : last.index < meta.index
    ? "the snapshot holds every entry of the WAL, and more"
    : covered.at(-1)!.index < meta.index
    // A snapshot installed beyond the log, its compaction not done yet.
    ? `the WAL still holds seq ${
      seqRange(first.index, covered.at(-1)!.index)
    }, which the snapshot covers, then goes on right after it`
    : `the WAL still holds index ${meta.index}, the very entry the snapshot ends with ` +
      `(seq ${seqRange(first.index, meta.index)} are in both)`;
  return `  continues snapshot ${snapName} at index ${meta.index} (term ${meta.term}, ` +
    `${plural(keys, "key")}): they fit, ${how}`;
}

/** Reads `path` if it is a regular file; null if it does not exist and
 * `optional`. Throws an Error with the message to print otherwise. */
async function readRegularFile(path: string, optional: boolean): Promise<Uint8Array | null> {
  let info: Deno.FileInfo;
  try {
    info = await Deno.stat(path);
  } catch (e) {
    if (optional && e instanceof Deno.errors.NotFound) return null;
    throw new Error(`cannot read ${path}: ${(e as Error).message}`);
  }
  // A FIFO or a device would block or stream forever: only regular files.
  if (!info.isFile) throw new Error(`${path} is not a regular file`);
  try {
    return await Deno.readFile(path);
  } catch (e) {
    throw new Error(`cannot read ${path}: ${(e as Error).message}`);
  }
}

export async function walMain(argv: readonly string[]): Promise<number> {
  const [sub, file, ...extra] = argv;
  if (sub === "--help" || sub === "-h" || sub === "help") {
    console.log(walUsage);
    return 0;
  }
  if (sub !== "check" || file === undefined || extra.length > 0) {
    console.error(`error: expected 'wal check FILE'\n\n${walUsage}`);
    return 2;
  }
  let report: WalReport;
  try {
    const bytes = (await readRegularFile(file, false))!;
    if (isSnapshotBytes(bytes)) {
      report = describeSnapshot(file, bytes);
    } else {
      // A node loads the snapshot beside its WAL whenever there is one.
      const snapPath = snapshotBesidePath(file);
      const snapBytes = await readRegularFile(snapPath, true);
      report = describeWal(file, bytes, { name: snapPath, bytes: snapBytes });
    }
  } catch (e) {
    console.error(`error: ${(e as Error).message}`);
    return 2;
  }
  console.log(report.lines.join("\n"));
  return report.exitCode;
}
