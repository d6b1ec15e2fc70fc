// Unit tests of src/raft/election.ts: pre-vote, votes, heartbeats, check-quorum, safety simulation.

import assert from "node:assert/strict";
import {
  type ControlMessage,
  type ElectionConfig,
  ElectionCore,
  type ElectionEffect,
} from "../../../src/raft/election.ts";
import { Prng } from "../../../src/raft/prng.ts";
import { InvariantError, type LogPosition, type Term } from "../../../src/raft/types.ts";

const heartbeatIntervalTicks = 10;
const electionTimeoutTicksMin = 50;
const electionTimeoutTicksMax = 90;

const emptyLog: LogPosition = { lastIndex: 0, lastTerm: 0 };

function configFor(id: number, peers: readonly number[]): ElectionConfig {
  return {
    id,
    peers,
    heartbeatIntervalTicks,
    electionTimeoutTicksMin,
    electionTimeoutTicksMax,
  };
}

interface CoreOptions {
  readonly id?: number;
  readonly peers?: readonly number[];
  readonly term?: Term;
  readonly votedFor?: number | null;
  readonly seed?: number;
}

function makeCore(o: CoreOptions = {}): ElectionCore {
  const id = o.id ?? 1;
  const peers = o.peers ?? [1, 2, 3, 4].filter((p) => p !== id);
  return new ElectionCore(
    configFor(id, peers),
    { currentTerm: o.term ?? 0, votedFor: o.votedFor ?? null },
    new Prng(o.seed ?? 42),
  );
}

type Send = Extract<ElectionEffect, { kind: "send" }>;
type Persist = Extract<ElectionEffect, { kind: "persist" }>;
type VoteRequest = Extract<ControlMessage, { kind: "RequestVote" }>;
type VoteResponse = Extract<ControlMessage, { kind: "RequestVoteResponse" }>;

function sendsOf(effects: readonly ElectionEffect[]): Send[] {
  return effects.filter((e): e is Send => e.kind === "send");
}

function persistsOf(effects: readonly ElectionEffect[]): Persist[] {
  return effects.filter((e): e is Persist => e.kind === "persist");
}

function kinds(effects: readonly ElectionEffect[]): string[] {
  return effects.map((e) => e.kind);
}

function voteRequests(effects: readonly ElectionEffect[]): VoteRequest[] {
  return sendsOf(effects).flatMap((s) => s.message.kind === "RequestVote" ? [s.message] : []);
}

/** The single RequestVoteResponse among `effects`, and whom it goes to. */
function onlyVoteResponse(effects: readonly ElectionEffect[]): VoteResponse & { to: number } {
  const found = sendsOf(effects).flatMap((s) =>
    s.message.kind === "RequestVoteResponse" ? [{ ...s.message, to: s.to }] : []
  );
  assert.equal(found.length, 1, `expected one vote response in ${JSON.stringify(effects)}`);
  return found[0]!;
}

/** Ticks until an effect list satisfies `done`; returns it and the ticks taken. */
function tickUntil(
  core: ElectionCore,
  done: (effects: ElectionEffect[]) => boolean,
  limitTicks: number,
  log: LogPosition = emptyLog,
): { effects: ElectionEffect[]; ticks: number } {
  for (let ticks = 1; ticks <= limitTicks; ticks++) {
    const effects = core.tick(log);
    if (done(effects)) return { effects, ticks };
  }
  throw new Error(`Nothing happened within ${limitTicks} ticks`);
}

/** Drives a follower until it asks for pre-votes; returns that tick's effects. */
function startPreVote(core: ElectionCore, log: LogPosition = emptyLog): ElectionEffect[] {
  return tickUntil(core, (e) => voteRequests(e).length > 0, 10 * electionTimeoutTicksMax, log)
    .effects;
}

function preVoteGrant(from: number, term: Term): ControlMessage {
  return { kind: "RequestVoteResponse", from, term, voteGranted: true, preVote: true };
}

function voteGrant(from: number, term: Term): ControlMessage {
  return { kind: "RequestVoteResponse", from, term, voteGranted: true, preVote: false };
}

function requestVote(
  from: number,
  term: Term,
  log: LogPosition,
  preVote = false,
): ControlMessage {
  return {
    kind: "RequestVote",
    from,
    term,
    lastLogIndex: log.lastIndex,
    lastLogTerm: log.lastTerm,
    preVote,
  };
}

/** Pre-vote, then a quorum of pre-votes: returns the effects of the real campaign. */
function startCampaign(core: ElectionCore, log: LogPosition = emptyLog): ElectionEffect[] {
  startPreVote(core, log);
  const prospective = core.currentTerm + 1;
  core.step(preVoteGrant(2, prospective), log);
  const effects = core.step(preVoteGrant(3, prospective), log);
  assert.equal(core.role, "candidate");
  return effects;
}

function makeLeader(core: ElectionCore): ElectionEffect[] {
  startCampaign(core);
  core.step(voteGrant(2, core.currentTerm), emptyLog);
  const effects = core.step(voteGrant(3, core.currentTerm), emptyLog);
  assert.equal(core.role, "leader");
  return effects;
}

// ---------------------------------------------------------------- timing

Deno.test("election timeout §5.2: a follower asks for pre-votes between the min and max timeout", () => {
  for (let seed = 1; seed <= 50; seed++) {
    const core = makeCore({ seed });
    const { ticks } = tickUntil(core, (e) => voteRequests(e).length > 0, 1000);
    assert.ok(
      ticks >= electionTimeoutTicksMin && ticks <= electionTimeoutTicksMax,
      `seed ${seed}: campaigned after ${ticks} ticks`,
    );
  }
});

Deno.test("election timeout §5.2: the timeout is randomized across seeds", () => {
  const seen = new Set<number>();
  for (let seed = 1; seed <= 30; seed++) {
    seen.add(tickUntil(makeCore({ seed }), (e) => voteRequests(e).length > 0, 1000).ticks);
  }
  assert.ok(seen.size > 5, `only ${seen.size} distinct timeouts over 30 seeds`);
});

Deno.test("the constructor refuses an election timeout not above the heartbeat interval", () => {
  assert.throws(
    () =>
      new ElectionCore(
        { ...configFor(1, [2, 3, 4]), electionTimeoutTicksMin: heartbeatIntervalTicks },
        { currentTerm: 0, votedFor: null },
        new Prng(1),
      ),
    InvariantError,
  );
});

Deno.test("the constructor refuses a node listed as its own peer", () => {
  assert.throws(
    () =>
      new ElectionCore(configFor(1, [1, 2, 3]), { currentTerm: 0, votedFor: null }, new Prng(1)),
    InvariantError,
  );
});

Deno.test("quorum of 4 needs 3", () => {
  assert.equal(makeCore().quorum, 3);
  assert.equal(makeCore({ peers: [] }).quorum, 1);
  assert.equal(makeCore({ peers: [2, 3] }).quorum, 2);
});

// ---------------------------------------------------------------- pre-vote

Deno.test("pre-vote (thesis §9.6): asking for pre-votes neither raises the term nor persists", () => {
  const log = { lastIndex: 7, lastTerm: 2 };
  const core = makeCore({ term: 4, votedFor: 3 });
  const effects = startPreVote(core, log);
  assert.deepEqual(persistsOf(effects), []);
  assert.equal(core.currentTerm, 4);
  assert.equal(core.votedFor, 3);
  assert.equal(core.role, "pre-candidate");
  const requests = sendsOf(effects);
  assert.deepEqual(requests.map((s) => s.to).sort(), [2, 3, 4]);
  for (const s of requests) {
    assert.deepEqual(s.message, {
      kind: "RequestVote",
      from: 1,
      term: 5,
      lastLogIndex: 7,
      lastLogTerm: 2,
      preVote: true,
    });
  }
});

Deno.test("pre-vote (thesis §9.6): granting a pre-vote changes neither the voter's term nor its vote", () => {
  const voter = makeCore({ id: 2, term: 4, votedFor: null });
  const effects = voter.step(requestVote(1, 5, emptyLog, true), emptyLog);
  assert.deepEqual(persistsOf(effects), []);
  assert.equal(voter.currentTerm, 4);
  assert.equal(voter.votedFor, null);
  assert.equal(voter.role, "follower");
  const response = onlyVoteResponse(effects);
  assert.deepEqual(response, {
    kind: "RequestVoteResponse",
    from: 2,
    term: 5,
    voteGranted: true,
    preVote: true,
    to: 1,
  });
});

Deno.test("pre-vote: one granted pre-vote of 4 nodes is not a quorum; the second starts the real campaign", () => {
  const core = makeCore();
  startPreVote(core);
  const first = core.step(preVoteGrant(2, 1), emptyLog);
  assert.deepEqual(first, []);
  assert.equal(core.role, "pre-candidate");
  assert.equal(core.step(preVoteGrant(2, 1), emptyLog).length, 0, "a repeated grant counts once");
  assert.equal(core.role, "pre-candidate");
  core.step(preVoteGrant(3, 1), emptyLog);
  assert.equal(core.role, "candidate");
  assert.equal(core.currentTerm, 1);
});

Deno.test("pre-vote: a granted pre-vote for a different prospective term is ignored", () => {
  const core = makeCore({ term: 3 });
  startPreVote(core);
  core.step(preVoteGrant(2, 9), emptyLog);
  core.step(preVoteGrant(3, 9), emptyLog);
  assert.equal(core.role, "pre-candidate");
  assert.equal(core.currentTerm, 3);
});

Deno.test("pre-vote §5.4.1: refuses a pre-candidate whose log is less up to date", () => {
  const voterLog = { lastIndex: 5, lastTerm: 3 };
  const voter = makeCore({ id: 2, term: 3 });
  const older = voter.step(requestVote(1, 4, { lastIndex: 9, lastTerm: 2 }, true), voterLog);
  assert.equal(onlyVoteResponse(older).voteGranted, false);
  const shorter = voter.step(requestVote(1, 4, { lastIndex: 4, lastTerm: 3 }, true), voterLog);
  assert.equal(onlyVoteResponse(shorter).voteGranted, false);
  const equal = voter.step(requestVote(1, 4, voterLog, true), voterLog);
  assert.equal(onlyVoteResponse(equal).voteGranted, true);
});

Deno.test("pre-vote: refuses a prospective term that is not above the voter's term", () => {
  const voter = makeCore({ id: 2, term: 5 });
  const effects = voter.step(requestVote(1, 5, emptyLog, true), emptyLog);
  const response = onlyVoteResponse(effects);
  assert.equal(response.voteGranted, false);
  assert.equal(response.term, 5);
});

Deno.test("pre-vote: a follower that heard from its leader recently refuses pre-votes", () => {
  const follower = makeCore({ id: 3, term: 2 });
  follower.step({ kind: "Heartbeat", from: 1, term: 2 }, emptyLog);
  for (let i = 0; i < electionTimeoutTicksMin - 1; i++) follower.tick(emptyLog);
  const effects = follower.step(requestVote(2, 3, emptyLog, true), emptyLog);
  const response = onlyVoteResponse(effects);
  assert.equal(response.voteGranted, false);
  assert.equal(response.term, 2, "a refusal carries the voter's real term");
  assert.equal(follower.leaderId, 1);
  assert.equal(follower.currentTerm, 2);
});

Deno.test("pre-vote: a follower with no known leader grants pre-votes", () => {
  const follower = makeCore({ id: 3, term: 2 });
  const response = onlyVoteResponse(follower.step(requestVote(2, 3, emptyLog, true), emptyLog));
  assert.equal(response.voteGranted, true);
});

Deno.test("pre-vote: a leader refuses pre-votes", () => {
  const leader = makeCore();
  makeLeader(leader);
  const term = leader.currentTerm;
  const effects = leader.step(requestVote(4, term + 1, emptyLog, true), emptyLog);
  assert.equal(onlyVoteResponse(effects).voteGranted, false);
  assert.equal(leader.role, "leader");
  assert.equal(leader.currentTerm, term);
});

Deno.test("pre-vote: a refused pre-vote response never raises the candidate's term beyond the responder's real term", () => {
  // The responder is at the candidate's own term: the refusal says so, and
  // the candidate's term stays put (the prospective term is never adopted).
  const candidate = makeCore({ term: 3 });
  startPreVote(candidate);
  const responder = makeCore({ id: 2, term: 3 });
  responder.step({ kind: "Heartbeat", from: 4, term: 3 }, emptyLog);
  const refusal = onlyVoteResponse(responder.step(requestVote(1, 4, emptyLog, true), emptyLog));
  assert.equal(refusal.voteGranted, false);
  assert.equal(refusal.term, 3);
  const effects = candidate.step(refusal, emptyLog);
  assert.deepEqual(persistsOf(effects), []);
  assert.equal(candidate.currentTerm, 3);

  // A responder ahead of us at term 5: we learn 5, not 6.
  const behind = makeCore({ term: 3 });
  startPreVote(behind);
  const ahead = makeCore({ id: 2, term: 5 });
  const refusal5 = onlyVoteResponse(ahead.step(requestVote(1, 4, emptyLog, true), emptyLog));
  assert.equal(refusal5.term, 5);
  const learned = behind.step(refusal5, emptyLog);
  assert.deepEqual(persistsOf(learned), [{ kind: "persist", term: 5, votedFor: null }]);
  assert.equal(behind.currentTerm, 5);
  assert.equal(behind.role, "follower");

  // A granted pre-vote carries the prospective term and must not be adopted either.
  const granted = makeCore({ term: 3 });
  startPreVote(granted);
  const grantEffects = granted.step(preVoteGrant(2, 4), emptyLog);
  assert.deepEqual(persistsOf(grantEffects), []);
  assert.equal(granted.currentTerm, 3);
});

// ---------------------------------------------------------------- campaign and votes

Deno.test("RequestVote §5.2: a real campaign persists term and self-vote before any RequestVote is sent", () => {
  const log = { lastIndex: 2, lastTerm: 1 };
  const core = makeCore({ term: 1 });
  const effects = startCampaign(core, log);
  const persistAt = effects.findIndex((e) => e.kind === "persist");
  const firstSendAt = effects.findIndex((e) => e.kind === "send");
  assert.ok(persistAt >= 0, "the campaign persists");
  assert.ok(firstSendAt > persistAt, `persist must precede send: ${kinds(effects)}`);
  assert.deepEqual(effects[persistAt], { kind: "persist", term: 2, votedFor: 1 });
  assert.equal(core.currentTerm, 2);
  assert.equal(core.votedFor, 1);
  const requests = voteRequests(effects);
  assert.deepEqual(requests.map((r) => r.term), [2, 2, 2]);
  assert.ok(requests.every((r) => !r.preVote && r.lastLogIndex === 2 && r.lastLogTerm === 1));
  assert.deepEqual(sendsOf(effects).map((s) => s.to).sort(), [2, 3, 4]);
});

Deno.test("RequestVote §5.2: the vote is persisted before the granting response is sent", () => {
  const voter = makeCore({ id: 2, term: 1 });
  const effects = voter.step(requestVote(1, 1, emptyLog), emptyLog);
  assert.deepEqual(kinds(effects).slice(0, 2), ["persist", "send"]);
  assert.deepEqual(effects[0], { kind: "persist", term: 1, votedFor: 1 });
  assert.equal(onlyVoteResponse(effects).voteGranted, true);
  assert.equal(voter.votedFor, 1);
});

Deno.test("RequestVote §5.2: a node grants at most one vote per term", () => {
  const voter = makeCore({ id: 4, term: 1 });
  assert.equal(
    onlyVoteResponse(voter.step(requestVote(1, 1, emptyLog), emptyLog)).voteGranted,
    true,
  );
  const second = voter.step(requestVote(2, 1, emptyLog), emptyLog);
  assert.equal(onlyVoteResponse(second).voteGranted, false);
  assert.deepEqual(persistsOf(second), []);
  assert.equal(voter.votedFor, 1);
  // A repeated request from the same candidate is granted again, with no new persist.
  const again = voter.step(requestVote(1, 1, emptyLog), emptyLog);
  assert.equal(onlyVoteResponse(again).voteGranted, true);
  assert.deepEqual(persistsOf(again), []);
});

Deno.test("RequestVote §5.2: a restarted node keeps the vote it persisted", () => {
  const voter = makeCore({ id: 2, term: 7, votedFor: 3 });
  assert.equal(
    onlyVoteResponse(voter.step(requestVote(4, 7, emptyLog), emptyLog)).voteGranted,
    false,
  );
  const same = voter.step(requestVote(3, 7, emptyLog), emptyLog);
  assert.equal(onlyVoteResponse(same).voteGranted, true);
  assert.deepEqual(persistsOf(same), []);
});

Deno.test("RequestVote §5.2: a candidate has voted for itself and refuses others in its term", () => {
  const core = makeCore();
  startCampaign(core);
  const effects = core.step(requestVote(2, core.currentTerm, emptyLog), emptyLog);
  assert.equal(onlyVoteResponse(effects).voteGranted, false);
  assert.equal(core.votedFor, 1);
});

Deno.test("RequestVote §5.4.1: refuses a candidate whose last log term is older", () => {
  const voterLog = { lastIndex: 3, lastTerm: 2 };
  const voter = makeCore({ id: 2, term: 3 });
  const effects = voter.step(requestVote(1, 3, { lastIndex: 10, lastTerm: 1 }), voterLog);
  assert.equal(onlyVoteResponse(effects).voteGranted, false);
  assert.deepEqual(persistsOf(effects), []);
  assert.equal(voter.votedFor, null);
});

Deno.test("RequestVote §5.4.1: refuses a candidate with the same last term but a shorter log", () => {
  const voterLog = { lastIndex: 5, lastTerm: 2 };
  const voter = makeCore({ id: 2, term: 3 });
  const effects = voter.step(requestVote(1, 3, { lastIndex: 4, lastTerm: 2 }), voterLog);
  assert.equal(onlyVoteResponse(effects).voteGranted, false);
  assert.equal(voter.votedFor, null);
});

Deno.test("RequestVote §5.4.1: grants a candidate whose log equals the voter's", () => {
  const voterLog = { lastIndex: 5, lastTerm: 2 };
  const voter = makeCore({ id: 2, term: 3 });
  const effects = voter.step(requestVote(1, 3, voterLog), voterLog);
  assert.equal(onlyVoteResponse(effects).voteGranted, true);
  assert.equal(voter.votedFor, 1);
});

Deno.test("RequestVote §5.4.1: grants a candidate with a newer last term even if its log is shorter", () => {
  const voter = makeCore({ id: 2, term: 3 });
  const effects = voter.step(
    requestVote(1, 3, { lastIndex: 1, lastTerm: 3 }),
    { lastIndex: 9, lastTerm: 2 },
  );
  assert.equal(onlyVoteResponse(effects).voteGranted, true);
});

Deno.test("RequestVote §5.1: refuses a request from an older term and answers with the current term", () => {
  const voter = makeCore({ id: 2, term: 6 });
  const effects = voter.step(requestVote(1, 5, emptyLog), emptyLog);
  const response = onlyVoteResponse(effects);
  assert.equal(response.voteGranted, false);
  assert.equal(response.term, 6);
  assert.deepEqual(persistsOf(effects), []);
});

Deno.test("RequestVote §5.1: a refused request from a higher term still moves the voter to that term", () => {
  const voter = makeCore({ id: 2, term: 3, votedFor: 2 });
  const effects = voter.step(
    requestVote(1, 8, { lastIndex: 0, lastTerm: 0 }),
    { lastIndex: 4, lastTerm: 3 },
  );
  assert.deepEqual(persistsOf(effects), [{ kind: "persist", term: 8, votedFor: null }]);
  const response = onlyVoteResponse(effects);
  assert.equal(response.voteGranted, false);
  assert.equal(response.term, 8);
  assert.equal(voter.currentTerm, 8);
  assert.equal(voter.votedFor, null);
});

Deno.test("Raft §5.1: a higher-term RequestVote persists the new term (votedFor null) then the vote, then replies", () => {
  const voter = makeCore({ id: 2, term: 3, votedFor: 2 });
  const effects = voter.step(requestVote(1, 4, emptyLog), emptyLog);
  const persists = persistsOf(effects);
  assert.deepEqual(persists, [
    { kind: "persist", term: 4, votedFor: null },
    { kind: "persist", term: 4, votedFor: 1 },
  ]);
  const lastPersistAt = effects.findLastIndex((e) => e.kind === "persist");
  const sendAt = effects.findIndex((e) => e.kind === "send");
  assert.ok(lastPersistAt < sendAt, `persist must precede send: ${kinds(effects)}`);
  assert.equal(onlyVoteResponse(effects).voteGranted, true);
});

Deno.test("Raft §5.1: a higher-term heartbeat makes a leader follower and persists the term with votedFor null", () => {
  const leader = makeCore();
  makeLeader(leader);
  const term = leader.currentTerm;
  const effects = leader.step({ kind: "Heartbeat", from: 3, term: term + 2 }, emptyLog);
  assert.deepEqual(effects[0], { kind: "persist", term: term + 2, votedFor: null });
  assert.equal(leader.role, "follower");
  assert.equal(leader.currentTerm, term + 2);
  assert.equal(leader.votedFor, null);
  assert.equal(leader.leaderId, 3);
  assert.ok(
    effects.some((e) => e.kind === "becomeFollower" && e.term === term + 2 && e.leaderId === 3),
  );
  const reply = sendsOf(effects);
  assert.deepEqual(reply, [{
    kind: "send",
    to: 3,
    message: { kind: "HeartbeatResponse", from: 1, term: term + 2 },
  }]);
});

Deno.test("Raft §5.1: a candidate that sees a higher-term vote response gives up its candidacy", () => {
  const core = makeCore();
  startCampaign(core);
  const effects = core.step(
    { kind: "RequestVoteResponse", from: 2, term: 9, voteGranted: false, preVote: false },
    emptyLog,
  );
  assert.deepEqual(persistsOf(effects), [{ kind: "persist", term: 9, votedFor: null }]);
  assert.equal(core.role, "follower");
  assert.equal(core.currentTerm, 9);
});

Deno.test("observeTerm §5.1: a higher term from the replication stream makes the node follower", () => {
  const leader = makeCore();
  makeLeader(leader);
  const term = leader.currentTerm;
  assert.deepEqual(leader.observeTerm(term), []);
  assert.deepEqual(leader.observeTerm(term - 1), []);
  assert.equal(leader.role, "leader");
  const effects = leader.observeTerm(term + 1);
  assert.deepEqual(effects[0], { kind: "persist", term: term + 1, votedFor: null });
  assert.equal(leader.role, "follower");
  assert.equal(leader.leaderId, null);
});

// ---------------------------------------------------------------- winning

Deno.test("leader election §5.2: a candidate wins with votes from 3 of 4 nodes (quorum 3) and not with 2", () => {
  const core = makeCore();
  startCampaign(core);
  const term = core.currentTerm;
  const one = core.step(voteGrant(2, term), emptyLog);
  assert.ok(!one.some((e) => e.kind === "becomeLeader"));
  assert.equal(core.role, "candidate", "2 of 4 (self + one) is not a quorum");
  const duplicate = core.step(voteGrant(2, term), emptyLog);
  assert.ok(!duplicate.some((e) => e.kind === "becomeLeader"), "a repeated vote counts once");
  const refused = core.step(
    { kind: "RequestVoteResponse", from: 4, term, voteGranted: false, preVote: false },
    emptyLog,
  );
  assert.ok(!refused.some((e) => e.kind === "becomeLeader"), "a refusal is not a vote");
  const two = core.step(voteGrant(3, term), emptyLog);
  const becameAt = two.findIndex((e) => e.kind === "becomeLeader");
  assert.ok(becameAt >= 0);
  assert.deepEqual(two[becameAt], { kind: "becomeLeader", term, votes: 3 });
  assert.equal(core.role, "leader");
  assert.equal(core.leaderId, 1);
  // Leadership is asserted at once with heartbeats to every peer.
  const heartbeats = sendsOf(two.slice(becameAt));
  assert.deepEqual(heartbeats.map((s) => s.to).sort(), [2, 3, 4]);
  assert.ok(heartbeats.every((s) => s.message.kind === "Heartbeat" && s.message.term === term));
  assert.ok(
    two.some((e) => e.kind === "log" && e.message.includes("votes=3 (required=3)")),
    "the log line names votes and quorum",
  );
});

Deno.test("leader election §5.2: a vote for an older term does not count", () => {
  const core = makeCore({ term: 4 });
  startCampaign(core);
  core.step(voteGrant(2, 4), emptyLog);
  core.step(voteGrant(3, 4), emptyLog);
  assert.equal(core.role, "candidate");
});

Deno.test("a one-node cluster elects itself at its first timeout, persisting first", () => {
  const core = makeCore({ peers: [] });
  const { effects } = tickUntil(core, (e) => e.length > 0, 1000);
  assert.deepEqual(persistsOf(effects), [{ kind: "persist", term: 1, votedFor: 1 }]);
  const persistAt = effects.findIndex((e) => e.kind === "persist");
  const leaderAt = effects.findIndex((e) => e.kind === "becomeLeader");
  assert.ok(persistAt < leaderAt);
  assert.equal(core.role, "leader");
});

Deno.test("a candidate whose election times out asks for pre-votes again, keeping its term", () => {
  const core = makeCore();
  startCampaign(core);
  const term = core.currentTerm;
  const effects = startPreVote(core);
  assert.equal(core.role, "pre-candidate");
  assert.equal(core.currentTerm, term);
  assert.deepEqual(persistsOf(effects), []);
  assert.ok(voteRequests(effects).every((r) => r.preVote && r.term === term + 1));
});

// ---------------------------------------------------------------- heartbeats

Deno.test("heartbeat §5.2: heartbeats from the leader keep resetting the election timer", () => {
  const follower = makeCore({ id: 2, term: 1 });
  for (let t = 1; t <= 2000; t++) {
    if (t % (electionTimeoutTicksMin - 1) === 0) {
      follower.step({ kind: "Heartbeat", from: 1, term: 1 }, emptyLog);
    }
    const effects = follower.tick(emptyLog);
    assert.deepEqual(voteRequests(effects), [], `campaigned at tick ${t}`);
  }
  assert.equal(follower.role, "follower");
  assert.equal(follower.leaderId, 1);
});

Deno.test("heartbeat §5.2: a heartbeat in the current term makes a pre-candidate or candidate follow", () => {
  const pre = makeCore({ term: 2 });
  startPreVote(pre);
  pre.step({ kind: "Heartbeat", from: 3, term: 2 }, emptyLog);
  assert.equal(pre.role, "follower");
  assert.equal(pre.leaderId, 3);

  const candidate = makeCore();
  startCampaign(candidate);
  const effects = candidate.step({ kind: "Heartbeat", from: 4, term: 1 }, emptyLog);
  assert.deepEqual(persistsOf(effects), []);
  assert.equal(candidate.role, "follower");
  assert.equal(candidate.leaderId, 4);
  assert.equal(candidate.votedFor, 1, "the vote in this term stands");
});

Deno.test("heartbeat §5.1: a stale heartbeat (lower term) gets a response carrying the higher term", () => {
  const follower = makeCore({ id: 2, term: 5 });
  follower.step({ kind: "Heartbeat", from: 3, term: 5 }, emptyLog);
  const effects = follower.step({ kind: "Heartbeat", from: 1, term: 4 }, emptyLog);
  assert.deepEqual(effects, [{
    kind: "send",
    to: 1,
    message: { kind: "HeartbeatResponse", from: 2, term: 5 },
  }]);
  assert.equal(follower.leaderId, 3, "a stale leader does not replace the current one");
  assert.equal(follower.currentTerm, 5);
});

Deno.test("heartbeat §5.1: a stale leader steps down on a response carrying a higher term", () => {
  const leader = makeCore();
  makeLeader(leader);
  const term = leader.currentTerm;
  leader.step({ kind: "HeartbeatResponse", from: 2, term: term + 1 }, emptyLog);
  assert.equal(leader.role, "follower");
  assert.equal(leader.currentTerm, term + 1);
  assert.equal(leader.votedFor, null);
});

Deno.test("heartbeat: a leader sends heartbeats every heartbeatIntervalTicks", () => {
  const leader = makeCore();
  makeLeader(leader);
  const sentAt: number[] = [];
  for (let t = 1; t <= 35; t++) {
    const hb = sendsOf(leader.tick(emptyLog)).filter((s) => s.message.kind === "Heartbeat");
    if (hb.length > 0) {
      assert.deepEqual(hb.map((s) => s.to).sort(), [2, 3, 4]);
      sentAt.push(t);
    }
  }
  assert.deepEqual(sentAt, [10, 20, 30]);
});

// ---------------------------------------------------------------- check quorum

Deno.test("check quorum (thesis §6.2): a leader that hears from nobody steps down after electionTimeoutTicksMax ticks", () => {
  const leader = makeCore();
  makeLeader(leader);
  const term = leader.currentTerm;
  for (let t = 1; t < electionTimeoutTicksMax; t++) {
    leader.tick(emptyLog);
    assert.equal(leader.role, "leader", `stepped down early at tick ${t}`);
  }
  const effects = leader.tick(emptyLog);
  assert.equal(leader.role, "follower");
  assert.equal(leader.currentTerm, term, "stepping down does not change the term");
  assert.deepEqual(persistsOf(effects), []);
  assert.ok(effects.some((e) => e.kind === "becomeFollower" && e.leaderId === null));
  assert.ok(effects.some((e) => e.kind === "log" && e.level === "warn"));
});

Deno.test("check quorum (thesis §6.2): a leader that hears from 2 of 3 peers each window keeps leading", () => {
  const leader = makeCore();
  makeLeader(leader);
  const term = leader.currentTerm;
  for (let t = 1; t <= 10 * electionTimeoutTicksMax; t++) {
    for (const s of sendsOf(leader.tick(emptyLog))) {
      if (s.message.kind === "Heartbeat" && s.to !== 4) {
        leader.step({ kind: "HeartbeatResponse", from: s.to, term }, emptyLog);
      }
    }
  }
  assert.equal(leader.role, "leader");
});

Deno.test("check quorum (thesis §6.2): responses from one peer alone, or from an old term, are not enough", () => {
  const leader = makeCore();
  makeLeader(leader);
  const term = leader.currentTerm;
  for (let t = 1; t <= electionTimeoutTicksMax; t++) {
    for (const s of sendsOf(leader.tick(emptyLog))) {
      if (s.message.kind !== "Heartbeat") continue;
      if (s.to === 2) leader.step({ kind: "HeartbeatResponse", from: 2, term }, emptyLog);
      if (s.to === 3) leader.step({ kind: "HeartbeatResponse", from: 3, term: term - 1 }, emptyLog);
    }
  }
  assert.equal(leader.role, "follower");
});

// ---------------------------------------------------------------- step-down

Deno.test("leaderRoleLost: sends StepDown to every peer, steps down, and holds its own candidacy", () => {
  const leader = makeCore();
  makeLeader(leader);
  const term = leader.currentTerm;
  const effects = leader.leaderRoleLost();
  const stepDowns = sendsOf(effects);
  assert.deepEqual(stepDowns.map((s) => s.to).sort(), [2, 3, 4]);
  assert.ok(stepDowns.every((s) => s.message.kind === "StepDown" && s.message.term === term));
  assert.deepEqual(persistsOf(effects), []);
  const lastSendAt = effects.findLastIndex((e) => e.kind === "send");
  const followAt = effects.findIndex((e) => e.kind === "becomeFollower");
  assert.ok(lastSendAt < followAt, `StepDown goes out before the role change: ${kinds(effects)}`);
  assert.equal(leader.role, "follower");
  assert.equal(leader.leaderId, null);

  const holdTicks = 2 * electionTimeoutTicksMax;
  for (let t = 1; t < holdTicks; t++) {
    assert.deepEqual(voteRequests(leader.tick(emptyLog)), [], `campaigned while held, tick ${t}`);
  }
  // The hold ends; an ordinary timeout follows.
  startPreVote(leader);
  assert.equal(leader.role, "pre-candidate");
});

Deno.test("leaderRoleLost: does nothing on a node that is not leader", () => {
  const follower = makeCore({ term: 2 });
  assert.deepEqual(follower.leaderRoleLost(), []);
  const candidate = makeCore();
  startCampaign(candidate);
  assert.deepEqual(candidate.leaderRoleLost(), []);
  assert.equal(candidate.role, "candidate");
});

Deno.test("StepDown from the current leader makes a follower campaign within two heartbeat intervals", () => {
  for (let seed = 1; seed <= 20; seed++) {
    const follower = makeCore({ id: 2, term: 3, seed });
    follower.step({ kind: "Heartbeat", from: 1, term: 3 }, emptyLog);
    const effects = follower.step({ kind: "StepDown", from: 1, term: 3 }, emptyLog);
    assert.deepEqual(effects, [{ kind: "becomeFollower", term: 3, leaderId: null }]);
    assert.equal(follower.leaderId, null);
    const { ticks } = tickUntil(follower, (e) => voteRequests(e).length > 0, 1000);
    assert.ok(ticks <= 2 * heartbeatIntervalTicks, `seed ${seed}: campaigned after ${ticks}`);
    // Its peers, told the same, grant the pre-vote: nobody leads any more.
    const peer = makeCore({ id: 3, term: 3 });
    peer.step({ kind: "Heartbeat", from: 1, term: 3 }, emptyLog);
    peer.step({ kind: "StepDown", from: 1, term: 3 }, emptyLog);
    const reply = onlyVoteResponse(peer.step(requestVote(2, 4, emptyLog, true), emptyLog));
    assert.equal(reply.voteGranted, true);
  }
});

Deno.test("StepDown from a node that is not our leader, or for another term, is ignored", () => {
  const follower = makeCore({ id: 2, term: 3 });
  follower.step({ kind: "Heartbeat", from: 1, term: 3 }, emptyLog);
  assert.deepEqual(follower.step({ kind: "StepDown", from: 4, term: 3 }, emptyLog), []);
  assert.deepEqual(follower.step({ kind: "StepDown", from: 1, term: 2 }, emptyLog), []);
  assert.equal(follower.leaderId, 1);
  // With its leader still in place, it does not campaign before the normal timeout.
  for (let t = 1; t < electionTimeoutTicksMin; t++) {
    assert.deepEqual(voteRequests(follower.tick(emptyLog)), []);
  }
});

// ---------------------------------------------------------------- clone

Deno.test("clone() evolves independently of the original", () => {
  const original = makeCore({ id: 2, term: 3, votedFor: 4 });
  original.step({ kind: "Heartbeat", from: 4, term: 3 }, emptyLog);
  const copy = original.clone();
  assert.equal(copy.currentTerm, 3);
  assert.equal(copy.votedFor, 4);
  assert.equal(copy.role, "follower");
  assert.equal(copy.leaderId, 4);

  copy.step(requestVote(1, 9, emptyLog), emptyLog);
  assert.equal(copy.currentTerm, 9);
  assert.equal(copy.votedFor, 1);
  assert.equal(original.currentTerm, 3, "stepping the clone leaves the original alone");
  assert.equal(original.votedFor, 4);
  assert.equal(original.leaderId, 4);

  original.step({ kind: "Heartbeat", from: 3, term: 5 }, emptyLog);
  assert.equal(copy.currentTerm, 9, "stepping the original leaves the clone alone");
  assert.equal(copy.leaderId, null);
});

Deno.test("clone() of a candidate counts its own votes: the original does not win from the clone's", () => {
  const original = makeCore();
  startCampaign(original);
  const term = original.currentTerm;
  original.step(voteGrant(2, term), emptyLog);
  const copy = original.clone();
  copy.step(voteGrant(3, term), emptyLog);
  assert.equal(copy.role, "leader");
  assert.equal(original.role, "candidate");
  original.step(voteGrant(3, term), emptyLog);
  assert.equal(original.role, "leader", "the copied vote from node 2 still counts");
});

Deno.test("clone() predicts the original's term, vote and role for the next event", () => {
  for (let seed = 1; seed <= 20; seed++) {
    const core = makeCore({ seed });
    for (let t = 0; t < 400; t++) {
      const probe = core.clone();
      const predicted = probe.tick(emptyLog);
      const actual = core.tick(emptyLog);
      assert.equal(probe.currentTerm, core.currentTerm);
      assert.equal(probe.votedFor, core.votedFor);
      assert.equal(probe.role, core.role);
      assert.deepEqual(predicted, actual, `seed ${seed} tick ${t}`);
    }
  }
});

// ---------------------------------------------------------------- small cluster scenarios

/** Four cores on a perfect network (one tick of delay) with a switchable partition. */
class Cluster {
  readonly cores = new Map<number, ElectionCore>();
  /** Nodes cut off from everyone else. */
  readonly isolated = new Set<number>();
  readonly leaders: { term: Term; id: number; tick: number }[] = [];
  #inFlight: { to: number; from: number; message: ControlMessage }[] = [];
  now = 0;

  constructor(seed: number) {
    for (const id of [1, 2, 3, 4]) {
      this.cores.set(id, makeCore({ id, seed: seed * 10 + id }));
    }
  }

  core(id: number): ElectionCore {
    return this.cores.get(id)!;
  }

  carryOut(from: number, effects: readonly ElectionEffect[]): void {
    for (const e of effects) {
      if (e.kind === "send") this.#inFlight.push({ to: e.to, from, message: e.message });
      if (e.kind === "becomeLeader") this.leaders.push({ term: e.term, id: from, tick: this.now });
    }
  }

  run(ticks: number): void {
    for (let i = 0; i < ticks; i++) {
      this.now++;
      const due = this.#inFlight;
      this.#inFlight = [];
      for (const { to, from, message } of due) {
        if (this.isolated.has(to) || this.isolated.has(from)) continue;
        this.carryOut(to, this.core(to).step(message, emptyLog));
      }
      for (const [id, core] of this.cores) this.carryOut(id, core.tick(emptyLog));
    }
  }

  /** The node that is leader now, if exactly one is. */
  leader(): number | undefined {
    const ids = [...this.cores].filter(([, c]) => c.role === "leader").map(([id]) => id);
    return ids.length === 1 ? ids[0] : undefined;
  }
}

Deno.test("scenario §5.2: four nodes on a perfect network elect one leader within a few timeouts", () => {
  for (let seed = 1; seed <= 20; seed++) {
    const cluster = new Cluster(seed);
    cluster.run(4 * electionTimeoutTicksMax);
    const leader = cluster.leader();
    assert.notEqual(leader, undefined, `seed ${seed}: no single leader`);
    const term = cluster.core(leader!).currentTerm;
    for (const [id, core] of cluster.cores) {
      assert.equal(core.currentTerm, term, `seed ${seed}: node ${id} in another term`);
      if (id !== leader) assert.equal(core.leaderId, leader, `seed ${seed}: node ${id}`);
    }
  }
});

Deno.test("scenario (thesis §9.6): a partitioned follower that rejoins does not disrupt a healthy leader", () => {
  for (let seed = 1; seed <= 10; seed++) {
    const cluster = new Cluster(seed);
    cluster.run(4 * electionTimeoutTicksMax);
    const leader = cluster.leader()!;
    const term = cluster.core(leader).currentTerm;
    const loner = leader === 4 ? 3 : 4;
    cluster.isolated.add(loner);
    cluster.run(20 * electionTimeoutTicksMax);
    assert.equal(cluster.core(loner).currentTerm, term, `seed ${seed}: pre-vote kept its term`);
    cluster.isolated.delete(loner);
    cluster.run(4 * electionTimeoutTicksMax);
    assert.equal(cluster.leader(), leader, `seed ${seed}: the leader was deposed`);
    assert.equal(cluster.core(leader).currentTerm, term, `seed ${seed}: the term moved`);
    assert.equal(cluster.core(loner).leaderId, leader, `seed ${seed}: the loner follows again`);
  }
});

Deno.test("scenario (thesis §6.2): an isolated leader steps down, the majority elects another, and it follows on healing", () => {
  for (let seed = 1; seed <= 10; seed++) {
    const cluster = new Cluster(seed);
    cluster.run(4 * electionTimeoutTicksMax);
    const old = cluster.leader()!;
    const oldTerm = cluster.core(old).currentTerm;
    cluster.isolated.add(old);
    // The check-quorum window that was running when the partition began had
    // answers in it; the next full window has none.
    cluster.run(2 * electionTimeoutTicksMax);
    assert.notEqual(cluster.core(old).role, "leader", `seed ${seed}: isolated leader kept leading`);
    cluster.run(4 * electionTimeoutTicksMax);
    const fresh = cluster.leaders.at(-1)!;
    assert.notEqual(fresh.id, old, `seed ${seed}`);
    assert.ok(fresh.term > oldTerm, `seed ${seed}`);
    assert.equal(cluster.core(old).currentTerm, oldTerm, `seed ${seed}: pre-vote kept its term`);
    cluster.isolated.delete(old);
    cluster.run(2 * electionTimeoutTicksMax);
    assert.equal(cluster.leader(), fresh.id, `seed ${seed}`);
    assert.equal(cluster.core(old).currentTerm, fresh.term, `seed ${seed}`);
    assert.equal(cluster.core(old).leaderId, fresh.id, `seed ${seed}`);
  }
});

Deno.test("scenario: after leaderRoleLost another node takes over while the old leader holds back", () => {
  for (let seed = 1; seed <= 20; seed++) {
    const cluster = new Cluster(seed);
    cluster.run(4 * electionTimeoutTicksMax);
    const old = cluster.leader()!;
    const lostAt = cluster.now;
    cluster.carryOut(old, cluster.core(old).leaderRoleLost());
    cluster.run(2 * electionTimeoutTicksMax);
    const next = cluster.leaders.find((l) => l.tick > lostAt);
    assert.ok(next !== undefined, `seed ${seed}: nobody took over`);
    assert.notEqual(next.id, old, `seed ${seed}: the node whose role died led again`);
    assert.equal(cluster.leader(), next.id, `seed ${seed}`);
  }
});

// ---------------------------------------------------------------- simulation

interface InFlight {
  readonly deliverAtTick: number;
  readonly to: number;
  readonly message: ControlMessage;
}

interface SimNode {
  core: ElectionCore;
  durable: { currentTerm: Term; votedFor: number | null };
  log: LogPosition;
  /** Ticks left while crashed; 0 when up. */
  downTicks: number;
}

/**
 * Four cores over a lossy, reordering in-memory network with crashes that
 * restart from persisted state only. Checks election safety (§5.2: at most one
 * leader per term), that a term and vote are durable before any message that
 * relies on them leaves, and that persisted terms never go back.
 * Returns how many leaders were elected.
 */
function simulate(seed: number, ticksTotal: number, dropRate: number): number {
  const rng = new Prng(seed);
  const ids = [1, 2, 3, 4];
  // Varied but fixed logs, so the §5.4.1 check has work to do.
  const logs: LogPosition[] = [
    { lastIndex: 5, lastTerm: 2 },
    { lastIndex: 4, lastTerm: 2 },
    { lastIndex: 5, lastTerm: 2 },
    { lastIndex: 6, lastTerm: 1 },
  ];
  const nodes = new Map<number, SimNode>();
  const build = (id: number, durable: SimNode["durable"]): ElectionCore =>
    new ElectionCore(
      configFor(id, ids.filter((p) => p !== id)),
      durable,
      new Prng(rng.intBetween(0, 2 ** 31)),
    );
  for (const id of ids) {
    const durable = { currentTerm: 0, votedFor: null };
    nodes.set(id, { core: build(id, durable), durable, log: logs[id - 1]!, downTicks: 0 });
  }
  let queue: InFlight[] = [];
  const leaderOfTerm = new Map<Term, number>();
  let leadersElected = 0;

  const carryOut = (id: number, effects: readonly ElectionEffect[], now: number): void => {
    const node = nodes.get(id)!;
    for (const e of effects) {
      const where = `seed ${seed}, tick ${now}, node ${id}`;
      switch (e.kind) {
        case "persist": {
          const before = node.durable;
          assert.ok(e.term >= before.currentTerm, `${where}: persisted term went back`);
          if (e.term === before.currentTerm && before.votedFor !== null) {
            assert.equal(e.votedFor, before.votedFor, `${where}: changed its vote in one term`);
          }
          node.durable = { currentTerm: e.term, votedFor: e.votedFor };
          break;
        }
        case "send": {
          const m = e.message;
          const isPre = (m.kind === "RequestVote" || m.kind === "RequestVoteResponse") &&
            m.preVote;
          if (!isPre) {
            assert.ok(
              m.term <= node.durable.currentTerm,
              `${where}: sent term ${m.term} unpersisted`,
            );
          }
          if (m.kind === "RequestVote" && !m.preVote) {
            assert.equal(node.durable.votedFor, id, `${where}: asked for votes before self-vote`);
          }
          if (m.kind === "RequestVoteResponse" && !m.preVote && m.voteGranted) {
            assert.deepEqual(
              node.durable,
              { currentTerm: m.term, votedFor: e.to },
              `${where}: granted a vote that is not on disk`,
            );
          }
          if (rng.next() < dropRate) break;
          queue.push({ deliverAtTick: now + rng.intBetween(1, 15), to: e.to, message: m });
          break;
        }
        case "becomeLeader": {
          const earlier = leaderOfTerm.get(e.term);
          assert.equal(
            earlier,
            undefined,
            `${where}: second leader in term ${e.term} (first was node ${earlier})`,
          );
          assert.ok(e.votes >= 3, `${where}: leader with ${e.votes} votes`);
          // §5.4.1: nodes 2 and 4 hold logs behind a quorum's, so they cannot win.
          assert.ok(id === 1 || id === 3, `${where}: node with a stale log won`);
          leaderOfTerm.set(e.term, id);
          leadersElected++;
          break;
        }
        case "becomeFollower":
        case "log":
          break;
        default: {
          const never: never = e;
          throw new Error(`Unhandled effect ${JSON.stringify(never)}`);
        }
      }
    }
  };

  for (let now = 1; now <= ticksTotal; now++) {
    for (const id of ids) {
      const node = nodes.get(id)!;
      if (node.downTicks > 0) {
        node.downTicks--;
        // Restart from what is on disk alone.
        if (node.downTicks === 0) node.core = build(id, node.durable);
        continue;
      }
      const r = rng.next();
      if (r < 0.001) {
        node.downTicks = rng.intBetween(1, 200);
        continue;
      }
      if (r < 0.002) carryOut(id, node.core.leaderRoleLost(), now);
      carryOut(id, node.core.tick(node.log), now);
    }
    const due = queue.filter((m) => m.deliverAtTick <= now);
    queue = queue.filter((m) => m.deliverAtTick > now);
    for (const m of due) {
      const node = nodes.get(m.to)!;
      if (node.downTicks > 0) continue;
      carryOut(m.to, node.core.step(m.message, node.log), now);
    }
  }
  return leadersElected;
}

Deno.test("simulation §5.2 election safety: at most one leader per term over lossy, reordering runs with crashes", () => {
  for (let seed = 1; seed <= 30; seed++) {
    const dropRate = [0, 0.1, 0.3][seed % 3]!;
    let leaders = 0;
    try {
      leaders = simulate(seed, 4000, dropRate);
    } catch (e) {
      console.error(`election simulation failed: seed ${seed}, dropRate ${dropRate}`);
      throw e;
    }
    assert.ok(leaders >= 1, `seed ${seed}, dropRate ${dropRate}: no leader in 4000 ticks`);
  }
});
