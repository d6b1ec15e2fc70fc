// Durability across whole-cluster restarts with real processes: 200
// acknowledged writes survive every node being stopped (SIGTERM) and started
// again, and then every node being killed (SIGKILL of supervisor and role)
// and started again. The WAL files are in the request's line form.

import assert from "node:assert/strict";
import { Connection } from "../../src/client/connection.ts";
import { readWalLines, startCluster, type TestCluster, text, waitUntil } from "./harness.ts";

const keyCount = 200;
const keys = Array.from({ length: keyCount }, (_, i) => `k${i}`);

/** GETs every key on one connection (pipelined) and returns the values. */
async function getAll(port: number): Promise<string[]> {
  await using conn = await Connection.connect("127.0.0.1", port, 2000);
  const replies = await Promise.all(keys.map((k) => conn.call(["GET", k], 5000)));
  return replies.map(text);
}

const expected = keys.map((_, i) => `v${i}`);

async function checkEveryKeyEverywhere(cluster: TestCluster, what: string): Promise<void> {
  const leader = cluster.node(await cluster.waitForCluster(20_000));
  assert.deepEqual(await getAll(leader.clientPort), expected, `leader's reads ${what}`);
  for (const f of cluster.nodes.filter((n) => n.id !== leader.id)) {
    let last: string[] = [];
    await waitUntil(
      async () => {
        try {
          last = await getAll(f.readPort);
        } catch {
          return false;
        }
        return last.every((v, i) => v === expected[i]);
      },
      10_000,
      `node ${f.id}'s read port to have every key ${what}`,
    ).catch((e) => {
      const wrong = last.findIndex((v, i) => v !== expected[i]);
      throw new Error(`${(e as Error).message}; first wrong k${wrong} = ${last[wrong]}`);
    });
  }
}

async function restartAll(cluster: TestCluster, signal: "SIGTERM" | "SIGKILL"): Promise<void> {
  await Promise.all(cluster.nodes.map((n) => cluster.stop(n.id, signal)));
  for (const n of cluster.nodes) cluster.start(n.id);
}

Deno.test("restart: 200 acknowledged keys survive a SIGTERM and a SIGKILL of all 4 nodes", async () => {
  await using cluster = await startCluster(4);
  const leader = cluster.node(await cluster.waitForCluster());
  {
    await using conn = await Connection.connect("127.0.0.1", leader.clientPort, 2000);
    const replies = await Promise.all(keys.map((k, i) => conn.call(["SET", k, `v${i}`], 10_000)));
    assert.deepEqual(new Set(replies.map(text)), new Set(["OK"]));
  }

  // Every node's WAL is in the request's line form: seq TAB op TAB key TAB value.
  for (const n of cluster.nodes) {
    await waitUntil(
      async () => (await readWalLines(cluster, n.id)).some((l) => /^\d+\tSET\tk199\tv199$/.test(l)),
      10_000,
      `node ${n.id}'s WAL to hold k199`,
    );
    const lines = await readWalLines(cluster, n.id);
    assert.ok(lines.some((l) => /^\d+\tSET\tk17\tv17$/.test(l)), `node${n.id}.log has k17`);
    for (const [i, line] of lines.entries()) {
      assert.match(line, /^\d+\t(SET\t[^\t]+\t[^\t]*|DEL\t[^\t]+|TERM\t\d+)$/, `line ${i + 1}`);
      assert.equal(line.split("\t")[0], String(i + 1), `node${n.id}.log seq on line ${i + 1}`);
    }
  }

  await restartAll(cluster, "SIGTERM");
  await checkEveryKeyEverywhere(cluster, "after SIGTERM of all nodes");
  await restartAll(cluster, "SIGKILL");
  await checkEveryKeyEverywhere(cluster, "after SIGKILL of all nodes");
  cluster.pass();
});
