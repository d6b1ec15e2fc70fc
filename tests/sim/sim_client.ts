// A simulated client: one operation at a time, SET (unique values) / DEL / GET
// on a few shared keys, sent to the node it believes leads. It follows a
// bounded number of redirects, gives up after a timeout, and records every
// operation for the linearizability checker: a write that timed out or whose
// leader lost its role is indeterminate (it may yet take effect); a read that
// failed is dropped (it changed nothing); a redirect means not executed.

import type { Prng } from "../../src/raft/prng.ts";
import type { KvOp, Operation } from "../support/linearizability.ts";
import type { Outcome, SimMessage } from "./messages.ts";

export const clientTiming = {
  timeoutMs: 500,
  redirectHopsMax: 4,
  backoffMs: 50,
  thinkMsMax: 20,
};

interface InFlight {
  readonly op: KvOp;
  readonly invokeMs: number;
  requestId: number;
  hops: number;
}

export interface ClientEnv {
  send(message: SimMessage): void;
  /** Calls `wake(token)` at now + delayMs. */
  wakeAt(client: SimClient, delayMs: number, token: number): void;
}

export class SimClient {
  readonly id: number;
  readonly history: Operation[] = [];
  readonly #nodes: readonly number[];
  readonly #keys: readonly string[];
  readonly #rng: Prng;
  readonly #env: ClientEnv;
  #target: number;
  #current: InFlight | null = null;
  #nextRequestId = 1;
  #counter = 0;
  stopped = false;
  /** Hops that ended without any leader known: counts the "no leader" answers. */
  noLeaderReplies = 0;

  constructor(
    id: number,
    nodes: readonly number[],
    keys: readonly string[],
    rng: Prng,
    env: ClientEnv,
  ) {
    this.id = id;
    this.#nodes = nodes;
    this.#keys = keys;
    this.#rng = rng;
    this.#env = env;
    this.#target = nodes[rng.intBetween(0, nodes.length - 1)]!;
  }

  get busy(): boolean {
    return this.#current !== null;
  }

  /** A timer fired: start the next operation, or time out the current one. */
  wake(now: number, token: number): void {
    const cur = this.#current;
    if (cur) {
      if (token === cur.requestId) this.#finish(now, null, "timeout");
      return;
    }
    if (token === 0 && !this.stopped) this.#begin(now);
  }

  onReply(now: number, m: Extract<SimMessage, { kind: "Reply" }>): void {
    const cur = this.#current;
    if (!cur || m.requestId !== cur.requestId) return; // a late answer to an abandoned request
    const o: Outcome = m.outcome;
    if (o.kind === "done") {
      this.#finish(now, o, "done");
    } else if (o.kind === "redirect") {
      if (o.leaderId !== null && o.leaderId !== m.from && cur.hops < clientTiming.redirectHopsMax) {
        cur.hops++;
        this.#target = o.leaderId;
        this.#send(now, cur);
      } else {
        if (o.leaderId === null) this.noLeaderReplies++;
        this.#target = this.#nodes[this.#rng.intBetween(0, this.#nodes.length - 1)]!;
        this.#finish(now, null, "not executed");
      }
    } else {
      this.#finish(now, null, o.definite ? "not executed" : "unknown");
    }
  }

  #begin(now: number): void {
    const key = this.#keys[this.#rng.intBetween(0, this.#keys.length - 1)]!;
    const roll = this.#rng.next();
    const op: KvOp = roll < 0.45
      ? { kind: "set", key, value: `c${this.id}-${++this.#counter}` }
      : roll < 0.55
      ? { kind: "del", key }
      : { kind: "get", key };
    const cur: InFlight = { op, invokeMs: now, requestId: 0, hops: 0 };
    this.#current = cur;
    this.#send(now, cur);
  }

  #send(_now: number, cur: InFlight): void {
    cur.requestId = this.#nextRequestId++;
    this.#env.send({
      kind: "Request",
      from: this.id,
      to: this.#target,
      requestId: cur.requestId,
      op: cur.op,
    });
    this.#env.wakeAt(this, clientTiming.timeoutMs, cur.requestId);
  }

  #finish(
    now: number,
    o: Extract<Outcome, { kind: "done" }> | null,
    how: "done" | "timeout" | "not executed" | "unknown",
  ): void {
    const cur = this.#current!;
    this.#current = null;
    if (how === "done") {
      this.history.push({
        client: this.id,
        op: cur.op,
        invokeMs: cur.invokeMs,
        completeMs: now,
        result: o!.result,
      });
    } else if ((how === "timeout" || how === "unknown") && cur.op.kind !== "get") {
      this.history.push({
        client: this.id,
        op: cur.op,
        invokeMs: cur.invokeMs,
        completeMs: null,
        result: null,
      });
    }
    if (how !== "done") {
      this.#target = this.#nodes[this.#rng.intBetween(0, this.#nodes.length - 1)]!;
    }
    const pause = how === "done"
      ? this.#rng.intBetween(0, clientTiming.thinkMsMax)
      : clientTiming.backoffMs;
    this.#env.wakeAt(this, pause, 0);
  }
}
