// The role process's main: `kvstore follower N` and `kvstore leader N --term T`.
// Opens the node's WAL, serves the client and read ports, talks to the
// supervisor over stdin/stdout, and runs the follower or leader role.
//
//   follower ──lead T (won the election)──▶ leader ──fenced above T──▶ exit
//      │                                                   ▲
//      └────────── started as `kvstore leader` ────────────┘
//
// A follower is promoted in place: it keeps its loaded log and state, so a
// failover does not wait for a WAL to be read again. A leader never goes back
// to following: its supervisor fences it and starts a fresh follower process.

import type { NodeOptions } from "../cli/role_args.ts";
import { type Log, logger, setupLogging } from "../log.ts";
import { type CommandHandler, startRespServer } from "../net/resp_server.ts";
import { type DataCommands, makeCommandHandler } from "./commands.ts";
import { FollowerRole } from "./follower_role.ts";
import { LeaderContact } from "./leader_contact.ts";
import { LeaderRole } from "./leader_role.ts";
import { ReplicaState, snapshotPolicy, walPath } from "./replica_state.ts";
import { commitHintPath } from "../storage/commit_hint.ts";
import { SnapshotDamagedError, snapshotPath } from "../storage/snapshot_file.ts";
import { WalDamagedError } from "../storage/wal_file.ts";
import {
  exitRoleFailed,
  exitWalDamaged,
  sendToSupervisor,
  type ToRole,
  watchSupervisor,
} from "./role_ipc.ts";
import { acceptLoop } from "../net/accept_loop.ts";

const exitCannotListen = 4;

/** How often the commit index is recorded for the next start: often enough
 * that a restart rarely waits for a leader, rarely enough to cost nothing. */
const commitHintIntervalMs = 200;

/** How often a role checks whether its WAL has grown enough for a snapshot:
 * at 10,000 writes/s the WAL overshoots the threshold by a few thousand. */
const snapshotCheckIntervalMs = 250;

export async function roleMain(opts: NodeOptions, startAs: "leader" | "follower"): Promise<number> {
  setupLogging(opts.logLevel);
  const self = opts.self;
  const node = `node ${self.id}`;
  let log: Log = logger(node, startAs === "leader" ? "Leader" : "Follower");
  Deno.addSignalListener("SIGTERM", () => {
    log.info("SIGTERM, exiting");
    Deno.exit(0);
  });
  // Ctrl-C in a terminal reaches the whole process group: leave it to the
  // supervisor, which stops us with SIGTERM, so the exit is not taken for a crash.
  Deno.addSignalListener("SIGINT", () => {});
  // Listen to the supervisor before loading the WAL, which can take a while:
  // a fence must be answered at once, and until the log is loaded we
  // acknowledge nothing, so "not loaded" (-1) is a complete answer.
  let fencedTerm = 0;
  let loaded = false;
  let markLoaded = () => {};
  const loadedSignal = new Promise<void>((r) => (markLoaded = r));
  let inbox: Promise<void> = Promise.resolve();
  let onMessage: (m: ToRole) => Promise<void> = async () => {};
  watchSupervisor((m) => {
    if (m.kind === "ping") {
      // Straight from the event loop, ahead of queued work: it shows we are alive.
      sendToSupervisor({ kind: "pong", id: m.id });
      return;
    }
    if (m.kind === "fence" && !loaded) {
      fencedTerm = Math.max(fencedTerm, m.term);
      sendToSupervisor({ kind: "fenced", id: m.id, term: fencedTerm, lastIndex: -1, lastTerm: -1 });
      return;
    }
    inbox = inbox.then(() => loadedSignal).then(() => onMessage(m)).catch((e) => {
      log.error(`supervisor message failed: ${(e as Error).stack ?? e}`);
      Deno.exit(exitRoleFailed);
    });
  }, () => {
    log.info("supervisor gone, exiting");
    Deno.exit(0);
  });

  let state: ReplicaState;
  try {
    state = await ReplicaState.open(
      walPath(opts.dataDir, self.id),
      log,
      commitHintPath(opts.dataDir, self.id),
      {},
      {
        path: snapshotPath(opts.dataDir, self.id),
        policy: snapshotPolicy(opts.snapshotEntries, opts.snapshotWalBytes),
      },
    );
  } catch (e) {
    // Damaged files need an operator; anything else (a full disk while the
    // torn tail is cut, too many open files, an I/O error) may pass, so the
    // supervisor restarts us with backoff.
    const damaged = e instanceof WalDamagedError || e instanceof SnapshotDamagedError;
    log.error(
      `cannot load the node's data${damaged ? "" : " (will retry)"}: ${(e as Error).message}`,
    );
    return damaged ? exitWalDamaged : exitRoleFailed;
  }
  // Snapshots bound the WAL and the in-memory log; each node takes its own.
  setInterval(() => state.maybeSnapshot(performance.now()), snapshotCheckIntervalMs);

  // Reads from our own copy are bounded in staleness (--max-staleness-ms).
  // A recent enough contact time in a trusted commit hint lets a quick
  // restart go on serving them; the monotonic clock takes over from there.
  const contact = LeaderContact.fromEpochMs(
    self.id,
    opts.maxStalenessMs,
    state.hintLeaderContactEpochMs,
    Date.now(),
    performance.now(),
  );
  /** True once this node, leading, knows all earlier leaders' commits. */
  let leaderCaughtUp = (): boolean => false;
  /** The monotonic time now, after noting that a caught-up leader is current. */
  const contactNowMs = (): number => {
    const nowMs = performance.now();
    if (leaderCaughtUp()) contact.caughtUp(nowMs);
    return nowMs;
  };

  let follower: FollowerRole | null = null;
  let leader: LeaderRole | null = null;
  let clientHandler: CommandHandler = () => new Uint8Array();
  let readHandler: CommandHandler = clientHandler;

  const lead = (term: number): void => {
    const peerIds = opts.cluster.nodes.map((n) => n.id as number).filter((id) => id !== self.id);
    leader = new LeaderRole(term, self, peerIds, state, log, opts.auth);
    // The constructor appended our term's first entry: once it is committed,
    // so is everything earlier leaders committed (Raft §5.4.2), and our copy
    // is current for as long as we lead. Until then, what we knew as a
    // follower still counts, within the bound.
    const termStartIndex = state.log.lastIndex;
    leaderCaughtUp = () => state.commitIndex >= termStartIndex;
    const withContact = (data: DataCommands): DataCommands => ({
      ...data,
      info: () => [...data.info(), ...contact.infoLines(contactNowMs())],
    });
    const readData = leader.readData;
    clientHandler = makeCommandHandler(withContact(leader.data));
    readHandler = makeCommandHandler(withContact({
      ...readData,
      get: (key, ctx) => contact.staleReply(contactNowMs()) ?? readData.get(key, ctx),
    }));
    try {
      const repl = Deno.listen({ hostname: self.listenHost, port: self.replicationPort });
      log.info(`${self.host} ${self.clientPort} term ${term}`);
      log.info(`Leader: listening clients on ${self.clientPort}`);
      log.info(`Leader: listening followers on ${self.replicationPort}`);
      const l = leader;
      let links = 0;
      acceptLoop(
        repl,
        (conn) => {
          // Only peers follow us; a flood of other connections is refused
          // before it can use up file descriptors.
          if (links >= 4 * peerIds.length) {
            try {
              conn.close();
            } catch {
              // already closed
            }
            return;
          }
          links++;
          l.serveFollower(conn).finally(() => links--);
        },
        log,
        "replication",
      );
    } catch (e) {
      log.error(
        `cannot listen on replication port ${self.replicationPort}: ${(e as Error).message}`,
      );
      Deno.exit(exitCannotListen);
    }
    setInterval(() => leader?.tick(Date.now()), 10);
  };

  if (startAs === "leader") {
    if (opts.term! < fencedTerm) {
      log.warn(`not leading term ${opts.term}: already fenced at ${fencedTerm}`);
      return 0;
    }
    lead(opts.term!);
  } else {
    follower = new FollowerRole(opts, state, log, contact);
    clientHandler = makeCommandHandler(follower.clientData);
    readHandler = makeCommandHandler(follower.readData);
  }

  // Supervisor messages are handled in arrival order; a promotion waits for
  // the follower to stop appending before the leader takes over the log.
  onMessage = async (m: ToRole): Promise<void> => {
    const position = () => (leader ?? follower)!.position;
    switch (m.kind) {
      case "fence": {
        fencedTerm = Math.max(fencedTerm, m.term);
        const myLeaderTerm = leader?.term;
        if (myLeaderTerm !== undefined) {
          sendToSupervisor({ kind: "fenced", id: m.id, term: fencedTerm, ...position() });
          // A leader lives for exactly one term: once fenced above it, stop at
          // once, before this event loop could acknowledge anything else.
          if (m.term > myLeaderTerm) {
            log.info(`fenced at term ${m.term}, leaving the leader role of term ${myLeaderTerm}`);
            Deno.exit(0);
          }
          return;
        }
        follower!.fence(m.term);
        sendToSupervisor({ kind: "fenced", id: m.id, term: fencedTerm, ...position() });
        return;
      }
      case "leader":
        follower?.setLeader(m.term, m.leaderId);
        return;
      case "ping":
        return; // answered on arrival
      case "lead": {
        if (leader !== null || follower === null) return;
        if (m.term < fencedTerm) {
          log.warn(`ignoring promotion to term ${m.term}: already fenced at ${fencedTerm}`);
          return;
        }
        await follower.quiesce();
        follower = null;
        log = logger(node, "Leader");
        state.useLog(log);
        lead(m.term);
        sendToSupervisor({ kind: "ready", ...position() });
        return;
      }
    }
  };
  follower?.fence(fencedTerm);
  setInterval(
    () => state.saveCommitHint(contact.epochMs(contactNowMs(), Date.now())),
    commitHintIntervalMs,
  );
  loaded = true;
  markLoaded();

  for (
    const [what, port, handler] of [
      ["client", self.clientPort, (a, c) => clientHandler(a, c)],
      ["read", self.readPort, (a, c) => readHandler(a, c)],
    ] as const satisfies readonly (readonly [string, number, CommandHandler])[]
  ) {
    try {
      startRespServer(self.listenHost, port, handler, log, what);
    } catch (e) {
      log.error(
        `cannot listen on ${what} port ${self.listenHost}:${port}: ${(e as Error).message}`,
      );
      return exitCannotListen;
    }
  }
  log.info(`listening clients on ${self.clientPort}, reads on ${self.readPort}`);
  sendToSupervisor({ kind: "ready", ...(leader ?? follower)!.position });
  // Runs until fenced, signalled or orphaned; those paths exit the process.
  await new Promise(() => {});
  return 0;
}
