// The leader role of node N for term T, run by its role process once the
// node's supervisor won the election for T: a follower role process promoted
// in place, or one started as `kvstore leader N --term T`. It owns the node's
// WAL while it runs and serves three ports:
//
//   client       SET/DEL (acknowledged once a quorum has them fsynced),
//                GET (linearizable: ReadIndex, Raft thesis §6.4)
//   read         GET from the committed state, like a follower's read port
//   replication  the WAL stream to the follower role processes
//
// It never changes term: when its supervisor moves to a higher term it fences
// this process, which then exits at once, so a deposed leader can neither
// acknowledge a write nor answer a read as if it still led.
//
// Everything runs on one event loop; the code never awaits between reading
// the replication state and acting on it, except around WAL syncs, whose
// completions are re-checked against the current state.

import { encodeBulk, encodeError, encodeInteger, writeMayStillApplyText } from "../codec/resp.ts";
import {
  encodeAppend,
  encodeErr,
  encodeSnapshotChunk,
  type ReplicationMessage,
  ReplicationParser,
} from "../codec/replication.ts";
import { parseSnapshotHeader, type SnapshotMeta } from "../codec/snapshot.ts";
import {
  encodeEscapedSetLine,
  escapeField,
  escapeFieldSteps,
  type WalRecord,
} from "../codec/wal_line.ts";
import { runInSteps, stepBytes } from "../steps.ts";
import type { NodeAddress } from "../config/cluster.ts";
import {
  replicationBatchBytesMax,
  replicationBatchEntriesMax,
  snapshotChunkBytes,
} from "../config/limits.ts";
import { replicationHeartbeatMs, requestTimeoutMs } from "../config/timing.ts";
import type { ApplyResult } from "../kv/store.ts";
import { type Log } from "../log.ts";
import { commitIndexFor } from "../raft/replication.ts";
import { invariant, type LogIndex, quorumOf } from "../raft/types.ts";
import { type DataCommands, OK, type ReplyBytes } from "./commands.ts";
import type { CommandContext } from "../net/resp_server.ts";
import { acceptPeer, type PeerAuth } from "../net/peer_auth.ts";
import { concatBytes, writeAll } from "../net/write_all.ts";
import { ReplicaState } from "./replica_state.ts";
import { exitRoleFailed, sendToSupervisor } from "./role_ipc.ts";

/** Entries a follower may be sent ahead of its acknowledgements. */
const windowEntriesMax = 4 * replicationBatchEntriesMax;

/** APPEND messages a follower may have unanswered. A follower fsyncs once per
 * read and answers the newest round, so two in flight keep its disk busy; what
 * arrives meanwhile waits and goes out as one larger batch, instead of as many
 * small writes (under load, syscalls and not bytes are what cost). */
const inflightMessagesMax = 2;

/** How long commit news may wait for a batch of entries to ride on before it
 * goes out alone; follower reads lag the leader by about this much more. */
const commitNewsDelayMs = 5;

interface FollowerLink {
  readonly nodeId: number;
  readonly conn: Deno.Conn;
  nextIndex: LogIndex;
  matchIndex: LogIndex;
  /** Highest APPEND round this follower answered in our term. */
  answeredRound: number;
  /** NACKs for rounds below this are for messages sent before the last reset. */
  resetRound: number;
  lastSentMs: number;
  /** The leaderCommit of the last APPEND sent. */
  sentCommit: LogIndex;
  /** Round of the newest APPEND sent. */
  lastSentRound: number;
  /** Rounds sent and not yet answered, oldest first. */
  unanswered: number[];
  outbox: Uint8Array[];
  writing: boolean;
  closed: boolean;
  /** Set while this follower is sent our snapshot instead of log entries. */
  snapshot: SnapshotSend | null;
  /** Set once it installed our snapshot, until it holds our latest one's
   * index: the entries it still needs are kept (ReplicaState.setRetainFloor). */
  catchingUp: boolean;
}

/** A snapshot file being streamed to one follower (Raft §7). */
interface SnapshotSend {
  readonly path: string;
  file: Deno.FsFile | null;
  /** From the file's own header once opened (the file may be newer than
   * what ReplicaState reported when the transfer began). */
  meta: SnapshotMeta | null;
  total: number;
  sentBytes: number;
  reading: boolean;
  readonly startedMs: number;
}

interface WriteWaiter {
  readonly index: LogIndex;
  readonly deadlineMs: number;
  readonly resolve: (r: ApplyResult) => void;
  readonly reject: (e: Error) => void;
}

interface ReadWaiter {
  /** The read may be answered once a quorum answered a round ≥ this one. */
  readonly round: number;
  /** The read sees the state right after this entry is applied: what was
   * committed when it arrived, and its own connection's earlier writes, but not
   * that connection's later ones (Redis runs a connection's commands in order). */
  readonly readIndex: LogIndex;
  readonly key: Uint8Array;
  /** The value at readIndex, once captured (undefined inside: key missing). */
  captured: { value: Uint8Array | undefined } | null;
  readonly deadlineMs: number;
  readonly resolve: (value: Uint8Array | undefined) => void;
  readonly reject: (e: Error) => void;
}

class TryAgain extends Error {}

export class LeaderRole {
  readonly #term: number;
  readonly #self: NodeAddress;
  readonly #state: ReplicaState;
  readonly #log: Log;
  readonly #quorum: number;
  /** Only these may follow us: each counts once toward a quorum. */
  readonly #peerIds: Set<number>;
  readonly #auth: PeerAuth | null;
  /** Index of our own TERM marker: reads wait until it is committed (§6.4). */
  readonly #termStartIndex: LogIndex;
  #links = new Map<number, FollowerLink>();
  #round = 0;
  /** Our own fsynced prefix: the leader's vote in the commit rule. */
  #durableIndex: LogIndex = 0;
  #syncing = false;
  #syncAgain = false;
  #broadcastScheduled = false;
  #commitNewsTimer: ReturnType<typeof setTimeout> | null = null;
  #writes: WriteWaiter[] = [];
  #reads: ReadWaiter[] = [];
  /** The round the newest waiting read needs (see ReadWaiter.round). */
  #newestReadRound = 0;
  /** Reads waiting for their index to be applied, by that index. */
  #captureAt = new Map<LogIndex, ReadWaiter[]>();

  constructor(
    term: number,
    self: NodeAddress,
    peerIds: readonly number[],
    state: ReplicaState,
    log: Log,
    auth: PeerAuth | null = null,
  ) {
    this.#auth = auth;
    this.#term = term;
    this.#self = self;
    this.#peerIds = new Set(peerIds);
    this.#state = state;
    this.#log = log;
    this.#quorum = quorumOf(peerIds.length + 1);
    invariant(
      state.log.lastTerm <= term,
      `Log term ${state.log.lastTerm} is above our term ${term}`,
    );
    // Raft §8: a new leader commits a no-op of its own term; ours is the WAL's
    // TERM marker, which also records the term of everything after it.
    const marker = state.nextEntry(term, { op: "TERM", term });
    state.append([marker]);
    this.#termStartIndex = marker.index;
    this.#scheduleSync();
    state.setRetainFloor(() => this.#retainFloor());
  }

  /** The lowest index a follower that is being sent our snapshot, or is
   * catching up after installing it, already holds; null: none is. */
  #retainFloor(): LogIndex | null {
    let floor: LogIndex | null = null;
    for (const link of this.#links.values()) {
      const holds = link.snapshot !== null
        ? link.snapshot.meta?.index ?? this.#state.snapshot.index
        : link.catchingUp
        ? link.matchIndex
        : null;
      if (holds !== null && (floor === null || holds < floor)) floor = holds;
    }
    return floor;
  }

  get term(): number {
    return this.#term;
  }

  get data(): DataCommands {
    return {
      redisRole: "master",
      get: (key, ctx) => this.#linearizableGet(key, ctx),
      // No copies: the RESP parser's argument views are never written again.
      set: (key, value, ctx) =>
        value.length < stepBytes
          ? this.#write([{ op: "SET", key, value }], ctx)
          : this.#writeLarge(key, value, ctx),
      del: (keys, ctx) => this.#write(keys.map((key) => ({ op: "DEL" as const, key })), ctx),
      info: () => this.#info(),
    };
  }

  /** The read port: committed state, no leadership round trip. */
  get readData(): DataCommands {
    const committed = this.#state.kv;
    return {
      ...this.data,
      get: (key) => encodeBulk(committed.get(key) ?? null),
      set: () => this.#redirectToSelf(),
      del: () => this.#redirectToSelf(),
    };
  }

  #redirectToSelf(): Uint8Array {
    return encodeError(`REDIRECT ${this.#self.host} ${this.#self.clientPort}`);
  }

  #info(): string[] {
    const lines = [
      `term:${this.#term}`,
      `commit_index:${this.#state.commitIndex}`,
      `last_index:${this.#state.log.lastIndex}`,
      `connected_slaves:${this.#links.size}`,
    ];
    for (const l of this.#links.values()) {
      const s = l.snapshot;
      const sending = s === null ? "" : `,snapshot_sent=${s.sentBytes},snapshot_bytes=${s.total}`;
      lines.push(`slave_node${l.nodeId}:match_index=${l.matchIndex}${sending}`);
    }
    return [...lines, ...this.#state.infoLines()];
  }

  // ---- writes ---------------------------------------------------------------

  #write(
    records: DistributiveOmit<WalRecord, "index">[],
    ctx: CommandContext,
    encoded: readonly { record: WalRecord; line: Uint8Array }[] | null = null,
  ): Promise<Uint8Array> {
    const entries = encoded !== null
      ? encoded.map(({ record, line }) => {
        // Encoded in this very turn of the event loop, at the index it gets.
        invariant(record.index === this.#state.log.lastIndex + 1, "Stale pre-encoded entry");
        const e = { index: record.index, term: this.#term, record, line };
        this.#state.append([e]);
        return e;
      })
      : records.map((r) => {
        const e = this.#state.nextEntry(this.#term, r);
        this.#state.append([e]);
        return e;
      });
    ctx.lastWriteIndex = entries.at(-1)!.index;
    const deadlineMs = Date.now() + requestTimeoutMs;
    const done = entries.map((e) =>
      new Promise<ApplyResult>((resolve, reject) => {
        this.#writes.push({ index: e.index, deadlineMs, resolve, reject });
      })
    );
    this.#scheduleSync();
    this.#scheduleBroadcast();
    return Promise.all(done).then(
      (results) => {
        if (records[0]!.op === "SET") return OK;
        return encodeInteger(results.filter((r) => r.kind === "del" && r.existed).length);
      },
      (e) => encodeError(e instanceof TryAgain ? `TRYAGAIN ${e.message}` : `ERR ${e}`),
    );
  }

  /** A SET of a large value: its WAL line is escaped in steps, with the
   * event loop free between them, before it is appended. The client port
   * handles the connection's next command only after this one's reply, so
   * the connection's order holds; other clients' writes may go first. */
  async #writeLarge(key: Uint8Array, value: Uint8Array, ctx: CommandContext): Promise<Uint8Array> {
    const escapedValue = await runInSteps(escapeFieldSteps(value, stepBytes));
    const index = this.#state.log.lastIndex + 1;
    const record: WalRecord = { op: "SET", index, key, value };
    const line = encodeEscapedSetLine(index, escapeField(key), escapedValue);
    return await this.#write([{ op: "SET", key, value }], ctx, [{ record, line }]);
  }

  #scheduleSync(): void {
    if (this.#syncing) {
      this.#syncAgain = true;
      return;
    }
    this.#syncing = true;
    queueMicrotask(() => this.#syncLoop());
  }

  async #syncLoop(): Promise<void> {
    for (;;) {
      this.#syncAgain = false;
      const upTo = this.#state.log.lastIndex;
      try {
        await this.#state.wal.sync();
      } catch (e) {
        // Never acknowledge after a failed fsync: what is on disk is unknown.
        this.#log.error(`WAL sync failed, stopping the leader role: ${e}`);
        Deno.exit(exitRoleFailed);
      }
      this.#durableIndex = Math.max(this.#durableIndex, upTo);
      this.#advanceCommit();
      if (!this.#syncAgain) break;
    }
    this.#syncing = false;
  }

  #advanceCommit(): void {
    const matches = [this.#durableIndex];
    for (const l of this.#links.values()) matches.push(l.matchIndex);
    const next = commitIndexFor(
      matches,
      this.#quorum,
      this.#state.log,
      this.#term,
      this.#state.commitIndex,
    );
    if (next <= this.#state.commitIndex) return;
    this.#state.commitTo(next, (index, result) => {
      const w = this.#writes[0];
      if (w !== undefined && w.index === index) {
        this.#writes.shift();
        w.resolve(result);
      }
      const reads = this.#captureAt.get(index);
      if (reads !== undefined) {
        this.#captureAt.delete(index);
        for (const r of reads) r.captured = { value: this.#state.kv.get(r.key) };
      }
    }, () => this.#advanceCommit());
    this.#checkReads();
    // Followers apply only what they know is committed: tell them soon, but
    // not at once. Under load the next batch of entries carries the news;
    // an empty APPEND per commit would double the messages each way.
    if (this.#commitNewsTimer === null) {
      this.#commitNewsTimer = setTimeout(() => {
        this.#commitNewsTimer = null;
        for (const link of this.#links.values()) {
          if (link.sentCommit < this.#state.commitIndex) this.#replicate(link, true);
        }
      }, commitNewsDelayMs);
    }
  }

  // ---- linearizable reads (ReadIndex) -------------------------------------------

  #linearizableGet(key: Uint8Array, ctx: CommandContext): ReplyBytes {
    return this.#readAt(key, ctx.lastWriteIndex).then(
      (value) => encodeBulk(value ?? null),
      (e) => encodeError(e instanceof TryAgain ? `TRYAGAIN ${e.message}` : `ERR ${e}`),
    );
  }

  /** ReadIndex (Raft thesis §6.4): the value of `key` once a quorum has
   * confirmed our leadership after this call, taken from the state machine at
   * the read's index (everything committed at this call, our term's marker,
   * and the caller's own earlier write `afterIndex`). */
  #readAt(key: Uint8Array, afterIndex: LogIndex): Promise<Uint8Array | undefined> {
    return new Promise((resolve, reject) => {
      const readIndex = Math.max(this.#state.commitIndex, this.#termStartIndex, afterIndex);
      this.#newestReadRound = this.#round + 1;
      const read: ReadWaiter = {
        round: this.#round + 1,
        readIndex,
        key,
        captured: null,
        deadlineMs: Date.now() + requestTimeoutMs,
        resolve,
        reject,
      };
      if (readIndex <= this.#state.lastApplied) {
        read.captured = { value: this.#state.kv.get(key) };
      } else {
        const list = this.#captureAt.get(readIndex);
        if (list) list.push(read);
        else this.#captureAt.set(readIndex, [read]);
      }
      this.#reads.push(read);
      if (this.#quorum === 1) this.#checkReads();
      else this.#scheduleBroadcast();
    });
  }

  #confirmedRound(): number {
    // The quorum-th highest answered round, counting ourselves as answering all.
    const rounds = [Number.MAX_SAFE_INTEGER];
    for (const l of this.#links.values()) rounds.push(l.answeredRound);
    rounds.sort((a, b) => b - a);
    return rounds[this.#quorum - 1] ?? 0;
  }

  #checkReads(): void {
    if (this.#reads.length === 0) return;
    const confirmed = this.#confirmedRound();
    this.#reads = this.#reads.filter((r) => {
      if (r.round <= confirmed && r.captured !== null) {
        r.resolve(r.captured.value);
        return false;
      }
      return true;
    });
  }

  // ---- replication --------------------------------------------------------------

  /** Sends pending entries (or an empty APPEND for commit news and read
   * rounds) to every follower, once per turn of the event loop. */
  #scheduleBroadcast(): void {
    if (this.#broadcastScheduled) return;
    this.#broadcastScheduled = true;
    queueMicrotask(() => {
      this.#broadcastScheduled = false;
      for (const link of this.#links.values()) this.#replicate(link, true);
    });
  }

  #replicate(link: FollowerLink, force: boolean): void {
    if (link.closed) return;
    const log = this.#state.log;
    // The entries this follower needs next are compacted away: it gets the
    // snapshot, and the log from there (Raft §7). Chunks double as heartbeats.
    if (link.snapshot !== null || link.nextIndex <= log.snapshotIndex) {
      this.#pumpSnapshot(link);
      return;
    }
    let sent = false;
    while (
      link.nextIndex <= log.lastIndex && link.nextIndex - link.matchIndex <= windowEntriesMax &&
      link.unanswered.length < inflightMessagesMax
    ) {
      const batch = [];
      let bytes = 0;
      for (
        let i = link.nextIndex;
        i <= log.lastIndex && batch.length < replicationBatchEntriesMax;
        i++
      ) {
        const e = log.entry(i)!;
        if (batch.length > 0 && bytes + e.line.length > replicationBatchBytesMax) break;
        batch.push(e.line);
        bytes += e.line.length;
      }
      this.#sendAppend(link, batch);
      link.nextIndex += batch.length;
      sent = true;
    }
    // An empty APPEND (commit news, heartbeat, read round) respects the
    // in-flight limit too, except when a read waits for a round this follower
    // has not been sent yet: then holding it back only adds a round trip.
    // (Not into a connection whose writes are stuck: a frozen follower would
    // only collect them.)
    const readNeedsRound = this.#reads.length > 0 && link.lastSentRound < this.#newestReadRound &&
      link.outbox.length === 0;
    if (!sent && force && (link.unanswered.length < inflightMessagesMax || readNeedsRound)) {
      this.#sendAppend(link, []);
    }
  }

  /** Streams the snapshot file to `link`, a chunk at a time, at most
   * `inflightMessagesMax` unanswered: the leader holds two chunks per
   * follower, whatever the snapshot's size. */
  async #pumpSnapshot(link: FollowerLink): Promise<void> {
    let send = link.snapshot;
    if (send === null) {
      const path = this.#state.snapshotFile;
      if (path === null) {
        this.#log.error(
          `node ${link.nodeId} needs entry ${link.nextIndex}, compacted away, and there is no ` +
            `snapshot file to send it; dropping the link`,
        );
        this.#dropLink(link);
        return;
      }
      send = {
        path,
        file: null,
        meta: null,
        total: 0,
        sentBytes: 0,
        reading: false,
        startedMs: performance.now(),
      };
      link.snapshot = send;
    }
    const s = send;
    if (s.reading) return;
    s.reading = true;
    try {
      if (s.file === null) {
        s.file = await Deno.open(s.path, { read: true });
        s.total = (await s.file.stat()).size;
        const head = new Uint8Array(256);
        const n = (await s.file.read(head)) ?? 0;
        const header = parseSnapshotHeader(head.subarray(0, n));
        if (!header.ok) throw new Error(`snapshot ${s.path}: ${header.error}`);
        s.meta = header.meta;
        await s.file.seek(0, Deno.SeekMode.Start);
        this.#log.info(
          `sending snapshot at entry ${s.meta.index} (${s.total} bytes) to node ${link.nodeId}, ` +
            `which needs entry ${link.nextIndex}`,
        );
      }
      while (
        !link.closed && link.snapshot === s && s.sentBytes < s.total &&
        link.unanswered.length < inflightMessagesMax
      ) {
        const chunk = new Uint8Array(Math.min(snapshotChunkBytes, s.total - s.sentBytes));
        for (let got = 0; got < chunk.length;) {
          const n = await s.file.read(chunk.subarray(got));
          if (n === null) throw new Error(`snapshot ${s.path} ended early`);
          got += n;
        }
        if (link.closed || link.snapshot !== s) return;
        const round = ++this.#round;
        link.unanswered.push(round);
        link.lastSentRound = round;
        link.sentCommit = this.#state.commitIndex;
        link.lastSentMs = Date.now();
        const meta = s.meta!;
        this.#send(
          link,
          encodeSnapshotChunk({
            term: this.#term,
            index: meta.index,
            snapTerm: meta.term,
            lineHash: meta.lineHash,
            offset: s.sentBytes,
            total: s.total,
            leaderCommit: this.#state.commitIndex,
            round,
          }, chunk),
        );
        s.sentBytes += chunk.length;
      }
    } catch (e) {
      // A transfer abandoned meanwhile (the follower refused it) had its file
      // closed under the read: nothing is wrong with the link.
      if (link.snapshot !== s) return;
      this.#log.warn(`cannot send the snapshot to node ${link.nodeId}: ${(e as Error).message}`);
      this.#dropLink(link);
    } finally {
      s.reading = false;
    }
  }

  #endSnapshot(link: FollowerLink, why: string): void {
    const s = link.snapshot;
    if (s === null) return;
    link.snapshot = null;
    try {
      s.file?.close();
    } catch {
      // already closed
    }
    this.#log.info(
      `snapshot to node ${link.nodeId} ${why} after ${
        Math.round(performance.now() - s.startedMs)
      } ms`,
    );
  }

  #sendAppend(link: FollowerLink, lines: Uint8Array[]): void {
    const prevIndex = link.nextIndex - 1;
    const prevTerm = this.#state.log.termAt(prevIndex) ?? 0;
    const round = ++this.#round;
    link.unanswered.push(round);
    link.lastSentRound = round;
    link.sentCommit = this.#state.commitIndex;
    link.lastSentMs = Date.now();
    this.#send(
      link,
      encodeAppend(this.#term, prevIndex, prevTerm, this.#state.commitIndex, round, lines),
    );
  }

  #send(link: FollowerLink, bytes: Uint8Array): void {
    link.outbox.push(bytes);
    if (link.writing) return;
    link.writing = true;
    (async () => {
      try {
        while (link.outbox.length > 0 && !link.closed) {
          const parts = link.outbox;
          link.outbox = [];
          await writeAll(link.conn, concatBytes(parts));
        }
      } catch {
        this.#dropLink(link);
      } finally {
        link.writing = false;
      }
    })();
  }

  #dropLink(link: FollowerLink): void {
    if (link.closed) return;
    link.closed = true;
    this.#endSnapshot(link, "abandoned: connection closed");
    try {
      link.conn.close();
    } catch {
      // already closed
    }
    if (this.#links.get(link.nodeId) === link) {
      this.#links.delete(link.nodeId);
      this.#log.info(`follower node ${link.nodeId} disconnected`);
    }
  }

  async serveFollower(conn: Deno.Conn): Promise<void> {
    const parser = new ReplicationParser();
    const buf = new Uint8Array(64 * 1024);
    let link: FollowerLink | null = null;
    let proven: number | null = null;
    try {
      if (this.#auth !== null) {
        try {
          proven = await acceptPeer(
            conn,
            this.#auth,
            "replication",
            this.#self.id,
            (id) => this.#peerIds.has(id),
          );
        } catch (e) {
          this.#log.warn(`refusing a replication connection: ${(e as Error).message}`);
          return;
        }
      }
      for (;;) {
        const n = await conn.read(buf);
        if (n === null) break;
        parser.push(buf.subarray(0, n));
        for (;;) {
          const r = parser.next();
          if (r.kind === "incomplete") break;
          if (r.kind === "error") {
            this.#log.warn(`dropping replication connection: ${r.message}`);
            throw new Error(r.message);
          }
          if (link === null) {
            if (proven !== null && r.message.kind === "HELLO" && r.message.nodeId !== proven) {
              this.#log.warn(`node ${proven} said HELLO as node ${r.message.nodeId}; dropping it`);
              return;
            }
            link = this.#onHello(conn, r.message);
            if (link === null) return;
          } else {
            this.#onFollowerMessage(link, r.message);
          }
        }
      }
    } catch {
      // connection failed; the follower reconnects
    } finally {
      if (link) this.#dropLink(link);
      else {
        try {
          conn.close();
        } catch {
          // already closed
        }
      }
    }
  }

  #onHello(conn: Deno.Conn, m: ReplicationMessage): FollowerLink | null {
    const reject = (reason: string) => {
      conn.write(encodeErr(this.#term, reason)).catch(() => {});
      return null;
    };
    if (m.kind !== "HELLO") return reject(`expected HELLO, got ${m.kind}`);
    if (!this.#peerIds.has(m.nodeId)) {
      this.#log.warn(`refusing HELLO from node ${m.nodeId}: not a peer in the cluster`);
      return reject(`node ${m.nodeId} is not a peer of node ${this.#self.id}`);
    }
    if (m.term > this.#term) {
      sendToSupervisor({ kind: "higherTerm", term: m.term });
      return reject(`node ${m.nodeId} is in term ${m.term}`);
    }
    if (m.term < this.#term) return reject(`leader is in term ${this.#term}, not ${m.term}`);
    const log = this.#state.log;
    // Start where the follower's log ends if it matches ours there (Log
    // Matching makes the whole prefix equal); otherwise probe backwards.
    const matches = log.termAt(m.lastIndex) === m.lastTerm;
    const nextIndex = matches ? m.lastIndex + 1 : Math.min(m.lastIndex, log.lastIndex) + 1;
    const old = this.#links.get(m.nodeId);
    if (old) this.#dropLink(old);
    const link: FollowerLink = {
      nodeId: m.nodeId,
      conn,
      nextIndex: Math.max(1, nextIndex),
      matchIndex: 0,
      answeredRound: 0,
      resetRound: 0,
      lastSentMs: 0,
      sentCommit: 0,
      lastSentRound: 0,
      unanswered: [],
      outbox: [],
      writing: false,
      closed: false,
      snapshot: null,
      catchingUp: false,
    };
    (conn as Deno.TcpConn).setNoDelay(true);
    this.#links.set(m.nodeId, link);
    this.#log.info(
      `follower node ${m.nodeId} connected (last index ${m.lastIndex}, term ${m.lastTerm})`,
    );
    this.#replicate(link, true);
    return link;
  }

  #onFollowerMessage(link: FollowerLink, m: ReplicationMessage): void {
    if (m.kind !== "ACK" && m.kind !== "NACK" && m.kind !== "SNAPACK") {
      this.#log.warn(`unexpected ${m.kind} from node ${link.nodeId}; dropping it`);
      return;
    }
    if (m.term > this.#term) {
      // A newer term exists: our supervisor will fence us. Never count this.
      sendToSupervisor({ kind: "higherTerm", term: m.term });
      this.#dropLink(link);
      return;
    }
    if (m.term < this.#term) return;
    link.answeredRound = Math.max(link.answeredRound, m.round);
    while (link.unanswered.length > 0 && link.unanswered[0]! <= m.round) link.unanswered.shift();
    if (m.kind === "SNAPACK") {
      // A chunk arrived: send more, and count the round for waiting reads.
      this.#checkReads();
      this.#replicate(link, false);
      return;
    }
    if (m.kind === "ACK") {
      const snap = link.snapshot;
      if (snap !== null && snap.meta !== null && m.matchIndex >= snap.meta.index) {
        this.#endSnapshot(link, `installed (${snap.total} bytes)`);
        link.catchingUp = true;
      }
      if (m.matchIndex > this.#state.log.lastIndex) {
        this.#log.warn(`node ${link.nodeId} acknowledged ${m.matchIndex} beyond our log`);
        return;
      }
      link.matchIndex = Math.max(link.matchIndex, m.matchIndex);
      if (link.nextIndex <= link.matchIndex) link.nextIndex = link.matchIndex + 1;
      if (link.matchIndex >= this.#state.snapshot.index) link.catchingUp = false;
      this.#advanceCommit();
      this.#checkReads();
      // Force a message when reads wait: they need a round sent after them.
      this.#replicate(link, this.#reads.length > 0);
    } else {
      this.#checkReads();
      if (m.round < link.resetRound) return; // answer to a message sent before the last reset
      this.#endSnapshot(link, "abandoned: the follower refused it");
      link.nextIndex = Math.max(link.matchIndex + 1, Math.min(m.hintIndex, link.nextIndex - 1), 1);
      link.resetRound = this.#round + 1;
      this.#replicate(link, true);
    }
  }

  /** Periodic duties: idle heartbeats and request deadlines. */
  tick(nowMs: number): void {
    for (const link of this.#links.values()) {
      if (nowMs - link.lastSentMs >= replicationHeartbeatMs) this.#replicate(link, true);
    }
    while (this.#writes.length > 0 && this.#writes[0]!.deadlineMs <= nowMs) {
      this.#writes.shift()!.reject(
        new TryAgain(
          `write not committed within ${requestTimeoutMs} ms; ${writeMayStillApplyText}`,
        ),
      );
    }
    this.#reads = this.#reads.filter((r) => {
      if (r.deadlineMs > nowMs) return true;
      r.reject(new TryAgain(`leadership not confirmed within ${requestTimeoutMs} ms`));
      const list = this.#captureAt.get(r.readIndex);
      if (list) {
        const rest = list.filter((x) => x !== r);
        if (rest.length > 0) this.#captureAt.set(r.readIndex, rest);
        else this.#captureAt.delete(r.readIndex);
      }
      return false;
    });
  }

  get position(): { lastIndex: number; lastTerm: number } {
    return this.#state.log.position;
  }
}

type DistributiveOmit<T, K extends PropertyKey> = T extends unknown ? Omit<T, K> : never;
