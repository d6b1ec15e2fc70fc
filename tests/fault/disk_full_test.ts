// Disk faults with real processes (issue "Storage that lasts", item 6): the
// leader's disk fills up under a steady recorded write load (and, the same
// way, a follower's), and a data directory that cannot be written at start.
//
// Every node keeps its data on a small tmpfs of its own, so whichever node
// leads, ITS disk can be filled (a filler file written until ENOSPC) while
// the other three keep room. What must hold:
//   - nothing is acknowledged that was not durably written: the recorded
//     history is linearizable with a final read of every key, and writes
//     acknowledged while the disk was full are readable everywhere after;
//   - the full node fails clearly (ENOSPC in its log) and stops leading; the
//     other three elect a leader (or keep theirs) and acknowledge writes
//     meanwhile; its supervisor stays up, taking no term or vote it cannot
//     write to its term/vote file;
//   - once the filler is removed the node recovers by itself (same
//     supervisor, nothing restarted by the test): it catches up, its read
//     port serves the leader's latest values, its WAL is not damaged
//     (`wal check` exits 0 or 1, never 3) and every WAL agrees with the
//     leader's on their common prefix.
//
// Needs root for mount/umount; without it the tests are ignored, saying why.
// Only what a test mounted is unmounted, in `finally`, even on failure, and
// only PIDs the harness started are signalled.

import assert from "node:assert/strict";
import {
  mainTs,
  readWalLines,
  runProcess,
  startCluster,
  type TestCluster,
  waitForValue,
  waitUntil,
} from "../integration/harness.ts";
import { infoOf, keySet, logSince, mismatches, setAll, sleep, trySet } from "./fault_helpers.ts";
import { startWorkload, verifyAfterFaults } from "./fault_mix.ts";

/** Per-node disk: room for a WAL of tens of thousands of entries, yet quick
 * to fill; four of them cost at most 96 MiB of RAM. */
const diskMiB = 24;

/** How long the full node must keep failing (and stay up) with a new leader
 * in place: many heartbeats and vote requests of the new term reach it. */
const holdFullMs = 3000;

/** The full node is back in step this long after space returns: its
 * supervisor retries the term file on the next heartbeat (100 ms) and a
 * crashed role is restarted within the 5 s crash-loop backoff cap. */
const recoverBoundMs = 20_000;

const enospc = /No space left on device|ENOSPC|os error 28/;

/** Why tmpfs cannot be used here (not root, no mount), or null when it can. */
async function tmpfsUnavailable(): Promise<string | null> {
  if (Deno.build.os !== "linux") return `tmpfs mounts need Linux, not ${Deno.build.os}`;
  if (Deno.uid() !== 0) return `mounting a tmpfs needs root (uid ${Deno.uid()})`;
  const dir = await Deno.makeTempDir({ prefix: "kvstore-tmpfs-probe-" });
  try {
    await mountTmpfs(dir, 1);
    await unmount(dir);
    return null;
  } catch (e) {
    return (e as Error).message;
  } finally {
    await Deno.remove(dir).catch(() => {});
  }
}

async function mountTmpfs(dir: string, sizeMiB: number, readOnly = false): Promise<void> {
  const options = `${readOnly ? "ro," : ""}size=${sizeMiB}M,mode=0755`;
  const r = await runProcess("mount", ["-t", "tmpfs", "-o", options, "tmpfs", dir], 10_000);
  if (r.code !== 0) {
    throw new Error(`mount -t tmpfs -o ${options} on ${dir} exited ${r.code}: ${r.stderr.trim()}`);
  }
}

/** Unmounts `dir`, retrying while something still holds it (a role process
 * that is exiting): 50 tries 100 ms apart. */
async function unmount(dir: string): Promise<void> {
  let last = "";
  for (let attempt = 0; attempt < 50; attempt++) {
    const r = await runProcess("umount", [dir], 10_000);
    if (r.code === 0) return;
    last = r.stderr.trim();
    await sleep(100);
  }
  throw new Error(`umount ${dir} kept failing: ${last}`);
}

/** One tmpfs per node under a temporary directory; unmounted and removed on
 * dispose. Declare it with `await using` before the cluster, so the nodes
 * are stopped (and let go of their files) before the disks go. */
class NodeDisks implements AsyncDisposable {
  readonly root: string;
  readonly #mounted: string[] = [];

  private constructor(root: string) {
    this.root = root;
  }

  static async mount(
    ids: readonly number[],
    sizeMiB: number,
    opts: { readonly readOnly?: boolean } = {},
  ): Promise<NodeDisks> {
    const disks = new NodeDisks(await Deno.makeTempDir({ prefix: "kvstore-disks-" }));
    try {
      for (const id of ids) {
        const dir = disks.dir(id);
        await Deno.mkdir(dir);
        await mountTmpfs(dir, sizeMiB, opts.readOnly ?? false);
        disks.#mounted.push(dir);
      }
    } catch (e) {
      await disks[Symbol.asyncDispose]();
      throw e;
    }
    return disks;
  }

  dir(id: number): string {
    return `${this.root}/node${id}`;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    const failures: string[] = [];
    for (const dir of this.#mounted.splice(0)) {
      await unmount(dir).catch((e) => failures.push((e as Error).message));
    }
    // Never remove recursively through a disk still mounted: that would
    // empty it and then fail on the mount point anyway.
    if (failures.length > 0) throw new Error(failures.join("; "));
    await Deno.remove(this.root, { recursive: true });
  }
}

/** Writes `path` in 256 KiB chunks until the disk refuses (ENOSPC); returns
 * the bytes written and the error. Throws if `bytesMax` fit without it. */
async function fillDisk(path: string, bytesMax: number): Promise<{ bytes: number; error: string }> {
  const chunk = new Uint8Array(256 * 1024).fill(0x66);
  using file = await Deno.open(path, { write: true, createNew: true });
  let bytes = 0;
  while (bytes <= bytesMax) {
    try {
      bytes += await file.write(chunk);
    } catch (e) {
      return { bytes, error: (e as Error).message };
    }
  }
  throw new Error(`Wrote ${bytes} bytes to ${path} and the disk is still not full`);
}

/** The node other than `not` whose client port says role:master and takes a
 * write, or null. */
async function leaderOtherThan(cluster: TestCluster, not: number): Promise<number | null> {
  for (const n of cluster.nodes) {
    if (n.id === not) continue;
    if ((await infoOf(cluster, n.clientPort))?.get("role") !== "master") continue;
    if (await trySet(cluster, n.clientPort, "__probe", "1") === "OK") return n.id;
  }
  return null;
}

/** One run: a 4-node cluster on four disks under the recorded workload;
 * the disk of the leader (or of one follower) fills up, stays full for a
 * while, and is freed again; then every check of the file header. */
async function diskFullScenario(whose: "leader" | "follower"): Promise<void> {
  const testStartedMs = performance.now();
  const ids = [1, 2, 3, 4];
  await using disks = await NodeDisks.mount(ids, diskMiB);
  await using cluster = await startCluster(4, { dataDirOf: (id) => disks.dir(id) });
  await cluster.waitForCluster();
  // Each node really writes to its own disk, and only there.
  for (const id of ids) {
    await Deno.stat(`${disks.dir(id)}/node${id}.log`);
    await assert.rejects(Deno.stat(`${cluster.dir}/node${id}.log`), Deno.errors.NotFound);
  }
  const workload = startWorkload(cluster);
  const completeWrites = () =>
    workload.history.filter((o) => o.op.kind !== "get" && o.completeMs !== null).length;
  let filler = "";
  let fillerPresent = false;
  let full = 0;
  let supervisorBefore: number | null = null;
  let leader = 0;
  let duringKeys = new Map<string, string>();
  let recoveredMs = 0;
  try {
    await sleep(1000);
    // The leader now, not at start: the disk to fill is the one it writes.
    let current: number | null = null;
    await waitUntil(async () => (current = await cluster.leaderId()) !== null, 10_000, "a leader");
    full = whose === "leader" ? current! : ids.find((id) => id !== current)!;
    supervisorBefore = cluster.supervisorPid(full);
    filler = `${disks.dir(full)}/filler`;
    const mark = cluster.log(full).split("\n").length;
    const fullAtMs = performance.now();
    fillerPresent = true;
    const filled = await fillDisk(filler, diskMiB * 1024 * 1024);
    console.log(
      `node ${full} (${whose}): filler took ${filled.bytes} bytes until "${filled.error}"`,
    );
    assert.match(filled.error, enospc);

    // The full node fails clearly; a leader with room takes (or keeps) over.
    await waitUntil(
      () => logSince(cluster, full, mark, enospc).length > 0,
      10_000,
      `node ${full}'s log to report the full disk`,
    );
    let found: number | null = null;
    await waitUntil(
      async () => {
        cluster.assertAlive();
        return (found = await leaderOtherThan(cluster, full)) !== null;
      },
      15_000,
      `a leader other than the full node ${full}`,
    );
    leader = found!;
    const electedMs = Math.round(performance.now() - fullAtMs);
    const writesBefore = completeWrites();
    // Writes acknowledged while the disk stays full: our own, on fresh keys…
    duringKeys = keySet("full", 200, 64);
    await setAll(cluster.node(leader).clientPort, duringKeys);
    await sleep(holdFullMs);
    cluster.assertAlive();
    // …and the workload's.
    const ackedWhileFull = completeWrites() - writesBefore;
    assert.ok(ackedWhileFull >= 5, `only ${ackedWhileFull} workload writes acknowledged`);
    // The full node does not lead (its client port may be down while its
    // role restarts).
    const info = await infoOf(cluster, cluster.node(full).clientPort);
    assert.notEqual(info?.get("role"), "master", `full node ${full} says it leads`);
    console.log(
      `node ${leader} leads ${electedMs} ms after node ${full}'s disk filled` +
        `${leader === current ? " (as before)" : ""}; ` +
        `${ackedWhileFull} workload writes and ${duringKeys.size} SETs acknowledged while full`,
    );
    for (const line of logSince(cluster, full, mark, /ERROR|WARN/).slice(0, 8)) {
      console.log(`  node ${full}: ${line}`);
    }
    if (leader !== current) {
      // A new term came: the full node could not record it, so it took no
      // part in it (Raft §5.2), and said why.
      const refused = logSince(cluster, full, mark, /\[ERROR\] ignoring a .*term\/vote file/);
      assert.ok(refused.length > 0, `node ${full} logged no refused term/vote write`);
      assert.match(refused[0]!, enospc);
      assert.deepEqual(logSince(cluster, full, mark, /granted vote|starting election/), []);
    }

    // Space returns: the node must come back by itself.
    await Deno.remove(filler);
    fillerPresent = false;
    const freedAtMs = performance.now();
    const freedMark = cluster.log(full).split("\n").length;
    const readPort = cluster.node(full).readPort;
    await waitUntil(
      async () => {
        cluster.assertAlive();
        return (await mismatches(readPort, duringKeys).catch(() => ["down"])).length === 0;
      },
      recoverBoundMs,
      `node ${full}'s read port to serve the writes made while its disk was full`,
    );
    recoveredMs = Math.round(performance.now() - freedAtMs);
    for (const line of logSince(cluster, full, freedMark, /./).slice(0, 8)) {
      console.log(`  node ${full}: ${line}`);
    }
  } finally {
    if (fillerPresent) await Deno.remove(filler).catch(() => {});
    await workload.stop();
  }

  // Its latest value too, written after it recovered.
  assert.equal(await trySet(cluster, cluster.node(leader).clientPort, "after", "recovered"), "OK");
  await waitForValue(cluster, cluster.node(full).readPort, "after", "recovered");
  // Recovered in place: the same supervisor, never restarted.
  assert.equal(cluster.supervisorPid(full), supervisorBefore);
  assert.equal(cluster.log(full).match(/^---- node \d+ started/gm)?.length, 1);

  const after = await verifyAfterFaults(cluster, workload.history);
  for (const id of ids) {
    assert.deepEqual(await mismatches(cluster.node(id).readPort, duringKeys), []);
  }
  // No WAL is damaged: 0 intact, 1 a torn last line (cut off at start).
  const checks: string[] = [];
  for (const id of ids) {
    const path = `${disks.dir(id)}/node${id}.log`;
    const r = await runProcess(Deno.execPath(), ["run", "-A", mainTs, "wal", "check", path]);
    assert.ok(
      r.code === 0 || r.code === 1,
      `wal check ${path} exited ${r.code}:\n${r.stdout}${r.stderr}`,
    );
    checks.push(`node ${id}: exit ${r.code}, ${(await readWalLines(cluster, id)).length} lines`);
  }
  console.log(
    `${workload.summary()}; linearizable; node ${full} back in step ${recoveredMs} ms after ` +
      `space returned; read ports converged in ${after.convergedMs} ms; ` +
      `${after.walLinesCompared} WAL lines agree; wal check: ${checks.join(", ")}; ` +
      `run took ${Math.round(performance.now() - testStartedMs)} ms`,
  );
  cluster.pass();
}

const tmpfsProblem = await tmpfsUnavailable();
if (tmpfsProblem !== null) console.warn(`disk_full_test: ignored: ${tmpfsProblem}`);

Deno.test({
  name: "disk faults: the leader's disk fills up under load; it fails clearly, the others " +
    "go on, and it recovers by itself once space returns",
  ignore: tmpfsProblem !== null,
  fn: () => diskFullScenario("leader"),
});

Deno.test({
  name: "disk faults: a follower's disk fills up under load; writes go on, and it catches up " +
    "by itself once space returns",
  ignore: tmpfsProblem !== null,
  fn: () => diskFullScenario("follower"),
});

Deno.test({
  name: "disk faults: a data directory that cannot be written stops the node at start, " +
    "naming the path (read-only, and full)",
  ignore: tmpfsProblem !== null,
  fn: async () => {
    await using readOnly = await NodeDisks.mount([1], 1, { readOnly: true });
    await using full = await NodeDisks.mount([2], 1);
    const cases = [
      { id: 1, dir: readOnly.dir(1), why: /Read-only file system/ },
      { id: 2, dir: full.dir(2), why: enospc },
    ];
    // Nodes 3 and 4 are never started: a lone node stops before it needs peers.
    await using cluster = await startCluster(4, {
      start: false,
      dataDirOf: (id) => id === 1 ? readOnly.dir(1) : full.dir(2),
    });
    assert.match((await fillDisk(`${full.dir(2)}/filler`, 1024 * 1024)).error, enospc);
    for (const { id, dir, why } of cases) {
      cluster.start(id);
      assert.equal(await cluster.waitExit(id, 15_000), 3, cluster.log(id));
      const line = cluster.log(id).split("\n").find((l) => l.includes("[ERROR]"));
      assert.ok(line !== undefined, `node ${id} logged no ERROR:\n${cluster.log(id)}`);
      assert.ok(line.includes(`data directory ${dir} is not writable`), line);
      assert.match(line, why);
      console.log(line);
    }
    cluster.pass();
  },
});
