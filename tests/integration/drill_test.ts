// The request's failover drill with real processes: writes to the leader,
// reads from followers, the leader's role process killed, a new leader
// elected, a write to it, and every follower (the old leader too) has it.

import assert from "node:assert/strict";
import { request } from "../../src/client/client.ts";
import { killPid, portRefuses, startCluster, text, waitUntil } from "./harness.ts";

Deno.test("failover drill: writes survive the leader's role process dying", async () => {
  await using cluster = await startCluster(4);
  const leader = await cluster.waitForLeader();
  const lp = cluster.node(leader).clientPort;
  for (const [k, v] of [["balance", "500"], ["city", "Vilnius"], ["name", "Jonas"]]) {
    assert.equal(text(await cluster.call(lp, ["SET", k!, v!])), "OK");
  }
  const followers = cluster.nodes.filter((n) => n.id !== leader);
  for (const f of followers) {
    await waitUntil(
      async () => text(await cluster.call(f.readPort, ["GET", "name"])) === "Jonas",
      5000,
      `node ${f.id} to replicate name`,
    );
  }
  const role = cluster.rolePid(leader);
  assert.ok(role !== null, "leader role pid is logged");
  killPid(role, "SIGKILL");
  // Write once the kill has taken effect: a SET that reached the dying process
  // has an unknown outcome, which the client reports instead of retrying.
  await waitUntil(() => portRefuses(cluster.node(leader).clientPort), 2000, "the role to die");
  // Any live node's client port leads the client to the new leader.
  const some = followers[0]!;
  const reply = await request("127.0.0.1", some.clientPort, ["SET", "user10", "Kirpas"], {
    timeoutMs: 10000,
  });
  assert.equal(text(reply), "OK");
  const newLeader = await cluster.leaderId();
  assert.ok(newLeader !== null && newLeader !== leader, `a new leader, not ${leader}`);
  for (const n of cluster.nodes.filter((n) => n.id !== newLeader)) {
    await waitUntil(
      async () => {
        try {
          return text(await cluster.call(n.readPort, ["GET", "user10"])) === "Kirpas" &&
            text(await cluster.call(n.readPort, ["GET", "balance"])) === "500";
        } catch {
          return false;
        }
      },
      10000,
      `node ${n.id} to have user10 and balance`,
    );
  }
  cluster.pass();
});
