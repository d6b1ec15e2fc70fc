// Unit tests of src/raft/types.ts: the §5.4.1 up-to-date comparison, quorum sizes, invariant().

import assert from "node:assert/strict";
import {
  atLeastAsUpToDate,
  invariant,
  InvariantError,
  type LogPosition,
  quorumOf,
} from "../../../src/raft/types.ts";

const at = (lastIndex: number, lastTerm: number): LogPosition => ({ lastIndex, lastTerm });

Deno.test("§5.4.1: a log whose last term is later is more up to date, however short", () => {
  assert.equal(atLeastAsUpToDate(at(1, 3), at(100, 2)), true);
  assert.equal(atLeastAsUpToDate(at(100, 2), at(1, 3)), false);
});

Deno.test("§5.4.1: with equal last terms the longer log is more up to date", () => {
  assert.equal(atLeastAsUpToDate(at(6, 2), at(5, 2)), true);
  assert.equal(atLeastAsUpToDate(at(5, 2), at(6, 2)), false);
});

Deno.test("§5.4.1: equal logs are each at least as up to date as the other", () => {
  assert.equal(atLeastAsUpToDate(at(5, 2), at(5, 2)), true);
  assert.equal(atLeastAsUpToDate(at(0, 0), at(0, 0)), true);
});

Deno.test("§5.4.1: any non-empty log is at least as up to date as an empty one, not the reverse", () => {
  assert.equal(atLeastAsUpToDate(at(1, 1), at(0, 0)), true);
  assert.equal(atLeastAsUpToDate(at(0, 0), at(1, 1)), false);
});

Deno.test("§5.4.1: the comparison is a total preorder over sample positions", () => {
  const positions = [at(0, 0), at(1, 1), at(3, 1), at(2, 2), at(7, 2), at(4, 5)];
  for (const a of positions) {
    for (const b of positions) {
      assert.ok(atLeastAsUpToDate(a, b) || atLeastAsUpToDate(b, a), "total");
      for (const c of positions) {
        if (atLeastAsUpToDate(a, b) && atLeastAsUpToDate(b, c)) {
          assert.ok(atLeastAsUpToDate(a, c), "transitive");
        }
      }
    }
  }
});

Deno.test("quorum of 4 needs 3", () => {
  assert.equal(quorumOf(4), 3);
});

Deno.test("quorum is a strict majority: 1→1, 2→2, 3→2, 5→3, 6→4, 7→4", () => {
  assert.deepEqual([1, 2, 3, 5, 6, 7].map(quorumOf), [1, 2, 2, 3, 4, 4]);
});

Deno.test("any two quorums of the same cluster overlap (§5.2 election safety rests on it)", () => {
  for (let n = 1; n <= 9; n++) assert.ok(2 * quorumOf(n) > n, `n=${n}`);
});

Deno.test("invariant() throws an InvariantError with the message when the condition fails", () => {
  assert.doesNotThrow(() => invariant(true, "fine"));
  assert.throws(() => invariant(0, "Commit index went back from 5 to 4"), (e: unknown) => {
    assert.ok(e instanceof InvariantError);
    assert.equal(e.name, "InvariantError");
    assert.equal(e.message, "Commit index went back from 5 to 4");
    return true;
  });
});
