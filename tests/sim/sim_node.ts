// One simulated kvstore node, built from the same pure pieces the real node
// runs: the election core (src/raft/election.ts), the Raft log, the
// AppendEntries consistency check and commit rule (src/raft/replication.ts)
// and the key-value state machine (src/kv/store.ts). What the real node's
// shells do with sockets, timers and files, this class does with the
// simulated network, ticks and a FakeDisk, following the same rules:
//
// - term and vote are durable before any message that depends on them leaves
//   (the supervisor persists before sending);
// - a node that adopts a higher term stops leading at once (the supervisor
//   fences its leader role before persisting);
// - a follower acknowledges entries only after they are fsynced, and only in
//   the term it received them in; the leader counts itself after its own fsync;
// - a new leader's first entry is a TERM marker; reads wait until it commits
//   and then confirm leadership with a quorum round (ReadIndex, Raft §6.4);
// - a restart rebuilds everything from the disk alone, trusting the commit
//   hint only if the log holds the entry it names.
//
// Deterministic: no clock, no randomness except the seeded generator given.

import { encodeWalLine, type WalRecord } from "../../src/codec/wal_line.ts";
import { KvStore } from "../../src/kv/store.ts";
import { ElectionCore, type ElectionEffect } from "../../src/raft/election.ts";
import { type LogEntry, RaftLog } from "../../src/raft/log.ts";
import { Prng } from "../../src/raft/prng.ts";
import { commitIndexFor, decideAppend } from "../../src/raft/replication.ts";
import { quorumOf } from "../../src/raft/types.ts";
import type { KvOp } from "../support/linearizability.ts";
import type { FakeDisk } from "./fake_disk.ts";
import type { Outcome, SimMessage } from "./messages.ts";

/** Ticks of 10 ms, as in src/config/timing.ts. */
export const simTiming = {
  tickMs: 10,
  heartbeatIntervalTicks: 10,
  electionTimeoutTicksMin: 50,
  electionTimeoutTicksMax: 90,
  replicationHeartbeatTicks: 5,
  commitHintTicks: 20,
} as const;

/** What a node tells the world: sends, fsync requests, and facts the
 * invariant checker watches. */
export interface NodeEnv {
  send(message: SimMessage): void;
  requestFsync(node: SimNode): void;
  trace(node: number, text: string): void;
  becameLeader(node: SimNode, term: number): void;
  committed(node: SimNode, fromIndex: number, toIndex: number): void;
  truncated(node: SimNode, removed: readonly LogEntry[]): void;
  appended(node: SimNode, fromIndex: number): void;
  acknowledged(node: SimNode, index: number, entry: LogEntry): void;
}

interface WriteWaiter {
  readonly client: number;
  readonly requestId: number;
  readonly op: KvOp;
}

interface ReadWaiter {
  readonly client: number;
  readonly requestId: number;
  readonly key: string;
  /** Set once our TERM marker is committed: the commit index at that time. */
  readIndex: number | null;
  readonly round: number;
}

interface LeaderState {
  readonly term: number;
  readonly termStartIndex: number;
  readonly nextIndex: Map<number, number>;
  readonly matchIndex: Map<number, number>;
  readonly ackedRound: Map<number, number>;
  round: number;
  heartbeatElapsedTicks: number;
  readonly writes: Map<number, WriteWaiter>;
  reads: ReadWaiter[];
}

interface PendingAck {
  readonly to: number;
  readonly term: number;
  readonly matchIndex: number;
  readonly round: number;
}

interface FsyncInFlight {
  readonly count: number;
  readonly targetIndex: number;
  truncatedBelow: number;
}

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** An entry's identity: its term and its WAL line (two DELs of one key at one
 * index in different terms are different entries). */
export function entryId(e: LogEntry): string {
  return `t${e.term} ${decoder.decode(e.line).trimEnd()}`;
}

export class SimNode {
  readonly id: number;
  readonly peers: readonly number[];
  readonly disk: FakeDisk;
  readonly core: ElectionCore;
  readonly log: RaftLog;
  kv = new KvStore();
  readonly #env: NodeEnv;
  readonly quorum: number;
  commitIndex = 0;
  lastApplied = 0;
  /** Our WAL is durable and equal to `log` up to here. */
  syncedIndex: number;
  #fsync: FsyncInFlight | null = null;
  #fsyncAgain = false;
  #leader: LeaderState | null = null;
  #pendingAcks: PendingAck[] = [];
  #ticks = 0;
  /** Entries per AppendEntries: small batches cut a new leader's old-term
   * entries off from its TERM marker, which the commit rule must survive. */
  batchEntriesMax = 64;

  constructor(
    id: number,
    peers: readonly number[],
    disk: FakeDisk,
    seed: number,
    env: NodeEnv,
  ) {
    this.id = id;
    this.peers = peers;
    this.disk = disk;
    this.#env = env;
    this.quorum = quorumOf(peers.length + 1);
    this.core = new ElectionCore(
      {
        id,
        peers,
        heartbeatIntervalTicks: simTiming.heartbeatIntervalTicks,
        electionTimeoutTicksMin: simTiming.electionTimeoutTicksMin,
        electionTimeoutTicksMax: simTiming.electionTimeoutTicksMax,
      },
      { currentTerm: disk.currentTerm, votedFor: disk.votedFor },
      new Prng(seed),
    );
    this.log = new RaftLog(disk.wal);
    this.syncedIndex = this.log.lastIndex;
    this.#loadCommitHint();
  }

  get isLeader(): boolean {
    return this.#leader !== null;
  }

  get leaderTerm(): number | null {
    return this.#leader?.term ?? null;
  }

  // ---- events ---------------------------------------------------------------

  tick(): void {
    this.#ticks++;
    this.#effects(this.core.tick(this.log.position));
    const leader = this.#leader;
    if (leader) {
      leader.heartbeatElapsedTicks++;
      if (leader.heartbeatElapsedTicks >= simTiming.replicationHeartbeatTicks) {
        leader.heartbeatElapsedTicks = 0;
        this.#broadcast();
      }
    }
    if (this.#ticks % simTiming.commitHintTicks === 0) this.#saveCommitHint();
  }

  receive(m: SimMessage): void {
    switch (m.kind) {
      case "control":
        this.#effects(this.core.step(m.message, this.log.position));
        return;
      case "Append":
        this.#onAppend(m);
        return;
      case "AppendReply":
        this.#onAppendReply(m);
        return;
      case "Request":
        this.#onRequest(m);
        return;
      case "Reply":
        return;
    }
  }

  fsyncDone(): void {
    const f = this.#fsync;
    if (!f) return;
    this.#fsync = null;
    this.disk.sync(f.count);
    this.syncedIndex = Math.max(this.syncedIndex, Math.min(f.targetIndex, f.truncatedBelow - 1));
    if (this.#fsyncAgain || this.disk.pendingCount > 0) {
      this.#fsyncAgain = false;
      this.#startFsync();
    }
    this.#flushAcks();
    this.#advanceLeaderCommit();
  }

  /** The role process died (the supervisor lives on): a leader steps down;
   * the log is reloaded from the WAL (the page cache survived). */
  roleCrash(): void {
    this.#stopLeading("role process crashed");
    this.#effects(this.core.leaderRoleLost());
    this.disk.processCrash();
    this.#fsync = null;
    this.#pendingAcks = [];
    // A fresh role process: log from disk, state machine from the commit hint.
    this.log.truncateFrom(1);
    for (const e of this.disk.wal) this.log.append(e);
    this.syncedIndex = this.log.lastIndex;
    this.commitIndex = 0;
    this.lastApplied = 0;
    this.kv = new KvStore();
    this.#loadCommitHint();
  }

  // ---- the election core's effects ------------------------------------------

  #effects(effects: readonly ElectionEffect[]): void {
    for (const e of effects) {
      switch (e.kind) {
        case "persist":
          // Fence first: nothing of the old term may be acknowledged after this.
          if (this.#leader && e.term > this.#leader.term) this.#stopLeading(`term ${e.term}`);
          this.disk.currentTerm = e.term;
          this.disk.votedFor = e.votedFor;
          break;
        case "send":
          this.#env.send({ kind: "control", from: this.id, to: e.to, message: e.message });
          break;
        case "becomeLeader":
          this.#startLeading(e.term);
          break;
        case "becomeFollower":
          this.#stopLeading(`follower in term ${e.term}`);
          break;
        case "log":
          this.#env.trace(this.id, e.message);
          break;
      }
    }
  }

  // ---- leader ---------------------------------------------------------------

  #startLeading(term: number): void {
    if (this.log.lastTerm > term) {
      throw new Error(
        `n${this.id} leads term ${term} with a log ending in term ${this.log.lastTerm}`,
      );
    }
    const marker = this.#newEntry(term, { op: "TERM", index: this.log.lastIndex + 1, term });
    const leader: LeaderState = {
      term,
      termStartIndex: marker.index,
      nextIndex: new Map(this.peers.map((p) => [p, marker.index])),
      matchIndex: new Map(this.peers.map((p) => [p, 0])),
      ackedRound: new Map(this.peers.map((p) => [p, 0])),
      round: 0,
      heartbeatElapsedTicks: 0,
      writes: new Map(),
      reads: [],
    };
    this.#leader = leader;
    this.#env.becameLeader(this, term);
    this.#appendLocal([marker]);
    this.#broadcast();
  }

  #stopLeading(why: string): void {
    const leader = this.#leader;
    if (!leader) return;
    this.#leader = null;
    this.#env.trace(this.id, `leader role of term ${leader.term} ends: ${why}`);
    // Writes in the log may still commit under a later leader: their outcome
    // is unknown. Reads never changed anything.
    for (const [, w] of leader.writes) {
      this.#reply(w.client, w.requestId, {
        kind: "error",
        message: "leadership lost",
        definite: false,
      });
    }
    for (const r of leader.reads) {
      this.#reply(r.client, r.requestId, {
        kind: "error",
        message: "leadership lost",
        definite: true,
      });
    }
  }

  #onRequest(m: Extract<SimMessage, { kind: "Request" }>): void {
    const leader = this.#leader;
    if (!leader) {
      const hint = this.core.leaderId === this.id ? null : this.core.leaderId;
      this.#reply(m.from, m.requestId, { kind: "redirect", leaderId: hint });
      return;
    }
    const op = m.op;
    if (op.kind === "get") {
      leader.round++;
      leader.reads.push({
        client: m.from,
        requestId: m.requestId,
        key: op.key,
        readIndex: null,
        round: leader.round,
      });
      this.#serveReads();
      this.#broadcast();
      return;
    }
    const index = this.log.lastIndex + 1;
    const record: WalRecord = op.kind === "set"
      ? { op: "SET", index, key: encoder.encode(op.key), value: encoder.encode(op.value) }
      : { op: "DEL", index, key: encoder.encode(op.key) };
    const entry = this.#newEntry(leader.term, record);
    leader.writes.set(index, { client: m.from, requestId: m.requestId, op });
    this.#appendLocal([entry]);
    this.#broadcast();
  }

  #broadcast(): void {
    for (const p of this.peers) this.#sendAppend(p);
  }

  #sendAppend(peer: number): void {
    const leader = this.#leader;
    if (!leader) return;
    const next = Math.min(leader.nextIndex.get(peer)!, this.log.lastIndex + 1);
    const prevIndex = next - 1;
    const entries = this.log.slice(next, next + this.batchEntriesMax - 1);
    this.#env.send({
      kind: "Append",
      from: this.id,
      to: peer,
      term: leader.term,
      prevIndex,
      prevTerm: this.log.termAt(prevIndex)!,
      entries,
      leaderCommit: this.commitIndex,
      round: leader.round,
    });
    // Optimistic pipelining: a lost batch shows up as a rejection later.
    leader.nextIndex.set(peer, next + entries.length);
  }

  #onAppendReply(m: Extract<SimMessage, { kind: "AppendReply" }>): void {
    if (m.term > this.core.currentTerm) {
      this.#effects(this.core.observeTerm(m.term));
      return;
    }
    const leader = this.#leader;
    if (!leader || m.term !== leader.term) return;
    const p = m.from;
    leader.ackedRound.set(p, Math.max(leader.ackedRound.get(p)!, m.round));
    if (m.success) {
      const match = Math.max(leader.matchIndex.get(p)!, m.matchIndex);
      leader.matchIndex.set(p, match);
      leader.nextIndex.set(p, Math.max(leader.nextIndex.get(p)!, match + 1));
      this.#advanceLeaderCommit();
      if (leader.nextIndex.get(p)! <= this.log.lastIndex) this.#sendAppend(p);
    } else {
      let match = leader.matchIndex.get(p)!;
      if (m.hintIndex <= match) {
        // The follower lost entries it had acknowledged: its data directory
        // was wiped (the real leader learns this from the follower's HELLO).
        match = m.hintIndex - 1;
        leader.matchIndex.set(p, match);
      }
      const before = leader.nextIndex.get(p)!;
      // Never below 1, as the real leader: a stale rejection may hint 0.
      const next = Math.max(match + 1, Math.min(before, m.hintIndex), 1);
      leader.nextIndex.set(p, next);
      // Resend at once only when the rejection taught us something; stale or
      // duplicated rejections wait for the next heartbeat.
      if (next < before) this.#sendAppend(p);
    }
    this.#serveReads();
  }

  #advanceLeaderCommit(): void {
    const leader = this.#leader;
    if (!leader) return;
    const matches = [this.syncedIndex, ...this.peers.map((p) => leader.matchIndex.get(p)!)];
    const c = commitIndexFor(matches, this.quorum, this.log, leader.term, this.commitIndex);
    if (c > this.commitIndex) this.#commitTo(c);
  }

  #serveReads(): void {
    const leader = this.#leader;
    if (!leader) return;
    const waiting: ReadWaiter[] = [];
    for (const r of leader.reads) {
      if (r.readIndex === null && this.commitIndex >= leader.termStartIndex) {
        r.readIndex = this.commitIndex;
      }
      let confirmed = 1;
      for (const p of this.peers) if (leader.ackedRound.get(p)! >= r.round) confirmed++;
      if (r.readIndex !== null && this.lastApplied >= r.readIndex && confirmed >= this.quorum) {
        const v = this.kv.get(encoder.encode(r.key));
        const value = v === undefined ? null : decoder.decode(v);
        this.#reply(r.client, r.requestId, { kind: "done", result: { kind: "value", value } });
      } else {
        waiting.push(r);
      }
    }
    leader.reads = waiting;
  }

  // ---- follower -------------------------------------------------------------

  #onAppend(m: Extract<SimMessage, { kind: "Append" }>): void {
    if (m.term > this.core.currentTerm) this.#effects(this.core.observeTerm(m.term));
    const term = this.core.currentTerm;
    const reject = (hintIndex: number) =>
      this.#env.send({
        kind: "AppendReply",
        from: this.id,
        to: m.from,
        term,
        success: false,
        matchIndex: 0,
        hintIndex,
        round: m.round,
      });
    if (m.term < term) {
      // A stale leader learns our term and steps down.
      reject(0);
      return;
    }
    // Only a follower of this term's leader takes entries; a candidate of the
    // same term learns of the leader from its heartbeat first.
    if (this.core.role !== "follower") return;
    if (this.core.leaderId !== null && this.core.leaderId !== m.from) {
      throw new Error(
        `n${this.id}: two leaders in term ${term}: n${this.core.leaderId} and n${m.from}`,
      );
    }
    const d = decideAppend(this.log, m.prevIndex, m.prevTerm, m.entries);
    if (d.kind === "reject") {
      reject(d.hintIndex);
      return;
    }
    if (d.truncateFrom !== null) {
      if (d.truncateFrom <= this.commitIndex) {
        throw new Error(
          `n${this.id} would truncate committed entries from ${d.truncateFrom} (commit ${this.commitIndex})`,
        );
      }
      this.#truncateLocal(d.truncateFrom);
    }
    if (d.append.length > 0) this.#appendLocal(d.append);
    this.#pendingAcks.push({ to: m.from, term, matchIndex: d.matchIndex, round: m.round });
    const commit = Math.min(m.leaderCommit, d.matchIndex);
    if (commit > this.commitIndex) this.#commitTo(commit);
    this.#flushAcks();
  }

  /** Acknowledge what is on disk, and only in the term it arrived in. */
  #flushAcks(): void {
    const keep: PendingAck[] = [];
    for (const a of this.#pendingAcks) {
      if (a.term !== this.core.currentTerm) continue;
      if (a.matchIndex > this.syncedIndex) {
        keep.push(a);
        continue;
      }
      this.#env.send({
        kind: "AppendReply",
        from: this.id,
        to: a.to,
        term: a.term,
        success: true,
        matchIndex: a.matchIndex,
        hintIndex: 0,
        round: a.round,
      });
    }
    this.#pendingAcks = keep;
  }

  // ---- log, disk and state machine ------------------------------------------

  #newEntry(term: number, record: WalRecord): LogEntry {
    return { index: record.index, term, record, line: encodeWalLine(record) };
  }

  #appendLocal(entries: readonly LogEntry[]): void {
    const from = entries[0]!.index;
    for (const e of entries) {
      this.log.append(e);
      this.disk.write({ kind: "append", entry: e });
    }
    this.#env.appended(this, from);
    this.#startFsync();
  }

  #truncateLocal(fromIndex: number): void {
    const removed = this.log.slice(fromIndex, this.log.lastIndex);
    this.log.truncateFrom(fromIndex);
    this.disk.write({ kind: "truncate", fromIndex });
    this.syncedIndex = Math.min(this.syncedIndex, fromIndex - 1);
    if (this.#fsync) this.#fsync.truncatedBelow = Math.min(this.#fsync.truncatedBelow, fromIndex);
    this.#env.truncated(this, removed);
  }

  #startFsync(): void {
    if (this.#fsync) {
      this.#fsyncAgain = true;
      return;
    }
    if (this.disk.pendingCount === 0) return;
    this.#fsync = {
      count: this.disk.pendingCount,
      targetIndex: this.log.lastIndex,
      truncatedBelow: Infinity,
    };
    this.#env.requestFsync(this);
  }

  #commitTo(index: number): void {
    const from = this.commitIndex;
    this.commitIndex = index;
    this.#env.committed(this, from + 1, index);
    this.#apply();
  }

  #apply(): void {
    while (this.lastApplied < this.commitIndex) {
      const index = this.lastApplied + 1;
      const entry = this.log.entry(index)!;
      const result = this.kv.apply(entry.record);
      this.lastApplied = index;
      const w = this.#leader?.writes.get(index);
      if (w) {
        this.#leader!.writes.delete(index);
        this.#env.acknowledged(this, index, entry);
        this.#reply(w.client, w.requestId, {
          kind: "done",
          result: result.kind === "del"
            ? { kind: "deleted", count: result.existed ? 1 : 0 }
            : { kind: "ok" },
        });
      }
    }
    this.#serveReads();
  }

  #saveCommitHint(): void {
    if (this.commitIndex === 0) return;
    const e = this.log.entry(this.commitIndex)!;
    this.disk.commitHint = { index: e.index, term: e.term, entryId: entryId(e) };
  }

  #loadCommitHint(): void {
    const h = this.disk.commitHint;
    if (!h) return;
    const e = this.log.entry(h.index);
    if (!e || e.term !== h.term || entryId(e) !== h.entryId) return;
    this.#commitTo(h.index);
  }

  #reply(client: number, requestId: number, outcome: Outcome): void {
    this.#env.send({ kind: "Reply", from: this.id, to: client, requestId, outcome });
  }
}
