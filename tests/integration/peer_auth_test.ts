// The shared cluster secret (--secret-file): nodes that hold it work as a
// cluster; a connection that does not prove it is refused on the control and
// replication ports, so forged votes, heartbeats or acknowledgements are
// never heard.

import assert from "node:assert/strict";
import { encodeAck, encodeHello } from "../../src/codec/replication.ts";
import { killPid, startCluster, type TestCluster, text } from "./harness.ts";

async function startWithSecret(): Promise<TestCluster> {
  const cluster = await startCluster(4, { start: false });
  const secretFile = `${cluster.dir}/secret`;
  await Deno.writeTextFile(secretFile, "correct horse battery staple 42\n");
  for (const n of cluster.nodes) cluster.start(n.id, ["--secret-file", secretFile]);
  return cluster;
}

async function readSome(conn: Deno.Conn, timeoutMs: number): Promise<string | null> {
  const buf = new Uint8Array(1024);
  const timer = setTimeout(() => conn.close(), timeoutMs);
  try {
    const n = await conn.read(buf);
    return n === null ? null : new TextDecoder().decode(buf.subarray(0, n));
  } catch {
    return null;
  } finally {
    clearTimeout(timer);
  }
}

Deno.test("peer auth: a cluster sharing a secret elects a leader, replicates and fails over", async () => {
  await using cluster = await startWithSecret();
  await cluster.waitForCluster();
  const leader = await cluster.waitForLeader();
  assert.equal(text(await cluster.call(cluster.node(leader).clientPort, ["SET", "k", "v"])), "OK");
  const role = cluster.rolePid(leader)!;
  killPid(role, "SIGKILL");
  const next = await cluster.waitForLeader();
  assert.notEqual(next, leader);
  assert.equal(text(await cluster.call(cluster.node(next).clientPort, ["GET", "k"])), "v");
  assert.match(cluster.log(leader), /LEADER|following/);
  cluster.pass();
});

Deno.test("peer auth: forged HELLO and ACKs without the secret cannot get a write acknowledged", async () => {
  // Regression: with three followers out of the way, two connections naming
  // themselves as the dead nodes and ACKing everything made the leader
  // acknowledge writes no follower had; a later leader had none of them.
  await using cluster = await startWithSecret();
  await cluster.waitForCluster();
  const leader = await cluster.waitForLeader();
  const lnode = cluster.node(leader);
  const [a, b, c] = cluster.nodes.filter((n) => n.id !== leader);
  await cluster.stop(a!.id, "SIGKILL");
  await cluster.stop(b!.id, "SIGKILL");
  const frozen = cluster.rolePid(c!.id)!;
  killPid(frozen, "SIGSTOP");
  const forged: Deno.Conn[] = [];
  try {
    const term = Number(
      /term:(\d+)/.exec(text(await cluster.call(lnode.clientPort, ["INFO"])))![1],
    );
    for (const id of [a!.id, b!.id]) {
      const conn = await Deno.connect({ hostname: "127.0.0.1", port: lnode.replicationPort });
      forged.push(conn);
      const greeting = await readSome(conn, 2000);
      assert.match(greeting ?? "", /^KVAUTH1 [0-9a-f]{32}\n$/, "the leader asks for proof first");
      await conn.write(encodeHello(id, term, 0, 0));
      for (let round = 1; round < 50; round++) {
        await conn.write(encodeAck(term, 1_000_000, 1_000_000 + round)).catch(() => {});
      }
    }
    // No quorum really has it: the write times out (TRYAGAIN), or the leader,
    // hearing from too few nodes, steps down and drops the connection first.
    const outcome = await cluster.call(lnode.clientPort, ["SET", "forged", "x"], 8000).then(
      text,
      (e) => `closed: ${(e as Error).message}`,
    );
    assert.match(outcome, /^-TRYAGAIN|^closed/, `the write must not be acknowledged: ${outcome}`);
    assert.match(cluster.log(leader), /refusing a replication connection/);
  } finally {
    for (const conn of forged) {
      try {
        conn.close();
      } catch {
        // closed by the leader already
      }
    }
    killPid(frozen, "SIGCONT");
  }
  cluster.pass();
});

Deno.test("peer auth: a control connection without the secret is refused and its messages ignored", async () => {
  await using cluster = await startWithSecret();
  await cluster.waitForCluster();
  const leader = await cluster.waitForLeader();
  const target = cluster.nodes.find((n) => n.id !== leader)!;
  const before = /term:(\d+)/.exec(text(await cluster.call(target.clientPort, ["INFO"])))![1];
  const conn = await Deno.connect({ hostname: "127.0.0.1", port: target.controlPort });
  try {
    assert.match((await readSome(conn, 2000)) ?? "", /^KVAUTH1 /);
    await conn.write(
      new TextEncoder().encode(
        JSON.stringify({ kind: "Heartbeat", from: leader, term: 999 }) + "\n",
      ),
    );
    assert.equal(await readSome(conn, 2000), null, "the node hangs up");
  } finally {
    try {
      conn.close();
    } catch {
      // already closed
    }
  }
  const after = /term:(\d+)/.exec(text(await cluster.call(target.clientPort, ["INFO"])))![1];
  assert.equal(after, before, "the forged heartbeat's term was not adopted");
  assert.match(cluster.log(target.id), /refusing a control connection/);
  cluster.pass();
});

Deno.test("peer auth: a node started without the secret says why it cannot join, without flooding the others' logs", async () => {
  // Regression: the secret-less node took the KVAUTH1 challenge for a closed
  // connection and redialled at once, ~650 times a second, logging nothing
  // useful itself while its peers logged every refusal.
  await using cluster = await startCluster(4, { start: false });
  const secretFile = `${cluster.dir}/secret`;
  await Deno.writeTextFile(secretFile, "correct horse battery staple 42\n");
  for (const n of cluster.nodes.slice(0, 3)) cluster.start(n.id, ["--secret-file", secretFile]);
  cluster.start(4);
  await cluster.waitForLeader();
  await new Promise((r) => setTimeout(r, 3000));
  assert.match(cluster.log(4), /requires the cluster secret: start this node with --secret-file/);
  for (const id of [1, 2, 3]) {
    const refusals = cluster.log(id).split("\n").filter((l) => l.includes("refusing a control"));
    assert.ok(refusals.length <= 10, `node ${id} logged ${refusals.length} refusals in ~3 s`);
  }
  cluster.pass();
});
