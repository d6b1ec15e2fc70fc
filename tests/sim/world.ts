// The deterministic cluster simulator: N SimNodes, clients, an in-memory
// network that drops, delays, reorders and duplicates messages and can cut
// any directed link, and a fault schedule (partitions, one-way cuts, power
// losses, role-process crashes, pauses like SIGSTOP, one wiped data
// directory). Everything is driven by one event queue ordered by simulated
// time and one seeded generator, so a seed replays exactly.
//
// After the faults, the network heals and every node comes back; the run then
// checks liveness (a leader that commits), convergence (same log prefix, same
// data everywhere), that every acknowledged write survived, and that the
// clients' history is linearizable. Invariants (invariants.ts) are checked at
// every event. Used by sim_test.ts and run.ts.

import { Prng } from "../../src/raft/prng.ts";
import { checkLinearizable, type Operation, type Verdict } from "../support/linearizability.ts";
import { FakeDisk } from "./fake_disk.ts";
import { ClusterInvariants, SimViolation } from "./invariants.ts";
import { clientIdBase, describe, type SimMessage } from "./messages.ts";
import { SimClient } from "./sim_client.ts";
import { entryId, type NodeEnv, SimNode, simTiming } from "./sim_node.ts";

export interface SimOptions {
  readonly seed: number;
  readonly nodes: number;
  /** Simulated time with faults, then a heal phase of `settleMs`. */
  readonly faultMs: number;
  readonly settleMs: number;
  readonly clients: number;
  readonly keys: number;
  /** Keep every event in the trace (replays), not only the most recent ones. */
  readonly fullTrace?: boolean;
}

export const defaultSimOptions: Omit<SimOptions, "seed"> = {
  nodes: 4,
  faultMs: 20_000,
  settleMs: 6_000,
  clients: 4,
  keys: 3,
};

export interface SimResult {
  readonly ok: boolean;
  readonly seed: number;
  readonly nodes: number;
  readonly error: string | null;
  readonly trace: readonly string[];
  readonly stats: {
    readonly events: number;
    readonly messages: number;
    readonly faults: number;
    readonly operations: number;
    readonly acknowledgedWrites: number;
    readonly leaders: number;
    readonly simulatedMs: number;
  };
  readonly verdict: Verdict | null;
}

type Event =
  | { kind: "tick"; node: number }
  | { kind: "deliver"; message: SimMessage }
  | { kind: "fsync"; node: number; incarnation: number }
  | { kind: "client"; client: number; token: number }
  | { kind: "fault" }
  | { kind: "heal"; links: readonly string[] }
  | { kind: "restart"; node: number }
  | { kind: "resume"; node: number };

interface Queued {
  readonly at: number;
  readonly seq: number;
  readonly event: Event;
}

/** A binary min-heap on (time, insertion order): equal times keep FIFO order. */
class EventQueue {
  #heap: Queued[] = [];
  #seq = 0;

  get size(): number {
    return this.#heap.length;
  }

  push(at: number, event: Event): void {
    const h = this.#heap;
    h.push({ at, seq: this.#seq++, event });
    let i = h.length - 1;
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (!less(h[i]!, h[p]!)) break;
      [h[i], h[p]] = [h[p]!, h[i]!];
      i = p;
    }
  }

  pop(): Queued | undefined {
    const h = this.#heap;
    const top = h[0];
    const last = h.pop();
    if (h.length > 0 && last) {
      h[0] = last;
      let i = 0;
      for (;;) {
        const l = 2 * i + 1, r = l + 1;
        let m = i;
        if (l < h.length && less(h[l]!, h[m]!)) m = l;
        if (r < h.length && less(h[r]!, h[m]!)) m = r;
        if (m === i) break;
        [h[i], h[m]] = [h[m]!, h[i]!];
        i = m;
      }
    }
    return top;
  }
}

function less(a: Queued, b: Queued): boolean {
  return a.at < b.at || (a.at === b.at && a.seq < b.seq);
}

const traceLinesMax = 80;

export class SimWorld {
  readonly options: SimOptions;
  readonly rng: Prng;
  readonly invariants = new ClusterInvariants();
  readonly disks = new Map<number, FakeDisk>();
  readonly nodes = new Map<number, SimNode>();
  readonly clients = new Map<number, SimClient>();
  readonly #queue = new EventQueue();
  readonly #ids: number[];
  /** Directed links "a>b" currently cut. */
  readonly #cut = new Set<string>();
  readonly #pausedUntil = new Map<number, number>();
  readonly #incarnation = new Map<number, number>();
  readonly #trace: string[] = [];
  #now = 0;
  #faultsOn = true;
  #dropRate: number;
  #dupRate: number;
  #delayMsMax: number;
  #wipedOnce = false;
  readonly #batchEntriesMax: number;
  #events = 0;
  #messages = 0;
  #faults = 0;

  constructor(options: SimOptions) {
    this.options = options;
    this.rng = new Prng(options.seed);
    this.#ids = Array.from({ length: options.nodes }, (_, i) => i + 1);
    this.#dropRate = this.rng.next() * 0.05;
    this.#dupRate = this.rng.next() * 0.03;
    this.#delayMsMax = this.rng.intBetween(2, 30);
    this.#batchEntriesMax = this.rng.next() < 0.5 ? this.rng.intBetween(1, 4) : 64;
    for (const id of this.#ids) {
      this.disks.set(id, new FakeDisk());
      this.#boot(id);
      this.#queue.push(this.rng.intBetween(0, simTiming.tickMs - 1), { kind: "tick", node: id });
    }
    const env = {
      send: (m: SimMessage) => this.#send(m),
      wakeAt: (c: SimClient, delayMs: number, token: number) =>
        this.#queue.push(this.#now + delayMs, { kind: "client", client: c.id, token }),
    };
    const keys = Array.from({ length: options.keys }, (_, i) => `k${i}`);
    for (let i = 0; i < options.clients; i++) {
      const id = clientIdBase + i + 1;
      const c = new SimClient(id, this.#ids, keys, new Prng(this.rng.intBetween(1, 2 ** 31)), env);
      this.clients.set(id, c);
      this.#queue.push(100 + i, { kind: "client", client: id, token: 0 });
    }
    this.#queue.push(this.rng.intBetween(500, 1500), { kind: "fault" });
  }

  get now(): number {
    return this.#now;
  }

  run(): SimResult {
    let error: string | null = null;
    let verdict: Verdict | null = null;
    try {
      this.#runUntil(this.options.faultMs);
      this.#healAll();
      this.#runUntil(this.options.faultMs + this.options.settleMs);
      for (const c of this.clients.values()) c.stopped = true;
      // Let every outstanding operation finish or time out, then go quiet.
      this.#runUntil(this.#now + 2_000);
      this.#checkConverged();
      verdict = checkLinearizable(this.history());
      if (verdict.kind !== "linearizable") {
        throw new SimViolation(
          verdict.kind === "not-linearizable"
            ? `History not linearizable on key ${verdict.key}:\n${verdict.explanation}`
            : `Linearizability undecided on key ${verdict.key}: ${verdict.reason}`,
        );
      }
    } catch (e) {
      error = e instanceof SimViolation ? e.message : `Crash: ${(e as Error).stack ?? e}`;
    }
    return {
      ok: error === null,
      seed: this.options.seed,
      nodes: this.options.nodes,
      error,
      trace: [...this.#trace],
      stats: {
        events: this.#events,
        messages: this.#messages,
        faults: this.#faults,
        operations: this.history().length,
        acknowledgedWrites: this.invariants.acknowledged.size,
        leaders: this.invariants.leaders.size,
        simulatedMs: this.#now,
      },
      verdict,
    };
  }

  history(): Operation[] {
    return [...this.clients.values()].flatMap((c) => c.history);
  }

  // ---- the event loop -------------------------------------------------------

  #runUntil(endMs: number): void {
    for (;;) {
      const q = this.#queue.pop();
      if (!q) return;
      if (q.at > endMs) {
        this.#queue.push(q.at, q.event);
        this.#now = endMs;
        return;
      }
      this.#now = q.at;
      this.#events++;
      this.#handle(q.event);
    }
  }

  #handle(ev: Event): void {
    switch (ev.kind) {
      case "tick": {
        if (this.#deferIfPaused(ev.node, ev)) return;
        const n = this.nodes.get(ev.node);
        if (!n) return; // down: the restart schedules ticks again
        n.tick();
        this.#queue.push(this.#now + simTiming.tickMs, ev);
        return;
      }
      case "deliver": {
        const to = ev.message.to;
        if (to > clientIdBase) {
          this.clients.get(to)!.onReply(
            this.#now,
            ev.message as Extract<SimMessage, { kind: "Reply" }>,
          );
          return;
        }
        if (this.#deferIfPaused(to, ev)) return;
        const n = this.nodes.get(to);
        if (!n) return;
        this.#record(describe(ev.message));
        n.receive(ev.message);
        return;
      }
      case "fsync": {
        if (this.#deferIfPaused(ev.node, ev)) return;
        const n = this.nodes.get(ev.node);
        if (!n || this.#incarnation.get(ev.node) !== ev.incarnation) return;
        n.fsyncDone();
        this.invariants.checkDisk(n);
        return;
      }
      case "client":
        this.clients.get(ev.client)!.wake(this.#now, ev.token);
        return;
      case "fault":
        if (!this.#faultsOn) return;
        this.#injectFault();
        this.#queue.push(this.#now + this.rng.intBetween(200, 1500), { kind: "fault" });
        return;
      case "heal":
        for (const l of ev.links) this.#cut.delete(l);
        if (ev.links.length > 0) this.#record(`heal ${ev.links.join(" ")}`);
        return;
      case "restart":
        if (this.nodes.has(ev.node)) return;
        this.#boot(ev.node);
        this.#record(
          `n${ev.node} restarts (term ${this.disks.get(ev.node)!.currentTerm}, ` +
            `${this.disks.get(ev.node)!.wal.length} entries on disk)`,
        );
        this.#queue.push(this.#now + this.rng.intBetween(1, simTiming.tickMs), {
          kind: "tick",
          node: ev.node,
        });
        return;
      case "resume":
        if ((this.#pausedUntil.get(ev.node) ?? 0) <= this.#now) {
          this.#pausedUntil.delete(ev.node);
          this.#record(`n${ev.node} resumed`);
        }
        return;
    }
  }

  /** A paused node handles nothing: its events wait until it resumes, in order. */
  #deferIfPaused(node: number, ev: Event): boolean {
    const until = this.#pausedUntil.get(node);
    if (until === undefined || until <= this.#now) return false;
    this.#queue.push(until, ev);
    return true;
  }

  #boot(id: number): void {
    const inc = (this.#incarnation.get(id) ?? 0) + 1;
    this.#incarnation.set(id, inc);
    const peers = this.#ids.filter((p) => p !== id);
    const env: NodeEnv = {
      send: (m) => this.#send(m),
      requestFsync: (n) =>
        this.#queue.push(this.#now + this.rng.intBetween(1, 8), {
          kind: "fsync",
          node: n.id,
          incarnation: inc,
        }),
      trace: (node, text) => this.#record(`n${node}: ${text}`),
      ...this.invariants.hooks(),
    };
    const node = new SimNode(id, peers, this.disks.get(id)!, this.rng.intBetween(1, 2 ** 31), env);
    node.batchEntriesMax = this.#batchEntriesMax;
    this.nodes.set(id, node);
  }

  // ---- the network ----------------------------------------------------------

  #send(m: SimMessage): void {
    this.#messages++;
    const toClient = m.to > clientIdBase;
    const fromClient = m.from > clientIdBase;
    if (!toClient && !fromClient && this.#cut.has(`${m.from}>${m.to}`)) return;
    if (this.#faultsOn && this.rng.next() < this.#dropRate) return;
    const delay = this.rng.intBetween(1, this.#delayMsMax);
    this.#queue.push(this.#now + delay, { kind: "deliver", message: m });
    // Peer links may duplicate; clients talk over TCP, which never does.
    if (this.#faultsOn && !toClient && !fromClient && this.rng.next() < this.#dupRate) {
      this.#queue.push(this.#now + this.rng.intBetween(1, this.#delayMsMax * 3), {
        kind: "deliver",
        message: m,
      });
    }
  }

  // ---- faults ---------------------------------------------------------------

  #leaderId(): number | null {
    let best: SimNode | null = null;
    for (const n of this.nodes.values()) {
      if (n.isLeader && (!best || n.core.currentTerm > best.core.currentTerm)) best = n;
    }
    return best?.id ?? null;
  }

  #pickNode(preferLeader: boolean): number {
    const leader = this.#leaderId();
    if (preferLeader && leader !== null && this.rng.next() < 0.6) return leader;
    return this.#ids[this.rng.intBetween(0, this.#ids.length - 1)]!;
  }

  #injectFault(): void {
    this.#faults++;
    const roll = this.rng.next();
    const healMs = this.rng.intBetween(200, 3000);
    if (roll < 0.25) {
      // A partition: a random group against the rest, both ways. Often the
      // leader alone: clients still reach it, the classic setting for a
      // deposed leader's stale read or lost write.
      const leader = this.#leaderId();
      const group = leader !== null && this.rng.next() < 0.4
        ? [leader]
        : this.#ids.filter(() => this.rng.next() < 0.5);
      if (group.length === 0 || group.length === this.#ids.length) {
        group.splice(0, group.length, this.#pickNode(true));
      }
      const links: string[] = [];
      for (const a of group) {
        for (const b of this.#ids.filter((x) => !group.includes(x))) {
          links.push(`${a}>${b}`, `${b}>${a}`);
        }
      }
      this.#cutLinks(links, healMs, `partition {${group.join(",")}} from the rest`);
    } else if (roll < 0.35) {
      const a = this.#pickNode(true);
      const others = this.#ids.filter((x) => x !== a);
      const b = others[this.rng.intBetween(0, others.length - 1)]!;
      const links = this.rng.next() < 0.5 ? [`${a}>${b}`] : [`${b}>${a}`];
      this.#cutLinks(links, healMs, `one-way cut ${links[0]}`);
    } else if (roll < 0.55) {
      const id = this.#pickNode(true);
      if (!this.nodes.has(id)) return;
      const lost = this.disks.get(id)!.crash(this.rng);
      this.nodes.delete(id);
      this.#record(`n${id} loses power (${lost} unsynced WAL writes lost)`);
      this.#queue.push(this.#now + this.rng.intBetween(100, 3000), { kind: "restart", node: id });
    } else if (roll < 0.65) {
      const leader = this.#leaderId();
      if (leader === null) return;
      this.#record(`n${leader}'s leader role process crashes`);
      this.nodes.get(leader)!.roleCrash();
    } else if (roll < 0.85) {
      const id = this.#pickNode(true);
      const until = this.#now + this.rng.intBetween(100, 3000);
      this.#pausedUntil.set(id, Math.max(until, this.#pausedUntil.get(id) ?? 0));
      this.#record(`n${id} paused until ${until} ms`);
      this.#queue.push(until, { kind: "resume", node: id });
    } else if (roll < 0.88 && this.options.nodes === 4 && !this.#wipedOnce) {
      // One wiped data directory in a 4-node cluster: quorums of 3 overlap in
      // 2 nodes, so a node that forgot its votes and log cannot break safety
      // on its own (with 3 or 5 nodes it could; the README says so).
      const candidates = this.#ids.filter((x) => x !== this.#leaderId() && this.nodes.has(x));
      if (candidates.length === 0) return;
      const id = candidates[this.rng.intBetween(0, candidates.length - 1)]!;
      this.#wipedOnce = true;
      this.nodes.delete(id);
      this.disks.get(id)!.wipe();
      this.#record(`n${id}'s data directory is wiped`);
      this.#queue.push(this.#now + this.rng.intBetween(100, 2000), { kind: "restart", node: id });
    } else {
      this.#dropRate = this.rng.next() * 0.3;
      this.#record(`message loss now ${(this.#dropRate * 100).toFixed(1)}%`);
    }
  }

  #cutLinks(links: string[], healMs: number, what: string): void {
    for (const l of links) this.#cut.add(l);
    this.#record(`${what} for ${healMs} ms`);
    this.#queue.push(this.#now + healMs, { kind: "heal", links });
  }

  #healAll(): void {
    this.#faultsOn = false;
    this.#cut.clear();
    this.#pausedUntil.clear();
    this.#dropRate = 0;
    for (const id of this.#ids) {
      if (!this.nodes.has(id)) this.#queue.push(this.#now, { kind: "restart", node: id });
    }
    this.#record("faults end: network healed, every node up");
  }

  #checkConverged(): void {
    const nodes = [...this.nodes.values()];
    const leaders = nodes.filter((n) => n.isLeader);
    if (leaders.length !== 1) {
      throw new SimViolation(
        `Liveness: ${leaders.length} leaders ${this.options.settleMs} ms after healing ` +
          `(terms ${nodes.map((n) => `n${n.id}:${n.core.currentTerm}/${n.core.role}`).join(" ")})`,
      );
    }
    const leader = leaders[0]!;
    if (leader.commitIndex < leader.log.lastIndex) {
      throw new SimViolation(
        `Liveness: leader n${leader.id} committed ${leader.commitIndex} of ${leader.log.lastIndex}`,
      );
    }
    for (const n of nodes) {
      if (n.lastApplied !== leader.commitIndex || n.log.lastIndex !== leader.log.lastIndex) {
        throw new SimViolation(
          `Convergence: n${n.id} applied ${n.lastApplied}, log ${n.log.lastIndex}; ` +
            `leader n${leader.id} committed ${leader.commitIndex}, log ${leader.log.lastIndex}`,
        );
      }
      for (let i = 1; i <= n.log.lastIndex; i++) {
        if (entryId(n.log.entry(i)!) !== entryId(leader.log.entry(i)!)) {
          throw new SimViolation(`Convergence: n${n.id} and leader n${leader.id} differ at ${i}`);
        }
      }
    }
    for (const [index, id] of this.invariants.acknowledged) {
      const e = leader.log.entry(index);
      if (!e || entryId(e) !== id) {
        throw new SimViolation(`Acknowledged write "${id}" at ${index} is gone`);
      }
    }
  }

  #record(text: string): void {
    this.#trace.push(`${String(this.#now).padStart(6)} ms  ${text}`);
    if (!this.options.fullTrace && this.#trace.length > traceLinesMax * 2) {
      this.#trace.splice(0, traceLinesMax);
    }
  }
}

/** The command that replays one run exactly. */
export function replayCommand(seed: number, nodes: number): string {
  return `deno run -A tests/sim/run.ts --seed ${seed} --nodes ${nodes} --trace`;
}

/** A failing run as a bug report: what broke, how to replay it, what led there. */
export function report(r: SimResult, traceLines = 40): string {
  return [
    `Simulation failed: seed ${r.seed}, ${r.nodes} nodes, at ${r.stats.simulatedMs} ms`,
    r.error ?? "",
    `Replay: ${replayCommand(r.seed, r.nodes)}`,
    `Last events:`,
    ...r.trace.slice(-traceLines),
  ].join("\n");
}

export function simulate(
  seed: number,
  overrides: Partial<Omit<SimOptions, "seed">> = {},
): SimResult {
  return new SimWorld({ ...defaultSimOptions, ...overrides, seed }).run();
}
