// ElectionCore.clone() is an exact copy, PRNG included (regression: the clone's
// generator used to be one draw ahead, so its timeouts drifted after one event).
import assert from "node:assert/strict";
import { ElectionCore } from "../../../src/raft/election.ts";
import { Prng } from "../../../src/raft/prng.ts";
Deno.test("clone(): the same ticks give the same effects as the original", () => {
  const log = { lastIndex: 0, lastTerm: 0 };
  const a = new ElectionCore(
    {
      id: 1,
      peers: [2, 3, 4],
      heartbeatIntervalTicks: 10,
      electionTimeoutTicksMin: 50,
      electionTimeoutTicksMax: 90,
    },
    { currentTerm: 0, votedFor: null },
    new Prng(7),
  );
  const b = a.clone();
  for (let t = 1; t <= 300; t++) assert.deepEqual(b.tick(log), a.tick(log), `tick ${t}`);
});
