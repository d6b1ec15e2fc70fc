// Test harness for integration and fault tests: starts real `kvstore run N`
// processes on free loopback ports in a temporary directory, records their
// PIDs and output, and always stops exactly what it started. On failure the
// test prints every node's log so the cause is visible in CI.
//
//   await using cluster = await startCluster(4);
//   const leader = await cluster.waitForLeader();
//   await cluster.client(leader, ["SET", "k", "v"]);
//
// Proxied mode (`startCluster(4, { proxied: true })`) routes every
// node-to-node link (control and replication ports) through a proxy per
// directed pair, so fault tests can cut or delay links via `cluster.links`.
//
// By default every node keeps its files in the cluster's temporary directory;
// `dataDirOf` gives each node its own (a disk of its own, say), and
// `cluster.dataDir(id)` tells tests and helpers where a node's files are.

import { fileURLToPath } from "node:url";
import { replyText, requestOnce } from "../../src/client/client.ts";
import type { Reply } from "../../src/codec/resp.ts";
import { LinkFaults } from "../support/link_proxy.ts";

export const mainTs = fileURLToPath(new URL("../../main.ts", import.meta.url));

export interface TestNode {
  readonly id: number;
  readonly clientPort: number;
  readonly replicationPort: number;
  readonly readPort: number;
  readonly controlPort: number;
}

interface Running {
  proc: Deno.ChildProcess;
  done: Promise<void>;
  /** Set when the supervisor exits; `stopping` when we asked it to. */
  exitCode: number | null;
  stopping: boolean;
}

const decoder = new TextDecoder();

/** Test ports come from below the kernel's ephemeral range (32768–60999 on
 * Linux): a port taken from that range and released could be given to some
 * outgoing connection before the node binds it, which once made a node fail
 * with "Address already in use" under a busy parallel run. */
const testPortMin = 20_000;
const testPortMax = 32_000;

/** Binds `count` distinct free loopback ports from the test range and keeps
 * them bound; the caller closes the listeners just before the ports are used. */
function holdPorts(count: number): Deno.TcpListener[] {
  const held: Deno.TcpListener[] = [];
  for (let tries = 0; held.length < count; tries++) {
    if (tries > count * 100) {
      for (const l of held) l.close();
      throw new Error(
        `Found only ${held.length} of ${count} free ports in ${testPortMin}–${testPortMax}`,
      );
    }
    const port = testPortMin + Math.floor(Math.random() * (testPortMax - testPortMin));
    try {
      held.push(Deno.listen({ hostname: "127.0.0.1", port }));
    } catch {
      // In use: try another.
    }
  }
  return held;
}

/** Ports that were free a moment ago (bound, then released). */
export function freePorts(count: number): number[] {
  const listeners = holdPorts(count);
  const ports = listeners.map((l) => (l.addr as Deno.NetAddr).port);
  for (const l of listeners) l.close();
  return ports;
}

export class TestCluster {
  readonly dir: string;
  readonly nodes: TestNode[];
  /** The real ports of every node, for clients and CLI helpers. */
  readonly clusterFile: string;
  /** Proxied mode: the link controller; null when nodes dial each other directly. */
  readonly links: LinkFaults | null;
  /** Proxied mode: node id → its own cluster file (peers at proxy ports). */
  readonly #nodeFiles: ReadonlyMap<number, string>;
  /** Node id → its data directory; null: all share `dir`. */
  readonly #dataDirOf: ((id: number) => string) | null;
  readonly #running = new Map<number, Running>();
  readonly #output = new Map<number, string[]>();
  #failed = true;

  constructor(
    dir: string,
    nodes: TestNode[],
    clusterFile: string,
    proxied: { links: LinkFaults; nodeFiles: ReadonlyMap<number, string> } | null = null,
    dataDirOf: ((id: number) => string) | null = null,
  ) {
    this.dir = dir;
    this.nodes = nodes;
    this.clusterFile = clusterFile;
    this.links = proxied?.links ?? null;
    this.#nodeFiles = proxied?.nodeFiles ?? new Map();
    this.#dataDirOf = dataDirOf;
  }

  /** Where node `id` keeps its WAL, state and commit files. */
  dataDir(id: number): string {
    return this.#dataDirOf?.(id) ?? this.dir;
  }

  node(id: number): TestNode {
    const n = this.nodes.find((x) => x.id === id);
    if (!n) throw new Error(`No node ${id}`);
    return n;
  }

  /** Starts node `id`'s supervisor (it starts its own role process). */
  start(id: number, extraArgs: string[] = []): void {
    if (this.#running.has(id)) throw new Error(`Node ${id} is already running`);
    const proc = new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "-A",
        mainTs,
        "run",
        String(id),
        "--cluster",
        this.#nodeFiles.get(id) ?? this.clusterFile,
        "--data-dir",
        this.dataDir(id),
        "--log-level",
        "info",
        ...extraArgs,
      ],
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    const lines = this.#output.get(id) ?? [];
    this.#output.set(id, lines);
    lines.push(`---- node ${id} started, supervisor pid ${proc.pid}`);
    const pump = async (stream: ReadableStream<Uint8Array>) => {
      let pending = "";
      for await (const chunk of stream) {
        pending += decoder.decode(chunk, { stream: true });
        const parts = pending.split("\n");
        pending = parts.pop() ?? "";
        lines.push(...parts);
      }
      if (pending) lines.push(pending);
    };
    const running: Running = { proc, done: Promise.resolve(), exitCode: null, stopping: false };
    running.done = Promise.all([
      pump(proc.stdout),
      pump(proc.stderr),
      proc.status.then((st) => void (running.exitCode = st.code)),
    ]).then(() => {});
    this.#running.set(id, running);
  }

  /** Waits for node `id`'s supervisor to exit by itself; returns its exit code. */
  async waitExit(id: number, timeoutMs: number): Promise<number> {
    const r = this.#running.get(id);
    if (!r) throw new Error(`Node ${id} is not running`);
    r.stopping = true;
    const timer = setTimeout(() => killPid(r.proc.pid, "SIGKILL"), timeoutMs);
    const status = await r.proc.status;
    clearTimeout(timer);
    await r.done;
    this.#running.delete(id);
    return status.code;
  }

  isRunning(id: number): boolean {
    return this.#running.has(id);
  }

  /** PID of node `id`'s role process (child of its supervisor), from the log. */
  rolePid(id: number): number | null {
    const lines = this.#output.get(id) ?? [];
    for (let i = lines.length - 1; i >= 0; i--) {
      const m = /started (leader|follower) role process pid (\d+)/.exec(lines[i]!);
      if (m) return Number(m[2]);
      if (lines[i]!.startsWith("---- node")) break;
    }
    return null;
  }

  supervisorPid(id: number): number | null {
    return this.#running.get(id)?.proc.pid ?? null;
  }

  /** Stops node `id`: SIGTERM (the supervisor stops its role) or SIGKILL of
   * both the supervisor and its role process. */
  async stop(id: number, signal: "SIGTERM" | "SIGKILL" = "SIGTERM"): Promise<void> {
    const r = this.#running.get(id);
    if (!r) return;
    r.stopping = true;
    const role = this.rolePid(id);
    try {
      r.proc.kill(signal);
    } catch {
      // already exited
    }
    if (signal === "SIGKILL" && role !== null) killPid(role, "SIGKILL");
    await r.done;
    this.#running.delete(id);
    this.#output.get(id)?.push(`---- node ${id} stopped (${signal})`);
    // An orphaned role notices its supervisor is gone and exits; wait until
    // its ports are free so a restart can bind them.
    await waitUntil(() => portsFree(this.node(id)), 5000, `node ${id}'s ports to be free`);
  }

  /** One request to one port, no redirect following; errors come back as replies. */
  async call(port: number, args: (string | Uint8Array)[], timeoutMs = 3000): Promise<Reply> {
    return await requestOnce("127.0.0.1", port, args, timeoutMs);
  }

  /** Throws if a node we started exited without being asked to: waiting on it
   * would only end in a timeout that hides the cause (its log says it). */
  assertAlive(): void {
    for (const [id, r] of this.#running) {
      if (r.exitCode !== null && !r.stopping) {
        const tail = (this.#output.get(id) ?? []).slice(-5).join("\n");
        throw new Error(`Node ${id} exited by itself with code ${r.exitCode}:\n${tail}`);
      }
    }
  }

  /** The node whose client port answers INFO with role:master, or null. */
  async leaderId(): Promise<number | null> {
    for (const n of this.nodes) {
      if (!this.#running.has(n.id)) continue;
      try {
        const r = await this.call(n.clientPort, ["INFO"], 1000);
        if (r.kind === "bulk" && r.value && decoder.decode(r.value).includes("role:master")) {
          return n.id;
        }
      } catch {
        // not up yet
      }
    }
    return null;
  }

  /** Waits until a leader accepts a write (so it has committed its term). */
  async waitForLeader(timeoutMs = 15000): Promise<number> {
    let leader: number | null = null;
    await waitUntil(
      async () => {
        this.assertAlive();
        leader = await this.leaderId();
        if (leader === null) return false;
        try {
          const r = await this.call(this.node(leader).clientPort, ["SET", "__probe", "1"], 2000);
          return r.kind === "simple";
        } catch {
          return false;
        }
      },
      timeoutMs,
      "a leader that accepts writes",
    );
    return leader!;
  }

  /** Waits until every running node's client and read ports answer PING.
   * Supervisors vote, not role processes: a leader can be elected while some
   * follower's role process is still starting and its ports refuse. */
  async waitForPorts(timeoutMs = 15000): Promise<void> {
    for (const n of this.nodes.filter((x) => this.#running.has(x.id))) {
      for (const port of [n.clientPort, n.readPort]) {
        await waitUntil(
          async () => {
            this.assertAlive();
            try {
              return (await this.call(port, ["PING"], 1000)).kind === "simple";
            } catch {
              return false;
            }
          },
          timeoutMs,
          `node ${n.id}'s port ${port} to answer PING`,
        );
      }
    }
  }

  /** waitForLeader, then waitForPorts: the whole cluster is serving. */
  async waitForCluster(timeoutMs = 15000): Promise<number> {
    const leader = await this.waitForLeader(timeoutMs);
    await this.waitForPorts(timeoutMs);
    return leader;
  }

  log(id: number): string {
    return (this.#output.get(id) ?? []).join("\n");
  }

  /** Marks the test as passed: logs are not printed at cleanup. */
  pass(): void {
    this.#failed = false;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    for (const id of [...this.#running.keys()]) await this.stop(id, "SIGKILL").catch(() => {});
    if (this.#failed) {
      for (const n of this.nodes) {
        console.error(`\n======== node ${n.id} log ========\n${this.log(n.id)}`);
      }
      if (this.links) console.error(`\n======== links ========\n${this.links.describe()}`);
    }
    // Only once no node is left to dial them.
    await this.links?.close();
    await Deno.remove(this.dir, { recursive: true }).catch(() => {});
  }
}

/** True when none of node `n`'s four ports is bound any more. */
export function portsFree(n: TestNode): boolean {
  return [n.clientPort, n.replicationPort, n.readPort, n.controlPort].every(portRefuses);
}

/** True when nothing listens on 127.0.0.1:`port` any more. */
export function portRefuses(port: number): boolean {
  try {
    Deno.listen({ hostname: "127.0.0.1", port }).close();
    return true;
  } catch {
    return false;
  }
}

export function killPid(pid: number, signal: Deno.Signal): void {
  try {
    Deno.kill(pid, signal);
  } catch {
    // already gone
  }
}

export async function waitUntil(
  check: () => boolean | Promise<boolean>,
  timeoutMs: number,
  what: string,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await check()) return;
    if (Date.now() > deadline) {
      throw new Error(`Timed out after ${timeoutMs} ms waiting for ${what}`);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** Writes a cluster file for `count` nodes on free loopback ports and starts them all.
 * `proxied`: every node also gets `cluster-N.json`, where each peer's control and
 * replication ports are proxies for the directed pair (N → peer), run by `cluster.links`.
 * `dataDirOf`: node id → its own data directory (the caller creates and removes
 * it); without it every node uses the cluster's temporary directory. */
export async function startCluster(
  count = 4,
  opts: { start?: boolean; proxied?: boolean; dataDirOf?: (id: number) => string } = {},
): Promise<TestCluster> {
  const dir = await Deno.makeTempDir({ prefix: "kvstore-test-" });
  // Hold the nodes' ports while proxies bind port 0, so the kernel cannot
  // hand a proxy a port a node is about to bind.
  const held = holdPorts(count * 4);
  const ports = held.map((l) => l.addr.port);
  const nodes: TestNode[] = [];
  for (let i = 0; i < count; i++) {
    nodes.push({
      id: i + 1,
      clientPort: ports[i * 4]!,
      replicationPort: ports[i * 4 + 1]!,
      readPort: ports[i * 4 + 2]!,
      controlPort: ports[i * 4 + 3]!,
    });
  }
  let proxied: { links: LinkFaults; nodeFiles: Map<number, string> } | null = null;
  try {
    if (opts.proxied) proxied = await writeProxiedFiles(dir, nodes);
  } finally {
    for (const l of held) l.close();
  }
  const clusterFile = `${dir}/cluster.json`;
  await Deno.writeTextFile(clusterFile, clusterJson(nodes));
  const cluster = new TestCluster(dir, nodes, clusterFile, proxied, opts.dataDirOf ?? null);
  if (opts.start !== false) { for (const n of nodes) cluster.start(n.id); }
  return cluster;
}

function clusterJson(nodes: readonly TestNode[]): string {
  return JSON.stringify({ nodes: nodes.map((n) => ({ ...n, host: "127.0.0.1" })) }, null, 2);
}

/** One proxy per directed pair per peer port kind, and `cluster-N.json` per node
 * naming its own real ports and its peers' proxies. Client and read ports stay
 * real: clients and REDIRECT replies use them. */
async function writeProxiedFiles(
  dir: string,
  nodes: readonly TestNode[],
): Promise<{ links: LinkFaults; nodeFiles: Map<number, string> }> {
  const links = new LinkFaults();
  const nodeFiles = new Map<number, string>();
  try {
    for (const self of nodes) {
      const view = nodes.map((peer) =>
        peer.id === self.id ? peer : {
          ...peer,
          controlPort: links.listen(self.id, peer.id, peer.controlPort).port,
          replicationPort: links.listen(self.id, peer.id, peer.replicationPort).port,
        }
      );
      const file = `${dir}/cluster-${self.id}.json`;
      await Deno.writeTextFile(file, clusterJson(view));
      nodeFiles.set(self.id, file);
    }
  } catch (e) {
    await links.close();
    throw e;
  }
  return { links, nodeFiles };
}

/** A reply as one short line: "(nil)", "-ERR …", ":1", text. */
export const text = replyText;

// ---- helpers shared by the integration tests ---------------------------------

/** Repository root: the working directory for CLI subprocesses. */
export const repoRoot = fileURLToPath(new URL("../../", import.meta.url));

export interface ProcessResult {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

/** Runs a program to completion, with `input` (if any) as its standard
 * input; after `timeoutMs` that one child is killed. */
export async function runProcess(
  program: string,
  args: readonly string[],
  timeoutMs = 20_000,
  input?: Uint8Array,
): Promise<ProcessResult> {
  const child = new Deno.Command(program, {
    args: [...args],
    cwd: repoRoot,
    stdin: input === undefined ? "null" : "piped",
    stdout: "piped",
    stderr: "piped",
    signal: AbortSignal.timeout(timeoutMs),
  }).spawn();
  if (input !== undefined) {
    const writer = child.stdin.getWriter();
    await writer.write(input).catch(() => {}); // a child that exits early reads nothing
    await writer.close().catch(() => {});
  }
  const out = await child.output();
  return { code: out.code, stdout: decoder.decode(out.stdout), stderr: decoder.decode(out.stderr) };
}

/** `kvstore client …` as a subprocess (`deno run -A main.ts client …`). */
export function runCli(
  args: readonly string[],
  timeoutMs = 20_000,
  input?: Uint8Array,
): Promise<ProcessResult> {
  return runProcess(Deno.execPath(), ["run", "-A", mainTs, "client", ...args], timeoutMs, input);
}

/** Node `id`'s WAL file (`nodeN.log` in its data directory), "" if it is missing. */
export async function readWal(cluster: TestCluster, id: number): Promise<string> {
  try {
    return await Deno.readTextFile(`${cluster.dataDir(id)}/node${id}.log`);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return "";
    throw e;
  }
}

/** The WAL's complete lines, without their "\n". */
export async function readWalLines(cluster: TestCluster, id: number): Promise<string[]> {
  const lines = (await readWal(cluster, id)).split("\n");
  lines.pop(); // the part after the last "\n": empty, or a torn line being written
  return lines;
}

/** GET `key` on `port` (no redirects), or null when the port does not answer. */
export async function tryGet(
  cluster: TestCluster,
  port: number,
  key: string,
): Promise<string | null> {
  try {
    return text(await cluster.call(port, ["GET", key], 1000));
  } catch {
    return null;
  }
}

/** Polls GET `key` on `port` until it reads `expected` ("(nil)" for a missing key). */
export async function waitForValue(
  cluster: TestCluster,
  port: number,
  key: string,
  expected: string,
  timeoutMs = 10_000,
): Promise<void> {
  let last: string | null = null;
  await waitUntil(
    async () => (last = await tryGet(cluster, port, key)) === expected,
    timeoutMs,
    `GET ${key} on port ${port} to read ${JSON.stringify(expected)}`,
  ).catch((e) => {
    throw new Error(`${(e as Error).message}; last reply ${JSON.stringify(last)}`);
  });
}
