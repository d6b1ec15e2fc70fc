// A concurrent client workload against a real cluster that records every
// operation for the linearizability checker: SET (a unique value each time),
// DEL and GET on a few shared keys, each client with one operation at a time.
//
// Each operation gets one attempt, on a fresh connection, following REDIRECTs
// (a redirect means the node did not execute it). Nothing is retried after a
// node may have executed it, so the history shows each effect once:
//   - connection refused, a REDIRECT, "no leader known": not executed, dropped;
//   - a reply: complete, recorded with its result;
//   - a timeout, a lost connection, TRYAGAIN or any other error after the
//     request was sent: a write is indeterminate (it may still take effect),
//     a read is dropped (it changed nothing).
// Used by the fault tests and by `deno task torture`.

import { Connection, ConnectionError } from "../../src/client/connection.ts";
import { parseRedirect } from "../../src/client/client.ts";
import type { Reply } from "../../src/codec/resp.ts";
import type { KvOp, KvResult, Operation } from "./linearizability.ts";

export interface WorkloadOptions {
  /** Client ports of every node, by node id. */
  readonly clientPorts: ReadonlyMap<number, number>;
  readonly clients: number;
  readonly keys: number;
  /** Connect plus reply; a write still unanswered then is indeterminate. */
  readonly opTimeoutMs: number;
  readonly keyPrefix?: string;
}

export interface WorkloadCounts {
  ok: number;
  indeterminate: number;
  notExecuted: number;
  failedReads: number;
}

const decoder = new TextDecoder();
const redirectHopsMax = 5;

export class Workload {
  readonly options: WorkloadOptions;
  readonly history: Operation[] = [];
  readonly counts: WorkloadCounts = { ok: 0, indeterminate: 0, notExecuted: 0, failedReads: 0 };
  #stopped = false;
  #loops: Promise<void>[] = [];
  readonly #started = performance.now();

  constructor(options: WorkloadOptions) {
    this.options = options;
  }

  start(): void {
    for (let c = 1; c <= this.options.clients; c++) this.#loops.push(this.#client(c));
  }

  /** Stops issuing operations and waits for the outstanding ones to end. */
  async stop(): Promise<Operation[]> {
    this.#stopped = true;
    await Promise.all(this.#loops);
    this.#loops = [];
    return this.history;
  }

  /** A short summary of the counts, for logs. */
  summary(): string {
    const c = this.counts;
    return `${this.history.length} operations recorded (${c.ok} complete, ${c.indeterminate} ` +
      `indeterminate writes), ${c.notExecuted} not executed, ${c.failedReads} failed reads`;
  }

  async #client(client: number): Promise<void> {
    const ports = [...this.options.clientPorts.values()];
    let port = ports[(client - 1) % ports.length]!;
    let counter = 0;
    const prefix = this.options.keyPrefix ?? "lin";
    while (!this.#stopped) {
      const key = `${prefix}${Math.floor(Math.random() * this.options.keys)}`;
      const roll = Math.random();
      const op: KvOp = roll < 0.4
        ? { kind: "set", key, value: `c${client}-${++counter}` }
        : roll < 0.5
        ? { kind: "del", key }
        : { kind: "get", key };
      const outcome = await this.#attempt(op, port);
      if (outcome.leaderPort !== null) port = outcome.leaderPort;
      if (outcome.kind === "done") {
        this.counts.ok++;
        this.history.push({
          client,
          op,
          invokeMs: outcome.invokeMs,
          completeMs: outcome.completeMs,
          result: outcome.result,
        });
      } else if (outcome.kind === "unknown" && op.kind !== "get") {
        this.counts.indeterminate++;
        this.history.push({
          client,
          op,
          invokeMs: outcome.invokeMs,
          completeMs: null,
          result: null,
        });
      } else {
        if (outcome.kind === "unknown") this.counts.failedReads++;
        else this.counts.notExecuted++;
        // Try another node after a short pause: this one may be down or cut off.
        port = ports[Math.floor(Math.random() * ports.length)]!;
        await new Promise((r) => setTimeout(r, 50));
      }
    }
  }

  async #attempt(op: KvOp, firstPort: number): Promise<
    | {
      kind: "done";
      result: KvResult;
      invokeMs: number;
      completeMs: number;
      leaderPort: number | null;
    }
    | { kind: "unknown" | "not executed"; invokeMs: number; leaderPort: number | null }
  > {
    const args = op.kind === "set" ? ["SET", op.key, op.value] : [op.kind.toUpperCase(), op.key];
    let port = firstPort;
    // Invocation time: before the first attempt; a redirect is part of the same operation.
    const invokeMs = this.#now();
    for (let hop = 0; hop <= redirectHopsMax; hop++) {
      let conn: Connection;
      try {
        conn = await Connection.connect("127.0.0.1", port, this.options.opTimeoutMs);
      } catch {
        return { kind: "not executed", invokeMs, leaderPort: null };
      }
      let reply: Reply;
      try {
        reply = await conn.call(args, this.options.opTimeoutMs);
      } catch (e) {
        if (!(e instanceof ConnectionError)) throw e;
        return { kind: "unknown", invokeMs, leaderPort: null };
      } finally {
        await conn.close();
      }
      const completeMs = this.#now();
      if (reply.kind === "error") {
        const redirect = parseRedirect(reply.value);
        if (redirect) {
          port = redirect.port;
          continue;
        }
        if (/^TRYAGAIN no leader known/.test(reply.value)) {
          return { kind: "not executed", invokeMs, leaderPort: null };
        }
        return { kind: "unknown", invokeMs, leaderPort: null };
      }
      const result = toResult(op, reply);
      if (result === null) {
        throw new Error(`Unexpected reply to ${args.join(" ")}: ${JSON.stringify(reply)}`);
      }
      return { kind: "done", result, invokeMs, completeMs, leaderPort: port };
    }
    return { kind: "not executed", invokeMs, leaderPort: null };
  }

  #now(): number {
    return performance.now() - this.#started;
  }
}

function toResult(op: KvOp, reply: Reply): KvResult | null {
  switch (op.kind) {
    case "set":
      return reply.kind === "simple" && reply.value === "OK" ? { kind: "ok" } : null;
    case "del":
      return reply.kind === "integer" ? { kind: "deleted", count: Number(reply.value) } : null;
    case "get":
      if (reply.kind !== "bulk") return null;
      return { kind: "value", value: reply.value === null ? null : decoder.decode(reply.value) };
  }
}
