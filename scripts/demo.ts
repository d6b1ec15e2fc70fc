// `deno task demo`: the request's failover drill on a local 4-node cluster,
// narrated step by step. It starts four `kvstore run N` supervisors in a
// temporary directory, writes to the leader, reads from followers, kills the
// leader's role process with SIGKILL, times the failover, checks that every
// follower (the old leader's node too) catches up, prints a WAL, and stops
// everything it started.
//
// Every client action is shown as the `kvstore client …` command that repeats
// it by hand, and runs through that very command's code (src/cli/client.ts),
// so what is printed is what the command prints. The failover write uses the
// client library directly (src/client/client.ts), which follows REDIRECT and
// retries while the election runs, so the time it takes is the failover time.
//
// It must only ever stop processes it started, by PID; every wait is bounded;
// the temporary directory goes away on success, on error and on Ctrl-C
// (unless --keep leaves a working cluster behind on purpose).
//
//   usage: deno task demo [--verbose] [--keep]

import { parseArgs } from "node:util";
import { fileURLToPath } from "node:url";
import { clientMain, type Writer } from "../src/cli/client.ts";
import { replyText, request, requestOnce } from "../src/client/client.ts";
import type { Reply } from "../src/codec/resp.ts";
import { defaultPorts } from "../src/config/cluster.ts";

const mainTs = fileURLToPath(new URL("../main.ts", import.meta.url));
const host = "127.0.0.1";
const nodeCount = 4;

/** First election: four processes start (each a Deno start-up), then one
 * election timeout (500–900 ms) and a vote. 30 s leaves room for a slow,
 * loaded machine without hanging forever. */
const leaderWaitMs = 30_000;
/** Followers apply a committed write within a heartbeat or two (50 ms each). */
const replicationWaitMs = 10_000;
/** The failover write: an election plus a new role process start-up. */
const failoverWriteTimeoutMs = 20_000;
/** The old leader's node restarts a follower role (backoff + start-up), then
 * has to hear from the new leader before it serves reads. */
const catchUpWaitMs = 20_000;
/** SIGTERM → supervisor stops its role (which it SIGKILLs after 2 s). */
const stopWaitMs = 5_000;
/** After SIGKILL a process is gone at once; this only bounds the wait. */
const killWaitMs = 2_000;
/** One probe of one port (INFO, GET). */
const probeTimeoutMs = 1_000;
const pollIntervalMs = 50;
/** How often --verbose looks for new log lines. */
const tailIntervalMs = 200;
/** WAL lines shown at the end. */
const walLinesShown = 10;
/** Log lines per node shown when the demo fails. */
const failureLogLines = 20;

interface DemoNode {
  readonly id: number;
  readonly clientPort: number;
  readonly replicationPort: number;
  readonly readPort: number;
  readonly controlPort: number;
  readonly logPath: string;
  proc: Deno.ChildProcess | null;
  /** Exit code once the supervisor has exited. */
  exitCode: number | null;
  exited: Promise<void>;
}

interface Options {
  readonly verbose: boolean;
  readonly keep: boolean;
}

/** A failure the user should read: one clear line, no stack trace. */
class DemoError extends Error {}

const decoder = new TextDecoder();

const nodes: DemoNode[] = [];
let tmpDir: string | null = null;
let stopping = false;
let interrupted = false;
let cleanupDone: Promise<void> | null = null;
let tailTimer: ReturnType<typeof setInterval> | null = null;

const usage = `usage: deno task demo [--verbose] [--keep]

Starts a local 4-node kvstore cluster in a temporary directory and walks
through the failover drill: writes, follower reads, leader kill, failover,
catch-up. Stops everything and removes the directory at the end.

  --verbose   stream the nodes' logs to stderr while the demo runs
  --keep      leave the cluster running at the end and print how to stop it
`;

function parseOptions(argv: string[]): Options | null {
  let values;
  try {
    ({ values } = parseArgs({
      args: argv,
      options: {
        verbose: { type: "boolean" },
        keep: { type: "boolean" },
        help: { type: "boolean", short: "h" },
      },
    }));
  } catch (e) {
    console.error(`error: ${(e as Error).message}\n\n${usage}`);
    Deno.exit(2);
  }
  if (values.help) {
    console.log(usage);
    return null;
  }
  return { verbose: values.verbose ?? false, keep: values.keep ?? false };
}

// ---- output --------------------------------------------------------------------

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

function say(text = ""): void {
  if (!interrupted) console.log(text);
}

let stepNumber = 0;
function step(title: string): void {
  stepNumber++;
  say();
  say(`── Step ${stepNumber}. ${title}`);
}

/** Quotes an argument for a POSIX shell when it needs it. */
function shellQuote(arg: string): string {
  return /^[A-Za-z0-9_@%+=:,./-]+$/.test(arg) ? arg : `'${arg.replaceAll("'", `'"'"'`)}'`;
}

function commandLine(args: readonly string[]): string {
  return args.map(shellQuote).join(" ");
}

function ms(n: number): string {
  return `${Math.round(n)} ms`;
}

// ---- ports ---------------------------------------------------------------------

type Ports = Omit<DemoNode, "id" | "logPath" | "proc" | "exitCode" | "exited">;

function portIsFree(port: number): boolean {
  try {
    Deno.listen({ hostname: host, port }).close();
    return true;
  } catch {
    return false;
  }
}

/** The request's ports if all 16 are free, else 16 ports the OS hands out. */
function choosePorts(): { ports: Ports[]; defaults: boolean; busy: number[] } {
  const wanted = Array.from({ length: nodeCount }, (_, i) => defaultPorts(i + 1));
  const busy = wanted.flatMap((p) => Object.values(p)).filter((port) => !portIsFree(port));
  if (busy.length === 0) return { ports: wanted, defaults: true, busy };
  const listeners = Array.from(
    { length: nodeCount * 4 },
    () => Deno.listen({ hostname: host, port: 0 }),
  );
  const free = listeners.map((l) => (l.addr as Deno.NetAddr).port);
  for (const l of listeners) l.close();
  const ports = Array.from({ length: nodeCount }, (_, i) => ({
    clientPort: free[i * 4]!,
    replicationPort: free[i * 4 + 1]!,
    readPort: free[i * 4 + 2]!,
    controlPort: free[i * 4 + 3]!,
  }));
  return { ports, defaults: false, busy };
}

function printPortTable(): void {
  say("    node  client  replication  read   control");
  for (const n of nodes) {
    say(
      `    ${String(n.id).padEnd(4)}  ${String(n.clientPort).padEnd(6)}  ${
        String(n.replicationPort).padEnd(11)
      }  ${String(n.readPort).padEnd(5)}  ${n.controlPort}`,
    );
  }
}

// ---- processes -----------------------------------------------------------------

function supervisorArgs(id: number, dataDir: string, clusterFile: string | null): string[] {
  const args = ["run", String(id), "--data-dir", dataDir];
  if (clusterFile !== null) args.push("--cluster", clusterFile);
  return args;
}

/** Starts node `n`'s supervisor with its output appended to n.logPath. A
 * shell `exec`s Deno with the redirection, so the PID we hold is the
 * supervisor's own and its log survives this script (--keep). */
function startNode(n: DemoNode, args: string[]): void {
  const command = new Deno.Command("/bin/sh", {
    args: [
      "-c",
      'log="$1"; shift; exec "$@" >>"$log" 2>&1',
      "sh",
      n.logPath,
      Deno.execPath(),
      "run",
      "-A",
      mainTs,
      ...args,
      // info, not warn: the log is the story of the election, and the
      // supervisor's "started leader role process pid N" line is how we find
      // the process to kill on any OS.
      "--log-level",
      "info",
    ],
    stdin: "null",
    stdout: "null",
    stderr: "null",
  });
  const proc = command.spawn();
  n.proc = proc;
  n.exited = proc.status.then((s) => {
    n.exitCode = s.code;
  });
}

/** Throws if a supervisor died on its own: the rest of the drill would only time out. */
function checkNodesAlive(): void {
  if (stopping) return;
  for (const n of nodes) {
    if (n.exitCode !== null) {
      throw new DemoError(
        `Node ${n.id}'s supervisor exited with code ${n.exitCode} (its log is below)`,
      );
    }
  }
}

async function waitFor<T>(
  what: string,
  timeoutMs: number,
  probe: () => Promise<T | null>,
): Promise<T> {
  const deadline = performance.now() + timeoutMs;
  for (;;) {
    if (interrupted) throw new DemoError("Interrupted");
    checkNodesAlive();
    const value = await probe();
    if (value !== null) return value;
    if (performance.now() >= deadline) {
      throw new DemoError(`Timed out after ${ms(timeoutMs)} waiting for ${what}`);
    }
    await sleep(pollIntervalMs);
  }
}

async function readLog(n: DemoNode): Promise<string> {
  try {
    return await Deno.readTextFile(n.logPath);
  } catch {
    return "";
  }
}

/** --verbose: copies new log lines of every node to stderr as they appear. */
function startTailing(): void {
  const offsets = new Map<number, number>();
  let busy = false;
  tailTimer = setInterval(async () => {
    if (busy) return;
    busy = true;
    try {
      for (const n of nodes) {
        let bytes: Uint8Array;
        try {
          bytes = await Deno.readFile(n.logPath);
        } catch {
          continue;
        }
        const from = offsets.get(n.id) ?? 0;
        const end = bytes.lastIndexOf(0x0a) + 1;
        if (end <= from) continue;
        offsets.set(n.id, end);
        await Deno.stderr.write(bytes.subarray(from, end));
      }
    } finally {
      busy = false;
    }
  }, tailIntervalMs);
}

/** PID of node `n`'s current role process, which is the leader's when the
 * node leads. The supervisor logs each start ("started follower role process
 * pid N") and each in-place promotion ("promoting role process pid N to
 * leader"); on Linux /proc confirms the PID is that supervisor's child, and
 * stands in for the log if its wording changes. Never a stranger's PID. */
async function rolePid(n: DemoNode): Promise<number | null> {
  const supervisor = n.proc?.pid ?? -1;
  const re = /(?:started \w+ role process|promoting role process) pid (\d+)/g;
  const last = [...(await readLog(n)).matchAll(re)].at(-1);
  if (last !== undefined) {
    const pid = Number(last[1]);
    const parent = await parentPid(pid);
    if (parent === null ? Deno.build.os !== "linux" : parent === supervisor) return pid;
  }
  const children = await childPids(supervisor);
  return children.length === 1 ? children[0]! : null;
}

/** Parent of `pid` from /proc, or null where /proc is not available. */
async function parentPid(pid: number): Promise<number | null> {
  try {
    const status = await Deno.readTextFile(`/proc/${pid}/status`);
    const m = /^PPid:\s+(\d+)$/m.exec(status);
    return m ? Number(m[1]) : null;
  } catch {
    return null;
  }
}

async function childPids(pid: number): Promise<number[]> {
  const out: number[] = [];
  try {
    for await (const task of Deno.readDir(`/proc/${pid}/task`)) {
      const text = await Deno.readTextFile(`/proc/${pid}/task/${task.name}/children`);
      out.push(...text.trim().split(/\s+/).filter((s) => s !== "").map(Number));
    }
  } catch {
    // no /proc here, or the process is gone
  }
  return out;
}

function killPid(pid: number, signal: Deno.Signal): void {
  try {
    Deno.kill(pid, signal);
  } catch {
    // already gone
  }
}

async function waitExited(n: DemoNode, timeoutMs: number): Promise<boolean> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<false>((
    resolve,
  ) => (timer = setTimeout(() => resolve(false), timeoutMs)));
  const done = await Promise.race([n.exited.then(() => true), timeout]);
  clearTimeout(timer);
  return done;
}

/** Stops every supervisor this script started (by PID: SIGTERM, then SIGKILL)
 * and removes the temporary directory. Safe to call more than once. */
function cleanup(removeDir: boolean): Promise<void> {
  cleanupDone ??= (async () => {
    stopping = true;
    if (tailTimer !== null) clearInterval(tailTimer);
    const running = nodes.filter((n) => n.proc !== null && n.exitCode === null);
    for (const n of running) killPid(n.proc!.pid, "SIGTERM");
    await Promise.all(running.map(async (n) => {
      if (await waitExited(n, stopWaitMs)) return;
      console.error(`node ${n.id}'s supervisor did not stop in ${ms(stopWaitMs)}; killing it`);
      killPid(n.proc!.pid, "SIGKILL");
      await waitExited(n, killWaitMs);
    }));
    if (removeDir && tmpDir !== null) {
      await Deno.remove(tmpDir, { recursive: true }).catch(() => {});
    }
  })();
  return cleanupDone;
}

// ---- talking to the cluster ------------------------------------------------------

/** role and term from INFO on a client port, or null if it does not answer. */
async function info(port: number): Promise<{ role: string; term: number } | null> {
  try {
    const r = await requestOnce(host, port, ["INFO"], probeTimeoutMs);
    if (r.kind !== "bulk" || r.value === null) return null;
    const text = decoder.decode(r.value);
    const role = /^role:(\S+)/m.exec(text)?.[1];
    const term = /^term:(\d+)/m.exec(text)?.[1];
    return role === undefined ? null : { role, term: Number(term ?? 0) };
  } catch {
    return null;
  }
}

/** The node whose client port says role:master (highest term if several), or null. */
async function findLeader(): Promise<{ node: DemoNode; term: number } | null> {
  let best: { node: DemoNode; term: number } | null = null;
  for (const n of nodes) {
    const i = await info(n.clientPort);
    if (i?.role === "master" && (best === null || i.term > best.term)) {
      best = { node: n, term: i.term };
    }
  }
  return best;
}

/** One GET on a port without following redirects; the value, or null. */
async function getOnce(port: number, key: string): Promise<string | null> {
  try {
    const r = await requestOnce(host, port, ["GET", key], probeTimeoutMs);
    return r.kind === "bulk" && r.value !== null ? decoder.decode(r.value) : null;
  } catch {
    return null;
  }
}

function captureWriter(chunks: Uint8Array[]): Writer {
  return {
    write(p: Uint8Array): Promise<number> {
      chunks.push(p.slice());
      return Promise.resolve(p.length);
    },
  };
}

function joinText(chunks: Uint8Array[]): string {
  return chunks.map((c) => decoder.decode(c, { stream: true })).join("") + decoder.decode();
}

/**
 * Runs `kvstore client <argv…>` in this process (the CLI's own code), prints
 * the command, its output and exit code, and checks them against what the
 * drill expects.
 */
async function client(
  argv: string[],
  expect: { code: number; stdout?: string },
): Promise<void> {
  say(`    $ kvstore client ${commandLine(argv)}`);
  const out: Uint8Array[] = [];
  const err: Uint8Array[] = [];
  const code = await clientMain(argv, { stdout: captureWriter(out), stderr: captureWriter(err) });
  const stdout = joinText(out).replace(/\n$/, "");
  const stderr = joinText(err).replace(/\n$/, "");
  for (const line of stderr.split("\n").filter((l) => l !== "")) say(`      (stderr) ${line}`);
  const lines = stdout === "" ? [] : stdout.split("\n");
  lines.forEach((line, i) =>
    say(`      ${line}${i === lines.length - 1 ? `   [exit ${code}]` : ""}`)
  );
  if (lines.length === 0) say(`      [exit ${code}]`);
  if (code !== expect.code || (expect.stdout !== undefined && stdout !== expect.stdout)) {
    throw new DemoError(
      `kvstore client ${commandLine(argv)}: expected ${
        expect.stdout !== undefined ? JSON.stringify(expect.stdout) + " and " : ""
      }exit ${expect.code}, got ${JSON.stringify(stdout)} and exit ${code}`,
    );
  }
}

// ---- the drill ---------------------------------------------------------------------

const seedData: readonly [string, string][] = [
  ["balance", "500"],
  ["city", "Vilnius"],
  ["name", "Jonas"],
];

async function drill(opts: Options): Promise<void> {
  try {
    tmpDir = await Deno.makeTempDir({ prefix: "kvstore-demo-" });
  } catch (e) {
    throw new DemoError(`Cannot create a temporary directory: ${(e as Error).message}`);
  }
  const dataDir = `${tmpDir}/data`;
  const logDir = `${tmpDir}/logs`;
  await Deno.mkdir(dataDir);
  await Deno.mkdir(logDir);

  say("kvstore demo: a local 4-node cluster and the failover drill");
  say("Commands are shown as `kvstore …`; without the compiled binary, run them from the");
  say("repository root as `deno run -A main.ts …`.");

  // ---- ports and start-up
  step("Start four nodes");
  const { ports, defaults, busy } = choosePorts();
  let clusterFile: string | null = null;
  for (const [i, p] of ports.entries()) {
    nodes.push({
      id: i + 1,
      ...p,
      logPath: `${logDir}/node${i + 1}.txt`,
      proc: null,
      exitCode: null,
      exited: Promise.resolve(),
    });
  }
  if (defaults) {
    say("  The default ports are free, so no cluster file is needed:");
  } else {
    clusterFile = `${tmpDir}/cluster.json`;
    const file = { nodes: nodes.map((n) => ({ id: n.id, host, ...portsOf(n) })) };
    await Deno.writeTextFile(clusterFile, JSON.stringify(file, null, 2) + "\n");
    say(`  Some default ports are in use (${busy.join(", ")}), so the demo uses free ports`);
    say(`  and passes them to every node in a cluster file, ${clusterFile}:`);
  }
  printPortTable();
  say(`  Data (WAL nodeN.log, term/vote nodeN.state): ${dataDir}`);
  say(
    `  Node logs: ${logDir}/node1.txt … node4.txt${
      opts.verbose ? " (also streamed to stderr)" : ""
    }`,
  );
  for (const n of nodes) {
    const args = supervisorArgs(n.id, dataDir, clusterFile);
    startNode(n, args);
    say(`    $ kvstore ${commandLine(args)}    # supervisor pid ${n.proc!.pid}`);
  }
  if (opts.verbose) startTailing();

  // ---- leader election
  step("Wait for the nodes to elect a leader");
  const startedMs = performance.now();
  const first = await waitFor(
    "a leader that answers a linearizable GET",
    leaderWaitMs,
    async () => {
      const found = await findLeader();
      if (found === null) return null;
      // A GET on the leader's client port waits for a quorum to confirm the
      // leadership and for the leader's first entry to commit: then it serves.
      try {
        const r = await requestOnce(
          host,
          found.node.clientPort,
          ["GET", "balance"],
          probeTimeoutMs,
        );
        return r.kind === "bulk" ? found : null;
      } catch {
        return null;
      }
    },
  );
  const leader = first.node;
  say(
    `  Node ${leader.id} leads (term ${first.term}), ready ${ms(performance.now() - startedMs)} ` +
      `after start-up; its client port is ${leader.clientPort}.`,
  );
  for (const line of await logLines(leader, /became LEADER/)) say(`    log: ${line}`);
  say("  Any node's INFO says who it is:");
  say(`    $ redis-cli -p ${leader.clientPort} INFO replication   # role:master`);

  // ---- writes
  step(`Write three keys to the leader (node ${leader.id})`);
  for (const [key, value] of seedData) {
    await client([host, String(leader.clientPort), "SET", key, value], { code: 0, stdout: "OK" });
  }
  say("  Each OK came after a quorum (3 of 4 nodes) had the entry fsynced in its WAL.");

  // ---- follower reads, redirects, GETFF/GETFB
  const followers = nodes.filter((n) => n.id !== leader.id);
  const [f1, f2, f3] = followers as [DemoNode, DemoNode, DemoNode];
  step(`Read them back from two followers' read ports (nodes ${f1.id} and ${f2.id})`);
  for (const [f, key] of [[f1, "name"], [f2, "balance"]] as const) {
    const want = seedData.find(([k]) => k === key)![1];
    await waitFor(`node ${f.id} to replicate ${key}`, replicationWaitMs, async () => {
      return (await getOnce(f.readPort, key)) === want ? true : null;
    });
    await client([host, String(f.readPort), "GET", key], { code: 0, stdout: want });
  }
  say(
    "  A read port answers from the follower's own copy: it may lag the leader, by at most",
  );
  say("  --max-staleness-ms (default 2000 ms); past that it answers -STALE instead.");

  step("GET on a follower's client port follows the REDIRECT to the leader");
  await client(["--verbose", host, String(f3.clientPort), "GET", "city"], {
    code: 0,
    stdout: "Vilnius",
  });

  step("GETFF and GETFB");
  say("  GETFF reads from the named follower only (may be stale):");
  await client([host, String(leader.clientPort), "GETFF", "city", `${host}:${f1.readPort}`], {
    code: 0,
    stdout: "Vilnius",
  });
  say("  GETFB reads from the follower and asks the leader only if the follower has nothing:");
  await client([host, String(leader.clientPort), "GETFB", "name", `${host}:${f2.readPort}`], {
    code: 0,
    stdout: "Jonas",
  });
  await client(
    ["--verbose", host, String(leader.clientPort), "GETFB", "user03", `${host}:${f3.readPort}`],
    { code: 1, stdout: "NOT_FOUND" },
  );
  say("  user03 was never written: the follower had nothing, the leader neither → exit 1.");

  // ---- failover
  step(`Kill the leader's role process (node ${leader.id}) with SIGKILL`);
  const leaderRole = await waitFor(
    `the PID of node ${leader.id}'s leader role process`,
    replicationWaitMs,
    () => rolePid(leader),
  );
  const stillLeader = await info(leader.clientPort);
  if (stillLeader?.role !== "master") {
    throw new DemoError(
      `Node ${leader.id} no longer leads before the kill; the cluster is unstable`,
    );
  }
  say(
    `    $ kill -9 ${leaderRole}    # node ${leader.id}'s leader role; its supervisor is pid ${
      leader.proc!.pid
    }`,
  );
  const target = f1;
  say(
    `  At once, write through node ${target.id}'s client port; the client follows REDIRECT and`,
  );
  say("  retries until a new leader acknowledges the write:");
  say(`    $ kvstore client ${host} ${target.clientPort} SET user10 Kirpas`);
  const clientLog: string[] = [];
  const killedMs = performance.now();
  killPid(leaderRole, "SIGKILL");
  // Write once the kill has taken effect (a few ms): a SET that reached the
  // dying process would have an unknown outcome, and the client says so
  // rather than risk applying it twice.
  for (let i = 0; i < 200 && !portIsFree(leader.clientPort); i++) await sleep(5);
  let reply: Reply;
  try {
    reply = await request(host, target.clientPort, ["SET", "user10", "Kirpas"], {
      timeoutMs: failoverWriteTimeoutMs,
      log: (m) => clientLog.push(`${ms(performance.now() - killedMs).padStart(8)}  ${m}`),
    });
  } catch (e) {
    throw new DemoError(`The write after the kill failed: ${(e as Error).message}`);
  }
  const failoverMs = performance.now() - killedMs;
  const shown = clientLog.slice(0, 8);
  for (const line of shown) say(`      (client) ${line}`);
  if (clientLog.length > shown.length) {
    say(`      (client) … ${clientLog.length - shown.length} more`);
  }
  say(`      ${replyText(reply)}`);
  if (reply.kind !== "simple" || reply.value !== "OK") {
    throw new DemoError(`SET user10 Kirpas after the kill answered ${replyText(reply)}`);
  }
  const second = await waitFor("the new leader to show in INFO", replicationWaitMs, async () => {
    const found = await findLeader();
    return found !== null && found.term > first.term ? found : null;
  });
  const newLeader = second.node;
  say(`  Failover time: ${ms(failoverMs)} from kill -9 to the acknowledged write.`);
  say(
    `  New leader: node ${newLeader.id} (term ${second.term}), client port ${newLeader.clientPort}.`,
  );
  for (const line of await logLines(leader, /died with code|stepping down/)) {
    say(`    log: ${line}`);
  }
  for (const line of await logLines(newLeader, /became LEADER/)) say(`    log: ${line}`);

  // ---- catch-up
  step("Every follower has user10 and the earlier keys (the old leader's node too)");
  const expected: [string, string][] = [...seedData, ["user10", "Kirpas"]];
  const ackMs = performance.now();
  for (const n of nodes.filter((x) => x.id !== newLeader.id)) {
    await waitFor(`node ${n.id} to catch up`, catchUpWaitMs, async () => {
      for (const [k, v] of expected) if ((await getOnce(n.readPort, k)) !== v) return null;
      return true;
    });
    const note = n.id === leader.id ? "the old leader, now a follower again" : "follower";
    say(`  node ${n.id} (${note}), caught up ${ms(performance.now() - ackMs)} after the write:`);
    await client([host, String(n.readPort), "GET", "user10"], { code: 0, stdout: "Kirpas" });
  }
  say(`  All of ${expected.map(([k, v]) => `${k}=${v}`).join(", ")} are on every node.`);

  // ---- the WAL
  step(`The WAL of the new leader (node ${newLeader.id})`);
  const walPath = `${dataDir}/node${newLeader.id}.log`;
  const wal = await Deno.readTextFile(walPath);
  const walLines = wal.split("\n").filter((l) => l !== "");
  say(`    $ head -n ${walLinesShown} ${walPath}`);
  for (const line of walLines.slice(0, walLinesShown)) say(`    ${line}`);
  say("  <seq> TAB <op> TAB <key> TAB <value>; a TERM line marks where each leader's term starts.");
  const others = await Promise.all(
    nodes.map((n) => Deno.readTextFile(`${dataDir}/node${n.id}.log`).catch(() => "")),
  );
  const identical = others.every((text) => text === wal);
  say(
    identical
      ? `  node1.log … node4.log are byte-for-byte identical (${walLines.length} lines).`
      : "  The nodes' WAL files differ (a follower may still be flushing).",
  );
  const statePath = `${dataDir}/node${newLeader.id}.state`;
  const state = (await Deno.readTextFile(statePath).catch(() => "(missing)")).trim();
  say(`  Term and vote, ${statePath}: ${state}`);
}

function portsOf(n: DemoNode): Ports {
  return {
    clientPort: n.clientPort,
    replicationPort: n.replicationPort,
    readPort: n.readPort,
    controlPort: n.controlPort,
  };
}

/** Lines of node n's log that match, without the timestamp, last few only. */
async function logLines(n: DemoNode, re: RegExp): Promise<string[]> {
  const lines = (await readLog(n)).split("\n").filter((l) => re.test(l));
  return lines.slice(-2).map((l) => l.replace(/^\S+Z /, ""));
}

async function printLogTails(): Promise<void> {
  for (const n of nodes) {
    const lines = (await readLog(n)).split("\n").filter((l) => l !== "");
    console.error(`\n---- node ${n.id}: last ${failureLogLines} lines of ${n.logPath}`);
    for (const line of lines.slice(-failureLogLines)) console.error(line);
  }
}

function printKeepInstructions(): void {
  const some = nodes[0]!;
  say();
  say("── The cluster keeps running (--keep)");
  say(`  Data and logs: ${tmpDir}`);
  say("  Try, from the repository root:");
  say(`    deno run -A main.ts client ${host} ${some.clientPort} SET user11 Tomas`);
  say(`    deno run -A main.ts client ${host} ${some.clientPort} GET user11`);
  say(`    redis-cli -p ${some.readPort} GET city     # a read port answers GET itself`);
  say("  Stop it (SIGTERM to the four supervisors; each stops its role process):");
  say(`    kill ${nodes.map((n) => n.proc!.pid).join(" ")}`);
  say(`    rm -rf ${tmpDir}`);
}

async function main(): Promise<number> {
  const opts = parseOptions(Deno.args);
  if (opts === null) return 0;

  const onSignal = () => {
    if (interrupted) return;
    interrupted = true;
    console.error("\ninterrupted: stopping the nodes and removing the temporary directory");
    cleanup(true).finally(() => Deno.exit(130));
  };
  for (const signal of ["SIGINT", "SIGTERM"] as const) {
    try {
      Deno.addSignalListener(signal, onSignal);
    } catch {
      // this OS has no such signal
    }
  }

  let ok = false;
  try {
    await drill(opts);
    ok = true;
  } catch (e) {
    if (interrupted) {
      // The signal handler is stopping the nodes; exiting now would leave
      // the temporary directory behind.
      await cleanupDone;
      return 130;
    }
    const message = e instanceof DemoError ? e.message : (e as Error).stack ?? String(e);
    console.error(`\ndemo failed: ${message}`);
    await printLogTails();
  } finally {
    if (!interrupted) {
      if (ok && opts.keep) {
        if (tailTimer !== null) clearInterval(tailTimer);
        printKeepInstructions();
      } else if (tmpDir !== null) {
        step("Stop everything");
        await cleanup(true);
        const pids = nodes.filter((n) => n.proc !== null).map((n) => n.proc!.pid);
        say(`  Stopped the supervisors (pids ${pids.join(", ")}) and removed ${tmpDir}.`);
      }
    }
  }
  if (interrupted) {
    await cleanupDone;
    return 130;
  }
  if (ok) say("\nDemo finished: the cluster survived the loss of its leader.");
  return ok ? 0 : 1;
}

if (import.meta.main) {
  Deno.exit(await main());
}
