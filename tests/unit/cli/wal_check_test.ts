// `kvstore wal check` (src/cli/wal_check.ts): what it reports for an intact
// WAL, each kind of torn last line a crash can leave, and damage; and the
// subcommand's exit codes, run as a real process.

import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import { describeWal } from "../../../src/cli/wal_check.ts";
import { concatBytes } from "../../../src/net/write_all.ts";

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
