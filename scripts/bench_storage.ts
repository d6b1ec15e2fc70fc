// `deno task bench:storage`: figures for the snapshot and compaction code
// (Raft §7) on a local 4-node cluster started through the test harness
// (tests/integration/harness.ts: free loopback ports, a temporary directory,
// exact PIDs, everything stopped on every path). Prints figures; asserts
// nothing, like scripts/bench.ts. Who calls it: a person comparing builds.
//
//   deno task bench:storage [--only restart,snapshot,disk,catchup] [--keys N]
//
//   restart   restart-to-serving time of a whole cluster holding N keys (and
//             100,000 keys, when N is larger), from process start until a GET
//             of a known key answers right on every node's read port; then one
//             follower node killed (-9, supervisor and role) and started alone;
//             the role processes' RSS against the raw data (keys + values)
//   snapshot  on a cluster holding N keys, the snapshot every node takes by
//             itself under a sequential SET loop on the leader: its write time
//             and the client latency inside the snapshot window vs outside it
//   disk      after that snapshot and its WAL compaction: bytes on disk per key
//   catchup   an empty follower (no data files) joining a cluster holding N
//             keys: time until its read port serves the last-written key, idle
//             and again under a steady write load
//
// The data is not written through a cluster (a million SETs would take
// minutes on two cores): every node's `nodeN.snap` is generated here with
// the snapshot codec (src/codec/snapshot.ts) as if entries 1 … N+1 (a TERM
// line and N SETs) had been applied, with a WAL tail of SET lines continuing
// it and `nodeN.state` at term 1, the same files for every node. The files
// were just written, so the restarts read them from the page cache.
//
// Keys are `key:0000000` … (11 bytes), values 100 bytes.
//
// The leader's memory with a frozen follower is a separate figure:
// `deno task bench --only lagging` (scripts/bench.ts).

import { crc32 } from "node:zlib";
import { parseArgs } from "node:util";
import { Connection } from "../src/client/connection.ts";
import { requestOnce } from "../src/client/client.ts";
import {
  encodeSnapshotHeader,
  encodeSnapshotPairs,
  encodeSnapshotTrailer,
} from "../src/codec/snapshot.ts";
import { encodeWalLine } from "../src/codec/wal_line.ts";
import type { KvPair } from "../src/kv/store.ts";
import { lineHash } from "../src/storage/commit_hint.ts";
import { writeTermFile } from "../src/storage/term_file.ts";
import { startCluster, type TestCluster, text, waitUntil } from "../tests/integration/harness.ts";

const encoder = new TextEncoder();
const valueBytes = 100;
const keyBytes = 11;

// ---- the data set ------------------------------------------------------------

function keyOf(i: number): string {
  return `key:${String(i).padStart(7, "0")}`;
}

function padValue(prefix: string): string {
  return prefix + "x".repeat(valueBytes - prefix.length);
}

const snapValue = (i: number): string => padValue(`snap-${i}-`);
const tailValue = (seq: number): string => padValue(`tail-${seq}-`);

interface Prepared {
  readonly keys: number;
  /** Last entry the snapshot covers (term 1). */
  readonly snapshotIndex: number;
  /** SET lines in the WAL after it. */
  readonly tailEntries: number;
  /** Bytes of keys and values in the state. */
  readonly rawBytes: number;
  readonly snapshotBytes: number;
  readonly walBytes: number;
  /** Key → value pairs a node serving the whole state must answer: the last
   * tail write, and a key only the snapshot holds. */
  readonly expect: readonly (readonly [string, string])[];
  readonly prepareMs: number;
}

/** What `prepare` would write for `keys`: one WAL tail line's size and the
 * snapshot's, to size a tail before writing anything. */
function sizes(keys: number): { snapshotBytes: number; walLineBytes: number } {
  const seq = keys + 2;
  const line = `${seq}\tSET\t${keyOf(0)}\t${tailValue(seq)}\n`;
  const header = encodeSnapshotHeader({ index: keys + 1, term: 1, lineHash: 0 }).length;
  return {
    snapshotBytes: header + keys * (keyBytes + valueBytes + 2) + 20,
    walLineBytes: line.length,
  };
}

async function writeChunks(path: string, chunks: readonly Uint8Array[]): Promise<void> {
  using file = await Deno.open(path, { write: true, create: true, truncate: true });
  for (const chunk of chunks) {
    for (let at = 0; at < chunk.length;) at += await file.write(chunk.subarray(at));
  }
}

/** Writes `nodeN.snap`, `nodeN.log` and `nodeN.state` for every node in
 * `ids` into `dir`: a snapshot of `keys` keys at entry keys + 1, term 1, and
 * `tailEntries` SET lines after it, overwriting keys 0, 1, 2, … in turn. */
async function prepare(
  dir: string,
  ids: readonly number[],
  keys: number,
  tailEntries: number,
): Promise<Prepared> {
  const t0 = performance.now();
  const snapshotIndex = keys + 1;
  // The entry the snapshot ends with, as if SET key:N-1 had been applied last.
  const lastLine = encodeWalLine({
    op: "SET",
    index: snapshotIndex,
    key: encoder.encode(keyOf(keys - 1)),
    value: encoder.encode(snapValue(keys - 1)),
  });
  const snap: Uint8Array[] = [
    encodeSnapshotHeader({ index: snapshotIndex, term: 1, lineHash: lineHash(lastLine) }),
  ];
  let crc = crc32(snap[0]!);
  const pairsPerChunk = 8192;
  for (let from = 0; from < keys; from += pairsPerChunk) {
    const pairs: KvPair[] = [];
    for (let i = from; i < Math.min(keys, from + pairsPerChunk); i++) {
      pairs.push([keyOf(i), snapValue(i)]);
    }
    const chunk = encodeSnapshotPairs(pairs);
    crc = crc32(chunk, crc);
    snap.push(chunk);
  }
  snap.push(encodeSnapshotTrailer(keys, crc));

  const wal: Uint8Array[] = [];
  const expect = new Map<string, string>();
  if (tailEntries < keys) expect.set(keyOf(keys - 1), snapValue(keys - 1));
  let last: [string, string] | null = null;
  for (let j = 0; j < tailEntries; j++) {
    const seq = snapshotIndex + 1 + j;
    const key = keyOf(j % keys);
    const value = tailValue(seq);
    wal.push(
      encodeWalLine({
        op: "SET",
        index: seq,
        key: encoder.encode(key),
        value: encoder.encode(value),
      }),
    );
    last = [key, value];
  }
  if (last !== null) expect.set(last[0], last[1]);

  const [first, ...rest] = ids;
  if (first === undefined) throw new Error("No node to prepare data for");
  await writeChunks(`${dir}/node${first}.snap`, snap);
  await writeChunks(`${dir}/node${first}.log`, wal);
  for (const id of rest) {
    await Deno.copyFile(`${dir}/node${first}.snap`, `${dir}/node${id}.snap`);
    await Deno.copyFile(`${dir}/node${first}.log`, `${dir}/node${id}.log`);
  }
  for (const id of ids) {
    await writeTermFile(`${dir}/node${id}.state`, { currentTerm: 1, votedFor: null });
  }
  return {
    keys,
    snapshotIndex,
    tailEntries,
    rawBytes: keys * (keyBytes + valueBytes),
    snapshotBytes: snap.reduce((n, c) => n + c.length, 0),
    walBytes: wal.reduce((n, c) => n + c.length, 0),
    expect: [...expect],
    prepareMs: performance.now() - t0,
  };
}

// ---- measuring ---------------------------------------------------------------

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Wall-clock ms of a performance.now() reading, to compare with log lines. */
const epochOf = (perfMs: number): number => performance.timeOrigin + perfMs;

interface Memory {
  readonly rssMb: number;
  readonly peakMb: number;
}

function memory(pid: number | null): Memory | null {
  if (pid === null) return null;
  try {
    const status = Deno.readTextFileSync(`/proc/${pid}/status`);
    const kb = (field: string) => Number(new RegExp(`${field}:\\s+(\\d+) kB`).exec(status)?.[1]);
    return { rssMb: kb("VmRSS") / 1024, peakMb: kb("VmHWM") / 1024 };
  } catch {
    return null;
  }
}

/** RSS of a role process holding nothing (measured once, see emptyRoleMb). */
let emptyRoleRssMb: number | null = null;

function describeMemory(m: Memory | null, rawBytes: number): string {
  if (m === null) return "(role process not found)";
  const raw = rawBytes / 1024 / 1024;
  const above = emptyRoleRssMb === null
    ? ""
    : `, ${((m.rssMb - emptyRoleRssMb) / raw).toFixed(2)}× above an empty role`;
  return `RSS ${m.rssMb.toFixed(0)} MB = ${(m.rssMb / raw).toFixed(2)}× raw${above} ` +
    `(peak ${m.peakMb.toFixed(0)} MB = ${(m.peakMb / raw).toFixed(2)}×)`;
}

/** The RSS of a follower role process with no data, once its ports are open:
 * the runtime's own share, to tell it apart from the state's. One node of a
 * 4-node cluster file, alone. */
async function emptyRoleMb(): Promise<number | null> {
  await using cluster = await startCluster(4, { start: false });
  const n = cluster.nodes[0]!;
  cluster.start(n.id);
  await waitUntil(
    async () => {
      try {
        return (await cluster.call(n.readPort, ["PING"], 1000)).kind === "simple";
      } catch {
        return false;
      }
    },
    30_000,
    `node ${n.id}'s read port to answer PING`,
  );
  await sleep(1000);
  const m = memory(cluster.rolePid(n.id));
  cluster.pass();
  return m?.rssMb ?? null;
}

async function tryGet(port: number, key: string): Promise<string | null> {
  try {
    return text(await requestOnce("127.0.0.1", port, ["GET", key], 2000));
  } catch {
    return null;
  }
}

/** Polls `port` until it answers every expected GET right; returns when
 * (performance.now()) that first happened, and the last wrong answer seen. */
async function waitServes(
  cluster: TestCluster,
  port: number,
  expect: readonly (readonly [string, string])[],
  timeoutMs: number,
): Promise<number> {
  const deadline = performance.now() + timeoutMs;
  let last: string | null = null;
  for (;;) {
    cluster.assertAlive();
    let right = true;
    for (const [key, value] of expect) {
      last = await tryGet(port, key);
      if (last !== value) {
        right = false;
        break;
      }
    }
    if (right) return performance.now();
    if (performance.now() > deadline) {
      throw new Error(
        `Port ${port} did not serve ${JSON.stringify(expect)} within ${timeoutMs} ms; last ` +
          `reply ${JSON.stringify(last?.slice(0, 120))}`,
      );
    }
    await sleep(20);
  }
}

/** Lines of node `id`'s output matching `re`, with their log timestamps. */
function logLines(
  cluster: TestCluster,
  id: number,
  re: RegExp,
): { epochMs: number; m: RegExpExecArray }[] {
  const out: { epochMs: number; m: RegExpExecArray }[] = [];
  for (const line of cluster.log(id).split("\n")) {
    const m = re.exec(line);
    const epochMs = Date.parse(line.slice(0, 24));
    if (m && Number.isFinite(epochMs)) out.push({ epochMs, m });
  }
  return out;
}

/** Ms from `startEpochMs` to the first line of node `id` matching `re`
 * logged since then, as text. */
function sinceStart(cluster: TestCluster, id: number, re: RegExp, startEpochMs: number): string {
  const at = logLines(cluster, id, re).find((l) => l.epochMs >= startEpochMs)?.epochMs;
  return at === undefined ? "?" : `${Math.round(at - startEpochMs)}`;
}

interface Sample {
  /** Wall-clock ms when the request was sent. */
  readonly sentEpochMs: number;
  readonly latencyMs: number;
}

interface Stats {
  readonly count: number;
  readonly opsPerS: number;
  readonly p50Ms: number;
  readonly p99Ms: number;
  readonly maxMs: number;
}

/** Latency figures of `samples`; ops/s over `spanMs` (default: first send to last reply). */
function stats(samples: readonly Sample[], spanMs?: number): Stats | null {
  if (samples.length === 0) return null;
  const lat = samples.map((s) => s.latencyMs).sort((a, b) => a - b);
  const at = (q: number) => lat[Math.min(lat.length - 1, Math.floor(q * lat.length))]!;
  const first = samples[0]!.sentEpochMs;
  const last = samples.at(-1)!;
  const span = spanMs ?? last.sentEpochMs + last.latencyMs - first;
  return {
    count: lat.length,
    opsPerS: lat.length / Math.max(0.001, span / 1000),
    p50Ms: at(0.5),
    p99Ms: at(0.99),
    maxMs: lat.at(-1)!,
  };
}

function describeStats(s: Stats | null): string {
  if (s === null) return "no requests";
  return `${String(s.count).padStart(6)} requests ${s.opsPerS.toFixed(0).padStart(5)} ops/s  ` +
    `p50 ${s.p50Ms.toFixed(1).padStart(6)} ms  p99 ${s.p99Ms.toFixed(1).padStart(7)} ms  ` +
    `max ${s.maxMs.toFixed(1).padStart(7)} ms`;
}

/**
 * `writers` clients, each sending one SET at a time to the leader's client
 * port (`args(i)` builds write number i) and timing it. A failed request is
 * counted and the writer reconnects to whichever node leads by then.
 */
class WriteLoad implements AsyncDisposable {
  readonly samples: Sample[] = [];
  /** Writes acknowledged, in the order their replies came: number and wall-clock ms. */
  readonly acked: { i: number; epochMs: number }[] = [];
  errors = 0;
  #next = 0;
  #stopped = false;
  #port: number;
  readonly #cluster: TestCluster;
  readonly #args: (i: number) => string[];
  readonly #done: Promise<void>[] = [];

  constructor(cluster: TestCluster, port: number, writers: number, args: (i: number) => string[]) {
    this.#cluster = cluster;
    this.#port = port;
    this.#args = args;
    for (let w = 0; w < writers; w++) this.#done.push(this.#run());
  }

  async #run(): Promise<void> {
    while (!this.#stopped) {
      let conn: Connection;
      try {
        conn = await Connection.connect("127.0.0.1", this.#port, 2000);
      } catch {
        this.errors++;
        await this.#findLeader();
        continue;
      }
      try {
        while (!this.#stopped) {
          const i = this.#next++;
          const t0 = performance.now();
          const reply = await conn.call(this.#args(i), 10_000);
          const t1 = performance.now();
          if (reply.kind !== "simple") {
            this.errors++;
            break;
          }
          this.samples.push({ sentEpochMs: epochOf(t0), latencyMs: t1 - t0 });
          this.acked.push({ i, epochMs: epochOf(t1) });
        }
      } catch {
        this.errors++;
      } finally {
        await conn[Symbol.asyncDispose]();
      }
      if (!this.#stopped) await this.#findLeader();
    }
  }

  async #findLeader(): Promise<void> {
    await sleep(100);
    const id = await this.#cluster.leaderId();
    if (id !== null) this.#port = this.#cluster.node(id).clientPort;
  }

  /** Number of the newest write acknowledged at or before `epochMs`, or -1. */
  ackedBy(epochMs: number): number {
    for (let k = this.acked.length - 1; k >= 0; k--) {
      if (this.acked[k]!.epochMs <= epochMs) return this.acked[k]!.i;
    }
    return -1;
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    await Promise.all(this.#done);
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.stop();
  }
}

/** Samples whose request overlapped [fromMs, toMs] (wall clock), and the rest. */
function split(samples: readonly Sample[], fromMs: number, toMs: number): [Sample[], Sample[]] {
  const inside: Sample[] = [];
  const outside: Sample[] = [];
  for (const s of samples) {
    const overlaps = s.sentEpochMs <= toMs && s.sentEpochMs + s.latencyMs >= fromMs;
    (overlaps ? inside : outside).push(s);
  }
  return [inside, outside];
}

const mb = (bytes: number): string => `${(bytes / 1024 / 1024).toFixed(1)} MB`;
const fmtKeys = (n: number): string => n.toLocaleString("en-US");

// ---- 1. restart ----------------------------------------------------------------

const loadedSnapshotRe = /loaded snapshot .*: (\d+) keys/;
const listeningRe = /listening clients on \d+, reads on \d+/;

async function restart(keys: number): Promise<void> {
  await using cluster = await startCluster(4, { start: false });
  const prep = await prepare(cluster.dir, cluster.nodes.map((n) => n.id), keys, 2000);
  console.log(
    `\nrestart, ${fmtKeys(keys)} keys: every node has a ${mb(prep.snapshotBytes)} snapshot at ` +
      `entry ${prep.snapshotIndex} + ${prep.tailEntries} WAL entries (${mb(prep.walBytes)}); ` +
      `raw data ${mb(prep.rawBytes)}; files written in ${prep.prepareMs.toFixed(0)} ms`,
  );
  const startEpochMs = Date.now();
  const t0 = performance.now();
  for (const n of cluster.nodes) cluster.start(n.id);
  const served = await Promise.all(
    cluster.nodes.map(async (n) =>
      await waitServes(cluster, n.readPort, prep.expect, 120_000) - t0
    ),
  );
  const leader = await cluster.leaderId();
  const atServe = cluster.nodes.map((n) => memory(cluster.rolePid(n.id)));
  for (const [k, n] of cluster.nodes.entries()) {
    console.log(
      `  node ${n.id}${n.id === leader ? " (leader)  " : " (follower)"}: snapshot loaded at ` +
        `${sinceStart(cluster, n.id, loadedSnapshotRe, startEpochMs)} ms, read port open at ` +
        `${sinceStart(cluster, n.id, listeningRe, startEpochMs)} ms, serving right values at ` +
        `${served[k]!.toFixed(0)} ms; ${describeMemory(atServe[k]!, prep.rawBytes)}`,
    );
  }
  console.log(
    `  whole cluster, process start → every read port serving: ${
      Math.max(...served).toFixed(0)
    } ms`,
  );
  await sleep(3000);
  const settled = cluster.nodes.map((n) => memory(cluster.rolePid(n.id))?.rssMb ?? NaN);
  console.log(
    `  role RSS 3 s later: ${settled.map((r) => `${r.toFixed(0)} MB`).join(", ")} ` +
      `(${settled.map((r) => (r / (prep.rawBytes / 1024 / 1024)).toFixed(2) + "×").join(", ")} ` +
      `raw)`,
  );

  // One follower node killed and started alone; the other three keep leading.
  const follower = cluster.nodes.find((n) => n.id !== leader)!;
  await cluster.stop(follower.id, "SIGKILL");
  const aloneEpochMs = Date.now();
  const t1 = performance.now();
  cluster.start(follower.id);
  const aloneMs = await waitServes(cluster, follower.readPort, prep.expect, 120_000) - t1;
  const mem = memory(cluster.rolePid(follower.id));
  console.log(
    `  node ${follower.id} alone (kill -9 of supervisor and role, started again): snapshot ` +
      `loaded at ${sinceStart(cluster, follower.id, loadedSnapshotRe, aloneEpochMs)} ms, read ` +
      `port open at ${sinceStart(cluster, follower.id, listeningRe, aloneEpochMs)} ms, serving ` +
      `right values at ${aloneMs.toFixed(0)} ms; ${describeMemory(mem, prep.rawBytes)}`,
  );
  cluster.pass();
}

// ---- 2 and 3. snapshot under load, bytes on disk after compaction --------------

const snapshotRe = /snapshot at entry (\d+) \(term \d+\): (\d+) keys, (\d+) bytes in (\d+) ms/;

async function fileSize(path: string): Promise<number> {
  try {
    return (await Deno.stat(path)).size;
  } catch {
    return 0;
  }
}

interface SnapshotWindow {
  readonly id: number;
  readonly keys: number;
  readonly bytes: number;
  readonly writeMs: number;
  /** Wall clock: its temporary file appeared (or its log line less writeMs). */
  readonly startMs: number;
  /** Wall clock: its log line, written once the WAL is compacted too. */
  readonly endMs: number;
  /** From `nodeN.log.compact` appearing to the log line; null: not seen. */
  readonly compactMs: number | null;
}

/** Milliseconds during which at least one of `windows` was open. */
function unionMs(windows: readonly SnapshotWindow[]): number {
  const sorted = [...windows].sort((a, b) => a.startMs - b.startMs);
  let total = 0;
  let end = -Infinity;
  for (const w of sorted) {
    if (w.endMs <= end) continue;
    total += w.endMs - Math.max(w.startMs, end);
    end = w.endMs;
  }
  return total;
}

/** The requests that overlapped any of `windows`, and the others. */
function splitByWindows(
  samples: readonly Sample[],
  windows: readonly SnapshotWindow[],
): [Sample[], Sample[]] {
  const inside: Sample[] = [];
  const outside: Sample[] = [];
  for (const s of samples) {
    const overlaps = windows.some((w) =>
      s.sentEpochMs <= w.endMs && s.sentEpochMs + s.latencyMs >= w.startMs
    );
    (overlaps ? inside : outside).push(s);
  }
  return [inside, outside];
}

/**
 * A cluster holding `keys` keys whose nodes snapshot under a sequential SET
 * loop on the leader. `staggerWrites` 0: every node reaches its threshold at
 * the same entry, so all four write their snapshot at once on the shared
 * cores (the worst case on one machine); otherwise node k's threshold is k ×
 * staggerWrites entries later, so each snapshot runs alone, as it would on
 * its own host.
 */
async function snapshotUnderLoad(
  keys: number,
  staggerWrites: number,
  show: { snapshot: boolean; disk: boolean },
): Promise<void> {
  await using cluster = await startCluster(4, { start: false });
  // A node rewrites a large snapshot only once its WAL is a quarter of the
  // snapshot's size (ReplicaState.maybeSnapshot), so the prepared WAL is a
  // little more than that; the entry threshold is set just above it, so the
  // SET loop below is what starts the snapshot, a few seconds in.
  const { snapshotBytes, walLineBytes } = sizes(keys);
  const tail = Math.ceil(snapshotBytes / 4 / walLineBytes) + 2000;
  const triggerWrites = 2000;
  const prep = await prepare(cluster.dir, cluster.nodes.map((n) => n.id), keys, tail);
  const entriesOf = (k: number) => tail + triggerWrites + k * staggerWrites;
  console.log(
    `\nsnapshot, ${fmtKeys(keys)} keys, ${
      staggerWrites === 0 ? "all nodes at once" : "one node at a time"
    }: every node starts from a ${mb(prep.snapshotBytes)} snapshot + ${fmtKeys(tail)} WAL ` +
      `entries (${mb(prep.walBytes)}) with --snapshot-entries ${
        staggerWrites === 0 ? entriesOf(0) : cluster.nodes.map((_, k) => entriesOf(k)).join("/")
      }; one client sends SETs (random existing key, 100 bytes) one at a time to the leader ` +
      `until every node has snapshotted`,
  );
  for (const [k, n] of cluster.nodes.entries()) {
    cluster.start(n.id, ["--snapshot-entries", String(entriesOf(k))]);
  }
  const leader = cluster.node(await cluster.waitForCluster(120_000));
  for (const n of cluster.nodes) {
    await waitServes(cluster, n.readPort, prep.expect, 120_000);
  }
  const leaderRole = cluster.rolePid(leader.id);
  const before = memory(leaderRole);

  // When each node's snapshot started (its temporary file appeared) and its
  // WAL compaction started (`nodeN.log.compact` appeared); polled.
  const tmpSeen = new Map<number, number>();
  const compactSeen = new Map<number, number>();
  const done = () => cluster.nodes.every((n) => logLines(cluster, n.id, snapshotRe).length > 0);
  let afterDoneMs: number | null = null;
  const capMs = performance.now() + 240_000;
  await using load = new WriteLoad(cluster, leader.clientPort, 1, (i) => {
    const k = Math.floor(Math.random() * keys);
    return ["SET", keyOf(k), padValue(`load-${i}-`)];
  });
  while (performance.now() < capMs) {
    cluster.assertAlive();
    for (const n of cluster.nodes) {
      for (const [seen, suffix] of [[tmpSeen, "snap.tmp"], [compactSeen, "log.compact"]] as const) {
        if (seen.has(n.id)) continue;
        try {
          await Deno.stat(`${cluster.dir}/node${n.id}.${suffix}`);
          seen.set(n.id, Date.now());
        } catch {
          // not there (yet)
        }
      }
    }
    if (afterDoneMs === null && done()) afterDoneMs = performance.now();
    // A few seconds of requests after the last snapshot, for comparison.
    if (afterDoneMs !== null && performance.now() - afterDoneMs > 3000) break;
    await sleep(20);
  }
  await load.stop();
  if (afterDoneMs === null) {
    console.log(`  no snapshot on every node within 240 s (${load.samples.length} SETs sent)`);
    return;
  }

  const windows: SnapshotWindow[] = cluster.nodes.map((n) => {
    const line = logLines(cluster, n.id, snapshotRe)[0]!;
    const writeMs = Number(line.m[4]);
    const endMs = line.epochMs;
    const compactAt = compactSeen.get(n.id);
    return {
      id: n.id,
      keys: Number(line.m[2]),
      bytes: Number(line.m[3]),
      writeMs,
      startMs: tmpSeen.get(n.id) ?? endMs - writeMs,
      endMs,
      compactMs: compactAt === undefined ? null : endMs - compactAt,
    };
  });
  if (show.snapshot) {
    const originMs = Math.min(...windows.map((w) => w.startMs));
    for (const w of windows) {
      const [inside] = splitByWindows(load.samples, [w]);
      console.log(
        `  node ${w.id}${w.id === leader.id ? " (leader)  " : " (follower)"}: ` +
          `${fmtKeys(w.keys)} keys, ${mb(w.bytes)} written in ${w.writeMs} ms ` +
          `(${(w.bytes / 1024 / 1024 / (w.writeMs / 1000)).toFixed(0)} MB/s), WAL compaction ${
            w.compactMs === null ? "< 20 ms (not seen)" : `~${w.compactMs} ms`
          }; window ${((w.startMs - originMs) / 1000).toFixed(2)}–${
            ((w.endMs - originMs) / 1000).toFixed(2)
          } s`,
      );
      if (staggerWrites > 0) {
        console.log(
          `    SET latency in its window:  ${describeStats(stats(inside, w.endMs - w.startMs))}`,
        );
      }
    }
    const [inside, outside] = splitByWindows(load.samples, windows);
    const all = stats(load.samples)!;
    const runningMs = unionMs(windows);
    const totalMs = all.count / all.opsPerS * 1000;
    console.log(
      `  SET latency, a snapshot running: ${describeStats(stats(inside, runningMs))} ` +
        `(${(runningMs / 1000).toFixed(1)} s)`,
    );
    console.log(
      `  SET latency, none running:       ${describeStats(stats(outside, totalMs - runningMs))} ` +
        `(${((totalMs - runningMs) / 1000).toFixed(1)} s)`,
    );
    const longest = [...inside].sort((a, b) => b.latencyMs - a.latencyMs).slice(0, 5);
    console.log(
      `  longest SETs while one ran: ${
        longest.map((s) =>
          `${s.latencyMs.toFixed(0)} ms at ${((s.sentEpochMs - originMs) / 1000).toFixed(2)} s`
        ).join(", ")
      }`,
    );
    const after = memory(leaderRole);
    console.log(
      `  leader role RSS before ${before?.rssMb.toFixed(0) ?? "?"} MB, after ` +
        `${after?.rssMb.toFixed(0) ?? "?"} MB, peak ${after?.peakMb.toFixed(0) ?? "?"} MB; ` +
        `${load.errors} failed requests`,
    );
  }
  if (show.disk) {
    console.log(
      `\ndisk, ${fmtKeys(keys)} keys (raw ${keyBytes + valueBytes} bytes a key), after each ` +
        `node's snapshot and WAL compaction (${load.samples.length} SETs since):`,
    );
    for (const w of windows) {
      const snap = await fileSize(`${cluster.dir}/node${w.id}.snap`);
      const wal = await fileSize(`${cluster.dir}/node${w.id}.log`);
      console.log(
        `  node ${w.id}: snapshot ${mb(snap)} + WAL ${mb(wal)} = ${
          ((snap + wal) / w.keys).toFixed(1)
        } bytes a key (snapshot alone ${(snap / w.keys).toFixed(1)}); before compaction ` +
          `${((prep.snapshotBytes + prep.walBytes) / keys).toFixed(1)}`,
      );
    }
  }
  cluster.pass();
}

// ---- 4. an empty follower catching up ------------------------------------------

const sendingSnapshotRe = /sending snapshot at entry \d+ \((\d+) bytes\) to node (\d+)/;
const installedRe = /installed the leader's snapshot: (\d+) keys/;

async function removeNodeFiles(dir: string, id: number): Promise<void> {
  for (const entry of Deno.readDirSync(dir)) {
    if (entry.name.startsWith(`node${id}.`)) await Deno.remove(`${dir}/${entry.name}`);
  }
}

async function catchUp(keys: number): Promise<void> {
  await using cluster = await startCluster(4, { start: false });
  const ids = cluster.nodes.map((n) => n.id);
  const empty = cluster.node(ids.at(-1)!);
  const prep = await prepare(cluster.dir, ids.slice(0, -1), keys, 2000);
  console.log(
    `\ncatch-up, ${fmtKeys(keys)} keys: nodes ${ids.slice(0, -1).join(", ")} start from a ` +
      `${mb(prep.snapshotBytes)} snapshot + ${prep.tailEntries} WAL entries; node ${empty.id} ` +
      `starts with no data files`,
  );
  for (const id of ids.slice(0, -1)) cluster.start(id);
  const leader = cluster.node(await cluster.waitForCluster(120_000));
  const marker = ["catchup:last", padValue("marker-")] as const;
  const set = await requestOnce("127.0.0.1", leader.clientPort, ["SET", ...marker], 10_000);
  if (set.kind !== "simple") throw new Error(`SET ${marker[0]} failed: ${text(set)}`);

  const startEpochMs = Date.now();
  const t0 = performance.now();
  cluster.start(empty.id);
  const idleMs = await waitServes(cluster, empty.readPort, [marker, ...prep.expect], 180_000) - t0;
  const sending = logLines(cluster, leader.id, sendingSnapshotRe).at(-1);
  console.log(
    `  idle cluster: node ${empty.id} serves the last write ${idleMs.toFixed(0)} ms after its ` +
      `process start (leader began sending its ${
        sending ? mb(Number(sending.m[1])) : "?"
      } snapshot at ${sending ? Math.round(sending.epochMs - startEpochMs) : "?"} ms, node ` +
      `${empty.id} installed it at ${
        sinceStart(cluster, empty.id, installedRe, startEpochMs)
      } ms); ${describeMemory(memory(cluster.rolePid(empty.id)), prep.rawBytes)}`,
  );

  // Again, wiped, while 4 clients write one SET at a time each.
  await cluster.stop(empty.id, "SIGKILL");
  await removeNodeFiles(cluster.dir, empty.id);
  const lagMs = 100;
  {
    await using load = new WriteLoad(
      cluster,
      leader.clientPort,
      4,
      (i) => ["SET", `load:${i}`, padValue(`load-${i}-`)],
    );
    await sleep(3000);
    const loadEpochMs = Date.now();
    const t1 = performance.now();
    const loadStart = epochOf(t1);
    cluster.start(empty.id);
    // Caught up: it serves a write acknowledged at most lagMs before we ask.
    let caughtMs: number | null = null;
    let last: string | null = null;
    while (performance.now() - t1 < 180_000) {
      cluster.assertAlive();
      const i = load.ackedBy(Date.now() - lagMs);
      if (i >= 0) {
        last = await tryGet(empty.readPort, `load:${i}`);
        if (last === padValue(`load-${i}-`)) {
          caughtMs = performance.now() - t1;
          break;
        }
      }
      await sleep(20);
    }
    const endEpoch = Date.now();
    await load.stop();
    const [during, beforeOrAfter] = split(load.samples, loadStart, endEpoch);
    console.log(
      `  under load (4 clients, SET one at a time each): node ${empty.id} serves a write ` +
        `acknowledged ≤ ${lagMs} ms earlier ${
          caughtMs === null
            ? `never within 180 s (last ${JSON.stringify(last)})`
            : `${caughtMs.toFixed(0)} ms after its process start`
        } (snapshot installed at ${
          sinceStart(cluster, empty.id, installedRe, loadEpochMs)
        } ms); ${load.errors} failed requests`,
    );
    console.log(`  SET latency while it caught up: ${describeStats(stats(during))}`);
    console.log(`  SET latency before:             ${describeStats(stats(beforeOrAfter))}`);
  }
  cluster.pass();
}

// ---- main ------------------------------------------------------------------------

async function main(): Promise<number> {
  const { values } = parseArgs({
    args: Deno.args,
    options: {
      only: { type: "string", default: "restart,snapshot,disk,catchup" },
      keys: { type: "string", default: "1000000" },
    },
  });
  const only = new Set(values.only.split(","));
  for (const name of only) {
    if (!["restart", "snapshot", "disk", "catchup"].includes(name)) {
      console.error(`Unknown benchmark ${JSON.stringify(name)} in --only`);
      return 2;
    }
  }
  const keys = Number(values.keys);
  if (!Number.isSafeInteger(keys) || keys < 1000 || keys > 9_999_999) {
    console.error(`Invalid --keys ${JSON.stringify(values.keys)}: expected 1000 to 9999999`);
    return 2;
  }
  console.log(
    `kvstore storage bench: 4 nodes on 127.0.0.1, fsync on, ${navigator.hardwareConcurrency} ` +
      `cores; keys ${keyBytes} bytes, values ${valueBytes} bytes`,
  );
  const t0 = performance.now();
  if (only.has("restart") || only.has("catchup")) {
    emptyRoleRssMb = await emptyRoleMb();
    console.log(
      `\nan empty follower role process, ports open: RSS ${emptyRoleRssMb?.toFixed(0)} MB`,
    );
  }
  if (only.has("restart")) {
    for (const n of keys > 100_000 ? [100_000, keys] : [keys]) await restart(n);
  }
  if (only.has("snapshot") || only.has("disk")) {
    await snapshotUnderLoad(keys, 0, { snapshot: only.has("snapshot"), disk: only.has("disk") });
  }
  if (only.has("snapshot")) {
    await snapshotUnderLoad(keys, 2500, { snapshot: true, disk: false });
  }
  if (only.has("catchup")) await catchUp(keys);
  console.log(`\n(${((performance.now() - t0) / 1000).toFixed(0)} s in all)`);
  return 0;
}

Deno.exit(await main());
