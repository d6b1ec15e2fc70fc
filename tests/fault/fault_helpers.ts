// Helpers shared by the real-process fault tests in tests/fault/: reading a
// node's INFO fields, freezing a whole node (supervisor and role process)
// with SIGSTOP and always resuming it, raw sockets that leave a request
// queued in a frozen node's socket buffer, pipelined writes and reads, and a
// background monitor that polls a condition and records every violation.
//
// Only PIDs the harness recorded for this cluster are ever signalled.

import assert from "node:assert/strict";
import { Connection } from "../../src/client/connection.ts";
import { encodeCommand, type Reply, ReplyParser } from "../../src/codec/resp.ts";
import { killPid, type TestCluster, text } from "../integration/harness.ts";

const decoder = new TextDecoder();

/** INFO on `port` as field → value ("role" → "master", "term" → "7"), or null if it did not answer. */
export async function infoOf(
  cluster: TestCluster,
  port: number,
  timeoutMs = 1000,
): Promise<Map<string, string> | null> {
  let r: Reply;
  try {
    r = await cluster.call(port, ["INFO"], timeoutMs);
  } catch {
    return null;
  }
  if (r.kind !== "bulk" || r.value === null) return null;
  const fields = new Map<string, string>();
  for (const line of decoder.decode(r.value).split("\r\n")) {
    const colon = line.indexOf(":");
    if (colon > 0 && !line.startsWith("#")) fields.set(line.slice(0, colon), line.slice(colon + 1));
  }
  return fields;
}

/** Role and term from INFO on node `id`'s client port, or null if it did not answer. */
export async function roleAndTerm(
  cluster: TestCluster,
  id: number,
): Promise<{ role: string; term: number; leader: string } | null> {
  const info = await infoOf(cluster, cluster.node(id).clientPort);
  if (info === null) return null;
  return {
    role: info.get("role") ?? "?",
    term: Number(info.get("term") ?? NaN),
    leader: info.get("role") === "master" ? String(id) : info.get("master_node") ?? "?",
  };
}

/** SET with no redirects; the reply as text, or null if none came in time. */
export async function trySet(
  cluster: TestCluster,
  port: number,
  key: string,
  value: string,
  timeoutMs = 2000,
): Promise<string | null> {
  try {
    return text(await cluster.call(port, ["SET", key, value], timeoutMs));
  } catch {
    return null;
  }
}

/** A node stopped with SIGSTOP (supervisor and role process); `thaw()` or
 * leaving the `using` block sends SIGCONT to exactly those PIDs. */
export interface Frozen extends Disposable {
  readonly pids: readonly number[];
  thaw(): void;
}

/** Freezes node `id`: its supervisor and its current role process. Declare
 * it with `using` after the cluster, so it is resumed before cleanup. */
export function freeze(cluster: TestCluster, id: number): Frozen {
  const supervisor = cluster.supervisorPid(id);
  const role = cluster.rolePid(id);
  assert.ok(supervisor !== null && role !== null, `node ${id} has both PIDs to freeze`);
  const pids = [role, supervisor];
  let frozen = true;
  for (const pid of pids) killPid(pid, "SIGSTOP");
  const thaw = () => {
    if (!frozen) return;
    frozen = false;
    for (const pid of pids) killPid(pid, "SIGCONT");
  };
  return { pids, thaw, [Symbol.dispose]: thaw };
}

/** A raw client socket: one request written at once, every reply byte
 * collected in the background until the peer closes it or `close()`. */
export class RawRequest implements AsyncDisposable {
  readonly #conn: Deno.TcpConn;
  readonly #parser = new ReplyParser();
  readonly #replies: string[] = [];
  #ended: string | null = null;
  readonly #reader: Promise<void>;

  private constructor(conn: Deno.TcpConn) {
    this.#conn = conn;
    this.#reader = this.#read();
  }

  /** Connects to `port` and writes `args` as one RESP command without waiting for a reply. */
  static async send(port: number, args: readonly string[]): Promise<RawRequest> {
    const conn = await Deno.connect({ hostname: "127.0.0.1", port });
    const bytes = encodeCommand(args);
    for (let off = 0; off < bytes.length;) off += await conn.write(bytes.subarray(off));
    return new RawRequest(conn);
  }

  /** Replies received so far, as text ("+OK" is "OK", errors start with "-"). */
  get replies(): readonly string[] {
    return this.#replies;
  }

  /** Why reading stopped ("closed by peer", an error), or null while open. */
  get ended(): string | null {
    return this.#ended;
  }

  async #read(): Promise<void> {
    const buf = new Uint8Array(4096);
    try {
      for (;;) {
        const n = await this.#conn.read(buf);
        if (n === null) {
          this.#ended = "closed by peer";
          return;
        }
        this.#parser.push(buf.subarray(0, n));
        for (let step = this.#parser.next(); step.kind === "reply"; step = this.#parser.next()) {
          this.#replies.push(text(step.reply));
        }
      }
    } catch (e) {
      this.#ended ??= `${(e as Error).name}: ${(e as Error).message}`;
    }
  }

  async close(): Promise<void> {
    this.#ended ??= "closed by us";
    try {
      this.#conn.close();
    } catch {
      // already closed
    }
    await this.#reader;
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }
}

/** Sends `commands` pipelined on one connection to `port`, `batch` in flight
 * at a time, and returns every reply as text, in order. */
export async function pipeline(
  port: number,
  commands: readonly (readonly string[])[],
  batch = 1000,
  timeoutMs = 20_000,
): Promise<string[]> {
  await using conn = await Connection.connect("127.0.0.1", port, 2000);
  const out: string[] = [];
  for (let i = 0; i < commands.length; i += batch) {
    const replies = await Promise.all(
      commands.slice(i, i + batch).map((c) => conn.call(c, timeoutMs)),
    );
    out.push(...replies.map(text));
  }
  return out;
}

/** SETs every key to its value through `port`; asserts each was acknowledged. */
export async function setAll(port: number, entries: ReadonlyMap<string, string>): Promise<void> {
  const keys = [...entries.keys()];
  const replies = await pipeline(port, keys.map((k) => ["SET", k, entries.get(k)!]));
  const failed = replies.flatMap((r, i) => r === "OK" ? [] : [`${keys[i]}: ${r}`]);
  assert.deepEqual(failed.slice(0, 5), [], `${failed.length} SETs not acknowledged`);
}

/** GETs every key on `port`; the keys whose reply is not their value ([] when all match). */
export async function mismatches(
  port: number,
  entries: ReadonlyMap<string, string>,
): Promise<string[]> {
  const keys = [...entries.keys()];
  const replies = await pipeline(port, keys.map((k) => ["GET", k]));
  return replies.flatMap((r, i) =>
    r === entries.get(keys[i]!) ? [] : [`${keys[i]}=${JSON.stringify(r)}`]
  );
}

/** Like `mismatches`, but a port that does not answer counts as one mismatch. */
export async function tryMismatches(
  port: number,
  entries: ReadonlyMap<string, string>,
): Promise<string[]> {
  try {
    return await mismatches(port, entries);
  } catch (e) {
    return [`port ${port}: ${(e as Error).message}`];
  }
}

/** `count` keys `${prefix}${i}` with distinct values. */
export function keySet(prefix: string, count: number, valueBytes = 16): Map<string, string> {
  const pad = "x".repeat(Math.max(0, valueBytes - 12));
  return new Map(
    Array.from({ length: count }, (_, i) => [`${prefix}${i}`, `${prefix}v${i}-${pad}`] as const),
  );
}

/** Polls `probe` every `intervalMs` in the background until stopped;
 * `probe` returns a violation description or null. */
export class Monitor {
  readonly violations: string[] = [];
  samples = 0;
  #stopped = false;
  readonly #loop: Promise<void>;

  constructor(probe: () => Promise<string | null>, intervalMs = 20) {
    this.#loop = (async () => {
      while (!this.#stopped) {
        const v = await probe().catch((e) => `probe failed: ${(e as Error).message}`);
        this.samples++;
        if (v !== null && this.violations.length < 50) this.violations.push(v);
        await sleep(intervalMs);
      }
    })();
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    await this.#loop;
  }
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** Where node `id`'s log ends now: pass it to `logSince` later. */
export function logMark(cluster: TestCluster, id: number): number {
  return cluster.log(id).split("\n").length;
}

/** Lines node `id` logged since `mark` (from `logMark`) that match `pattern`. */
export function logSince(
  cluster: TestCluster,
  id: number,
  mark: number,
  pattern: RegExp,
): string[] {
  return cluster.log(id).split("\n").slice(mark).filter((l) => pattern.test(l));
}
