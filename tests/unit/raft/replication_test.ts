// Unit tests of src/raft/replication.ts: AppendEntries checks, term assignment, commit rule.

import assert from "node:assert/strict";
import { encodeWalLine, type WalRecord } from "../../../src/codec/wal_line.ts";
import { type LogEntry, RaftLog } from "../../../src/raft/log.ts";
import { assignTerms, commitIndexFor, decideAppend } from "../../../src/raft/replication.ts";
import { Prng } from "../../../src/raft/prng.ts";

const utf8 = new TextEncoder();

function setRecord(index: number, tag: string): WalRecord {
  return { op: "SET", index, key: utf8.encode(`k${index}`), value: utf8.encode(tag) };
}

function entry(index: number, term: number): LogEntry {
  const record = setRecord(index, `t${term}`);
  return { index, term, record, line: encodeWalLine(record) };
}

function logOfTerms(terms: readonly number[]): RaftLog {
  return new RaftLog(terms.map((t, i) => entry(i + 1, t)));
}

/** Entries prevIndex+1 … with the given terms. */
function entriesAfter(prevIndex: number, terms: readonly number[]): LogEntry[] {
  return terms.map((t, i) => entry(prevIndex + 1 + i, t));
}

function termsOf(log: RaftLog): number[] {
  return log.slice(1, log.lastIndex).map((e) => e.term);
}

/** Carries out an accept decision the way a follower shell would. */
function applyDecision(log: RaftLog, decision: ReturnType<typeof decideAppend>): void {
  assert.equal(decision.kind, "accept");
  if (decision.kind !== "accept") return;
  if (decision.truncateFrom !== null) log.truncateFrom(decision.truncateFrom);
  for (const e of decision.append) log.append(e);
}

// ---------------------------------------------------------------- decideAppend

Deno.test("AppendEntries §5.3: rejects when the follower has no entry at prevLogIndex, hinting its next index", () => {
  const log = logOfTerms([1, 1]);
  assert.deepEqual(decideAppend(log, 5, 1, entriesAfter(5, [1])), {
    kind: "reject",
    hintIndex: 3,
  });
});

Deno.test("AppendEntries §5.3: rejects when the term at prevLogIndex differs, hinting the start of that term", () => {
  const log = logOfTerms([1, 1, 2, 2, 2]);
  assert.deepEqual(decideAppend(log, 5, 3, []), { kind: "reject", hintIndex: 3 });
  assert.deepEqual(decideAppend(log, 2, 4, []), { kind: "reject", hintIndex: 1 });
});

Deno.test("AppendEntries §5.3: prevLogIndex 0 always matches", () => {
  const log = logOfTerms([1, 1]);
  const d = decideAppend(log, 0, 0, entriesAfter(0, [1, 1, 1]));
  assert.equal(d.kind, "accept");
  if (d.kind !== "accept") return;
  assert.equal(d.truncateFrom, null);
  assert.deepEqual(d.append.map((e) => e.index), [3]);
  assert.equal(d.matchIndex, 3);
});

Deno.test("AppendEntries §5.3: a negative prevLogIndex is rejected, not matched at -1", () => {
  // Regression (simulator seed 1888114227): a heartbeat with prevLogIndex -1
  // was accepted with matchIndex -1, and the confused leader never recovered.
  assert.deepEqual(decideAppend(logOfTerms([1, 1]), -1, 0, []), { kind: "reject", hintIndex: 1 });
  assert.deepEqual(decideAppend(logOfTerms([]), -1, 0, []), { kind: "reject", hintIndex: 1 });
});

Deno.test("AppendEntries §5.3: appends new entries after a matching prevLogIndex", () => {
  const log = logOfTerms([1, 1]);
  const batch = entriesAfter(2, [1, 2]);
  const d = decideAppend(log, 2, 1, batch);
  assert.deepEqual(d, { kind: "accept", truncateFrom: null, append: batch, matchIndex: 4 });
});

Deno.test("AppendEntries §5.3: a heartbeat (no entries) never truncates and reports prevLogIndex as matched", () => {
  const log = logOfTerms([1, 1, 2, 2]);
  assert.deepEqual(decideAppend(log, 2, 1, []), {
    kind: "accept",
    truncateFrom: null,
    append: [],
    matchIndex: 2,
  });
});

Deno.test("AppendEntries §5.3: a duplicated or re-sent batch changes nothing (Log Matching)", () => {
  const log = logOfTerms([1, 1, 2, 2]);
  const d = decideAppend(log, 1, 1, entriesAfter(1, [1, 2]));
  assert.deepEqual(d, { kind: "accept", truncateFrom: null, append: [], matchIndex: 3 });
});

Deno.test("AppendEntries §5.3: an old batch shorter than the log does not cut the entries after it", () => {
  // The leader's earlier, shorter message arrives late: entries 4 and 5 stay.
  const log = logOfTerms([1, 1, 2, 2, 2]);
  const d = decideAppend(log, 1, 1, entriesAfter(1, [1, 2]));
  applyDecision(log, d);
  assert.deepEqual(termsOf(log), [1, 1, 2, 2, 2]);
  assert.equal(d.kind === "accept" ? d.matchIndex : -1, 3);
});

Deno.test("AppendEntries §5.3: a conflicting entry truncates the follower's log from that index", () => {
  const log = logOfTerms([1, 1, 2, 2, 2]);
  const batch = entriesAfter(2, [1, 3, 3]);
  const d = decideAppend(log, 2, 1, batch);
  assert.equal(d.kind, "accept");
  if (d.kind !== "accept") return;
  assert.equal(d.truncateFrom, 3);
  assert.deepEqual(d.append.map((e) => e.index), [3, 4, 5]);
  assert.equal(d.matchIndex, 5);
  applyDecision(log, d);
  assert.deepEqual(termsOf(log), [1, 1, 1, 3, 3]);
});

Deno.test("AppendEntries §5.3: skips matching entries and truncates at the first conflict only", () => {
  const log = logOfTerms([1, 1, 2, 2, 2, 2]);
  const d = decideAppend(log, 1, 1, entriesAfter(1, [1, 2, 4]));
  assert.equal(d.kind, "accept");
  if (d.kind !== "accept") return;
  assert.equal(d.truncateFrom, 4);
  assert.deepEqual(d.append.map((e) => [e.index, e.term]), [[4, 4]]);
  assert.equal(d.matchIndex, 4);
  applyDecision(log, d);
  assert.deepEqual(termsOf(log), [1, 1, 2, 4]);
});

Deno.test("AppendEntries §5.3: Figure 7 follower logs converge to the leader's log by retrying from the hints", () => {
  // Leader (term 8) of Figure 7 and followers (a)–(f).
  const leaderTerms = [1, 1, 1, 4, 4, 5, 5, 6, 6, 6];
  const followers = [
    [1, 1, 1, 4, 4, 5, 5, 6, 6],
    [1, 1, 1, 4],
    [1, 1, 1, 4, 4, 5, 5, 6, 6, 6, 6],
    [1, 1, 1, 4, 4, 5, 5, 6, 6, 6, 7, 7],
    [1, 1, 1, 4, 4, 4, 4],
    [1, 1, 1, 2, 2, 2, 3, 3, 3, 3, 3],
  ];
  const leader = logOfTerms(leaderTerms);
  for (const [n, terms] of followers.entries()) {
    const follower = logOfTerms(terms);
    let nextIndex = leader.lastIndex + 1;
    let rounds = 0;
    for (;;) {
      assert.ok(++rounds < 20, `follower ${n}: no convergence`);
      const prevIndex = nextIndex - 1;
      const d = decideAppend(
        follower,
        prevIndex,
        leader.termAt(prevIndex)!,
        leader.slice(nextIndex, leader.lastIndex),
      );
      if (d.kind === "reject") {
        assert.ok(d.hintIndex < nextIndex, `follower ${n}: hint ${d.hintIndex} does not go back`);
        assert.ok(d.hintIndex >= 1);
        nextIndex = d.hintIndex;
        continue;
      }
      applyDecision(follower, d);
      assert.equal(d.matchIndex, leader.lastIndex);
      break;
    }
    // A follower longer than the leader keeps its extra tail only if it matches;
    // here every extra entry conflicts or lies past the leader's last index.
    assert.deepEqual(
      termsOf(follower).slice(0, leaderTerms.length),
      leaderTerms,
      `follower ${n} converged`,
    );
  }
});

Deno.test("AppendEntries §5.3: randomized logs always converge to the leader's prefix", () => {
  const seed = 20_240_611;
  const rng = new Prng(seed);
  const randomTerms = (length: number, termMax: number): number[] => {
    const out: number[] = [];
    let term = 1;
    for (let i = 0; i < length; i++) {
      if (rng.next() < 0.3) term = Math.min(termMax, term + rng.intBetween(1, 2));
      out.push(term);
    }
    return out;
  };
  for (let run = 0; run < 300; run++) {
    // Leader terms are even and a diverging follower's own terms odd, so no
    // (index, term) pair is shared past the common prefix: Log Matching holds
    // between the two logs, as it does in any real cluster.
    const leaderTerms = randomTerms(rng.intBetween(0, 15), 6).map((t) => 2 * t);
    const shared = rng.intBetween(0, leaderTerms.length);
    const lastShared = shared === 0 ? 0 : leaderTerms[shared - 1]!;
    const tail = randomTerms(rng.intBetween(0, 8), 6).map((t) =>
      Math.max(2 * t + 1, lastShared + 1)
    );
    const followerTerms = [...leaderTerms.slice(0, shared), ...tail];
    const leader = logOfTerms(leaderTerms);
    const follower = logOfTerms(followerTerms);
    let nextIndex = leader.lastIndex + 1;
    let converged = false;
    for (let round = 0; round < 40 && !converged; round++) {
      const prevIndex = nextIndex - 1;
      const d = decideAppend(
        follower,
        prevIndex,
        leader.termAt(prevIndex)!,
        leader.slice(nextIndex, leader.lastIndex),
      );
      if (d.kind === "reject") {
        assert.ok(d.hintIndex < nextIndex, `seed ${seed} run ${run}: hint does not go back`);
        nextIndex = Math.max(1, d.hintIndex);
      } else {
        applyDecision(follower, d);
        converged = true;
      }
    }
    assert.ok(converged, `seed ${seed} run ${run}: no convergence`);
    assert.deepEqual(
      termsOf(follower).slice(0, leaderTerms.length),
      leaderTerms,
      `seed ${seed} run ${run}: leader ${leaderTerms} follower ${followerTerms}`,
    );
  }
});

// ---------------------------------------------------------------- assignTerms

function marker(index: number, term: number): { record: WalRecord; line: Uint8Array } {
  const record: WalRecord = { op: "TERM", index, term };
  return { record, line: encodeWalLine(record) };
}

function set(index: number): { record: WalRecord; line: Uint8Array } {
  const record = setRecord(index, "v");
  return { record, line: encodeWalLine(record) };
}

Deno.test("assignTerms: records carry the previous entry's term until a TERM marker starts a new one", () => {
  const out = assignTerms(3, 2, 5, [set(4), marker(5, 5), set(6), set(7)]);
  assert.ok(Array.isArray(out), String(out));
  assert.deepEqual(out.map((e) => [e.index, e.term]), [[4, 2], [5, 5], [6, 5], [7, 5]]);
  assert.equal(out[1]!.record.op, "TERM");
  assert.deepEqual(out[2]!.line, set(6).line);
});

Deno.test("assignTerms: an empty batch gives no entries", () => {
  assert.deepEqual(assignTerms(9, 3, 3, []), []);
});

Deno.test("assignTerms: a record whose seq is not the next index is refused", () => {
  assert.equal(assignTerms(3, 2, 2, [set(5)]), "Entry seq 5 where 4 was expected");
  assert.equal(assignTerms(3, 2, 2, [set(4), set(4)]), "Entry seq 4 where 5 was expected");
});

Deno.test("assignTerms: a TERM marker going back or beyond the leader's term is refused", () => {
  assert.equal(
    assignTerms(0, 0, 5, [marker(1, 3), marker(2, 2)]),
    "Term marker 2 out of order at seq 2",
  );
  assert.equal(assignTerms(0, 0, 5, [marker(1, 6)]), "Term marker 6 out of order at seq 1");
  assert.ok(Array.isArray(assignTerms(0, 0, 5, [marker(1, 5), marker(2, 5)])));
});

Deno.test("assignTerms: an entry at the start of the log with no TERM marker before it is refused", () => {
  assert.equal(assignTerms(0, 0, 1, [set(1)]), "Entry at seq 1 has no term marker before it");
  const ok = assignTerms(0, 0, 1, [marker(1, 1), set(2)]);
  assert.ok(Array.isArray(ok));
  assert.deepEqual(ok.map((e) => e.term), [1, 1]);
});

// ---------------------------------------------------------------- commitIndexFor

Deno.test("commit rule §5.3: an entry of the current term stored on 3 of 4 nodes is committed", () => {
  const log = logOfTerms([1, 2, 2, 2, 2]);
  // Leader has 5; followers at 5, 3 and 1: index 3 is on 3 nodes.
  assert.equal(commitIndexFor([5, 5, 3, 1], 3, log, 2, 0), 3);
  assert.equal(commitIndexFor([5, 5, 5, 1], 3, log, 2, 0), 5);
});

Deno.test("commit rule §5.3: an entry on only 2 of 4 nodes is not committed", () => {
  const log = logOfTerms([2, 2, 2]);
  assert.equal(commitIndexFor([3, 3, 0, 0], 3, log, 2, 0), 0);
});

Deno.test("commit rule §5.4.2: an entry from an older term is not committed by counting replicas", () => {
  // Figure 8 (c): the term-4 leader has re-replicated index 2 (term 2) to a majority.
  const log = logOfTerms([1, 2, 4]);
  assert.equal(commitIndexFor([3, 2, 2, 1], 3, log, 4, 1), 1);
  // Once an entry of its own term is on a majority, everything before it commits too.
  assert.equal(commitIndexFor([3, 3, 3, 1], 3, log, 4, 1), 3);
});

Deno.test("commit rule §5.4.2: the commit index never goes back", () => {
  const log = logOfTerms([1, 1, 1, 1, 1]);
  assert.equal(commitIndexFor([5, 2, 2, 0], 3, log, 1, 4), 4);
  assert.equal(commitIndexFor([5, 4, 4, 0], 3, log, 1, 4), 4);
});

Deno.test("commit rule: a quorum larger than the reports commits nothing new", () => {
  const log = logOfTerms([1, 1]);
  assert.equal(commitIndexFor([2, 2], 3, log, 1, 0), 0);
});

Deno.test("commit rule: the order of match indexes does not matter, and the input is not changed", () => {
  const log = logOfTerms([3, 3, 3, 3, 3, 3]);
  const matches = [1, 6, 4, 5];
  assert.equal(commitIndexFor(matches, 3, log, 3, 0), 4);
  assert.deepEqual(matches, [1, 6, 4, 5]);
});

// ------------------------------------------------- decideAppend on a compacted log

/** A log compacted up to (snapshotIndex, snapshotTerm) with entries after it. */
function compactedLog(snapshotIndex: number, snapshotTerm: number, terms: number[]): RaftLog {
  return new RaftLog(entriesAfter(snapshotIndex, terms), {
    lastIndex: snapshotIndex,
    lastTerm: snapshotTerm,
  });
}

Deno.test("AppendEntries §7: a batch starting below the snapshot is accepted for the part beyond it", () => {
  // Snapshot at 5 (term 2); the log holds 6–7. The leader re-sends from 4.
  const log = compactedLog(5, 2, [2, 2]);
  const batch = entriesAfter(3, [1, 2, 2, 2, 3, 3]); // entries 4–9
  const d = decideAppend(log, 3, 1, batch);
  assert.equal(d.kind, "accept");
  if (d.kind !== "accept") return;
  assert.equal(d.truncateFrom, null, "6 and 7 match; nothing to cut");
  assert.deepEqual(d.append.map((e) => e.index), [8, 9]);
  assert.equal(d.matchIndex, 9);
  applyDecision(log, d);
  assert.deepEqual(log.position, { lastIndex: 9, lastTerm: 3 });
  assert.equal(log.snapshotIndex, 5);
});

Deno.test("AppendEntries §7: entries the snapshot covers count as matching, whatever prevLogTerm says", () => {
  // The follower cannot check prevLogTerm at 3 any more, and need not: what
  // its snapshot covers is committed, so it is the leader's log too.
  const log = compactedLog(5, 2, []);
  const d = decideAppend(log, 3, 99, entriesAfter(3, [2, 2, 2]));
  assert.equal(d.kind, "accept");
  if (d.kind !== "accept") return;
  assert.equal(d.truncateFrom, null);
  assert.deepEqual(d.append.map((e) => e.index), [6]);
  assert.equal(d.matchIndex, 6);
});

Deno.test("AppendEntries §7: a batch the snapshot covers wholly is accepted with nothing to append", () => {
  const log = compactedLog(5, 2, [2, 3]);
  // Ends below the snapshot.
  assert.deepEqual(decideAppend(log, 1, 1, entriesAfter(1, [1, 2, 2])), {
    kind: "accept",
    truncateFrom: null,
    append: [],
    matchIndex: 4,
  });
  // Ends exactly at the snapshot's index.
  assert.deepEqual(decideAppend(log, 2, 1, entriesAfter(2, [2, 2, 2])), {
    kind: "accept",
    truncateFrom: null,
    append: [],
    matchIndex: 5,
  });
  // A heartbeat with prevLogIndex below the snapshot.
  assert.deepEqual(decideAppend(log, 3, 2, []), {
    kind: "accept",
    truncateFrom: null,
    append: [],
    matchIndex: 3,
  });
  assert.deepEqual(log.position, { lastIndex: 7, lastTerm: 3 }, "deciding changes nothing");
});

Deno.test("AppendEntries §7: past the snapshot the usual §5.3 rule applies: a conflict truncates after the snapshot", () => {
  const log = compactedLog(5, 2, [2, 2, 2]); // 6–8, term 2
  const batch = entriesAfter(4, [2, 2, 3, 3]); // 5–8; 7 conflicts
  const d = decideAppend(log, 4, 2, batch);
  assert.equal(d.kind, "accept");
  if (d.kind !== "accept") return;
  assert.equal(d.truncateFrom, 7);
  assert.deepEqual(d.append.map((e) => [e.index, e.term]), [[7, 3], [8, 3]]);
  assert.equal(d.matchIndex, 8);
  applyDecision(log, d);
  assert.deepEqual(log.slice(1, 99).map((e) => [e.index, e.term]), [[6, 2], [7, 3], [8, 3]]);
});

Deno.test("AppendEntries §7: prevLogIndex at the snapshot's index is checked against the snapshot's term", () => {
  const log = compactedLog(5, 2, [3]);
  const d = decideAppend(log, 5, 2, entriesAfter(5, [3, 3]));
  assert.equal(d.kind, "accept");
  if (d.kind !== "accept") return;
  assert.deepEqual(d.append.map((e) => e.index), [7]);
  assert.equal(d.matchIndex, 7);
});

Deno.test("AppendEntries §7: a batch beyond the end of a compacted log is rejected, hinting the next index", () => {
  const log = compactedLog(5, 2, [2]);
  assert.deepEqual(decideAppend(log, 9, 3, entriesAfter(9, [3])), {
    kind: "reject",
    hintIndex: 7,
  });
  // A bare snapshot: the next index is right after it.
  assert.deepEqual(decideAppend(compactedLog(5, 2, []), 8, 2, []), {
    kind: "reject",
    hintIndex: 6,
  });
});

Deno.test("AppendEntries §7: a conflict hint never points into the snapshot", () => {
  // Term 2 runs from inside the snapshot through 6–7; the leader's prevLogTerm
  // at 7 is 3, so the follower skips back over term 2 — but only to 6.
  const log = compactedLog(5, 2, [2, 2]);
  assert.deepEqual(decideAppend(log, 7, 3, []), { kind: "reject", hintIndex: 6 });
  // Retrying from the hint succeeds: prevLogIndex 5 is the snapshot.
  const d = decideAppend(log, 5, 2, entriesAfter(5, [3, 3]));
  applyDecision(log, d);
  assert.deepEqual(log.slice(1, 99).map((e) => [e.index, e.term]), [[6, 3], [7, 3]]);
});
