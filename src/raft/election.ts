// The pure election core that each node's supervisor drives: terms, votes,
// pre-votes, heartbeats and leader step-down (Raft §5.2, §5.4.1, and the
// pre-vote and check-quorum extensions of Ongaro's thesis §9.6).
//
// It does no I/O and reads no clock: time arrives as `tick()`, messages as
// `step()`, and every call returns the effects to carry out, in order:
// persist (term/vote) → send → role change. The supervisor shell must make
// each persist durable before it sends anything that follows it.
//
// Log replication is not here: the role processes own the log. The core only
// needs the node's log position to judge votes, and the shell passes it in.
//
//        timeout            pre-vote quorum          vote quorum
//   follower ──────▶ pre-candidate ──────▶ candidate ──────▶ leader
//      ▲                  │                    │                │
//      └──────────────────┴── higher term / heartbeat ──────────┘

import { Prng } from "./prng.ts";
import {
  atLeastAsUpToDate,
  invariant,
  InvariantError,
  type LogPosition,
  type Term,
} from "./types.ts";

export type ElectionRole = "follower" | "pre-candidate" | "candidate" | "leader";

export type ControlMessage =
  | {
    readonly kind: "RequestVote";
    readonly from: number;
    /** For a pre-vote, the term the sender would campaign in (its term + 1). */
    readonly term: Term;
    readonly lastLogIndex: number;
    readonly lastLogTerm: Term;
    readonly preVote: boolean;
  }
  | {
    readonly kind: "RequestVoteResponse";
    readonly from: number;
    readonly term: Term;
    readonly voteGranted: boolean;
    readonly preVote: boolean;
  }
  | { readonly kind: "Heartbeat"; readonly from: number; readonly term: Term }
  | { readonly kind: "HeartbeatResponse"; readonly from: number; readonly term: Term }
  /** Sent by a leader whose role process died: campaign now rather than after a timeout. */
  | { readonly kind: "StepDown"; readonly from: number; readonly term: Term };

export type ElectionEffect =
  | { readonly kind: "persist"; readonly term: Term; readonly votedFor: number | null }
  | { readonly kind: "send"; readonly to: number; readonly message: ControlMessage }
  | { readonly kind: "becomeLeader"; readonly term: Term; readonly votes: number }
  | { readonly kind: "becomeFollower"; readonly term: Term; readonly leaderId: number | null }
  | { readonly kind: "log"; readonly level: "info" | "warn"; readonly message: string };

export interface ElectionConfig {
  readonly id: number;
  readonly peers: readonly number[];
  readonly heartbeatIntervalTicks: number;
  readonly electionTimeoutTicksMin: number;
  readonly electionTimeoutTicksMax: number;
}

export interface DurableElectionState {
  readonly currentTerm: Term;
  readonly votedFor: number | null;
}

export class ElectionCore {
  readonly config: ElectionConfig;
  #rng: Prng;
  #currentTerm: Term;
  #votedFor: number | null;
  #role: ElectionRole = "follower";
  #leaderId: number | null = null;
  /** Ticks since we last heard from a leader (or since we started campaigning). */
  #electionElapsedTicks = 0;
  #electionTimeoutTicks: number;
  #heartbeatElapsedTicks = 0;
  #votes = new Set<number>();
  /** Leader only: peers that answered since the last check-quorum window began. */
  #recentlyActive = new Set<number>();
  #checkQuorumElapsedTicks = 0;
  /** Ticks left during which we do not campaign (after our leader role died). */
  #candidacyHoldTicks = 0;

  constructor(config: ElectionConfig, durable: DurableElectionState, rng: Prng) {
    invariant(!config.peers.includes(config.id), "A node is not its own peer");
    invariant(
      config.electionTimeoutTicksMin > config.heartbeatIntervalTicks,
      "The election timeout must exceed the heartbeat interval",
    );
    this.config = config;
    this.#rng = rng;
    this.#currentTerm = durable.currentTerm;
    this.#votedFor = durable.votedFor;
    this.#electionTimeoutTicks = this.#randomTimeout();
  }

  get currentTerm(): Term {
    return this.#currentTerm;
  }
  get votedFor(): number | null {
    return this.#votedFor;
  }
  get role(): ElectionRole {
    return this.#role;
  }
  get leaderId(): number | null {
    return this.#leaderId;
  }
  get quorum(): number {
    return Math.floor((this.config.peers.length + 1) / 2) + 1;
  }

  /** A copy that evolves independently: the shell steps a copy first to learn
   * whether an event would change the term or vote, so it can fence the role
   * process before the real step (see supervisor.ts). */
  clone(): ElectionCore {
    const c = new ElectionCore(
      this.config,
      { currentTerm: this.#currentTerm, votedFor: this.#votedFor },
      new Prng(0),
    );
    // After construction: the constructor draws a timeout from its generator.
    c.#rng = this.#rng.clone();
    c.#role = this.#role;
    c.#leaderId = this.#leaderId;
    c.#electionElapsedTicks = this.#electionElapsedTicks;
    c.#electionTimeoutTicks = this.#electionTimeoutTicks;
    c.#heartbeatElapsedTicks = this.#heartbeatElapsedTicks;
    c.#votes = new Set(this.#votes);
    c.#recentlyActive = new Set(this.#recentlyActive);
    c.#checkQuorumElapsedTicks = this.#checkQuorumElapsedTicks;
    c.#candidacyHoldTicks = this.#candidacyHoldTicks;
    return c;
  }

  tick(log: LogPosition): ElectionEffect[] {
    const out: ElectionEffect[] = [];
    if (this.#candidacyHoldTicks > 0) this.#candidacyHoldTicks--;
    if (this.#role === "leader") {
      this.#heartbeatElapsedTicks++;
      if (this.#heartbeatElapsedTicks >= this.config.heartbeatIntervalTicks) {
        this.#heartbeatElapsedTicks = 0;
        this.#broadcastHeartbeat(out);
      }
      // Check quorum (thesis §6.2): a leader cut off from a majority steps
      // down instead of holding clients forever with writes it cannot commit.
      this.#checkQuorumElapsedTicks++;
      if (this.#checkQuorumElapsedTicks >= this.config.electionTimeoutTicksMax) {
        this.#checkQuorumElapsedTicks = 0;
        const active = this.#recentlyActive.size + 1;
        this.#recentlyActive.clear();
        if (active < this.quorum) {
          out.push({
            kind: "log",
            level: "warn",
            message: `heard from ${active} of ${this.quorum} needed nodes, stepping down`,
          });
          this.#becomeFollower(out, this.#currentTerm, null);
        }
      }
      return out;
    }
    this.#electionElapsedTicks++;
    if (this.#electionElapsedTicks >= this.#electionTimeoutTicks) {
      if (this.#candidacyHoldTicks > 0) {
        this.#electionElapsedTicks = 0;
        return out;
      }
      this.#campaign(out, log, true);
    }
    return out;
  }

  step(message: ControlMessage, log: LogPosition): ElectionEffect[] {
    const out: ElectionEffect[] = [];
    const isPreVoteTraffic = (message.kind === "RequestVote" && message.preVote) ||
      (message.kind === "RequestVoteResponse" && message.preVote && message.voteGranted);
    // Raft §5.1: any message from a higher term moves us to that term. Pre-vote
    // requests carry a prospective term and must not (thesis §9.6).
    if (message.term > this.#currentTerm && !isPreVoteTraffic) {
      const leader = message.kind === "Heartbeat" ? message.from : null;
      this.#becomeFollower(out, message.term, leader);
    }
    switch (message.kind) {
      case "RequestVote":
        this.#onRequestVote(out, message, log);
        break;
      case "RequestVoteResponse":
        this.#onVoteResponse(out, message, log);
        break;
      case "Heartbeat":
        if (message.term < this.#currentTerm) {
          // Tell a stale leader about the newer term so it steps down.
          out.push({ kind: "send", to: message.from, message: this.#heartbeatResponse() });
          break;
        }
        if (this.#role !== "follower" || this.#leaderId !== message.from) {
          this.#becomeFollower(out, this.#currentTerm, message.from);
        }
        this.#electionElapsedTicks = 0;
        out.push({ kind: "send", to: message.from, message: this.#heartbeatResponse() });
        break;
      case "HeartbeatResponse":
        if (this.#role === "leader" && message.term === this.#currentTerm) {
          this.#recentlyActive.add(message.from);
        }
        break;
      case "StepDown":
        if (
          message.term === this.#currentTerm && this.#leaderId === message.from &&
          this.#role === "follower"
        ) {
          // Our leader gave up: start an election after a short random delay
          // instead of waiting out a whole election timeout.
          this.#leaderId = null;
          const spread = this.config.heartbeatIntervalTicks * 2;
          this.#electionTimeoutTicks = this.#rng.intBetween(1, spread);
          this.#electionElapsedTicks = 0;
          out.push({ kind: "becomeFollower", term: this.#currentTerm, leaderId: null });
        }
        break;
      default: {
        const never: never = message;
        throw new InvariantError(`Unhandled control message ${JSON.stringify(never)}`);
      }
    }
    return out;
  }

  /** A role process saw `term` on the replication stream (Raft §5.1). */
  observeTerm(term: Term): ElectionEffect[] {
    const out: ElectionEffect[] = [];
    if (term > this.#currentTerm) this.#becomeFollower(out, term, null);
    return out;
  }

  /** Our leader role process died: step down so another node can lead, and
   * hold back our own candidacy for a while so that it really is another. */
  leaderRoleLost(): ElectionEffect[] {
    const out: ElectionEffect[] = [];
    if (this.#role !== "leader") return out;
    for (const peer of this.config.peers) {
      out.push({
        kind: "send",
        to: peer,
        message: { kind: "StepDown", from: this.config.id, term: this.#currentTerm },
      });
    }
    this.#becomeFollower(out, this.#currentTerm, null);
    this.#candidacyHoldTicks = this.config.electionTimeoutTicksMax * 2;
    return out;
  }

  #onRequestVote(
    out: ElectionEffect[],
    m: Extract<ControlMessage, { kind: "RequestVote" }>,
    log: LogPosition,
  ): void {
    const upToDate = atLeastAsUpToDate({ lastIndex: m.lastLogIndex, lastTerm: m.lastLogTerm }, log);
    let granted = false;
    if (m.preVote) {
      // Grant a pre-vote only if we have no live leader: a node that merely
      // lost contact must not disrupt a healthy cluster when it comes back.
      const leaderAlive = this.#role === "leader" ||
        (this.#leaderId !== null &&
          this.#electionElapsedTicks < this.config.electionTimeoutTicksMin);
      granted = m.term > this.#currentTerm && upToDate && !leaderAlive;
    } else if (m.term === this.#currentTerm) {
      // Raft §5.2 and §5.4.1: one vote per term, only for an up-to-date log.
      granted = (this.#votedFor === null || this.#votedFor === m.from) && upToDate;
      if (granted && this.#votedFor === null) {
        this.#votedFor = m.from;
        out.push({ kind: "persist", term: this.#currentTerm, votedFor: this.#votedFor });
      }
      if (granted) this.#electionElapsedTicks = 0;
    }
    out.push({
      kind: "send",
      to: m.from,
      message: {
        kind: "RequestVoteResponse",
        from: this.config.id,
        // A granted pre-vote echoes the prospective term; a refusal carries our
        // real term so a candidate that is behind learns it.
        term: m.preVote && granted ? m.term : this.#currentTerm,
        voteGranted: granted,
        preVote: m.preVote,
      },
    });
    if (granted) {
      out.push({
        kind: "log",
        level: "info",
        message: `granted ${m.preVote ? "pre-vote" : "vote"} to node ${m.from} for term ${m.term}`,
      });
    }
  }

  #onVoteResponse(
    out: ElectionEffect[],
    m: Extract<ControlMessage, { kind: "RequestVoteResponse" }>,
    log: LogPosition,
  ): void {
    if (!m.voteGranted) return;
    if (m.preVote) {
      if (this.#role !== "pre-candidate" || m.term !== this.#currentTerm + 1) return;
      this.#votes.add(m.from);
      if (this.#votes.size + 1 >= this.quorum) this.#campaign(out, log, false);
      return;
    }
    if (this.#role !== "candidate" || m.term !== this.#currentTerm) return;
    this.#votes.add(m.from);
    this.#maybeWin(out);
  }

  #maybeWin(out: ElectionEffect[]): void {
    const votes = this.#votes.size + 1;
    if (this.#role !== "candidate" || votes < this.quorum) return;
    this.#role = "leader";
    this.#leaderId = this.config.id;
    this.#heartbeatElapsedTicks = 0;
    this.#checkQuorumElapsedTicks = 0;
    this.#recentlyActive.clear();
    out.push({
      kind: "log",
      level: "info",
      message:
        `became LEADER term ${this.#currentTerm} with votes=${votes} (required=${this.quorum})`,
    });
    out.push({ kind: "becomeLeader", term: this.#currentTerm, votes });
    // Assert leadership at once so other campaigns stop.
    this.#broadcastHeartbeat(out);
  }

  #campaign(out: ElectionEffect[], log: LogPosition, preVote: boolean): void {
    this.#votes.clear();
    this.#leaderId = null;
    this.#electionElapsedTicks = 0;
    this.#electionTimeoutTicks = this.#randomTimeout();
    if (preVote) {
      this.#role = "pre-candidate";
    } else {
      this.#role = "candidate";
      this.#currentTerm++;
      this.#votedFor = this.config.id;
      out.push({ kind: "persist", term: this.#currentTerm, votedFor: this.config.id });
      out.push({ kind: "becomeFollower", term: this.#currentTerm, leaderId: null });
    }
    out.push({
      kind: "log",
      level: "info",
      message: preVote
        ? `election timeout, asking for pre-votes for term ${this.#currentTerm + 1}`
        : `starting election for term ${this.#currentTerm}`,
    });
    if (this.config.peers.length === 0) {
      // A one-node cluster wins at once.
      if (preVote) this.#campaign(out, log, false);
      else this.#maybeWin(out);
      return;
    }
    for (const peer of this.config.peers) {
      out.push({
        kind: "send",
        to: peer,
        message: {
          kind: "RequestVote",
          from: this.config.id,
          term: preVote ? this.#currentTerm + 1 : this.#currentTerm,
          lastLogIndex: log.lastIndex,
          lastLogTerm: log.lastTerm,
          preVote,
        },
      });
    }
  }

  #becomeFollower(out: ElectionEffect[], term: Term, leaderId: number | null): void {
    invariant(term >= this.#currentTerm, `Term would go back from ${this.#currentTerm} to ${term}`);
    const wasLeader = this.#role === "leader";
    if (term > this.#currentTerm) {
      this.#currentTerm = term;
      this.#votedFor = null;
      out.push({ kind: "persist", term, votedFor: null });
    }
    this.#role = "follower";
    this.#leaderId = leaderId;
    this.#votes.clear();
    this.#electionElapsedTicks = 0;
    this.#electionTimeoutTicks = this.#randomTimeout();
    if (wasLeader) {
      out.push({ kind: "log", level: "warn", message: `stepping down in term ${term}` });
    }
    out.push({ kind: "becomeFollower", term, leaderId });
  }

  #broadcastHeartbeat(out: ElectionEffect[]): void {
    for (const peer of this.config.peers) {
      out.push({
        kind: "send",
        to: peer,
        message: { kind: "Heartbeat", from: this.config.id, term: this.#currentTerm },
      });
    }
  }

  #heartbeatResponse(): ControlMessage {
    return { kind: "HeartbeatResponse", from: this.config.id, term: this.#currentTerm };
  }

  #randomTimeout(): number {
    return this.#rng.intBetween(
      this.config.electionTimeoutTicksMin,
      this.config.electionTimeoutTicksMax,
    );
  }
}
