// Unit tests of the supervisor's durable step (src/node/supervisor.ts): an
// event whose term or vote cannot be written to the term/vote file (disk
// full) must leave no trace — no vote granted, no RequestVote sent, no term
// adopted — and the node must go on and take the same step once the file can
// be written again. Before, a failed write stopped the node for good.

import assert from "node:assert/strict";
import type { Log } from "../../../src/log.ts";
import {
  type ControlMessage,
  ElectionCore,
  type ElectionEffect,
} from "../../../src/raft/election.ts";
import { Prng } from "../../../src/raft/prng.ts";
import type { LogPosition } from "../../../src/raft/types.ts";
import type { TermState } from "../../../src/storage/term_file.ts";
import { DurableTermFile, stepDurably } from "../../../src/node/supervisor.ts";

const log0: LogPosition = { lastIndex: 0, lastTerm: 0 };
const path = "/data/node1.state";
const diskFull = () => new Error("No space left on device (os error 28)");

function makeCore(term = 3, votedFor: number | null = null, seed = 7): ElectionCore {
  return new ElectionCore(
    {
      id: 1,
      peers: [2, 3, 4],
      heartbeatIntervalTicks: 10,
      electionTimeoutTicksMin: 50,
      electionTimeoutTicksMax: 90,
    },
    { currentTerm: term, votedFor },
    new Prng(seed),
  );
}

/** A term/vote file in memory whose writes fail while `full` is set. */
class FakeDisk {
  durable: TermState;
  full = false;
  attempts: TermState[] = [];
  errors: string[] = [];
  infos: string[] = [];
  readonly file: DurableTermFile;

  constructor(initial: TermState) {
    this.durable = initial;
    const log: Log = {
      debug() {},
      info: (m) => this.infos.push(m),
      warn() {},
      error: (m) => this.errors.push(m),
    };
    this.file = new DurableTermFile(path, log, (_path, state) => {
      this.attempts.push(state);
      if (this.full) return Promise.reject(diskFull());
      this.durable = state;
      return Promise.resolve();
    });
  }
}

function sends(effects: readonly ElectionEffect[]): ControlMessage[] {
  return effects.flatMap((e) => e.kind === "send" ? [e.message] : []);
}

const voteRequest = (from: number, term: number, preVote = false): ControlMessage => ({
  kind: "RequestVote",
  from,
  term,
  lastLogIndex: 0,
  lastLogTerm: 0,
  preVote,
});

Deno.test("supervisor §5.2: a vote whose term file write fails is not granted, and the core is as before", async () => {
  const core = makeCore(3);
  const disk = new FakeDisk({ currentTerm: 3, votedFor: null });
  disk.full = true;
  const r = await stepDurably(
    core,
    (c) => c.step(voteRequest(2, 4), log0),
    disk.file,
    4,
    "RequestVote from node 2 (term 4)",
  );
  assert.equal(r, null);
  assert.deepEqual(disk.attempts, [{ currentTerm: 4, votedFor: 2 }]);
  assert.equal(core.currentTerm, 3);
  assert.equal(core.votedFor, null);
  assert.equal(core.role, "follower");
  assert.equal(disk.errors.length, 1);
  assert.match(disk.errors[0]!, /ignoring a RequestVote from node 2 \(term 4\)/);
  assert.match(disk.errors[0]!, /\/data\/node1\.state/);
  assert.match(disk.errors[0]!, /No space left on device/);
  assert.match(disk.errors[0]!, /staying in term 3/);

  // Space returns: the candidate's retry gets the vote, persisted first.
  disk.full = false;
  const ok = await stepDurably(core, (c) => c.step(voteRequest(2, 4), log0), disk.file, 4, "retry");
  assert.ok(ok !== null);
  assert.deepEqual(disk.durable, { currentTerm: 4, votedFor: 2 });
  assert.equal(ok.core.currentTerm, 4);
  assert.equal(ok.core.votedFor, 2);
  assert.deepEqual(sends(ok.effects), [
    { kind: "RequestVoteResponse", from: 1, term: 4, voteGranted: true, preVote: false },
  ]);
  // One write for the event, though it both adopts the term and votes.
  assert.equal(disk.attempts.length, 2);
  assert.equal(core.currentTerm, 3, "the old core is never stepped in place");
  assert.match(disk.infos[0]!, /wrote \/data\/node1\.state \(term 4\) after 1 failed writes/);
});

Deno.test("supervisor §5.2: a campaign whose term file write fails sends no RequestVote and starts no term", async () => {
  let core = makeCore(3);
  const disk = new FakeDisk({ currentTerm: 3, votedFor: null });
  // Time out into a pre-vote: no term change, nothing to write.
  for (let i = 0; i < 200 && core.role === "follower"; i++) {
    const r = await stepDurably(core, (c) => c.tick(log0), disk.file, 3, "timer tick");
    core = r!.core;
  }
  assert.equal(core.role, "pre-candidate");
  assert.equal(disk.attempts.length, 0);
  disk.full = true;
  const grant = (from: number): ControlMessage => ({
    kind: "RequestVoteResponse",
    from,
    term: 4,
    voteGranted: true,
    preVote: true,
  });
  // Two pre-votes make a quorum; the campaign would persist term 4 and a
  // vote for itself before asking for votes: it cannot, so nothing happens.
  core = (await stepDurably(core, (c) => c.step(grant(2), log0), disk.file, 4, "g2"))!.core;
  const failed = await stepDurably(core, (c) => c.step(grant(3), log0), disk.file, 4, "g3");
  assert.equal(failed, null);
  assert.deepEqual(disk.attempts, [{ currentTerm: 4, votedFor: 1 }]);
  assert.equal(core.currentTerm, 3);
  assert.equal(core.role, "pre-candidate");
  disk.full = false;
  const won = await stepDurably(core, (c) => c.step(grant(3), log0), disk.file, 4, "g3 again");
  assert.ok(won !== null);
  assert.deepEqual(disk.durable, { currentTerm: 4, votedFor: 1 });
  assert.equal(won.core.role, "candidate");
  assert.deepEqual(
    sends(won.effects).map((m) => [m.kind, m.term, m.kind === "RequestVote" && m.preVote]),
    [["RequestVote", 4, false], ["RequestVote", 4, false], ["RequestVote", 4, false]],
  );
});

Deno.test("supervisor §5.2: under random write failures the core never runs ahead of the term file, and no message carries an undurable term or vote", async () => {
  const rng = new Prng(20261204);
  let core = makeCore(0, null, 99);
  const disk = new FakeDisk({ currentTerm: 0, votedFor: null });
  let sent = 0;
  let granted = 0;
  for (let step = 0; step < 20_000; step++) {
    disk.full = rng.next() < 0.5;
    const from = rng.intBetween(2, 4);
    const term = Math.max(0, core.currentTerm + rng.intBetween(-1, 2));
    const roll = rng.next();
    const message: ControlMessage | null = roll < 0.6
      ? null
      : roll < 0.75
      ? voteRequest(from, term, rng.next() < 0.5)
      : roll < 0.9
      ? {
        kind: "RequestVoteResponse",
        from,
        term,
        voteGranted: rng.next() < 0.7,
        preVote: rng.next() < 0.5,
      }
      : { kind: "Heartbeat", from, term };
    const r = await stepDurably(
      core,
      (c) => message === null ? c.tick(log0) : c.step(message, log0),
      disk.file,
      Number.MAX_SAFE_INTEGER,
      "event",
    );
    if (r === null) continue;
    core = r.core;
    // What the core holds is what a restart would read back.
    assert.equal(core.currentTerm, disk.durable.currentTerm, `step ${step}`);
    assert.equal(core.votedFor, disk.durable.votedFor, `step ${step}`);
    for (const e of r.effects) {
      if (e.kind !== "send") continue;
      const m = e.message;
      sent++;
      if (m.kind === "RequestVote" && m.preVote) {
        // A pre-vote names the term we would campaign in, and promises nothing.
        assert.equal(m.term, disk.durable.currentTerm + 1, `step ${step}`);
      } else if (!(m.kind === "RequestVoteResponse" && m.preVote)) {
        // Anything else carries our own term, which must be durable.
        assert.ok(
          m.term <= disk.durable.currentTerm,
          `step ${step}: ${m.kind} with term ${m.term}, durable term ${disk.durable.currentTerm}`,
        );
      }
      if (m.kind === "RequestVoteResponse" && m.voteGranted && !m.preVote) {
        granted++;
        assert.deepEqual(disk.durable, { currentTerm: m.term, votedFor: e.to }, `step ${step}`);
      }
      if (m.kind === "RequestVote" && !m.preVote) {
        assert.deepEqual(disk.durable, { currentTerm: m.term, votedFor: 1 }, `step ${step}`);
      }
    }
  }
  assert.ok(sent > 1000 && granted > 10, `only ${sent} sends, ${granted} votes granted`);
});

Deno.test("supervisor: a term file that keeps failing is reported once every 5 s with a count, and its recovery once", async () => {
  let nowMs = 1_000_000;
  const errors: string[] = [];
  const infos: string[] = [];
  const log: Log = {
    debug() {},
    info: (m) => infos.push(m),
    warn() {},
    error: (m) => errors.push(m),
  };
  let full = true;
  const file = new DurableTermFile(
    path,
    log,
    () => full ? Promise.reject(diskFull()) : Promise.resolve(),
    () => nowMs,
  );
  const state = { currentTerm: 5, votedFor: null };
  for (let i = 0; i < 60; i++) {
    assert.equal(await file.write(state, "Heartbeat from node 2 (term 5)", 4), false);
    nowMs += 100; // a heartbeat every 100 ms
  }
  assert.equal(file.failures, 60);
  assert.equal(errors.length, 2, errors.join("\n"));
  assert.match(errors[1]!, /; 51 failed writes in 5000 ms$/);
  full = false;
  assert.equal(await file.write(state, "Heartbeat from node 2 (term 5)", 4), true);
  assert.equal(file.failures, 0);
  assert.deepEqual(infos, [
    "wrote /data/node1.state (term 5) after 60 failed writes over 6000 ms",
  ]);
});
