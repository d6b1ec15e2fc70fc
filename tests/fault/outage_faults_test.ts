// Fault tests of whole-cluster outages, with real processes:
//
// - No leader (two of four nodes killed; or all four running with every
//   node-to-node link blocked): no node redirects a write to itself or into a
//   redirect cycle, none acknowledges it, and `kvstore client` gives up within
//   a bounded time with one clear error line and exit code 2.
// - All four nodes killed at once (kill -9) after a long WAL, then restarted:
//   while they replay their WALs, no read on any read or client port answers
//   "not found" or a wrong value for a key that exists, and afterwards every
//   acknowledged key reads back with its value.

import assert from "node:assert/strict";
import {
  killPid,
  portsFree,
  readWalLines,
  runCli,
  startCluster,
  type TestCluster,
  type TestNode,
  text,
  waitUntil,
} from "../integration/harness.ts";
import {
  infoOf,
  keySet,
  logMark,
  mismatches,
  Monitor,
  pipeline,
  setAll,
  sleep,
  trySet,
} from "./fault_helpers.ts";

/** Read-port staleness bound (the default of --max-staleness-ms). */
const maxStalenessMs = 2000;

/** The CLI's default --timeout-ms is 10 s; add process start-up and slack. */
const cliReturnsMsMax = 15_000;

/** Follows REDIRECT replies to a SET from node `start`'s client port, at most
 * five hops; returns a violation (self-redirect, cycle, acknowledgement) or
 * null, and the path taken. */
async function redirectChain(
  cluster: TestCluster,
  start: TestNode,
): Promise<{ violation: string | null; path: string[] }> {
  const nodeAt = (port: number) => cluster.nodes.find((n) => n.clientPort === port)?.id ?? "?";
  const path: string[] = [];
  const seen: number[] = [start.clientPort];
  let port = start.clientPort;
  for (let hop = 0; hop < 5; hop++) {
    const reply = await trySet(cluster, port, "no-leader", "x", 1500) ?? "(no answer)";
    path.push(`node ${nodeAt(port)}: ${reply}`);
    const m = /^-REDIRECT 127\.0\.0\.1 (\d+)$/.exec(reply);
    if (m === null) {
      // An error such as -TRYAGAIN, or nothing: fine. Anything else acknowledges.
      const ok = reply.startsWith("-") || reply === "(no answer)";
      return { violation: ok ? null : `a SET was answered ${reply}`, path };
    }
    const next = Number(m[1]);
    if (next === port) return { violation: `node ${nodeAt(port)} redirects to itself`, path };
    if (seen.includes(next)) return { violation: "redirect cycle", path };
    seen.push(next);
    port = next;
  }
  return { violation: "more than five redirects", path };
}

/** With no leader: redirect chains from every live node, sampled for a while,
 * never loop or acknowledge; the CLI run against each gives up in bounded time. */
async function checkNoLeader(cluster: TestCluster, live: readonly TestNode[]): Promise<void> {
  const paths = new Set<string>();
  const chains = new Monitor(async () => {
    for (const n of live) {
      if ((await infoOf(cluster, n.clientPort, 500))?.get("role") === "master") {
        return `node ${n.id} claims to lead`;
      }
      const { violation, path } = await redirectChain(cluster, n);
      paths.add(path.join(" → ").replace(/\d+ ms/g, "… ms"));
      if (violation !== null) return `${violation}: ${path.join(" → ")}`;
    }
    return null;
  }, 100);
  let runs: { id: number; ms: number; code: number; stdout: string; stderr: string }[];
  try {
    runs = await Promise.all(live.map(async (n) => {
      const startedMs = performance.now();
      const r = await runCli(
        ["127.0.0.1", String(n.clientPort), "SET", "no-leader", "cli"],
        30_000,
      );
      return { id: n.id, ms: Math.round(performance.now() - startedMs), ...r };
    }));
  } finally {
    await chains.stop();
  }
  console.log(`redirect paths seen:\n  ${[...paths].join("\n  ")}`);
  console.log(runs.map((r) => `CLI via node ${r.id}: ${r.ms} ms, exit ${r.code}, ${r.stderr}`));
  assert.deepEqual(chains.violations, []);
  assert.ok(chains.samples >= 3, `redirect chains sampled ${chains.samples} times`);
  for (const r of runs) {
    const what = `CLI via node ${r.id} (exit ${r.code}, ${r.ms} ms): ${JSON.stringify(r.stderr)}`;
    assert.ok(r.ms <= cliReturnsMsMax, `${what}: slower than ${cliReturnsMsMax} ms`);
    // Exit 2 with the cause: no node knows a leader, or the one named is
    // gone. Not exit 3 ("outcome unknown"): no node could have taken the write.
    assert.equal(r.code, 2, what);
    assert.equal(r.stdout, "", what);
    assert.match(
      r.stderr,
      /^error: no leader answered via 127\.0\.0\.1:\d+ within 10000 ms \(.+\)\n$/,
      what,
    );
  }
}

Deno.test("no leader (2 of 4 nodes killed): no self-redirect or redirect cycle, and the CLI gives up in bounded time", async () => {
  await using cluster = await startCluster(4);
  const leader = cluster.node(await cluster.waitForCluster());
  const follower = cluster.nodes.find((n) => n.id !== leader.id)!;
  await cluster.stop(leader.id, "SIGKILL");
  await cluster.stop(follower.id, "SIGKILL");
  // Several election timeouts: the two survivors are campaigning in vain.
  await sleep(2000);
  await checkNoLeader(cluster, cluster.nodes.filter((n) => cluster.isRunning(n.id)));
  cluster.pass();
});

Deno.test("no leader (every link blocked): no self-redirect or redirect cycle, and the CLI gives up in bounded time", async () => {
  await using cluster = await startCluster(4, { proxied: true });
  await cluster.waitForCluster();
  const links = cluster.links!;
  for (const n of cluster.nodes) links.isolate(n.id);
  // The leader steps down once it misses its quorum (check-quorum, within
  // about 2 s) and its role process is replaced by a follower's.
  let roles: (string | undefined)[] = [];
  await waitUntil(
    async () => {
      roles = await Promise.all(
        cluster.nodes.map(async (n) => (await infoOf(cluster, n.clientPort))?.get("role")),
      );
      return roles.every((r) => r === "slave");
    },
    10_000,
    "every node to answer INFO as a follower",
  ).catch((e) => {
    throw new Error(`${(e as Error).message}: roles ${JSON.stringify(roles)}`);
  });
  await checkNoLeader(cluster, cluster.nodes);
  cluster.pass();
});

/** Role processes of node `id` that its supervisor killed, since log line
 * `mark`, before they had finished loading their WAL (no "listening clients
 * on …" line yet from that process): each kill restarts the load from scratch. */
function rolesKilledWhileLoading(cluster: TestCluster, id: number, mark: number): string[] {
  const killed: string[] = [];
  let pid: string | null = null;
  let loaded = false;
  for (const line of cluster.log(id).split("\n").slice(mark)) {
    const started = /started (?:leader|follower) role process pid (\d+)/.exec(line);
    if (started) {
      pid = started[1]!;
      loaded = false;
    } else if (/\] listening clients on \d+, reads on \d+/.test(line)) {
      loaded = true;
    } else if (/did not confirm the fence|has not answered for/.test(line) && !loaded) {
      killed.push(`node ${id} role pid ${pid}: ${line.slice(line.indexOf("[WARN]"))}`);
    }
  }
  return killed;
}

/** GETs of known keys on every node's read and client port, each on a new
 * connection, as fast as the machine allows, until stopped. Refused
 * connections and error replies are fine; a nil or another value is not. */
class ReadHammer {
  readonly violations: string[] = [];
  /** "node N read|client key" → ms after the restart when it first read right. */
  readonly served = new Map<string, number>();
  readonly counts = new Map<string, number>();
  #stopped = false;
  readonly #loops: Promise<void>[];

  constructor(cluster: TestCluster, known: ReadonlyMap<string, string>, sinceMs: number) {
    this.#loops = cluster.nodes.flatMap((n) =>
      (["read", "client"] as const).map(async (kind) => {
        const port = kind === "read" ? n.readPort : n.clientPort;
        while (!this.#stopped) {
          for (const [key, value] of known) {
            let reply: string;
            try {
              reply = text(await cluster.call(port, ["GET", key], 1000));
            } catch {
              this.#count("no connection or no reply");
              await sleep(10);
              continue;
            }
            const atMs = Math.round(performance.now() - sinceMs);
            const where = `node ${n.id} ${kind} ${key}`;
            if (reply === value) {
              this.#count("value");
              if (!this.served.has(where)) this.served.set(where, atMs);
            } else if (reply.startsWith("-")) {
              this.#count(reply.split(" ")[0]!);
            } else {
              this.#count("WRONG");
              if (this.violations.length < 20) {
                this.violations.push(`${where} answered ${JSON.stringify(reply)} at +${atMs} ms`);
              }
            }
          }
          await sleep(2);
        }
      })
    );
  }

  #count(what: string): void {
    this.counts.set(what, (this.counts.get(what) ?? 0) + 1);
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    await Promise.all(this.#loops);
  }
}

Deno.test("all four nodes killed at once and restarted: no read answers nil during WAL replay, and every acknowledged key is back", async () => {
  await using cluster = await startCluster(4);
  const leader = cluster.node(await cluster.waitForCluster());

  // A known key at the start of the WAL, 50,000 SETs (10,000 keys, five
  // rounds, 100-byte values) so that replay takes a while, 200 more keys,
  // and a known key at the end.
  const known = new Map([["known-early", "early-value"]]);
  await setAll(leader.clientPort, known);
  const bulk = new Map<string, string>();
  const commands: string[][] = [];
  for (let round = 0; round < 5; round++) {
    for (let i = 0; i < 10_000; i++) {
      const value = `round${round}-key${i}-`.padEnd(100, "x");
      commands.push(["SET", `bulk${i}`, value]);
      bulk.set(`bulk${i}`, value);
    }
  }
  const bulkStartedMs = performance.now();
  const replies = await pipeline(leader.clientPort, commands, 2000, 30_000);
  assert.equal(replies.filter((r) => r !== "OK").length, 0, "every bulk SET acknowledged");
  const bulkMs = Math.round(performance.now() - bulkStartedMs);
  const acked = keySet("acked-", 200);
  await setAll(leader.clientPort, acked);
  known.set("known-late", "late-value");
  await setAll(leader.clientPort, new Map([["known-late", "late-value"]]));
  // Beyond the staleness bound, every node's read port must reflect all of it.
  await sleep(maxStalenessMs + 500);
  const walLines = (await readWalLines(cluster, leader.id)).length;

  const pids = cluster.nodes.flatMap((n) => [cluster.supervisorPid(n.id), cluster.rolePid(n.id)]);
  assert.equal(pids.filter((p) => p !== null).length, 8, `every PID known: ${pids}`);
  for (const pid of pids) killPid(pid!, "SIGKILL");
  // A process killed in the middle of an fsync on a busy disk can take a
  // while to go; wait longer than cluster.stop would before restarting.
  await waitUntil(
    () => cluster.nodes.every(portsFree),
    20_000,
    "every killed node's ports to be free",
  );
  for (const n of cluster.nodes) await cluster.stop(n.id, "SIGKILL");

  const marks = cluster.nodes.map((n) => logMark(cluster, n.id));
  const restartedMs = performance.now();
  for (const n of cluster.nodes) cluster.start(n.id);
  const hammer = new ReadHammer(cluster, known, restartedMs);
  let killedWhileLoading: string[] = [];
  const readPortsServing = () =>
    cluster.nodes.every((n) =>
      [...known.keys()].every((k) => hammer.served.has(`node ${n.id} read ${k}`))
    );
  const leaderServing = () =>
    cluster.nodes.some((n) =>
      [...known.keys()].every((k) => hammer.served.has(`node ${n.id} client ${k}`))
    );
  try {
    await waitUntil(
      () => readPortsServing() && leaderServing(),
      30_000,
      "every read port and the leader's client port to serve the known keys",
    );
  } finally {
    await hammer.stop();
    killedWhileLoading = cluster.nodes.flatMap((n, i) =>
      rolesKilledWhileLoading(cluster, n.id, marks[i]!)
    );
    console.log(`role processes killed before their WAL was loaded: ${killedWhileLoading.length}`);
    console.log(
      `${commands.length} bulk SETs in ${bulkMs} ms; WAL of ${walLines} lines; after the restart: ` +
        `${JSON.stringify(Object.fromEntries(hammer.served))}; replies ${
          JSON.stringify(Object.fromEntries(hammer.counts))
        }`,
    );
  }
  assert.deepEqual(hammer.violations, []);

  const now = cluster.node(await cluster.waitForCluster());
  const all = new Map([...known, ...bulk, ...acked]);
  assert.deepEqual((await mismatches(now.clientPort, all)).slice(0, 5), []);
  // The role process answers fences while it loads its WAL, so it is never
  // killed for not confirming one; a kill would restart the load from scratch.
  assert.deepEqual(killedWhileLoading, []);
  cluster.pass();
});
