// A network partition with real processes, end to end through the link
// proxies (tests/support/link_proxy.ts): the leader of a proxied 4-node
// cluster is cut off from every peer, the other three elect a new leader that
// commits writes, the cut-off leader commits nothing, and once the network
// heals the old leader follows the new one and has its write.

import assert from "node:assert/strict";
import {
  startCluster,
  type TestCluster,
  text,
  waitForValue,
  waitUntil,
} from "../integration/harness.ts";

/** Every wait in this test: well above an election (≤ 0.9 s) plus reconnects. */
const waitMs = 20_000;

const decoder = new TextDecoder();

/** True when `port` answers INFO with role:master. */
async function claimsLeader(cluster: TestCluster, port: number): Promise<boolean> {
  try {
    const r = await cluster.call(port, ["INFO"], 1000);
    return r.kind === "bulk" && r.value !== null && decoder.decode(r.value).includes("role:master");
  } catch {
    return false;
  }
}

/** SET on `port` with no redirects; the reply as text, or null if none came in time. */
async function trySet(cluster: TestCluster, port: number, key: string, value: string) {
  try {
    return text(await cluster.call(port, ["SET", key, value], 2000));
  } catch {
    return null;
  }
}

Deno.test("partition: an isolated leader is replaced, and follows the new leader after healing", async () => {
  await using cluster = await startCluster(4, { proxied: true });
  const links = cluster.links!;
  const old = cluster.node(await cluster.waitForCluster());

  links.isolate(old.id);
  // The old leader may claim role:master a while longer; the new one is
  // another node that claims it and commits a write (3 of 4 is a quorum).
  let fresh: number | null = null;
  await waitUntil(
    async () => {
      for (const n of cluster.nodes.filter((x) => x.id !== old.id)) {
        if (!(await claimsLeader(cluster, n.clientPort))) continue;
        if ((await trySet(cluster, n.clientPort, "after", "partition")) === "OK") {
          fresh = n.id;
          return true;
        }
      }
      return false;
    },
    waitMs,
    `a leader other than node ${old.id} that accepts SET`,
  );
  const leader = cluster.node(fresh!);

  // Cut off from every peer, the old leader cannot commit anything, and no
  // byte of its leaves the proxies.
  const peers = cluster.nodes.filter((x) => x.id !== old.id);
  const sentBytes = () => peers.map((p) => links.bytes(old.id, p.id));
  const before = sentBytes();
  assert.ok(before.every((n) => n > 0), `node ${old.id} talked to every peer before: ${before}`);
  assert.notEqual(await trySet(cluster, old.clientPort, "lost", "write"), "OK");
  assert.deepEqual(sentBytes(), before);

  links.heal();
  const redirect = `-REDIRECT 127.0.0.1 ${leader.clientPort}`;
  let last: string | null = null;
  await waitUntil(
    async () => (last = await trySet(cluster, old.clientPort, "k", "v")) === redirect,
    waitMs,
    `node ${old.id} to redirect to node ${leader.id}`,
  ).catch((e) => {
    throw new Error(`${(e as Error).message}; last reply ${JSON.stringify(last)}`);
  });
  // Its replication link works again: it has the write made without it.
  await waitForValue(cluster, old.readPort, "after", "partition", waitMs);
  cluster.pass();
});
