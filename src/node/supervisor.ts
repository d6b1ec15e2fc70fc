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
import { readTermFile, termFilePath, writeTermFile } from "../storage/term_file.ts";
import { walPath } from "./replica_state.ts";
import { snapshotPath } from "../storage/snapshot_file.ts";
import { readWalPosition, RoleManager } from "./role_manager.ts";

type SupervisorEvent =
  | { readonly kind: "tick" }
  | { readonly kind: "message"; readonly message: ControlMessage }
  | { readonly kind: "leaderRoleLost" }
  | { readonly kind: "higherTerm"; readonly term: number };

export class Supervisor {
  readonly #opts: NodeOptions;
  readonly #log: Log;
  readonly #core: ElectionCore;
  readonly #roles: RoleManager;
  readonly #termPath: string;
  #transport: PeerTransport | null = null;
  #queue: SupervisorEvent[] = [];
  #wake: (() => void) | null = null;
  #tickQueued = false;
  #position: LogPosition;
  #stopped = false;
  #fatal: string | null = null;

  constructor(opts: NodeOptions, core: ElectionCore, position: LogPosition, log: Log) {
    this.#opts = opts;
    this.#log = log;
    this.#core = core;
    this.#position = position;
    this.#termPath = termFilePath(opts.dataDir, opts.self.id);
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
          // Most likely the term/vote file could not be written (disk full,
          // permissions). Going on without it could vote twice in a term.
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
    const effects = this.#apply(this.#core, ev, this.#position);
    for (const effect of effects) await this.#carryOut(effect);
  }

  async #carryOut(effect: ElectionEffect): Promise<void> {
    switch (effect.kind) {
      case "persist":
        invariant(
          this.#roles.fencedTerm >= effect.term,
          `Persisting term ${effect.term} before fencing the role (fenced at ${this.#roles.fencedTerm})`,
        );
        // Raft §5.2: durable before any message that depends on it is sent.
        await writeTermFile(this.#termPath, {
          currentTerm: effect.term,
          votedFor: effect.votedFor,
        });
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

export async function runMain(opts: NodeOptions): Promise<number> {
  setupLogging(opts.logLevel);
  const log = logger(`node ${opts.self.id}`);
  try {
    await Deno.mkdir(opts.dataDir, { recursive: true });
    const probe = `${opts.dataDir}/.kvstore-write-test-${opts.self.id}`;
    await Deno.writeTextFile(probe, "ok");
    await Deno.remove(probe);
  } catch (e) {
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
