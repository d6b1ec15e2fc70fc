// ReplicaState and the commit hint's leader contact time
// (src/node/replica_state.ts): only a trusted hint vouches for a contact time,
// and saving never moves it back.

import assert from "node:assert/strict";
import { encodeWalLine, type WalRecord } from "../../../src/codec/wal_line.ts";
import type { Log } from "../../../src/log.ts";
import { applyEntriesPerCallMax, ReplicaState } from "../../../src/node/replica_state.ts";
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

Deno.test("replica state: a long committed backlog is applied in chunks, the commit index covering only what is applied", async () => {
  const dir = await Deno.makeTempDir();
  const count = applyEntriesPerCallMax * 2 + 5;
  const many: Uint8Array[] = [encodeWalLine({ op: "TERM", index: 1, term: 1 })];
  for (let i = 2; i <= count; i++) {
    many.push(
      encodeWalLine({ op: "SET", index: i, key: utf8.encode(`k${i}`), value: utf8.encode("v") }),
    );
  }
  await Deno.writeFile(`${dir}/node1.log`, new Uint8Array(many.flatMap((l) => [...l])));
  const state = await ReplicaState.open(`${dir}/node1.log`, quiet);
  try {
    const applied: number[] = [];
    assert.equal(state.commitTo(count, (i) => applied.push(i)), true, "more remains");
    assert.equal(state.commitIndex, applyEntriesPerCallMax);
    assert.equal(state.lastApplied, applyEntriesPerCallMax);
    assert.equal(state.commitTo(count, (i) => applied.push(i)), true);
    assert.equal(state.commitTo(count, (i) => applied.push(i)), false, "all applied");
    assert.equal(state.commitIndex, count);
    assert.deepEqual(applied, Array.from({ length: count }, (_, i) => i + 1));
    assert.equal(state.commitTo(count), false, "nothing left: no more calls needed");
  } finally {
    state.wal.close();
    await Deno.remove(dir, { recursive: true });
  }
});
