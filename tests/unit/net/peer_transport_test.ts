// validateControlMessage: what the control port accepts from the network.

import assert from "node:assert/strict";
import { defaultCluster } from "../../../src/config/cluster.ts";
import { termMax } from "../../../src/config/limits.ts";
import { validateControlMessage } from "../../../src/net/peer_transport.ts";

const cluster = defaultCluster();

Deno.test("control messages: a well-formed heartbeat and vote request are accepted", () => {
  assert.deepEqual(validateControlMessage({ kind: "Heartbeat", from: 2, term: 7 }, cluster), {
    kind: "Heartbeat",
    from: 2,
    term: 7,
  });
  const rv = {
    kind: "RequestVote",
    from: 3,
    term: 8,
    lastLogIndex: 10,
    lastLogTerm: 7,
    preVote: false,
  };
  assert.deepEqual(validateControlMessage(rv, cluster), rv);
});

Deno.test("control messages: a term above termMax is dropped, so one forged message cannot push every later campaign past 2^53", () => {
  // Regression: {"kind":"Heartbeat","term":9007199254740991} was adopted and
  // persisted; every campaign then asked for 2^53 and was refused everywhere.
  assert.equal(
    validateControlMessage({ kind: "Heartbeat", from: 2, term: 9007199254740991 }, cluster),
    null,
  );
  assert.equal(
    validateControlMessage({ kind: "Heartbeat", from: 2, term: termMax + 1 }, cluster),
    null,
  );
  assert.notEqual(
    validateControlMessage({ kind: "Heartbeat", from: 2, term: termMax }, cluster),
    null,
  );
  assert.equal(
    validateControlMessage(
      {
        kind: "RequestVote",
        from: 2,
        term: 3,
        lastLogIndex: 1,
        lastLogTerm: termMax + 1,
        preVote: true,
      },
      cluster,
    ),
    null,
  );
});

Deno.test("control messages: unknown senders, kinds and field types are dropped", () => {
  for (
    const bad of [
      null,
      "x",
      { kind: "Heartbeat", from: 9, term: 1 },
      { kind: "Heartbeat", from: 2, term: -1 },
      { kind: "Heartbeat", from: 2, term: 1.5 },
      { kind: "Nope", from: 2, term: 1 },
      { kind: "RequestVoteResponse", from: 2, term: 1, voteGranted: "yes", preVote: false },
    ]
  ) {
    assert.equal(validateControlMessage(bad, cluster), null, JSON.stringify(bad));
  }
});
