// A whole-cluster restart with large WALs and no commit hints: every election
// step fences the role processes, which are still loading their WALs; once a
// leader commits, every node applies the whole log. A role that is loading has
// acknowledged nothing and answers a fence as soon as its event loop is free,
// and a long backlog is applied in chunks between pings; killing a role for
// answering late only starts it all again, and under CPU contention that
// stalled a restarted cluster for good.

import assert from "node:assert/strict";
import { encodeWalLine, type WalRecord } from "../../src/codec/wal_line.ts";
import { walPath } from "../../src/node/replica_state.ts";
import { termFilePath, writeTermFile } from "../../src/storage/term_file.ts";
import { startCluster, text } from "./harness.ts";

const entries = 600_000;

Deno.test("startup: roles still loading a large WAL are fenced, not killed, and the cluster comes up", async () => {
  await using cluster = await startCluster(4, { start: false });
  const utf8 = new TextEncoder();
  const value = utf8.encode("v".repeat(100));
  const lines: Uint8Array[] = [encodeWalLine({ op: "TERM", index: 1, term: 1 })];
  for (let i = 2; i <= entries; i++) {
    const r: WalRecord = { op: "SET", index: i, key: utf8.encode(`key${i % 50_000}`), value };
    lines.push(encodeWalLine(r));
  }
  const size = lines.reduce((n, l) => n + l.length, 0);
  const bytes = new Uint8Array(size);
  let at = 0;
  for (const l of lines) {
    bytes.set(l, at);
    at += l.length;
  }
  // Every node holds the same log, as after a clean whole-cluster stop.
  for (const n of cluster.nodes) {
    await Deno.writeFile(walPath(cluster.dir, n.id), bytes);
    await writeTermFile(termFilePath(cluster.dir, n.id), { currentTerm: 1, votedFor: null });
  }
  // Busy processes compete for the CPU, as other services do on a small VPS
  // (and other test files do in CI): loading stalls the roles' event loops.
  const burners = Array.from({ length: 3 }, () =>
    new Deno.Command(Deno.execPath(), {
      args: ["eval", "const end = Date.now() + 60_000; while (Date.now() < end);"],
      stdin: "null",
      stdout: "null",
      stderr: "null",
    }).spawn());
  let leader: number;
  try {
    for (const n of cluster.nodes) cluster.start(n.id);
    leader = await cluster.waitForCluster(60_000);
  } finally {
    for (const b of burners) {
      try {
        b.kill("SIGKILL");
      } catch {
        // already gone
      }
      await b.status;
    }
  }
  assert.equal(
    text(await cluster.call(cluster.node(leader).clientPort, ["GET", "key7"])),
    "v".repeat(100),
  );
  for (const n of cluster.nodes) {
    // No role was killed: not for a late fence answer while loading, nor for
    // missed pings while applying the whole log once a leader committed it.
    assert.doesNotMatch(cluster.log(n.id), /did not confirm the fence/, `node ${n.id}'s log`);
    assert.doesNotMatch(cluster.log(n.id), /has not answered for/, `node ${n.id}'s log`);
  }
  cluster.pass();
});
