// The supervisor's side of its role process: starts the leader or follower
// role by re-executing this program, tells it who leads, fences it, restarts
// it after a crash with backoff, and reports a crash loop loudly.
//
//   none ──want──▶ starting ──ready──▶ running ──exit (unasked)──▶ backoff ──▶ starting
//                                         │
//                                         └──want other kind──▶ stopping ──exited──▶ starting
//
// Fencing is the safety hinge between the two processes: `fence(T)` returns
// only once the role process can no longer acknowledge anything of a term
// below T, either because it said so or because it is dead.

import { Buffer } from "node:buffer";
import { decodeWalLine, type WalRecord } from "../codec/wal_line.ts";
import {
  crashLoopCount,
  crashLoopWindowMs,
  fenceTimeoutMs,
  fenceTimeoutMsFollower,
  fenceTimeoutMsWhileStarting,
  restartBackoffMsMax,
  restartBackoffMsMin,
  rolePingIntervalMs,
  roleUnresponsiveMs,
} from "../config/timing.ts";
import type { Log } from "../log.ts";
import type { LogPosition } from "../raft/types.ts";
import { encodeIpc, exitWalDamaged, type FromRole, readIpc, type ToRole } from "./role_ipc.ts";
import { selfCommand } from "./self_exec.ts";
import { readSnapshotMeta } from "../storage/snapshot_file.ts";

export type RoleKind = "leader" | "follower";

/** How long a fenced leader role may take to exit (it does so right after
 * answering the fence, or once its WAL is loaded if it was still loading). */
const exitWaitMs = fenceTimeoutMsWhileStarting;

interface Child {
  /** A follower process becomes a leader in place when promoted. */
  kind: RoleKind;
  /** The role it was started as: a promoted follower that was fenced above
   * its promotion before it read it stays a follower and never exits. */
  readonly startedAs: RoleKind;
  term: number;
  readonly proc: Deno.ChildProcess;
  readonly writer: WritableStreamDefaultWriter<Uint8Array>;
  readonly exited: Promise<number>;
  stopping: boolean;
  done: boolean;
  /** Set by the role's first "ready": liveness is checked from then on (not
   * while it loads its WAL, which may keep its event loop busy for a while). */
  ready: boolean;
  lastPongMs: number;
}

export interface RoleEvents {
  /** The role process died without being asked to (kind says which it was). */
  onUnexpectedExit(kind: RoleKind, code: number): void;
  onHigherTerm(term: number): void;
  /** The role cannot start for a reason restarts will not fix (damaged WAL). */
  onFatal(reason: string): void;
}

/** Where a WAL file's log ends: its last whole, decodable line and the
 * newest TERM line at or before it. Looks only at the tail (plus a native
 * search for the TERM marker), so it stays fast for a large WAL; checking the
 * whole file for damage is the role process's job when it loads it. A torn
 * last line is skipped exactly as loading would cut it off. */
export async function readWalPosition(
  path: string,
  snapshotFile: string | null = null,
): Promise<LogPosition> {
  // After compaction the WAL continues the snapshot: the log ends where the
  // snapshot does if the WAL holds nothing past it, and the WAL's first lines
  // take the snapshot's term until a TERM line says otherwise.
  const snap = snapshotFile === null ? null : await readSnapshotMeta(snapshotFile);
  const base: LogPosition = snap === null
    ? { lastIndex: 0, lastTerm: 0 }
    : { lastIndex: snap.index, lastTerm: snap.term };
  const position = await readWalTail(path, base);
  return position.lastIndex > base.lastIndex ? position : base;
}

async function readWalTail(path: string, base: LogPosition): Promise<LogPosition> {
  let bytes: Uint8Array;
  try {
    bytes = await Deno.readFile(path);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return { lastIndex: 0, lastTerm: 0 };
    throw e;
  }
  const buf = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  // The last line ending in "\n" that decodes and is not all zero bytes.
  let end = buf.lastIndexOf(0x0a);
  let last: WalRecord | null = null;
  let lineStart = 0;
  for (let tries = 0; end >= 0 && tries < 2 && last === null; tries++) {
    lineStart = buf.lastIndexOf(0x0a, end - 1) + 1;
    const line = bytes.subarray(lineStart, end);
    const decoded = line.every((b) => b === 0) ? null : decodeWalLine(line);
    if (decoded?.ok) last = decoded.record;
    else end = lineStart - 1;
  }
  if (last === null) {
    if (end < 0) return { lastIndex: 0, lastTerm: 0 };
    throw new Error(`WAL file "${path}" ends in lines that do not decode`);
  }
  if (last.op === "TERM") return { lastIndex: last.index, lastTerm: last.term };
  // Newest "<seq>\tTERM\t<term>" line before it ("\tTERM\t" can also be a
  // SET of the key TERM, so check that a seq starts the line).
  for (
    let at = buf.lastIndexOf(termMarker, lineStart);
    at > 0;
    at = buf.lastIndexOf(termMarker, at - 1)
  ) {
    const start = buf.lastIndexOf(0x0a, at - 1) + 1;
    if (!/^\d+$/.test(buf.toString("latin1", start, at))) continue;
    const stop = buf.indexOf(0x0a, at);
    const term = Number(buf.toString("latin1", at + termMarker.length, stop));
    if (Number.isSafeInteger(term)) return { lastIndex: last.index, lastTerm: term };
  }
  if (last.index <= base.lastIndex) return base;
  if (base.lastIndex > 0) return { lastIndex: last.index, lastTerm: base.lastTerm };
  // A compacted WAL (no TERM line of its own) read without its snapshot.
  const first = decodeWalLine(bytes.subarray(0, Math.max(0, buf.indexOf(0x0a))));
  if (first.ok && first.record.index > 1) {
    throw new Error(
      `WAL file "${path}" starts at seq ${first.record.index} (after a compaction) but there ` +
        `is no snapshot beside it: entries 1 to ${first.record.index - 1} are missing`,
    );
  }
  throw new Error(`WAL file "${path}" has entries but no TERM line before them`);
}

const termMarker = Buffer.from("\tTERM\t", "latin1");

export class RoleManager {
  readonly #baseArgs: string[];
  readonly #walPath: string;
  readonly #snapshotPath: string | null;
  readonly #log: Log;
  readonly #events: RoleEvents;
  #child: Child | null = null;
  #want: { kind: RoleKind; term: number; leaderId: number | null } | null = null;
  /** Serializes starts, stops and fences. */
  #ops: Promise<void> = Promise.resolve();
  #fenceSeq = 0;
  #fenceWaiters = new Map<number, (m: Extract<FromRole, { kind: "fenced" }>) => void>();
  /** Highest term the current (or last) role process is fenced at. */
  #fencedTerm = 0;
  #crashTimesMs: number[] = [];
  #backoffMs = restartBackoffMsMin;
  #lastPosition: LogPosition = { lastIndex: 0, lastTerm: 0 };
  #shuttingDown = false;
  #restartTimer: ReturnType<typeof setTimeout> | null = null;

  #pingTimer: ReturnType<typeof setInterval>;
  #pingSeq = 0;

  constructor(
    baseArgs: string[],
    walPath: string,
    log: Log,
    events: RoleEvents,
    snapshotPath: string | null = null,
  ) {
    this.#baseArgs = baseArgs;
    this.#walPath = walPath;
    this.#snapshotPath = snapshotPath;
    this.#log = log;
    this.#events = events;
    this.#pingTimer = setInterval(() => this.#checkLiveness(Date.now()), rolePingIntervalMs);
  }

  #lastCheckMs = 0;

  #checkLiveness(nowMs: number): void {
    const sinceLastCheckMs = nowMs - this.#lastCheckMs;
    this.#lastCheckMs = nowMs;
    const child = this.#child;
    if (child === null || child.done || child.stopping || !child.ready) return;
    if (sinceLastCheckMs > 2 * rolePingIntervalMs) {
      // We were the one stalled (paused, starved of CPU): pongs may be waiting
      // unread in the pipe. Judge the role only on time we were awake.
      child.lastPongMs = nowMs;
    }
    const silentMs = nowMs - child.lastPongMs;
    if (silentMs > roleUnresponsiveMs) {
      this.#log.warn(
        `${child.kind} role process pid ${child.proc.pid} has not answered for ${silentMs} ms; killing it`,
      );
      try {
        child.proc.kill("SIGKILL"); // its exit is handled like a crash
      } catch {
        // already gone
      }
      return;
    }
    this.#send(child, { kind: "ping", id: ++this.#pingSeq });
  }

  get fencedTerm(): number {
    return this.#fencedTerm;
  }

  get runningKind(): RoleKind | null {
    return this.#child && !this.#child.done ? this.#child.kind : null;
  }

  /** Where the node's log ends, read from the WAL file (role not running). */
  diskPosition(): Promise<LogPosition> {
    return readWalPosition(this.#walPath, this.#snapshotPath);
  }

  /** Declares which role should run; starts, stops or informs as needed. */
  want(kind: RoleKind, term: number, leaderId: number | null): void {
    this.#want = { kind, term, leaderId };
    this.#enqueue(() => this.#reconcile());
  }

  /** Returns once the role can no longer acknowledge anything below `term`,
   * with where the log ends at that moment. */
  fence(term: number): Promise<LogPosition> {
    let result: LogPosition = this.#lastPosition;
    const done = this.#enqueue(async () => {
      result = await this.#fenceNow(term);
    });
    return done.then(() => result);
  }

  async stop(): Promise<void> {
    this.#shuttingDown = true;
    clearInterval(this.#pingTimer);
    if (this.#restartTimer !== null) clearTimeout(this.#restartTimer);
    await this.#enqueue(() => this.#stopChild("SIGTERM"));
  }

  #enqueue(op: () => Promise<void>): Promise<void> {
    const next = this.#ops.then(op, op);
    this.#ops = next.catch((e) => this.#log.error(`role manager: ${(e as Error).message}`));
    return next;
  }

  async #fenceNow(term: number): Promise<LogPosition> {
    this.#fencedTerm = Math.max(this.#fencedTerm, term);
    const child = this.#child;
    if (child === null || child.done) {
      this.#lastPosition = await this.diskPosition();
      return this.#lastPosition;
    }
    const id = ++this.#fenceSeq;
    const timeoutMs = !child.ready
      ? fenceTimeoutMsWhileStarting
      : child.kind === "follower"
      ? fenceTimeoutMsFollower
      : fenceTimeoutMs;
    let timer: ReturnType<typeof setTimeout> | undefined;
    const reply = new Promise<Extract<FromRole, { kind: "fenced" }> | null>((resolve) => {
      this.#fenceWaiters.set(id, resolve);
      timer = setTimeout(() => resolve(null), timeoutMs);
      child.exited.then(() => resolve(null));
    });
    this.#send(child, { kind: "fence", id, term });
    const r = await reply;
    clearTimeout(timer);
    this.#fenceWaiters.delete(id);
    if (r !== null) {
      if (child.kind === "leader" && term > child.term) {
        if (r.lastIndex < 0 && child.startedAs === "follower") {
          // Promoted in place while still loading its WAL: the "lead" message
          // waits behind the load, and the role will refuse it (it is fenced
          // above that term now) and go on as a follower. Nothing will exit.
          child.kind = "follower";
          this.#log.info(
            `role process pid ${child.proc.pid} was fenced at term ${term} before it ` +
              `read its promotion to term ${child.term}; it stays a follower`,
          );
        } else {
          // A leader lives for one term; it exits after answering. Wait, so
          // its ports are free for the follower role that comes next, but not
          // forever: a role that does not go must not wedge the supervisor.
          child.stopping = true;
          let timer: ReturnType<typeof setTimeout> | undefined;
          const gone = await Promise.race([
            child.exited.then(() => true),
            new Promise<false>((res) => (timer = setTimeout(() => res(false), exitWaitMs))),
          ]);
          clearTimeout(timer);
          if (!gone) {
            this.#log.warn(
              `fenced leader role pid ${child.proc.pid} did not exit in ${exitWaitMs} ms, killing it`,
            );
            await this.#stopChild("SIGKILL");
          }
        }
      }
      // -1: the role is still loading the WAL and has acknowledged nothing, so
      // the file says exactly where the log ends.
      this.#lastPosition = r.lastIndex < 0
        ? await this.diskPosition()
        : { lastIndex: r.lastIndex, lastTerm: r.lastTerm };
      return this.#lastPosition;
    }
    if (!child.done) {
      this.#log.warn(`role process did not confirm the fence in ${timeoutMs} ms, killing it`);
      await this.#stopChild("SIGKILL");
    }
    this.#lastPosition = await this.diskPosition();
    return this.#lastPosition;
  }

  async #reconcile(): Promise<void> {
    const want = this.#want;
    if (want === null || this.#shuttingDown) return;
    const child = this.#child;
    if (child !== null && !child.done) {
      if (child.kind === want.kind && (want.kind === "follower" || child.term === want.term)) {
        if (want.kind === "follower") {
          this.#send(child, { kind: "leader", term: want.term, leaderId: want.leaderId });
        }
        return;
      }
      if (child.kind === "follower" && want.kind === "leader" && this.#fencedTerm <= want.term) {
        // Promote in place: the follower already holds the log in memory.
        child.kind = "leader";
        child.term = want.term;
        this.#send(child, { kind: "lead", term: want.term });
        this.#log.info(
          `promoting role process pid ${child.proc.pid} to leader for term ${want.term}`,
        );
        return;
      }
      await this.#stopChild("SIGTERM");
    }
    if (this.#restartTimer !== null) return; // a backoff restart is pending
    this.#start(want.kind, want.term, want.leaderId);
  }

  #start(kind: RoleKind, term: number, leaderId: number | null): void {
    const args = [kind, ...this.#baseArgs];
    if (kind === "leader") args.push("--term", String(term));
    const { cmd, args: full } = selfCommand(args);
    const proc = new Deno.Command(cmd, {
      args: full,
      stdin: "piped",
      stdout: "piped",
      stderr: "inherit",
    }).spawn();
    const writer = proc.stdin.getWriter();
    const child: Child = {
      kind,
      term,
      proc,
      writer,
      exited: proc.status.then((s) => s.code),
      startedAs: kind,
      stopping: false,
      done: false,
      ready: false,
      lastPongMs: 0,
    };
    this.#child = child;
    this.#log.info(
      `started ${kind} role process pid ${proc.pid}${kind === "leader" ? ` for term ${term}` : ""}`,
    );
    if (kind === "follower") {
      // Fence the new process at the term we are already in before anything else.
      this.#send(child, { kind: "fence", id: 0, term: Math.max(term, this.#fencedTerm) });
      this.#send(child, { kind: "leader", term, leaderId });
    }
    this.#readFrom(child);
    child.exited.then((code) => this.#onExit(child, code));
  }

  async #readFrom(child: Child): Promise<void> {
    try {
      for await (const item of readIpc(child.proc.stdout)) {
        if (!item.ok) {
          this.#log.warn(
            `role process wrote a malformed line: ${JSON.stringify(item.line.slice(0, 80))}`,
          );
          continue;
        }
        const m = item.value as FromRole;
        if (m.kind === "fenced") this.#fenceWaiters.get(m.id)?.(m);
        else if (m.kind === "higherTerm") this.#events.onHigherTerm(m.term);
        else if (m.kind === "pong") child.lastPongMs = Date.now();
        else if (m.kind === "ready") {
          this.#lastPosition = { lastIndex: m.lastIndex, lastTerm: m.lastTerm };
          child.ready = true;
          child.lastPongMs = Date.now();
        }
      }
    } catch {
      // pipe closed with the process
    }
  }

  #send(child: Child, m: ToRole): void {
    if (child.done) return;
    child.writer.write(encodeIpc(m)).catch(() => {});
  }

  async #stopChild(signal: "SIGTERM" | "SIGKILL"): Promise<void> {
    const child = this.#child;
    if (child === null || child.done) return;
    child.stopping = true;
    try {
      child.proc.kill(signal);
    } catch {
      // already gone
    }
    const timer = setTimeout(() => {
      try {
        child.proc.kill("SIGKILL");
      } catch {
        // already gone
      }
    }, 2000);
    await child.exited;
    clearTimeout(timer);
  }

  #onExit(child: Child, code: number): void {
    child.done = true;
    child.writer.close().catch(() => {});
    if (this.#child !== child) return;
    if (child.stopping || this.#shuttingDown) {
      this.#log.info(`${child.kind} role process pid ${child.proc.pid} exited (${code})`);
      return;
    }
    this.#log.warn(`${child.kind} role process pid ${child.proc.pid} died with code ${code}`);
    if (code === exitWalDamaged) {
      this.#events.onFatal(
        `the ${child.kind} role cannot load the WAL ${this.#walPath} or the snapshot beside it`,
      );
      return;
    }
    const now = Date.now();
    this.#crashTimesMs = this.#crashTimesMs.filter((t) => now - t < crashLoopWindowMs);
    this.#crashTimesMs.push(now);
    if (this.#crashTimesMs.length >= crashLoopCount) {
      this.#backoffMs = Math.min(this.#backoffMs * 2, restartBackoffMsMax);
      this.#log.error(
        `CRASH LOOP: role process died ${this.#crashTimesMs.length} times in ${
          crashLoopWindowMs / 1000
        } s; restarting with ${this.#backoffMs} ms backoff`,
      );
    } else {
      this.#backoffMs = restartBackoffMsMin;
    }
    this.#events.onUnexpectedExit(child.kind, code);
    this.#restartTimer = setTimeout(() => {
      this.#restartTimer = null;
      this.#enqueue(() => this.#reconcile());
    }, this.#backoffMs);
  }
}
