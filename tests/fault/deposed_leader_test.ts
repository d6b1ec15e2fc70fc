// A leader cut off from every follower while clients still reach it is
// deposed: a new leader is elected and acknowledges a newer write. From then
// on the old leader must answer no GET with the overwritten value (ReadIndex:
// it cannot confirm its leadership with a quorum) and acknowledge no SET. In
// the second case its supervisor is also frozen, so nothing fences its role
// process: the role's own quorum check must be what refuses.

import assert from "node:assert/strict";
import { killPid, startCluster, text } from "../integration/harness.ts";
import { roleAndTerm, sleep, trySet } from "./fault_helpers.ts";

async function deposedLeaderCase(freezeSupervisor: boolean): Promise<void> {
  await using cluster = await startCluster(4, { proxied: true });
  const old = cluster.node(await cluster.waitForCluster());
  assert.equal(await trySet(cluster, old.clientPort, "k", "v1"), "OK");
  const supervisor = cluster.supervisorPid(old.id)!;
  cluster.links!.isolate(old.id);
  if (freezeSupervisor) killPid(supervisor, "SIGSTOP");
  try {
    // A new leader among the other three acknowledges v2.
    let fresh: number | null = null;
    const deadline = performance.now() + 15_000;
    while (fresh === null && performance.now() < deadline) {
      for (const n of cluster.nodes.filter((x) => x.id !== old.id)) {
        if ((await roleAndTerm(cluster, n.id))?.role === "master") fresh = n.id;
      }
      if (fresh === null) await sleep(25);
    }
    assert.ok(fresh !== null, "a new leader among the three connected nodes");
    assert.equal(await trySet(cluster, cluster.node(fresh).clientPort, "k", "v2", 5000), "OK");
    // Reads and writes on the deposed leader, for a while: the window before
    // it notices it lost its quorum is exactly where a stale answer would hide.
    const answers: string[] = [];
    const until = performance.now() + 2500;
    while (performance.now() < until) {
      const [get, set] = await Promise.all([
        cluster.call(old.clientPort, ["GET", "k"], 1500).then(text, (e) => `(${e.name})`),
        trySet(cluster, old.clientPort, "k", "from-deposed", 1500),
      ]);
      answers.push(`GET ${get} / SET ${set ?? "(no reply)"}`);
      assert.notEqual(get, "v1", `the deposed leader answered the overwritten value: ${answers}`);
      assert.notEqual(set, "OK", `the deposed leader acknowledged a write: ${answers}`);
    }
    console.log(`deposed leader ${old.id} answered: ${[...new Set(answers)].join("; ")}`);
  } finally {
    if (freezeSupervisor) killPid(supervisor, "SIGCONT");
    cluster.links!.heal();
  }
  // Once healed it follows the new leader and holds v2.
  const deadline = performance.now() + 10_000;
  let view = "";
  while (performance.now() < deadline) {
    const r = await cluster.call(old.readPort, ["GET", "k"], 1000).then(text, () => "");
    view = r;
    if (r === "v2") break;
    await sleep(50);
  }
  assert.equal(view, "v2", "the old leader's read port converges to v2");
  cluster.pass();
}

Deno.test("deposed leader (cut off from every follower): no stale GET, no acknowledged SET", async () => {
  await deposedLeaderCase(false);
});

Deno.test("deposed leader whose supervisor is frozen too (no fence): no stale GET, no acknowledged SET", async () => {
  await deposedLeaderCase(true);
});
