// Values at the documented maximum (16 MiB, valueBytesMax) replicate without
// starving anyone: two such values of random bytes (the worst case for the
// WAL's escaping, about 2.7 times larger on disk) reach every node's read
// port byte for byte, and meanwhile no role process misses its liveness
// checks, no election happens and no follower loses its replication link.

import assert from "node:assert/strict";
import { Connection } from "../../src/client/connection.ts";
import { valueBytesMax } from "../../src/config/limits.ts";
import { startCluster, text, waitUntil } from "./harness.ts";

function randomBytes(n: number): Uint8Array {
  const out = new Uint8Array(n);
  for (let at = 0; at < n; at += 65_536) crypto.getRandomValues(out.subarray(at, at + 65_536));
  return out;
}

function equal(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

Deno.test("large values: two 16 MiB binary values replicate to every node without kills, elections or reconnects", async () => {
  await using cluster = await startCluster(4);
  const leader = cluster.node(await cluster.waitForCluster());
  const values = [randomBytes(valueBytesMax), randomBytes(valueBytesMax)];
  // Judge only what the nodes log from here on (the first election is fine).
  const logFrom = new Map(cluster.nodes.map((n) => [n.id, cluster.log(n.id).length]));
  {
    await using conn = await Connection.connect("127.0.0.1", leader.clientPort, 5000);
    for (const [i, value] of values.entries()) {
      // On a busy machine a write this large may outlast the leader's 5 s
      // request timeout ("may still apply"); it must still be applied.
      const reply = text(await conn.call(["SET", `big${i}`, value], 60_000));
      assert.ok(reply === "OK" || reply.startsWith("-TRYAGAIN"), `SET big${i}: ${reply}`);
    }
  }
  for (const n of cluster.nodes) {
    for (const [i, value] of values.entries()) {
      await waitUntil(
        async () => {
          const r = await cluster.call(n.readPort, ["GET", `big${i}`], 30_000).catch(() => null);
          return r?.kind === "bulk" && r.value !== null && equal(r.value, value);
        },
        60_000,
        `node ${n.id}'s read port to serve big${i} byte for byte`,
      );
    }
  }
  for (const n of cluster.nodes) {
    const log = cluster.log(n.id).slice(logFrom.get(n.id));
    assert.doesNotMatch(log, /has not answered for \d+ ms; killing it/, `node ${n.id}`);
    assert.doesNotMatch(log, /election timeout/, `node ${n.id}`);
    assert.doesNotMatch(log, /replication connection lost/, `node ${n.id}`);
  }
  cluster.pass();
});
