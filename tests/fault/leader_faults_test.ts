// Fault tests around losing the leader, with real processes:
//
// - A leader frozen with SIGSTOP (supervisor and role process) while clients
//   have a GET and a SET queued in its socket buffer: once a new leader has
//   acknowledged a newer write and the old one resumes, the old one
//   acknowledges neither queued request with anything stale, and follows the
//   new leader within a few election timeouts.
// - Two of four nodes down (a follower, then the leader): no quorum, the
//   survivors keep campaigning; when the follower returns with an old term
//   and a shorter log, a leader is elected among the three, it is not the
//   stale node, and it has every write made while that node was down.

import assert from "node:assert/strict";
import { startCluster, type TestNode, waitForValue, waitUntil } from "../integration/harness.ts";
import {
  freeze,
  infoOf,
  keySet,
  logMark,
  logSince,
  mismatches,
  Monitor,
  RawRequest,
  roleAndTerm,
  setAll,
  sleep,
  trySet,
} from "./fault_helpers.ts";

/** Election timeouts are 500–900 ms: two of them, plus time for a resumed
 * process to run its timers and for its role process to be replaced. */
const followNewLeaderMsMax = 4000;

Deno.test("frozen leader: requests queued while it was stopped get no stale answer, and it follows the new leader", async () => {
  await using cluster = await startCluster(4);
  const old = cluster.node(await cluster.waitForCluster());
  assert.equal(await trySet(cluster, old.clientPort, "k", "v1"), "OK");

  using frozen = freeze(cluster, old.id);
  // The kernel accepts these connections and buffers the commands; the
  // frozen role process reads them only once it is resumed.
  await using queuedGet = await RawRequest.send(old.clientPort, ["GET", "k"]);
  await using queuedSet = await RawRequest.send(old.clientPort, ["SET", "k", "new"]);

  // The other three elect a leader that acknowledges a newer write.
  let fresh: TestNode | null = null;
  await waitUntil(
    async () => {
      for (const n of cluster.nodes.filter((x) => x.id !== old.id)) {
        if ((await infoOf(cluster, n.clientPort))?.get("role") !== "master") continue;
        if ((await trySet(cluster, n.clientPort, "k", "v2")) === "OK") {
          fresh = n;
          return true;
        }
      }
      return false;
    },
    15_000,
    `a leader other than the frozen node ${old.id} to acknowledge SET k v2`,
  );
  const leader: TestNode = fresh!;
  assert.deepEqual([queuedGet.replies, queuedSet.replies], [[], []], "frozen: no reply yet");

  frozen.thaw();
  const thawedMs = performance.now();
  // Its client port redirects writes to the new leader: it follows it. Every
  // answer before that is an error or nothing, never an acknowledgement.
  const redirect = `-REDIRECT 127.0.0.1 ${leader.clientPort}`;
  const probeReplies: string[] = [];
  await waitUntil(
    async () => {
      const r = await trySet(cluster, old.clientPort, "probe", "after-thaw", 500);
      if (r !== null && probeReplies.at(-1) !== r) probeReplies.push(r);
      return r === redirect;
    },
    15_000,
    `node ${old.id} to redirect to node ${leader.id}`,
  ).catch((e) => {
    throw new Error(`${(e as Error).message}; replies ${JSON.stringify(probeReplies)}`);
  });
  const followMs = Math.round(performance.now() - thawedMs);
  console.log(`node ${old.id} redirected to the new leader ${followMs} ms after SIGCONT`);

  // The queued requests end within the 5 s request timeout (-TRYAGAIN) or
  // when the fenced leader role exits (connection closed).
  const settled = (r: RawRequest) => r.replies.length > 0 || r.ended !== null;
  await waitUntil(
    () => settled(queuedGet) && settled(queuedSet),
    Math.max(0, 7000 - (performance.now() - thawedMs)),
    "the queued requests to be answered or closed",
  ).catch(() => {}); // Silence is allowed too; what matters is what came.
  const outcome = {
    get: { replies: queuedGet.replies, ended: queuedGet.ended },
    set: { replies: queuedSet.replies, ended: queuedSet.ended },
    probes: probeReplies,
  };
  console.log(`queued requests on the old leader: ${JSON.stringify(outcome)}`);

  assert.ok(
    queuedSet.replies.every((r) => r.startsWith("-")),
    `the queued SET must not be acknowledged: ${JSON.stringify(outcome)}`,
  );
  assert.ok(
    queuedGet.replies.every((r) => r === "v2" || r.startsWith("-")),
    `the queued GET must not read anything older than v2: ${JSON.stringify(outcome)}`,
  );
  assert.ok(
    probeReplies.every((r) => r.startsWith("-")),
    `the resumed old leader must acknowledge no write: ${JSON.stringify(outcome)}`,
  );
  // Read back linearizably from the new leader: the queued SET did not win.
  assert.deepEqual(await mismatches(leader.clientPort, new Map([["k", "v2"]])), []);
  // Following for real: its own copy catches up with the new leader's write.
  await waitForValue(cluster, old.readPort, "k", "v2", 10_000);
  assert.ok(
    followMs <= followNewLeaderMsMax,
    `node ${old.id} followed the new leader ${followMs} ms after SIGCONT (max ${followNewLeaderMsMax})`,
  );
  cluster.pass();
});

Deno.test("no quorum, then a stale follower returns: one of the up-to-date nodes is elected and has every write", async () => {
  await using cluster = await startCluster(4);
  const first = cluster.node(await cluster.waitForCluster());
  const [stale, ...survivors] = cluster.nodes.filter((n) => n.id !== first.id) as [
    TestNode,
    ...TestNode[],
  ];
  const before = (await roleAndTerm(cluster, first.id))!;
  assert.equal(before.role, "master");

  await cluster.stop(stale.id, "SIGKILL");
  const written = keySet("while-down-", 200);
  await setAll(first.clientPort, written);
  const marks = survivors.map((s) => logMark(cluster, s.id));
  await cluster.stop(first.id, "SIGKILL");

  // Two of four up: nobody may lead. Watch for a few seconds.
  const noLeader = new Monitor(async () => {
    for (const s of survivors) {
      if ((await infoOf(cluster, s.clientPort))?.get("role") === "master") {
        return `node ${s.id} claims to lead with 2 of 4 nodes up`;
      }
    }
    return null;
  }, 50);
  await sleep(4000);
  await noLeader.stop();
  assert.deepEqual(noLeader.violations, []);
  const campaigns = survivors.map((s, i) =>
    logSince(cluster, s.id, marks[i]!, /asking for pre-votes|starting election/).length
  );
  const terms = await Promise.all(survivors.map((s) => roleAndTerm(cluster, s.id)));
  console.log(
    `without quorum for 4 s: campaigns ${JSON.stringify(campaigns)}, ` +
      `terms ${JSON.stringify(terms.map((t) => t?.term))} (leader's term was ${before.term})`,
  );
  // Pre-vote keeps the terms from climbing; the survivors still campaign.
  for (const [i, s] of survivors.entries()) {
    assert.ok(campaigns[i]! >= 2, `node ${s.id} campaigned ${campaigns[i]} times in 4 s`);
    const term = terms[i]?.term ?? NaN;
    assert.ok(term >= before.term, `node ${s.id}'s term ${term}, the leader's was ${before.term}`);
  }

  // The stale follower (old term, shorter log) comes back. Watch every live
  // node's INFO: when each (node, term) first claimed to lead.
  const live = [stale, ...survivors];
  const claims = new Map<string, number>();
  let upMs = NaN;
  const watch = new Monitor(async () => {
    const infos = await Promise.all(live.map((n) => infoOf(cluster, n.clientPort, 500)));
    for (const [i, info] of infos.entries()) {
      if (info?.get("role") !== "master") continue;
      const claim = `node ${live[i]!.id} term ${info.get("term")}`;
      if (!claims.has(claim)) claims.set(claim, performance.now());
      if (live[i] === stale) return `the stale node ${stale.id} claims to lead`;
    }
    return null;
  });
  const startedMs = performance.now();
  cluster.start(stale.id);
  let electedId: number;
  try {
    // Elections can include it only once its supervisor runs: time from
    // there, not from the process start, which a busy machine can stretch.
    await waitUntil(
      () => /\] node \d+ up: control port/.test(cluster.log(stale.id).split("---- node").at(-1)!),
      15_000,
      `node ${stale.id}'s supervisor to be up`,
    );
    upMs = performance.now();
    electedId = await cluster.waitForLeader(15_000);
  } finally {
    await sleep(500); // a moment more of watching the stale node
    await watch.stop();
  }
  assert.deepEqual(watch.violations, []);
  assert.notEqual(electedId, stale.id, "the stale node must not be elected");
  assert.ok(survivors.some((s) => s.id === electedId));
  const elected = cluster.node(electedId);
  const after = (await roleAndTerm(cluster, electedId))!;
  assert.ok(after.term > before.term, `new term ${after.term} above ${before.term}`);
  const claimedMs = claims.get(`node ${electedId} term ${after.term}`) ?? NaN;
  const electionMs = Math.round(claimedMs - upMs);
  console.log(
    `node ${stale.id} up ${Math.round(upMs - startedMs)} ms after its start; ` +
      `node ${electedId} claimed to lead in term ${after.term} ${electionMs} ms after that; ` +
      `claims: ${[...claims.keys()].join(", ")}`,
  );
  assert.deepEqual(await mismatches(elected.clientPort, written), []);
  // The stale node catches up from the new leader.
  await waitForValue(cluster, stale.readPort, "while-down-199", written.get("while-down-199")!);
  assert.ok(
    electionMs <= 6000,
    `node ${electedId} elected ${electionMs} ms after node ${stale.id} was up (max 6000)`,
  );
  cluster.pass();
});
