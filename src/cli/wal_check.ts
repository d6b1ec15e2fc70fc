// `kvstore wal check FILE`: tells an operator what a WAL file holds and
// whether a node would start on it, without starting one. It reads the file
// only; it never repairs it (the node itself cuts a torn last line at start).
//
// Exit codes: 0 intact, 1 a torn last line (the node cuts it off at start:
// it was never acknowledged), 2 usage or an unreadable file, 3 damaged (the
// node refuses to start on it).

import { KvStore } from "../kv/store.ts";
import { parseWal } from "../storage/wal_file.ts";

export const walUsage = `Usage:
  kvstore wal check FILE    what a WAL file (nodeN.log) holds, and whether it is intact
`;

export interface WalReport {
  readonly exitCode: 0 | 1 | 3;
  readonly lines: readonly string[];
}

function plural(n: number, word: string, many = `${word}s`): string {
  return `${n.toLocaleString("en-US")} ${n === 1 ? word : many}`;
}

/** Pure: the report for a WAL file's bytes. */
export function describeWal(name: string, bytes: Uint8Array): WalReport {
  const parsed = parseWal(bytes);
  if (!parsed.ok) {
    return {
      exitCode: 3,
      lines: [
        `${name}: DAMAGED at line ${parsed.lineNumber}: ${parsed.error}`,
        "  A node refuses to start on this file: anything wrong before the last line cannot",
        "  come from a crash during an append. Restore the file, or empty the node's data",
        "  directory so that it copies the log from the leader again (one node at a time).",
      ],
    };
  }
  const { entries, tornTail } = parsed;
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
  if (entries.length > 0) {
    const first = entries[0]!;
    const last = entries.at(-1)!;
    lines.push(`  seq ${first.index}–${last.index}`);
    const terms: string[] = [];
    for (const e of entries) {
      if (e.record.op === "TERM") terms.push(`${e.record.term} from seq ${e.index}`);
    }
    lines.push(`  terms: ${terms.join("; ")}`);
    const kv = new KvStore();
    let sets = 0, dels = 0;
    for (const e of entries) {
      kv.apply(e.record);
      if (e.record.op === "SET") sets++;
      else if (e.record.op === "DEL") dels++;
    }
    lines.push(
      `  ${plural(sets, "SET")}, ${plural(dels, "DEL")}; ${plural(kv.size, "key")} if all are ` +
        `applied (the last entries may not be committed yet)`,
    );
  }
  return { exitCode: tornTail === null ? 0 : 1, lines };
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
  let bytes: Uint8Array;
  try {
    // A FIFO or a device would block or stream forever: only regular files.
    if (!(await Deno.stat(file)).isFile) {
      console.error(`error: ${file} is not a regular file`);
      return 2;
    }
    bytes = await Deno.readFile(file);
  } catch (e) {
    console.error(`error: cannot read ${file}: ${(e as Error).message}`);
    return 2;
  }
  const report = describeWal(file, bytes);
  console.log(report.lines.join("\n"));
  return report.exitCode;
}
