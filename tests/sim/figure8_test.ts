// Raft's Figure 8 (§5.4.2), scripted step by step on simulated nodes: a
// leader must not count replicas to commit an entry of an earlier term. Random
// runs almost never reach this state, because a new leader's TERM marker
// travels in the same batch as the older entries; here every message is
// routed by hand and batches hold one entry, so it is reached every time.
//
//   1. n1 leads term 1, commits its TERM marker at 1, then logs "SET a" at 2
//      and gets it to n2 only.
//   2. n5 wins term 2 with n3 and n4 and logs its TERM marker at 2, alone.
//   3. n1 wins term 3 with n2, n3 and n4, logs its marker at 3, and brings
//      n3 up to 2: "SET a" (term 1) is now on n1, n2 and n3, a majority. A
//      leader that counted replicas would commit it here.
//   4. n1 stops. n5 (last term 2) wins term 4 with n3 and n4 (last term 1)
//      and overwrites index 2 on n3. That is correct only because "SET a" was
//      never committed. With the commit rule's term check removed, step 3
//      commits it and step 4 trips the invariant checker ("Leader n5 of term
//      4 lacks committed entry 2"); the test asserts step 3 directly too.

import assert from "node:assert/strict";
import { FakeDisk } from "./fake_disk.ts";
import { ClusterInvariants } from "./invariants.ts";
import type { SimMessage } from "./messages.ts";
import { type NodeEnv, SimNode, simTiming } from "./sim_node.ts";

class Script {
  readonly invariants = new ClusterInvariants();
  readonly disks = new Map<number, FakeDisk>();
  readonly nodes = new Map<number, SimNode>();
  readonly outbox: SimMessage[] = [];
  readonly #fsyncs = new Set<SimNode>();
  #seed = 1;

  constructor(ids: readonly number[]) {
    for (const id of ids) this.disks.set(id, new FakeDisk());
    for (const id of ids) this.boot(id);
  }

  /** Starts node `id` from what its disk holds (a fresh process). */
  boot(id: number): SimNode {
    const env: NodeEnv = {
      send: (m) => this.outbox.push(m),
      requestFsync: (n) => this.#fsyncs.add(n),
      trace: () => {},
      ...this.invariants.hooks(),
    };
    const peers = [...this.disks.keys()].filter((p) => p !== id);
    const node = new SimNode(id, peers, this.disks.get(id)!, this.#seed++, env);
    node.batchEntriesMax = 1;
    this.nodes.set(id, node);
    return node;
  }

  /** The process dies (its disk keeps every write) and starts again. */
  restart(id: number): void {
    this.disks.get(id)!.processCrash();
    this.nodes.delete(id);
    this.boot(id);
  }

  stop(id: number): void {
    this.disks.get(id)!.processCrash();
    this.nodes.delete(id);
  }

  node(id: number): SimNode {
    const n = this.nodes.get(id);
    if (!n) throw new Error(`n${id} is down`);
    return n;
  }

  /** Delivers queued messages that `allow` lets through (dropping the rest)
   * and completes every fsync, until nothing is left. */
  route(allow: (m: SimMessage) => boolean): void {
    for (let round = 0; round < 1000; round++) {
      for (const n of this.#fsyncs) {
        this.#fsyncs.delete(n);
        if (this.nodes.get(n.id) === n) n.fsyncDone();
      }
      const batch = this.outbox.splice(0);
      if (batch.length === 0 && this.#fsyncs.size === 0) return;
      for (const m of batch) {
        const to = this.nodes.get(m.to);
        if (to && this.nodes.has(m.from) && allow(m)) to.receive(m);
      }
    }
    throw new Error("Messages still flowing after 1000 rounds");
  }

  /** Ticks node `id` alone until it asks for pre-votes, then lets election
   * traffic flow among `voters` only: it must come out leader. */
  elect(id: number, voters: readonly number[]): void {
    const n = this.node(id);
    const group = new Set([id, ...voters]);
    // A first campaign may only teach it a newer term: campaign again.
    for (let attempt = 0; attempt < 3 && n.core.role !== "leader"; attempt++) {
      for (let t = 0; t < 200 && n.core.role === "follower"; t++) n.tick();
      this.route((m) => m.kind === "control" && group.has(m.from) && group.has(m.to));
    }
    assert.equal(n.core.role, "leader", `n${id} wins with ${voters.join(", ")}`);
  }

  /** The leader's next replication heartbeat: carries its commit index. */
  heartbeat(leader: number, allow: (m: SimMessage) => boolean): void {
    for (let t = 0; t < simTiming.replicationHeartbeatTicks; t++) this.node(leader).tick();
    this.route(allow);
  }

  write(leader: number, key: string, value: string): void {
    this.node(leader).receive({
      kind: "Request",
      from: 101,
      to: leader,
      requestId: 1,
      op: { kind: "set", key, value },
    });
  }
}

function termsOf(n: SimNode): number[] {
  return Array.from({ length: n.log.lastIndex }, (_, i) => n.log.termAt(i + 1)!);
}

Deno.test("Figure 8 (§5.4.2): an old-term entry stored on a majority is not committed by counting replicas", () => {
  const s = new Script([1, 2, 3, 4, 5]);
  // 1. n1 leads term 1; its marker commits everywhere.
  s.elect(1, [2, 3, 4, 5]);
  s.heartbeat(1, () => true);
  s.heartbeat(1, () => true);
  assert.equal(s.node(5).commitIndex, 1);
  s.write(1, "a", "from-term-1");
  s.heartbeat(1, (m) => m.kind !== "Append" || m.to === 2);
  assert.deepEqual(termsOf(s.node(2)), [1, 1]);
  s.stop(1);

  // 2. n5 wins term 2 with n3 and n4; its marker stays on n5 alone.
  for (const id of [2, 3, 4]) s.restart(id); // forget n1 as a live leader
  s.elect(5, [3, 4]);
  s.route((m) => m.from !== 5 || m.kind === "control");
  assert.deepEqual(termsOf(s.node(5)), [1, 2]);
  s.stop(5);

  // 3. n1 wins term 3 and brings n3 up to index 2, not beyond.
  s.boot(1);
  for (const id of [2, 3, 4]) s.restart(id);
  s.elect(1, [2, 3, 4]);
  const upTo2OnN3 = (m: SimMessage) =>
    m.kind !== "Append" || m.to === 2 || (m.to === 3 && m.entries.every((e) => e.index <= 2));
  for (let i = 0; i < 3; i++) s.heartbeat(1, upTo2OnN3);
  assert.deepEqual(termsOf(s.node(3)), [1, 1], "n3 holds SET a from term 1");
  assert.deepEqual(termsOf(s.node(1)), [1, 1, 3]);
  assert.deepEqual(termsOf(s.node(2)), [1, 1, 3]);
  assert.ok(
    s.node(1).commitIndex < 2,
    `SET a (term 1) is on 3 of 5 nodes, yet n1 in term 3 must not commit it ` +
      `(commit index ${s.node(1).commitIndex})`,
  );

  // 4. n1 stops; n5 wins term 4 with n3 and n4, and rewrites index 2 on n3.
  s.stop(1);
  s.boot(5);
  for (const id of [2, 3, 4]) s.restart(id);
  s.elect(5, [3, 4]);
  for (let i = 0; i < 4; i++) s.heartbeat(5, (m) => m.to !== 2);
  assert.deepEqual(termsOf(s.node(3)), [1, 2, 4], "n3 now follows n5's log");
  assert.ok(s.node(5).commitIndex >= 3, "n5 commits its term's marker, and index 2 with it");
});
