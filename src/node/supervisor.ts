// The node supervisor (`kvstore run N`): the shell around the pure election
// core. It owns the term/vote file and the control port, runs elections, and
// keeps the right role process running for the node (leader in the term it
// won, follower otherwise) through the RoleManager.
//
// One mailbox: ticks, peer messages and role-process events are queued and
// handled one at a time, each to completion, so nothing interleaves between
// reading the core's state and carrying out what it decided.
//
// The invariant across the process split: before the core moves to a higher
// term or casts a vote, the role process is fenced at that term, so it can no
// longer acknowledge entries of an older term. To know in advance whether an
// event will do that, the supervisor steps a clone of the core first.
//
// A term or vote is durable before anything depends on it (Raft §5.2): each
// event is stepped on a copy of the core, the copy's term and vote are
// written to the term/vote file, and only then does the copy become the core
// and its sends and role changes happen. If the file cannot be written (disk
// full, I/O error) the event is dropped as if it never arrived: no vote is
// granted, no RequestVote sent, no term adopted, and the node stays up. The
// next heartbeat, vote request or timeout brings the same step again, so it
// is retried by itself and goes through once the disk takes writes again.

import {
  electionTimeoutMsMax,
  electionTimeoutMsMin,
  heartbeatIntervalMs,
  tickMs,
} from "../config/timing.ts";
import { type Log, logger, setupLogging } from "../log.ts";
import { termJumpMax, termMax } from "../config/limits.ts";
import { type ControlMessage, ElectionCore, type ElectionEffect } from "../raft/election.ts";
import { Prng } from "../raft/prng.ts";
import { invariant, type LogPosition } from "../raft/types.ts";
import type { NodeOptions } from "../cli/role_args.ts";
import { PeerTransport } from "../net/peer_transport.ts";
import {
  readTermFile,
  termFilePath,
  TermFileWriteError,
  type TermState,
  writeTermFile,
} from "../storage/term_file.ts";
import { walPath } from "./replica_state.ts";
import { snapshotPath } from "../storage/snapshot_file.ts";
import { readWalPosition, RoleManager } from "./role_manager.ts";

/** While the term/vote file keeps failing, repeat the ERROR at most this
 * often: the step behind it comes back with every heartbeat (100 ms). */
const termFileErrorRepeatMs = 5000;

/** Writes the term/vote file (a test seam: the default is writeTermFile). */
export type TermStateWriter = (path: string, state: TermState) => Promise<void>;

/**
 * Steps a copy of `core` with `step`. If the step changed the term or vote,
 * the copy's term and vote are written to `termFile` first; only then is the
 * copy returned as the new core, with the effects to carry out (Raft §5.2:
 * nothing that depends on them may happen before they are durable). Returns
 * null when they could not be written: then the step must be treated as if
 * it never happened, and `core` is exactly as it was. (If the rename went
 * through and only the directory fsync failed, the file may hold that term
 * and vote anyway: nobody was told of them, and a later write replaces them.)
 * `fencedTerm` is the term the role process is fenced at, which must cover
 * the new term.
 */
export async function stepDurably(
  core: ElectionCore,
  step: (copy: ElectionCore) => ElectionEffect[],
  termFile: DurableTermFile,
  fencedTerm: number,
  cause: string,
): Promise<{ readonly core: ElectionCore; readonly effects: ElectionEffect[] } | null> {
  const next = core.clone();
  const effects = step(next);
  const persist = effects.findLast((e) => e.kind === "persist");
  if (persist === undefined) return { core: next, effects };
  invariant(
    persist.term === next.currentTerm && persist.votedFor === next.votedFor,
    `The last persist (term ${persist.term}, votedFor ${persist.votedFor}) is not the ` +
      `core's state (term ${next.currentTerm}, votedFor ${next.votedFor})`,
  );
  invariant(
    fencedTerm >= next.currentTerm,
    `Persisting term ${next.currentTerm} before fencing the role (fenced at ${fencedTerm})`,
  );
  // One write of the final state covers every persist of the event: each
  // replaces the whole file, and they all come before its other effects.
  const written = await termFile.write(
    { currentTerm: next.currentTerm, votedFor: next.votedFor },
    cause,
    core.currentTerm,
  );
  return written ? { core: next, effects } : null;
}

type SupervisorEvent =
  | { readonly kind: "tick" }
  | { readonly kind: "message"; readonly message: ControlMessage }
  | { readonly kind: "leaderRoleLost" }
  | { readonly kind: "higherTerm"; readonly term: number };

export class Supervisor {
  readonly #opts: NodeOptions;
  readonly #log: Log;
  /** Replaced by a stepped copy once that copy's term and vote are durable;
   * never stepped in place, so a failed write leaves it as it was. */
  #core: ElectionCore;
  readonly #roles: RoleManager;
  readonly #termPath: string;
  #transport: PeerTransport | null = null;
  #queue: SupervisorEvent[] = [];
  #wake: (() => void) | null = null;
  #tickQueued = false;
  #position: LogPosition;
  #stopped = false;
  #fatal: string | null = null;
  readonly #termFile: DurableTermFile;

  constructor(opts: NodeOptions, core: ElectionCore, position: LogPosition, log: Log) {
    this.#opts = opts;
    this.#log = log;
    this.#core = core;
    this.#position = position;
    this.#termPath = termFilePath(opts.dataDir, opts.self.id);
    this.#termFile = new DurableTermFile(this.#termPath, log);
    const baseArgs = [
      String(opts.self.id),
      "--data-dir",
      opts.dataDir,
      "--log-level",
      opts.logLevel,
      "--max-staleness-ms",
      String(opts.maxStalenessMs),
      "--snapshot-entries",
      String(opts.snapshotEntries),
      "--snapshot-wal-bytes",
      String(opts.snapshotWalBytes),
    ];
    if (opts.clusterFile !== undefined) baseArgs.push("--cluster", opts.clusterFile);
    if (opts.secretFile !== undefined) baseArgs.push("--secret-file", opts.secretFile);
    this.#roles = new RoleManager(baseArgs, walPath(opts.dataDir, opts.self.id), log, {
      onUnexpectedExit: (kind) => {
        if (kind === "leader") this.#push({ kind: "leaderRoleLost" });
      },
      onHigherTerm: (term) => this.#push({ kind: "higherTerm", term }),
      onFatal: (reason) => {
        this.#fatal = reason;
        this.#wake?.();
      },
    }, snapshotPath(opts.dataDir, opts.self.id));
  }

  /** Runs until SIGTERM/SIGINT or a fatal error; returns the exit code. */
  async run(): Promise<number> {
    const self = this.#opts.self;
    try {
      this.#transport = new PeerTransport(self, this.#opts.cluster, this.#opts.auth, (m) => {
        this.#push({ kind: "message", message: m });
      }, this.#log);
    } catch (e) {
      this.#log.error(`cannot listen on control port ${self.controlPort}: ${(e as Error).message}`);
      return 4;
    }
    this.#log.info(
      `node ${self.id} up: control port ${self.controlPort}, term ${this.#core.currentTerm}, ` +
        `log ends at ${this.#position.lastIndex} (term ${this.#position.lastTerm})`,
    );
    this.#roles.want("follower", this.#core.currentTerm, null);
    const ticker = setInterval(() => {
      if (!this.#tickQueued) {
        this.#tickQueued = true;
        this.#push({ kind: "tick" });
      }
    }, tickMs);
    const onSignal = () => {
      this.#stopped = true;
      this.#wake?.();
    };
    Deno.addSignalListener("SIGTERM", onSignal);
    Deno.addSignalListener("SIGINT", onSignal);
    try {
      while (!this.#stopped && this.#fatal === null) {
        const ev = this.#queue.shift();
        if (ev === undefined) {
          await new Promise<void>((r) => (this.#wake = r));
          this.#wake = null;
          continue;
        }
        if (ev.kind === "tick") this.#tickQueued = false;
        try {
          await this.#handle(ev);
        } catch (e) {
          // Not the term/vote file (#handle drops an event it cannot make
          // durable): a broken invariant, a bug. Stop rather than guess.
          this.#fatal = `cannot continue safely: ${(e as Error).message}`;
        }
      }
    } finally {
      clearInterval(ticker);
      Deno.removeSignalListener("SIGTERM", onSignal);
      Deno.removeSignalListener("SIGINT", onSignal);
      this.#transport.close();
      await this.#roles.stop();
    }
    if (this.#fatal !== null) {
      this.#log.error(`stopping node: ${this.#fatal}`);
      return 3;
    }
    this.#log.info("stopped");
    return 0;
  }

  #push(ev: SupervisorEvent): void {
    this.#queue.push(ev);
    this.#wake?.();
  }

  #apply(core: ElectionCore, ev: SupervisorEvent, pos: LogPosition): ElectionEffect[] {
    switch (ev.kind) {
      case "tick":
        return core.tick(pos);
      case "message":
        return core.step(ev.message, pos);
      case "leaderRoleLost":
        return core.leaderRoleLost();
      case "higherTerm":
        return core.observeTerm(ev.term);
    }
  }

  /** A term no honest node could have sent us now (see termJumpMax). */
  #implausibleTerm(ev: SupervisorEvent): number | null {
    const term = ev.kind === "message" ? ev.message.term : ev.kind === "higherTerm" ? ev.term : 0;
    const limit = Math.min(termMax, this.#core.currentTerm + termJumpMax);
    return term > limit ? term : null;
  }

  async #handle(ev: SupervisorEvent): Promise<void> {
    const implausible = this.#implausibleTerm(ev);
    if (implausible !== null) {
      this.#log.warn(
        `ignoring a ${
          ev.kind === "message" ? ev.message.kind : ev.kind
        } with term ${implausible}: ` +
          `more than ${termJumpMax} above our term ${this.#core.currentTerm}`,
      );
      return;
    }
    // Dry run on a clone: will this event change our term or vote, start a
    // campaign, or judge a vote request? Then fence the role process first,
    // which also tells us exactly where the log ends now.
    const probe = this.#core.clone();
    this.#apply(probe, ev, this.#position);
    const changesTermOrVote = probe.currentTerm !== this.#core.currentTerm ||
      probe.votedFor !== this.#core.votedFor;
    const judgesLogs = probe.role !== this.#core.role ||
      (ev.kind === "message" && ev.message.kind === "RequestVote");
    if (changesTermOrVote || judgesLogs) {
      try {
        this.#position = await this.#roles.fence(probe.currentTerm);
      } catch (e) {
        this.#fatal = (e as Error).message;
        return;
      }
    }
    // The step becomes real only once its term and vote are on disk; if they
    // cannot be written it is dropped, and the next heartbeat, vote request
    // or timeout brings it back. The fence above may stay at the higher term:
    // that only keeps the role from acknowledging more, never less.
    const stepped = await stepDurably(
      this.#core,
      (copy) => this.#apply(copy, ev, this.#position),
      this.#termFile,
      this.#roles.fencedTerm,
      describeEvent(ev),
    );
    if (stepped === null) return;
    this.#core = stepped.core;
    for (const effect of stepped.effects) this.#carryOut(effect);
  }

  #carryOut(effect: ElectionEffect): void {
    switch (effect.kind) {
      case "persist":
        // Already durable: #handle wrote it before carrying out any effect.
        break;
      case "send":
        this.#transport?.send(effect.to, effect.message);
        break;
      case "becomeLeader":
        this.#roles.want("leader", effect.term, this.#opts.self.id);
        break;
      case "becomeFollower":
        this.#roles.want("follower", effect.term, effect.leaderId);
        if (effect.leaderId !== null && effect.leaderId !== this.#opts.self.id) {
          this.#log.info(`following node ${effect.leaderId} in term ${effect.term}`);
        }
        break;
      case "log":
        if (effect.level === "warn") this.#log.warn(effect.message);
        else this.#log.info(effect.message);
        break;
      default: {
        const never: never = effect;
        throw new Error(`Unhandled effect ${JSON.stringify(never)}`);
      }
    }
  }
}

/** What an event is, for a log line: "RequestVote from node 3 (term 7)". */
function describeEvent(ev: SupervisorEvent): string {
  switch (ev.kind) {
    case "tick":
      return "timer tick";
    case "leaderRoleLost":
      return "loss of our leader role process";
    case "higherTerm":
      return `term ${ev.term} seen by our role process`;
    case "message": {
      const m = ev.message;
      const preVote = (m.kind === "RequestVote" || m.kind === "RequestVoteResponse") && m.preVote;
      return `${preVote ? "pre-vote " : ""}${m.kind} from node ${m.from} (term ${m.term})`;
    }
  }
}

/**
 * The supervisor's writes of its term/vote file, and what it says when they
 * fail: an operating error (the disk is full, say), so the node goes on
 * without the change and tries again with the next event that needs it. The
 * first failure is an ERROR; while it goes on, one ERROR every
 * `termFileErrorRepeatMs` with the count; the first success after, an INFO.
 */
export class DurableTermFile {
  readonly #path: string;
  readonly #log: Log;
  readonly #write: TermStateWriter;
  readonly #nowMs: () => number;
  #failures = 0;
  #failingSinceMs = 0;
  #loggedAtMs = 0;

  constructor(
    path: string,
    log: Log,
    write: TermStateWriter = writeTermFile,
    nowMs: () => number = Date.now,
  ) {
    this.#path = path;
    this.#log = log;
    this.#write = write;
    this.#nowMs = nowMs;
  }

  /** Failed writes since the last one that went through. */
  get failures(): number {
    return this.#failures;
  }

  /** Writes `state`; false (logged) if it could not be made durable, in
   * which case the caller must not act on it. */
  async write(state: TermState, cause: string, termNow: number): Promise<boolean> {
    try {
      await this.#write(this.#path, state);
    } catch (e) {
      const nowMs = this.#nowMs();
      this.#failures++;
      if (this.#failures === 1) this.#failingSinceMs = nowMs;
      if (this.#failures === 1 || nowMs - this.#loggedAtMs >= termFileErrorRepeatMs) {
        this.#loggedAtMs = nowMs;
        const why = e instanceof TermFileWriteError
          ? e.message
          : `Cannot write term/vote file ${this.#path}: ${(e as Error).message}`;
        const vote = state.votedFor === null ? "no vote" : `vote for node ${state.votedFor}`;
        const streak = this.#failures === 1
          ? ""
          : `; ${this.#failures} failed writes in ${nowMs - this.#failingSinceMs} ms`;
        this.#log.error(
          `ignoring a ${cause}: ${why}; staying in term ${termNow} (no vote, campaign or term ` +
            `change) until term ${state.currentTerm} with ${vote} can be made durable${streak}`,
        );
      }
      return false;
    }
    if (this.#failures > 0) {
      this.#log.info(
        `wrote ${this.#path} (term ${state.currentTerm}) after ${this.#failures} failed writes ` +
          `over ${this.#nowMs() - this.#failingSinceMs} ms`,
      );
      this.#failures = 0;
    }
    return true;
  }
}

export async function runMain(opts: NodeOptions): Promise<number> {
  setupLogging(opts.logLevel);
  const log = logger(`node ${opts.self.id}`);
  const probe = `${opts.dataDir}/.kvstore-write-test-${opts.self.id}`;
  try {
    await Deno.mkdir(opts.dataDir, { recursive: true });
    await Deno.writeTextFile(probe, "ok");
    await Deno.remove(probe);
  } catch (e) {
    // On a full disk the probe is created and then cannot be written.
    await Deno.remove(probe).catch(() => {});
    log.error(`data directory ${opts.dataDir} is not writable: ${(e as Error).message}`);
    return 3;
  }
  const termPath = termFilePath(opts.dataDir, opts.self.id);
  const durable = await readTermFile(termPath);
  if (!durable.ok) {
    log.error(durable.error);
    return 3;
  }
  const peers = opts.cluster.nodes.map((n) => n.id as number).filter((id) => id !== opts.self.id);
  const core = new ElectionCore(
    {
      id: opts.self.id,
      peers,
      heartbeatIntervalTicks: heartbeatIntervalMs / tickMs,
      electionTimeoutTicksMin: electionTimeoutMsMin / tickMs,
      electionTimeoutTicksMax: electionTimeoutMsMax / tickMs,
    },
    durable.value,
    new Prng(crypto.getRandomValues(new Uint32Array(1))[0]! ^ opts.self.id),
  );
  let position: LogPosition;
  try {
    position = await readWalPosition(
      walPath(opts.dataDir, opts.self.id),
      snapshotPath(opts.dataDir, opts.self.id),
    );
  } catch (e) {
    log.error(`cannot start: ${(e as Error).message}`);
    return 3;
  }
  return await new Supervisor(opts, core, position, log).run();
}
