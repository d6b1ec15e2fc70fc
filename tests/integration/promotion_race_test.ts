// A node wins an election while its follower role process is still loading
// a large WAL, so the role is promoted in place (the "lead" message waits
// behind the load); then a higher term arrives and the role is fenced above
// that promotion. The role refuses the stale promotion once loaded and stays
// a follower. The supervisor once waited for it to exit as a deposed leader
// would, forever, and stopped handling anything: the node was wedged.
// Drives the RoleManager (src/node/role_manager.ts) against a real role process.

import assert from "node:assert/strict";
import { encodeWalLine } from "../../src/codec/wal_line.ts";
import type { Log } from "../../src/log.ts";
import { walPath } from "../../src/node/replica_state.ts";
import { RoleManager } from "../../src/node/role_manager.ts";
import { startCluster } from "./harness.ts";

const entries = 300_000;

Deno.test("role manager: a role fenced above a promotion it has not read yet stays a follower; nothing waits for it to exit", async () => {
  await using cluster = await startCluster(4, { start: false });
  const utf8 = new TextEncoder();
  const value = utf8.encode("v".repeat(100));
  const lines = [encodeWalLine({ op: "TERM", index: 1, term: 1 })];
  for (let i = 2; i <= entries; i++) {
    lines.push(encodeWalLine({ op: "SET", index: i, key: utf8.encode(`k${i % 1000}`), value }));
  }
  const bytes = new Uint8Array(lines.reduce((n, l) => n + l.length, 0));
  let at = 0;
  for (const l of lines) {
    bytes.set(l, at);
    at += l.length;
  }
  await Deno.writeFile(walPath(cluster.dir, 1), bytes);

  const logged: string[] = [];
  const log: Log = {
    debug() {},
    info: (m) => logged.push(m),
    warn: (m) => logged.push(m),
    error: (m) => logged.push(m),
  };
  const args = [
    "1",
    "--data-dir",
    cluster.dir,
    "--log-level",
    "warn",
    "--cluster",
    cluster.clusterFile,
  ];
  const unexpected: string[] = [];
  const roles = new RoleManager(args, walPath(cluster.dir, 1), log, {
    onUnexpectedExit: (kind, code) => unexpected.push(`${kind} exited ${code}`),
    onHigherTerm: () => {},
    onFatal: (reason) => unexpected.push(`fatal: ${reason}`),
  });
  try {
    roles.want("follower", 1, null);
    // While it loads: a fence, a won election (promotion in place), a higher term.
    const fenced2 = await roles.fence(2);
    assert.equal(fenced2.lastIndex, entries, "a loading role's position comes from the WAL file");
    roles.want("leader", 2, 1);
    let timer: ReturnType<typeof setTimeout> | undefined;
    const outcome = await Promise.race([
      roles.fence(3).then(() => "fenced"),
      new Promise<string>((r) => (timer = setTimeout(() => r("still waiting after 30 s"), 30_000))),
    ]);
    clearTimeout(timer);
    assert.equal(outcome, "fenced", logged.join("\n"));
    assert.equal(roles.runningKind, "follower");
    // The supervisor goes on: a follower for term 3 is wanted and kept.
    roles.want("follower", 3, null);
    assert.deepEqual(unexpected, []);
    assert.ok(
      logged.some((l) => /fenced at term 3 before it read its promotion to term 2/.test(l)),
      logged.join("\n"),
    );
  } finally {
    // Bounded: with the bug, stop() queues behind the wedged fence forever
    // (the role then exits with this test process, which owns its stdin).
    let timer: ReturnType<typeof setTimeout> | undefined;
    await Promise.race([
      roles.stop(),
      new Promise((r) => (timer = setTimeout(r, 5000))),
    ]);
    clearTimeout(timer);
  }
  cluster.pass();
});
