// readWalPosition (the supervisor's quick look at where a WAL ends) agrees
// with a full parse on every kind of file a crash can leave.

import assert from "node:assert/strict";
import { readWalPosition } from "../../../src/node/role_manager.ts";
import { parseWal } from "../../../src/storage/wal_file.ts";

const cases: [string, string][] = [
  ["an empty file", ""],
  ["one TERM line", "1\tTERM\t1\n"],
  ["entries after a TERM line", "1\tTERM\t1\n2\tSET\ta\t1\n3\tDEL\ta\n"],
  ["two terms", "1\tTERM\t1\n2\tSET\ta\t1\n3\tTERM\t4\n4\tSET\tb\t2\n"],
  ["a SET of the key TERM after the marker", "1\tTERM\t2\n2\tSET\tTERM\t7\n3\tSET\tTERM\t9\n"],
  ["a torn last line", "1\tTERM\t1\n2\tSET\ta\t1\n3\tSET\tb\tpart"],
  ["a last line of zero bytes", "1\tTERM\t1\n2\tSET\ta\t1\n\0\0\0\0\n"],
  ["an undecodable last line", "1\tTERM\t3\n2\tSET\ta\t1\n3\tS#T\n"],
];

for (const [name, content] of cases) {
  Deno.test(`readWalPosition: ${name} ends where a full parse says`, async () => {
    const dir = await Deno.makeTempDir();
    try {
      const path = `${dir}/node1.log`;
      await Deno.writeTextFile(path, content);
      const parsed = parseWal(new TextEncoder().encode(content));
      assert.ok(parsed.ok);
      const last = parsed.entries.at(-1);
      assert.deepEqual(await readWalPosition(path), {
        lastIndex: last?.index ?? 0,
        lastTerm: last?.term ?? 0,
      });
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  });
}

Deno.test("readWalPosition: a missing file is an empty log", async () => {
  assert.deepEqual(await readWalPosition("/nonexistent/kvstore/node9.log"), {
    lastIndex: 0,
    lastTerm: 0,
  });
});

Deno.test("readWalPosition: a compacted WAL without its snapshot names the missing entries", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const path = `${dir}/node1.log`;
    await Deno.writeTextFile(path, "41\tSET\ta\t1\n42\tSET\tb\t2\n");
    await assert.rejects(
      () => readWalPosition(path),
      Error,
      "starts at seq 41 (after a compaction) but there is no snapshot beside it: entries 1 to 40 " +
        "are missing",
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
