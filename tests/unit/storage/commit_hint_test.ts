// Unit tests of the commit hint file format (src/storage/commit_hint.ts):
// `<index> <term> <lineHash> [<leaderContactEpochMs>]`, old three-field files
// still read, and a round trip through a real file.

import assert from "node:assert/strict";
import {
  formatCommitHint,
  parseCommitHint,
  readCommitHint,
  writeCommitHint,
} from "../../../src/storage/commit_hint.ts";

Deno.test("commit hint: a three-field hint (older versions) reads with no contact time", () => {
  assert.deepEqual(parseCommitHint("42 3 123456789"), {
    index: 42,
    term: 3,
    lineHash: 123456789,
    leaderContactEpochMs: null,
  });
});

Deno.test("commit hint: the fourth field is the leader contact time in epoch ms", () => {
  assert.deepEqual(parseCommitHint("42 3 123456789 1767225600123"), {
    index: 42,
    term: 3,
    lineHash: 123456789,
    leaderContactEpochMs: 1767225600123,
  });
});

Deno.test("commit hint: anything else does not parse", () => {
  for (
    const bad of [
      "",
      "42 3",
      "42 3 1 2 5",
      "42 3 1 -5",
      "42 3 1 1.5",
      "42 3 1 ",
      "42 3 1  17",
      "42 3 1 1234567890123456",
      "a b c d",
    ]
  ) {
    assert.equal(parseCommitHint(bad), "unreadable", JSON.stringify(bad));
  }
});

Deno.test("commit hint: written with four fields when the contact time is known, three otherwise", () => {
  assert.equal(
    formatCommitHint({ index: 7, term: 2, lineHash: 99, leaderContactEpochMs: 1767225600123 }),
    "7 2 99 1767225600123\n",
  );
  assert.equal(
    formatCommitHint({ index: 7, term: 2, lineHash: 99, leaderContactEpochMs: null }),
    "7 2 99\n",
  );
});

Deno.test("commit hint: what is written reads back the same, and an old file still reads", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const path = `${dir}/node1.commit`;
    assert.equal(await readCommitHint(path), "missing");
    const hint = { index: 12, term: 4, lineHash: 4000000000, leaderContactEpochMs: 1767225600123 };
    await writeCommitHint(path, hint);
    assert.deepEqual(await readCommitHint(path), hint);
    await Deno.writeTextFile(path, "12 4 4000000000\n");
    assert.deepEqual(await readCommitHint(path), { ...hint, leaderContactEpochMs: null });
    await Deno.writeTextFile(path, "12 4 4000000000 soon\n");
    assert.equal(await readCommitHint(path), "unreadable");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
