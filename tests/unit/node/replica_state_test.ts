// ReplicaState and the commit hint's leader contact time
// (src/node/replica_state.ts): only a trusted hint vouches for a contact time,
// and saving never moves it back.

import assert from "node:assert/strict";
import { encodeWalLine, type WalRecord } from "../../../src/codec/wal_line.ts";
import type { Log } from "../../../src/log.ts";
import { ReplicaState } from "../../../src/node/replica_state.ts";
import { lineHash } from "../../../src/storage/commit_hint.ts";

const quiet: Log = { debug() {}, info() {}, warn() {}, error() {} };
const utf8 = new TextEncoder();

const records: WalRecord[] = [
  { op: "TERM", index: 1, term: 1 },
  { op: "SET", index: 2, key: utf8.encode("x"), value: utf8.encode("a") },
];
const lines = records.map((r) => encodeWalLine(r));

async function withWal(
  hint: string | null,
  body: (state: ReplicaState, hintPath: string) => Promise<void>,
): Promise<void> {
  const dir = await Deno.makeTempDir();
  const walPath = `${dir}/node1.log`;
  const hintPath = `${dir}/node1.commit`;
  await Deno.writeFile(walPath, new Uint8Array(lines.flatMap((l) => [...l])));
  if (hint !== null) await Deno.writeTextFile(hintPath, hint);
  const state = await ReplicaState.open(walPath, quiet, hintPath);
  try {
    await body(state, hintPath);
  } finally {
    state.wal.close();
    await Deno.remove(dir, { recursive: true });
  }
}

const good = `2 1 ${lineHash(lines[1]!)}`;

Deno.test("replica state: a trusted four-field hint gives its contact time", async () => {
  await withWal(`${good} 1767225600123\n`, (state) => {
    assert.equal(state.commitIndex, 2);
    assert.equal(state.hintLeaderContactEpochMs, 1767225600123);
    return Promise.resolve();
  });
});

Deno.test("replica state: an old three-field hint is trusted for the index but gives no contact time", async () => {
  await withWal(`${good}\n`, (state) => {
    assert.equal(state.commitIndex, 2);
    assert.equal(state.hintLeaderContactEpochMs, null);
    return Promise.resolve();
  });
});

Deno.test("replica state: a hint the WAL does not hold vouches for no contact time either", async () => {
  await withWal(`2 1 ${lineHash(lines[1]!) ^ 1} 1767225600123\n`, async (state, hintPath) => {
    assert.equal(state.commitIndex, 0);
    assert.equal(state.hintLeaderContactEpochMs, null);
    assert.equal(await Deno.readTextFile(hintPath), "0 0 0\n");
  });
});

Deno.test("replica state: saving records a newer contact time at the same index, never an older one", async () => {
  await withWal(`${good} 1000\n`, async (state, hintPath) => {
    await state.saveCommitHint(5000);
    assert.equal(await Deno.readTextFile(hintPath), `${good} 5000\n`);
    assert.equal(state.hintLeaderContactEpochMs, 5000);
    await state.saveCommitHint(4000);
    await state.saveCommitHint(null);
    assert.equal(await Deno.readTextFile(hintPath), `${good} 5000\n`);
  });
});

Deno.test("replica state: a commit with no contact time keeps the last one in the hint", async () => {
  await withWal(null, async (state, hintPath) => {
    state.commitTo(1);
    await state.saveCommitHint(null);
    assert.equal(await Deno.readTextFile(hintPath), `1 1 ${lineHash(lines[0]!)}\n`);
    await state.saveCommitHint(7000);
    state.commitTo(2);
    await state.saveCommitHint(null);
    assert.equal(await Deno.readTextFile(hintPath), `${good} 7000\n`);
  });
});
