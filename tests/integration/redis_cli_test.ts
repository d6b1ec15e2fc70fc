// Real Redis tools against a real cluster: `redis-cli` writes through the
// leader's client port and reads from a follower's read port, and a short
// `redis-benchmark` run completes. The binaries come from the redis-tools
// package (CI installs it); without them these tests fail with a clear message.
// No timing assertions: the benchmark's figures are only printed.

import assert from "node:assert/strict";
import { runProcess, startCluster, waitForValue } from "./harness.ts";

const redisCli = "redis-cli";
const redisBenchmark = "redis-benchmark";

async function cli(port: number, ...args: string[]): Promise<string> {
  const r = await runProcess(redisCli, ["-h", "127.0.0.1", "-p", String(port), ...args], 10_000);
  assert.equal(r.code, 0, `redis-cli ${args.join(" ")} exited ${r.code}: ${r.stderr}`);
  return r.stdout;
}

Deno.test("redis-cli: SET, GET, DEL and PING on the leader; GET on a follower's read port", async () => {
  await using cluster = await startCluster(4);
  const leader = cluster.node(await cluster.waitForCluster());
  const follower = cluster.nodes.find((n) => n.id !== leader.id)!;

  // Not a terminal, so redis-cli prints raw replies unless told --no-raw.
  assert.equal(await cli(leader.clientPort, "SET", "a", "b"), "OK\n");
  assert.equal(await cli(leader.clientPort, "GET", "a"), "b\n");
  assert.equal(await cli(leader.clientPort, "--no-raw", "GET", "a"), '"b"\n');
  assert.equal(await cli(leader.clientPort, "PING"), "PONG\n");

  await waitForValue(cluster, follower.readPort, "a", "b", 5000);
  assert.equal(await cli(follower.readPort, "GET", "a"), "b\n");
  assert.equal(await cli(follower.readPort, "PING"), "PONG\n");

  assert.equal(await cli(leader.clientPort, "--no-raw", "DEL", "a"), "(integer) 1\n");
  assert.equal(await cli(leader.clientPort, "DEL", "a"), "0\n");
  assert.equal(await cli(leader.clientPort, "--no-raw", "GET", "a"), "(nil)\n");
  // Binary-safe values pass through unchanged.
  assert.equal(await cli(leader.clientPort, "SET", "tab", "x\ty z"), "OK\n");
  assert.equal(await cli(leader.clientPort, "GET", "tab"), "x\ty z\n");
  cluster.pass();
});

Deno.test("redis-benchmark: a short SET/GET run against the leader completes", async () => {
  await using cluster = await startCluster(4);
  const leader = cluster.node(await cluster.waitForCluster());
  const r = await runProcess(redisBenchmark, [
    "-h",
    "127.0.0.1",
    "-p",
    String(leader.clientPort),
    "-t",
    "set,get",
    "-n",
    "2000",
    "-c",
    "10",
    "-q",
  ], 25_000);
  assert.equal(r.code, 0, `redis-benchmark exited ${r.code}: ${r.stderr}\n${r.stdout}`);
  // -q prints a progress line ending in "\r" and then the result line per test.
  const results = r.stdout.split(/[\r\n]+/).filter((l) => /requests per second/.test(l));
  assert.ok(results.some((l) => /^SET: [\d.]+ requests per second/.test(l)), r.stdout);
  assert.ok(results.some((l) => /^GET: [\d.]+ requests per second/.test(l)), r.stdout);
  console.log(results.join("\n"));
  cluster.pass();
});
