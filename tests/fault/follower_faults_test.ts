// Fault tests of one follower, with real processes:
//
// - Its data directory is wiped (WAL, term/vote file, commit hint) while it is
//   down: restarted empty, it catches up completely from the leader (every
//   key on its read port, the very same WAL), is never elected or claims to
//   lead while it lacks committed entries, never reads an existing key as
//   missing, and nothing acknowledged is lost.
// - Frozen with SIGSTOP for several election timeouts while writes go on,
//   then resumed: it rejoins without deposing the leader (same leader, same
//   term everywhere) and catches up.
// - Killed for 10 s while writes go on, then restarted: the same. (The
//   "down for a minute" variant of this is too slow for CI; 10 s is already
//   more than ten election timeouts, long enough for every timer to fire.)

import assert from "node:assert/strict";
import {
  readWalLines,
  startCluster,
  type TestCluster,
  type TestNode,
  tryGet,
  waitUntil,
} from "../integration/harness.ts";
import {
  freeze,
  infoOf,
  keySet,
  logMark,
  logSince,
  mismatches,
  Monitor,
  pipeline,
  roleAndTerm,
  setAll,
  sleep,
  tryMismatches,
} from "./fault_helpers.ts";

/** Read-port staleness bound (the default of --max-staleness-ms). */
const maxStalenessMs = 2000;

/** Node `id`'s files in the data directory: nodeN.log, .state, .commit and temporaries. */
async function nodeFiles(cluster: TestCluster, id: number): Promise<string[]> {
  const names: string[] = [];
  for await (const e of Deno.readDir(cluster.dir)) {
    if (e.name.startsWith(`node${id}.`)) names.push(e.name);
  }
  return names.sort();
}

/** First line where two WALs differ, for a readable failure. */
function walDiff(mine: readonly string[], theirs: readonly string[]): string {
  const n = Math.max(mine.length, theirs.length);
  for (let i = 0; i < n; i++) {
    if (mine[i] !== theirs[i]) {
      return `line ${i + 1}: ${JSON.stringify(mine[i])} vs ${JSON.stringify(theirs[i])} ` +
        `(${mine.length} vs ${theirs.length} lines)`;
    }
  }
  return "equal";
}

/** Writes `count` keys `${prefix}${i}` pipelined, all acknowledged. */
async function writeKeys(port: number, prefix: string, count: number, valueBytes = 16) {
  const keys = keySet(prefix, count, valueBytes);
  await setAll(port, keys);
  return keys;
}

/** Watches that `leader` stays the only leader, in term `term`, on every node that answers. */
function watchLeadership(cluster: TestCluster, leader: number, term: number): Monitor {
  return new Monitor(async () => {
    for (const n of cluster.nodes) {
      if (!cluster.isRunning(n.id)) continue;
      const info = await infoOf(cluster, n.clientPort, 500);
      if (info === null) continue; // starting or busy: nothing claimed
      const t = Number(info.get("term"));
      if (info.get("role") === "master" && n.id !== leader) {
        return `node ${n.id} claims to lead in term ${t}`;
      }
      if (t !== term) return `node ${n.id} is in term ${t}, not ${term}`;
    }
    return null;
  }, 50);
}

Deno.test("wiped follower: restarted with an empty data directory, it catches up completely and is never elected", async () => {
  await using cluster = await startCluster(4);
  const leader = cluster.node(await cluster.waitForCluster());
  const wiped = cluster.nodes.find((n) => n.id !== leader.id)!;
  const leaderTerm = (await roleAndTerm(cluster, leader.id))!.term;

  // A long log, so that catching up takes a while.
  const before = await writeKeys(leader.clientPort, "before-", 20_000, 100);
  const beforeAckedMs = performance.now();
  const probeKey = "before-19999";
  await cluster.stop(wiped.id, "SIGKILL");
  const files = await nodeFiles(cluster, wiped.id);
  for (const f of ["log", "state", "commit"]) {
    assert.ok(files.includes(`node${wiped.id}.${f}`), `node${wiped.id}.${f} in ${files}`);
  }
  for (const f of files) await Deno.remove(`${cluster.dir}/${f}`);
  assert.deepEqual(await nodeFiles(cluster, wiped.id), []);
  const down = await writeKeys(leader.clientPort, "down-", 500);

  // From its restart until its WAL equals the leader's: never the leader,
  // and never "not found" for a key acknowledged beyond the staleness bound.
  const progress: string[] = [];
  const monitor = new Monitor(async () => {
    const readStartedMs = performance.now();
    const [leading, info, got] = await Promise.all([
      cluster.leaderId(),
      infoOf(cluster, wiped.clientPort, 500),
      tryGet(cluster, wiped.readPort, probeKey),
    ]);
    if (leading === wiped.id) return `leaderId() is the wiped node ${wiped.id}`;
    if (info?.get("role") === "master") {
      return `node ${wiped.id} says role:master in term ${info.get("term")}`;
    }
    if (info !== null) progress.push(`${info.get("last_index")}/${info.get("commit_index")}`);
    if (
      got !== null && !got.startsWith("-") && got !== before.get(probeKey) &&
      readStartedMs - beforeAckedMs > maxStalenessMs
    ) {
      return `node ${wiped.id}'s read port answered ${JSON.stringify(got)} for ${probeKey}`;
    }
    return null;
  }, 10);
  // Restart beyond the staleness bound of those writes, so that any read of
  // them during the catch-up must find them.
  await sleep(Math.max(0, beforeAckedMs + maxStalenessMs + 200 - performance.now()));
  cluster.start(wiped.id);
  const restartedMs = performance.now();
  let after: Map<string, string>;
  let mine: string[] = [];
  let theirs: string[] = [];
  try {
    after = await writeKeys(leader.clientPort, "after-", 500);
    await waitUntil(
      async () => {
        mine = await readWalLines(cluster, wiped.id);
        theirs = await readWalLines(cluster, leader.id);
        return mine.length === theirs.length && walDiff(mine, theirs) === "equal";
      },
      25_000,
      `node ${wiped.id}'s WAL to equal the leader's`,
    ).catch((e) => {
      throw new Error(`${(e as Error).message}: ${walDiff(mine, theirs)}`);
    });
  } finally {
    await monitor.stop();
  }
  const caughtUpMs = Math.round(performance.now() - restartedMs);
  console.log(
    `WAL of ${theirs.length} lines equal ${caughtUpMs} ms after restart; ` +
      `${monitor.samples} samples; last/commit index seen: ${progress.slice(0, 3)} … ${
        progress.slice(-2)
      }`,
  );
  assert.deepEqual(monitor.violations, []);
  assert.ok(monitor.samples >= 5, `the monitor sampled ${monitor.samples} times`);

  // Its read port serves every key; the leader lost nothing it acknowledged;
  // the leader never changed.
  const all = new Map([...before, ...down, ...after]);
  let missing: string[] = [];
  await waitUntil(
    async () => (missing = await tryMismatches(wiped.readPort, all)).length === 0,
    10_000,
    `node ${wiped.id}'s read port to serve all ${all.size} keys`,
  ).catch((e) => {
    throw new Error(`${(e as Error).message}: ${missing.length} wrong, e.g. ${missing[0]}`);
  });
  assert.deepEqual((await mismatches(leader.clientPort, all)).slice(0, 5), []);
  assert.deepEqual(await roleAndTerm(cluster, leader.id), {
    role: "master",
    term: leaderTerm,
    leader: String(leader.id),
  });
  cluster.pass();
});

/** Writes to `leader` in small pipelined batches for `durationMs`; returns the
 * keys written (all acknowledged). */
async function writeFor(leader: TestNode, prefix: string, durationMs: number) {
  const written = new Map<string, string>();
  const endMs = performance.now() + durationMs;
  for (let batch = 0; performance.now() < endMs; batch++) {
    const keys = Array.from({ length: 20 }, (_, i) => `${prefix}${batch * 20 + i}`);
    const replies = await pipeline(leader.clientPort, keys.map((k) => ["SET", k, `b${batch}`]));
    assert.deepEqual(new Set(replies), new Set(["OK"]), `batch ${batch} acknowledged`);
    for (const k of keys) written.set(k, `b${batch}`);
    await sleep(20);
  }
  return written;
}

/** The common second half of the freeze and the kill variants: `returned` is
 * back; watch for a few election timeouts that the leader and term stay, and
 * that it catches up with every write. */
async function checkRejoin(
  cluster: TestCluster,
  leader: TestNode,
  term: number,
  returned: TestNode,
  written: Map<string, string>,
  backMs: number,
): Promise<void> {
  const watch = watchLeadership(cluster, leader.id, term);
  try {
    // Writes go on after its return too.
    const afterReturn = await writeFor(leader, "after-return-", 1000);
    for (const [k, v] of afterReturn) written.set(k, v);
    assert.equal(
      (await pipeline(leader.clientPort, [["SET", "latest", "value"]]))[0],
      "OK",
    );
    written.set("latest", "value");
    await waitUntil(
      async () => await tryGet(cluster, returned.readPort, "latest") === "value",
      15_000,
      `node ${returned.id}'s read port to serve the latest write`,
    );
    console.log(
      `node ${returned.id} served the latest write ${
        Math.round(performance.now() - backMs)
      } ms after it was back`,
    );
    // Two more election timeouts and more, for a late disruption to show.
    await sleep(2500);
  } catch (e) {
    // A deposed leader makes the writes fail: say what the watch saw.
    await watch.stop();
    throw new Error(`${(e as Error).message}; leadership: ${JSON.stringify(watch.violations)}`);
  } finally {
    await watch.stop();
  }
  assert.deepEqual(watch.violations, []);
  assert.ok(watch.samples >= 10, `leadership sampled ${watch.samples} times`);
  assert.deepEqual(await roleAndTerm(cluster, leader.id), {
    role: "master",
    term,
    leader: String(leader.id),
  });
  const info = await infoOf(cluster, returned.clientPort);
  assert.equal(info?.get("role"), "slave");
  assert.equal(info?.get("term"), String(term));
  assert.equal(info?.get("master_node"), String(leader.id));
  assert.deepEqual((await mismatches(returned.readPort, written)).slice(0, 5), []);
  assert.deepEqual((await mismatches(leader.clientPort, written)).slice(0, 5), []);
}

Deno.test("frozen follower: SIGSTOP for 4 s while writes go on, then SIGCONT; same leader and term, and it catches up", async () => {
  await using cluster = await startCluster(4);
  const leader = cluster.node(await cluster.waitForCluster());
  const follower = cluster.nodes.find((n) => n.id !== leader.id)!;
  const before = (await roleAndTerm(cluster, leader.id))!;
  assert.equal(before.role, "master");

  let written: Map<string, string>;
  {
    using frozen = freeze(cluster, follower.id);
    written = await writeFor(leader, "while-frozen-", 4000);
    frozen.thaw();
  }
  console.log(`${written.size} writes acknowledged while node ${follower.id} was frozen`);
  await checkRejoin(cluster, leader, before.term, follower, written, performance.now());
  cluster.pass();
});

Deno.test("follower killed for 10 s while writes go on, then restarted: same leader and term, and it catches up", async () => {
  await using cluster = await startCluster(4);
  const leader = cluster.node(await cluster.waitForCluster());
  const follower = cluster.nodes.find((n) => n.id !== leader.id)!;
  const before = (await roleAndTerm(cluster, leader.id))!;
  assert.equal(before.role, "master");

  await cluster.stop(follower.id, "SIGKILL");
  const written = await writeFor(leader, "while-down-", 10_000);
  console.log(`${written.size} writes acknowledged while node ${follower.id} was down`);
  cluster.start(follower.id);
  await checkRejoin(cluster, leader, before.term, follower, written, performance.now());
  cluster.pass();
});

Deno.test("follower cut off from every node for 4 s (it keeps running and timing out), then healed: same leader and term", async () => {
  // Unlike a frozen node, this one runs its election timer the whole time and
  // campaigns in vain. Without pre-vote it would climb terms and, on its
  // return, depose the healthy leader; with it, its term stays put.
  await using cluster = await startCluster(4, { proxied: true });
  const leader = cluster.node(await cluster.waitForCluster());
  const follower = cluster.nodes.find((n) => n.id !== leader.id)!;
  const before = (await roleAndTerm(cluster, leader.id))!;
  assert.equal(before.role, "master");
  const mark = logMark(cluster, follower.id);
  cluster.links!.isolate(follower.id);
  let written: Map<string, string>;
  try {
    written = await writeFor(leader, "while-cut-off-", 4000);
  } finally {
    cluster.links!.heal();
  }
  const campaigns = logSince(cluster, follower.id, mark, /asking for pre-votes|starting election/);
  assert.ok(campaigns.length >= 2, `the cut-off follower campaigned (${campaigns.length} times)`);
  console.log(`${written.size} writes acknowledged while node ${follower.id} was cut off`);
  await checkRejoin(cluster, leader, before.term, follower, written, performance.now());
  cluster.pass();
});
