// The follower role process (`kvstore follower N`), started by node N's
// supervisor whenever the node does not lead. It keeps the node's WAL in step
// with the leader's and serves reads:
//
//   replication  connects to the leader its supervisor names, says HELLO with
//                where its log ends, then appends, fsyncs and acknowledges
//                the leader's APPEND batches (Raft §5.3), truncating a
//                divergent uncommitted suffix when the leader's log differs
//   read         GET from the committed state (may be stale, within the
//                bound: -STALE once this node has not caught up with a leader
//                for longer than --max-staleness-ms, see leader_contact.ts);
//                data commands that need the leader get -REDIRECT <leaderHost>
//                <clientPort>
//   client       every data command gets that redirect
//
// Sync state machine:
//
//   no leader ──leader named──▶ connecting ──HELLO sent──▶ streaming
//       ▲                          │  ▲ backoff                │
//       └──────── fenced above ────┴──┴──── connection lost ◀──┘
//
// The supervisor fences this process before it adopts a higher term or
// votes: from then on nothing of an older term is acknowledged, including a
// batch that was being fsynced when the fence arrived.

import { encodeBulk, encodeError } from "../codec/resp.ts";
import {
  encodeAck,
  encodeHello,
  encodeNack,
  encodeSnapAck,
  type ReplicationMessage,
  ReplicationParser,
} from "../codec/replication.ts";
import type { SnapshotMeta } from "../codec/snapshot.ts";
import { loadSnapshotFile } from "../storage/snapshot_file.ts";
import { decodeWalLine, decodeWalLineSteps } from "../codec/wal_line.ts";
import { runInSteps, stepBytes } from "../steps.ts";
import { findNode, type NodeAddress } from "../config/cluster.ts";
import {
  electionTimeoutMsMax,
  reconnectBackoffMsMax,
  reconnectBackoffMsMin,
} from "../config/timing.ts";
import { type Log } from "../log.ts";
import { assignTerms, decideAppend } from "../raft/replication.ts";
import { InvariantError } from "../raft/types.ts";
import type { NodeOptions } from "../cli/role_args.ts";
import { type DataCommands } from "./commands.ts";
import { type LeaderContact } from "./leader_contact.ts";
import { ReplicaState } from "./replica_state.ts";
import { exitRoleFailed, sendToSupervisor } from "./role_ipc.ts";
import { dialPeer } from "../net/peer_auth.ts";
import { writeAll } from "../net/write_all.ts";

export class FollowerRole {
  readonly #self: NodeAddress;
  readonly #opts: NodeOptions;
  readonly #state: ReplicaState;
  readonly #log: Log;
  /** The highest term our supervisor has told us about; never acknowledge below it. */
  #term = 0;
  #leader: NodeAddress | null = null;
  /** Since when we have had no replication connection to the named leader. */
  #linkDownSinceMs = performance.now();
  /** Bumped whenever the leader or term changes: old connection loops stop. */
  #generation = 0;
  #conn: Deno.Conn | null = null;
  /** False until this process has heard from a leader: before that our
   * commit index is unknown and reads would wrongly answer "not found". */
  #heardFromLeader: boolean;
  /** When we last held everything the leader had committed: bounds read staleness. */
  readonly #contact: LeaderContact;

  /** Ends the process (the supervisor restarts the role from disk); tests
   * pass a recorder instead. */
  readonly #exit: (code: number) => void;

  constructor(
    opts: NodeOptions,
    state: ReplicaState,
    log: Log,
    contact: LeaderContact,
    exit: (code: number) => void = (code) => Deno.exit(code),
  ) {
    this.#exit = exit;
    this.#opts = opts;
    this.#self = opts.self;
    this.#state = state;
    this.#log = log;
    this.#contact = contact;
    // A commit index recorded by an earlier run is as good as a leader's word.
    this.#heardFromLeader = state.commitIndex > 0;
  }

  get position(): { lastIndex: number; lastTerm: number } {
    return this.#state.log.position;
  }

  fence(term: number): void {
    if (term > this.#term) {
      this.#term = term;
      if (this.#leader !== null) this.#setLeader(term, null);
    }
  }

  /** The supervisor names the leader of `term` (null: none known). */
  setLeader(term: number, leaderId: number | null): void {
    if (term < this.#term) return;
    const leader = leaderId === null ? null : findNode(this.#opts.cluster, leaderId) ?? null;
    if (term === this.#term && leader?.id === this.#leader?.id) return;
    this.#setLeader(term, leader);
  }

  #setLeader(term: number, leader: NodeAddress | null): void {
    this.#term = term;
    this.#leader = leader;
    this.#linkDownSinceMs = performance.now();
    this.#generation++;
    try {
      this.#conn?.close();
    } catch {
      // already closed
    }
    this.#conn = null;
    if (leader !== null && leader.id !== this.#self.id) {
      this.#connectLoop(this.#generation, leader, term);
    }
  }

  // ---- client-facing --------------------------------------------------------------

  #redirect(): Uint8Array {
    const l = this.#leader;
    if (l === null || l.id === this.#self.id) {
      return encodeError("TRYAGAIN no leader known yet; an election may be in progress");
    }
    // A leader we have not reached for longer than an election timeout is
    // probably gone (with no quorum left, it stays named until a new one
    // wins): sending the client there would only earn it "connection
    // refused" from a dead node, so say what is known instead.
    const downMs = this.#conn === null ? performance.now() - this.#linkDownSinceMs : 0;
    if (downMs > electionTimeoutMsMax) {
      return encodeError(
        `TRYAGAIN no leader known yet: leader node ${l.id} has been unreachable for ` +
          `${Math.round(downMs)} ms; an election may be in progress`,
      );
    }
    return encodeError(`REDIRECT ${l.host} ${l.clientPort}`);
  }

  get clientData(): DataCommands {
    return {
      redisRole: "slave",
      get: () => this.#redirect(),
      set: () => this.#redirect(),
      del: () => this.#redirect(),
      info: () => this.#info(),
    };
  }

  get readData(): DataCommands {
    return {
      ...this.clientData,
      get: (key) => {
        if (!this.#heardFromLeader) {
          return encodeError(
            "TRYAGAIN this follower does not know what is committed yet (no leader heard from)",
          );
        }
        // Known committed, but maybe long ago: past the bound, say so rather
        // than answer as if current (a missing key would read as nil).
        const stale = this.#contact.staleReply(performance.now());
        if (stale !== null) return stale;
        return encodeBulk(this.#state.kv.get(key) ?? null);
      },
    };
  }

  #info(): string[] {
    return [
      `term:${this.#term}`,
      `master_node:${this.#leader?.id ?? "none"}`,
      `master_host:${this.#leader?.host ?? ""}`,
      `master_port:${this.#leader?.clientPort ?? ""}`,
      `master_link_status:${this.#conn ? "up" : "down"}`,
      `commit_index:${this.#state.commitIndex}`,
      `last_index:${this.#state.log.lastIndex}`,
      `snapshot_receiving:${this.#incoming === null ? 0 : this.#incoming.received}`,
      ...this.#state.infoLines(),
      ...this.#contact.infoLines(performance.now()),
    ];
  }

  // ---- replication --------------------------------------------------------------

  async #connectLoop(generation: number, leader: NodeAddress, term: number): Promise<void> {
    let backoffMs = reconnectBackoffMsMin;
    let failures = 0;
    while (generation === this.#generation) {
      this.#log.info(`trying to connect to leader ${leader.host}:${leader.replicationPort}`);
      let conn: Deno.Conn;
      try {
        conn = await Deno.connect({ hostname: leader.host, port: leader.replicationPort });
      } catch (e) {
        if (generation !== this.#generation) return;
        // WARN once per outage, then DEBUG: a leader that is down stays down a while.
        const text = `connect failed (${(e as Error).name}), sleeping ${backoffMs} ms`;
        if (failures++ === 0) this.#log.warn(text);
        else this.#log.debug(text);
        await new Promise((r) => setTimeout(r, backoffMs));
        backoffMs = Math.min(backoffMs * 2, reconnectBackoffMsMax);
        continue;
      }
      if (generation !== this.#generation) {
        conn.close();
        return;
      }
      (conn as Deno.TcpConn).setNoDelay(true);
      this.#conn = conn;
      failures = 0;
      backoffMs = reconnectBackoffMsMin;
      const pos = this.#state.log.position;
      // What an earlier connection (maybe to an earlier leader) matched and
      // committed says nothing about this leader's log: commit only what
      // this link confirms (§5.3), or a snapshot install could commit our
      // own old-term entries that this leader does not have.
      this.#matchIndex = 0;
      this.#leaderCommit = 0;
      try {
        if (this.#opts.auth !== null) {
          await dialPeer(conn, this.#opts.auth, "replication", this.#self.id, leader.id);
        }
        await writeAll(conn, encodeHello(this.#self.id, term, pos.lastIndex, pos.lastTerm));
        this.#log.info(`sent HELLO ${pos.lastIndex} (term ${term}) to node ${leader.id}`);
        await this.#stream(conn, generation, term);
      } catch (e) {
        if (e instanceof InvariantError) {
          // Our own state is inconsistent (a bug, or files edited by hand):
          // stop rather than serve it; the supervisor restarts us from disk.
          this.#log.error(`invariant broken, exiting: ${e.message}`);
          this.#exit(exitRoleFailed);
          return;
        }
        if (generation === this.#generation) {
          this.#log.warn(`replication connection lost: ${(e as Error).message}`);
        }
      } finally {
        try {
          conn.close();
        } catch {
          // already closed
        }
        if (this.#conn === conn) {
          this.#conn = null;
          this.#linkDownSinceMs = performance.now();
        }
      }
      // A transfer cut off with its connection restarts from offset 0 on the
      // next one: do not keep a partial snapshot, maybe large, until then.
      await this.#dropIncoming();
      if (generation !== this.#generation) return;
      await new Promise((r) => setTimeout(r, backoffMs));
    }
  }

  /** Stops following for good (the process is being promoted to leader) and
   * resolves once no batch is being appended any more. */
  async quiesce(): Promise<void> {
    this.#generation++;
    this.#leader = null;
    try {
      this.#conn?.close();
    } catch {
      // already closed
    }
    this.#conn = null;
    await this.#processing;
  }

  #processing: Promise<void> = Promise.resolve();

  /** Reads APPEND batches; every read's worth is appended, fsynced once and
   * acknowledged once (group commit on the follower side). */
  async #stream(conn: Deno.Conn, generation: number, term: number): Promise<void> {
    const parser = new ReplicationParser();
    const buf = new Uint8Array(256 * 1024);
    for (;;) {
      const n = await conn.read(buf);
      // Everything in this read was sent before now: a conservative time for
      // "caught up with what the leader had committed when it sent it".
      const receivedMs = performance.now();
      if (n === null) throw new Error("leader closed the connection");
      if (generation !== this.#generation) return;
      parser.push(buf.subarray(0, n));
      let finish = () => {};
      this.#processing = new Promise((r) => (finish = r));
      try {
        if (!(await this.#processBatch(conn, parser, generation, term, receivedMs))) return;
      } finally {
        finish();
      }
    }
  }

  /** Appends, fsyncs and acknowledges what one read delivered; false once
   * this connection is no longer current. */
  async #processBatch(
    conn: Deno.Conn,
    parser: ReplicationParser,
    generation: number,
    term: number,
    receivedMs: number,
  ): Promise<boolean> {
    {
      let reply: { ack: boolean; index: number; round: number } | null = null;
      for (;;) {
        const r = parser.next();
        if (r.kind === "incomplete") break;
        if (r.kind === "error") {
          throw new Error(
            r.message.includes("KVAUTH1")
              ? "the leader requires the cluster secret: start this node with --secret-file"
              : r.message,
          );
        }
        const out = r.message.kind === "SNAPSHOT"
          ? await this.#onSnapshotChunk(r.message, term)
          : await this.#onLeaderMessage(r.message, term);
        if (generation !== this.#generation) return false;
        if (out === null) continue;
        if ("received" in out) {
          // A snapshot chunk (no WAL write to wait for), or the installed
          // snapshot: durable already (fsynced and renamed), answer at once.
          if (this.#term !== term) return false;
          await writeAll(
            conn,
            out.installed === null
              ? encodeSnapAck(term, out.received, out.round)
              : encodeAck(term, out.installed, out.round),
          );
          if (out.installed !== null) {
            this.#applyCommit();
            if (this.#state.commitIndex >= this.#leaderCommit) this.#contact.caughtUp(receivedMs);
          }
          reply = null;
        } else if (!out.ack) {
          await writeAll(conn, encodeNack(this.#term, out.index, out.round));
          reply = null;
        } else {
          reply = out;
        }
      }
      if (reply === null) return true;
      try {
        await this.#state.wal.sync();
      } catch (e) {
        // After a failed fsync the kernel may have dropped the dirty pages:
        // what is on disk is unknown, and the WalFile refuses all further
        // work. Acknowledge nothing and end; the supervisor restarts the role,
        // which reads the WAL as it really is (a torn tail is cut off).
        this.#log.error(`WAL sync failed, stopping the follower role: ${e}`);
        this.#exit(exitRoleFailed);
        return false;
      }
      // Fenced while the fsync ran? Then this acknowledgement would count
      // toward an older term's quorum after our supervisor moved on: refuse.
      if (generation !== this.#generation || this.#term !== term) return false;
      this.#applyCommit();
      // Caught up only when we hold all the leader had committed, not merely
      // heard from it: a follower still catching up on a long log is behind.
      if (this.#state.commitIndex >= this.#leaderCommit) this.#contact.caughtUp(receivedMs);
      await writeAll(conn, encodeAck(term, reply.index, reply.round));
      return true;
    }
  }

  #leaderCommit = 0;
  #matchIndex = 0;

  #applyCommit(): void {
    // Only what the leader committed and we hold in agreement with it (§5.3).
    this.#state.commitTo(
      Math.min(this.#leaderCommit, this.#matchIndex),
      undefined,
      () => this.#applyCommit(),
    );
  }

  /** The snapshot being received from the leader (Raft §7), written to a
   * temporary file as it arrives; installed once complete and checked. */
  #incoming: {
    readonly meta: SnapshotMeta;
    readonly total: number;
    readonly file: Deno.FsFile;
    received: number;
  } | null = null;

  async #dropIncoming(): Promise<void> {
    const inc = this.#incoming;
    if (inc === null) return;
    this.#incoming = null;
    try {
      inc.file.close();
    } catch {
      // already closed
    }
    await Deno.remove(this.#state.snapshotReceivePath).catch(() => {});
  }

  async #onSnapshotChunk(
    m: Extract<ReplicationMessage, { kind: "SNAPSHOT" }>,
    term: number,
  ): Promise<{ received: number; installed: number | null; round: number } | null> {
    if (m.term !== term) {
      if (m.term > term) sendToSupervisor({ kind: "higherTerm", term: m.term });
      throw new Error(`snapshot chunk of term ${m.term} while following term ${term}`);
    }
    const meta: SnapshotMeta = { index: m.index, term: m.snapTerm, lineHash: m.lineHash };
    if (m.offset === 0) {
      await this.#dropIncoming();
      this.#log.info(
        `receiving the leader's snapshot at entry ${m.index} (${m.total} bytes): ` +
          `it has compacted the entries this node needs`,
      );
      const file = await Deno.open(this.#state.snapshotReceivePath, {
        write: true,
        create: true,
        truncate: true,
      });
      this.#incoming = { meta, total: m.total, file, received: 0 };
    }
    const inc = this.#incoming;
    if (
      inc === null || inc.received !== m.offset || inc.total !== m.total ||
      inc.meta.index !== meta.index || inc.meta.term !== meta.term
    ) {
      await this.#dropIncoming();
      throw new Error(`snapshot chunk at offset ${m.offset} out of order`);
    }
    try {
      await writeAll(inc.file, m.chunk);
    } catch (e) {
      await this.#dropIncoming();
      throw new Error(`cannot write the received snapshot: ${(e as Error).message}`);
    }
    inc.received += m.chunk.length;
    this.#leaderCommit = Math.max(this.#leaderCommit, m.leaderCommit);
    if (inc.received < inc.total) {
      return { received: inc.received, installed: null, round: m.round };
    }
    // Complete: make it durable, check it whole, then install it.
    try {
      await inc.file.syncData();
    } catch (e) {
      await this.#dropIncoming();
      throw new Error(`cannot fsync the received snapshot: ${(e as Error).message}`);
    }
    inc.file.close();
    this.#incoming = null;
    const path = this.#state.snapshotReceivePath;
    const parsed = await loadSnapshotFile(path);
    if (
      parsed === null || !parsed.ok || parsed.meta.index !== meta.index ||
      parsed.meta.term !== meta.term || parsed.meta.lineHash !== meta.lineHash
    ) {
      await Deno.remove(path).catch(() => {});
      throw new Error(
        `the leader's snapshot does not check out: ${
          parsed?.ok === false ? parsed.error : "its header differs from the transfer's"
        }`,
      );
    }
    await this.#state.installSnapshot(path, meta, parsed.pairs, parsed.bytes);
    this.#heardFromLeader = true;
    // Only the snapshot is known to match the leader's log; entries kept
    // after it are not, until an APPEND says so.
    this.#matchIndex = meta.index;
    return { received: inc.received, installed: meta.index, round: m.round };
  }

  async #onLeaderMessage(
    m: ReplicationMessage,
    term: number,
  ): Promise<{ ack: boolean; index: number; round: number } | null> {
    if (m.kind === "ERR") {
      if (m.term > term) sendToSupervisor({ kind: "higherTerm", term: m.term });
      throw new Error(`leader refused us: ${m.reason}`);
    }
    if (m.kind !== "APPEND") throw new Error(`unexpected ${m.kind} from the leader`);
    if (m.term !== term) {
      if (m.term > term) sendToSupervisor({ kind: "higherTerm", term: m.term });
      // A stale leader learns our term from the NACK and steps down.
      return { ack: false, index: this.#state.log.lastIndex + 1, round: m.round };
    }
    const records = [];
    for (const line of m.lines) {
      // A line with a large value is decoded with the event loop free
      // between steps: unescaping 64 MiB takes about half a second of CPU.
      const d = line.length < stepBytes
        ? decodeWalLine(line, { share: true })
        : await runInSteps(decodeWalLineSteps(line, { share: true }, stepBytes));
      if (!d.ok) throw new Error(`bad WAL line from the leader: ${d.error}`);
      // The parser hands out views of the batch body, where each line is
      // followed by its "\n": widen the view by one byte rather than copy.
      const full = new Uint8Array(line.buffer, line.byteOffset, line.length + 1);
      if (full[line.length] !== 0x0a) throw new Error("WAL line from the leader lost its newline");
      records.push({ record: d.record, line: full });
    }
    const entries = assignTerms(m.prevIndex, m.prevTerm, term, records);
    if (typeof entries === "string") throw new Error(`bad batch from the leader: ${entries}`);
    const decision = decideAppend(this.#state.log, m.prevIndex, m.prevTerm, entries);
    this.#heardFromLeader = true;
    if (decision.kind === "reject") {
      return { ack: false, index: decision.hintIndex, round: m.round };
    }
    if (decision.truncateFrom !== null) {
      this.#log.warn(
        `log diverges from the leader's at ${decision.truncateFrom}: truncating ${
          this.#state.log.lastIndex - decision.truncateFrom + 1
        } uncommitted entries`,
      );
      await this.#state.truncateFrom(decision.truncateFrom);
      // Fenced or promoted while the WAL was cut: this batch is no longer ours to take.
      if (this.#term !== term) return null;
    }
    if (decision.append.length > 0) this.#state.append(decision.append);
    this.#matchIndex = decision.matchIndex;
    this.#leaderCommit = Math.max(this.#leaderCommit, m.leaderCommit);
    return { ack: true, index: decision.matchIndex, round: m.round };
  }
}
