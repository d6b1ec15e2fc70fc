// Tests of tests/support/linearizability.ts: hand-written histories for the
// classic register cases (stale reads, reads going back in time, timeouts,
// DEL counts), a cross-check against a brute-force search on small random
// histories, seeded random histories from a real sequential simulation, and a
// timing print for a long single-key history (printed, never asserted).

import assert from "node:assert/strict";
import { checkLinearizable, type KvOp, type Operation, type Verdict } from "./linearizability.ts";
import { Prng } from "../../src/raft/prng.ts";

// ---- history builders: completeMs null makes the operation indeterminate ----

function set(
  client: number,
  key: string,
  value: string,
  invokeMs: number,
  completeMs: number | null,
): Operation {
  const op: KvOp = { kind: "set", key, value };
  return { client, op, invokeMs, completeMs, result: completeMs === null ? null : { kind: "ok" } };
}

function del(
  client: number,
  key: string,
  count: number,
  invokeMs: number,
  completeMs: number | null,
): Operation {
  const op: KvOp = { kind: "del", key };
  const result = completeMs === null ? null : { kind: "deleted", count } as const;
  return { client, op, invokeMs, completeMs, result };
}

function get(
  client: number,
  key: string,
  value: string | null,
  invokeMs: number,
  completeMs: number | null,
): Operation {
  const op: KvOp = { kind: "get", key };
  const result = completeMs === null ? null : { kind: "value", value } as const;
  return { client, op, invokeMs, completeMs, result };
}

function assertLinearizable(history: readonly Operation[]): void {
  const verdict = checkLinearizable(history);
  assert.equal(verdict.kind, "linearizable", `Expected linearizable, got ${show(verdict)}`);
}

/** Asserts a violation on `key` and returns the explanation for further checks. */
function assertViolation(history: readonly Operation[], key: string): string {
  const verdict = checkLinearizable(history);
  if (verdict.kind !== "not-linearizable") {
    assert.fail(`Expected a violation on key ${JSON.stringify(key)}, got ${show(verdict)}`);
  }
  assert.equal(verdict.key, key, verdict.explanation);
  return verdict.explanation;
}

function show(verdict: Verdict): string {
  return verdict.kind === "not-linearizable"
    ? `not-linearizable on ${JSON.stringify(verdict.key)}:\n${verdict.explanation}`
    : JSON.stringify(verdict);
}

// ---- sequential histories ----

Deno.test("sequential: SET, GET, DEL, GET with matching replies is linearizable", () => {
  assertLinearizable([
    get(1, "x", null, 0, 1),
    set(1, "x", "a", 2, 3),
    get(1, "x", "a", 4, 5),
    set(1, "x", "b", 6, 7),
    get(1, "x", "b", 8, 9),
    del(1, "x", 1, 10, 11),
    get(1, "x", null, 12, 13),
    del(1, "x", 0, 14, 15),
  ]);
});

Deno.test("sequential: a GET that returns the overwritten value is not linearizable", () => {
  assertViolation([
    set(1, "x", "a", 0, 1),
    set(1, "x", "b", 2, 3),
    get(1, "x", "a", 4, 5),
  ], "x");
});

Deno.test("sequential: a GET of an absent key that returns a value is not linearizable", () => {
  assertViolation([set(1, "x", "a", 0, 1), del(1, "x", 1, 2, 3), get(1, "x", "a", 4, 5)], "x");
});

Deno.test("an empty history is linearizable with zero operations and keys", () => {
  assert.deepEqual(checkLinearizable([]), { kind: "linearizable", operations: 0, keys: 0 });
});

// ---- concurrency ----

Deno.test("a read concurrent with a write may see the old value or the new one", () => {
  for (const seen of [null, "a"]) {
    assertLinearizable([set(1, "x", "a", 0, 10), get(2, "x", seen, 5, 15)]);
  }
});

Deno.test("a read invoked after a write completed must see it: a stale read is a violation", () => {
  const explanation = assertViolation([
    set(1, "x", "a", 0, 10),
    get(2, "x", null, 11, 15),
  ], "x");
  // The explanation names the key and the operation that could not be placed.
  assert.match(explanation, /Key "x"/);
  assert.match(explanation, /#1 client 2 get -> null \[11, 15\] ms: register holds "a"/);
  assert.ok(explanation.split("\n").length <= 30, explanation);
});

Deno.test("closed intervals: a write completing in the millisecond a read starts is concurrent", () => {
  assertLinearizable([set(1, "x", "a", 0, 10), get(2, "x", null, 10, 15)]);
  assertViolation([set(1, "x", "a", 0, 10), get(2, "x", null, 11, 15)], "x");
});

Deno.test("reads must not go back in time: a later read seeing an older value is a violation", () => {
  // The write overlaps both reads, so each read alone is fine; the first read
  // saw "b", so the write took effect before it ended, and the second read,
  // invoked after that, cannot see "a" again.
  const history = [
    set(1, "x", "a", 0, 1),
    set(2, "x", "b", 5, 50),
    get(3, "x", "b", 10, 20),
    get(4, "x", "a", 25, 30),
  ];
  assertViolation(history, "x");
  // The same reads in the other order are fine: old, then new.
  assertLinearizable([
    set(1, "x", "a", 0, 1),
    set(2, "x", "b", 5, 50),
    get(3, "x", "a", 10, 20),
    get(4, "x", "b", 25, 30),
  ]);
});

Deno.test("two concurrent writes may be seen in either order, but consistently", () => {
  const writes = [set(1, "x", "a", 0, 20), set(2, "x", "b", 0, 20)];
  assertLinearizable([...writes, get(3, "x", "a", 30, 31), get(3, "x", "a", 32, 33)]);
  assertLinearizable([...writes, get(3, "x", "b", 30, 31), get(3, "x", "b", 32, 33)]);
  // After both completed only the last one can be seen, and it cannot change.
  assertViolation([...writes, get(3, "x", "a", 30, 31), get(3, "x", "b", 32, 33)], "x");
});

Deno.test("a read of a value no one ever wrote is a violation", () => {
  const explanation = assertViolation([
    set(1, "x", "a", 0, 10),
    get(2, "x", "ghost", 5, 15),
  ], "x");
  assert.match(explanation, /no SET of this key ever wrote that value/);
});

Deno.test("the verdict does not depend on the order of the history array", () => {
  const history = [
    set(1, "x", "a", 0, 1),
    set(2, "x", "b", 5, 50),
    get(3, "x", "b", 10, 20),
    get(4, "x", "a", 25, 30),
  ];
  assertViolation([...history].reverse(), "x");
  assertLinearizable([...history.slice(0, 3)].reverse());
});

// ---- indeterminate operations ----

Deno.test("an indeterminate SET that a later read observes is linearizable", () => {
  assertLinearizable([set(1, "x", "a", 0, null), get(2, "x", "a", 50, 60)]);
  // Without the timed-out SET the same read is unexplainable.
  assertViolation([get(2, "x", "a", 50, 60)], "x");
});

Deno.test("an indeterminate SET never observed is linearizable", () => {
  assertLinearizable([
    set(1, "x", "a", 0, 10),
    set(2, "x", "b", 20, null),
    get(3, "x", "a", 30, 40),
    get(3, "x", "a", 50, 60),
  ]);
});

Deno.test("an indeterminate SET cannot take effect before it was invoked", () => {
  assertViolation([get(1, "x", "a", 0, 5), set(2, "x", "a", 10, null)], "x");
});

Deno.test("an indeterminate SET takes effect at most once: its value cannot come back", () => {
  assertViolation([
    set(2, "x", "b", 0, null),
    get(3, "x", "b", 30, 40),
    set(1, "x", "a", 50, 60),
    get(3, "x", "a", 70, 80),
    get(3, "x", "b", 90, 100),
  ], "x");
});

Deno.test("an indeterminate DEL may take effect late, or never", () => {
  const prefix = [set(1, "x", "a", 0, 10), del(2, "x", 0, 20, null)];
  assertLinearizable([...prefix, get(3, "x", "a", 30, 40), get(3, "x", null, 50, 60)]);
  assertLinearizable([...prefix, get(3, "x", "a", 30, 40), get(3, "x", "a", 50, 60)]);
  // Once the key was seen absent, nothing brings "a" back.
  assertViolation([...prefix, get(3, "x", null, 30, 40), get(3, "x", "a", 50, 60)], "x");
});

Deno.test("an indeterminate SET used early on one path stays available on another", () => {
  // The search can reach {SET b, both early DELs, SET c} with the timed-out
  // SET spent on explaining an early DEL, and again with it unspent. Only the
  // second can explain the last DEL, so the memo must not let the first
  // (which placed more) stand in for it.
  assertLinearizable([
    set(1, "x", "b", 0, 5),
    del(2, "x", 1, 6, 10),
    set(3, "x", "c", 8, 8),
    del(4, "x", 1, 12, 14),
    del(5, "x", 0, 5, 9),
    del(6, "x", 1, 12, 16),
    set(7, "x", "c", 0, null),
  ]);
});

Deno.test("an indeterminate GET carries no information and is ignored", () => {
  assertLinearizable([set(1, "x", "a", 0, 10), get(2, "x", null, 20, null)]);
});

// ---- DEL counts ----

Deno.test("DEL counts: 1 only when the key existed, 0 otherwise", () => {
  assertLinearizable([del(1, "x", 0, 0, 1)]);
  assertViolation([del(1, "x", 1, 0, 1)], "x");
  assertLinearizable([set(1, "x", "a", 0, 1), del(1, "x", 1, 2, 3), del(1, "x", 0, 4, 5)]);
  assertViolation([set(1, "x", "a", 0, 1), del(1, "x", 0, 2, 3)], "x");
  assertViolation([set(1, "x", "a", 0, 1), del(1, "x", 1, 2, 3), del(1, "x", 1, 4, 5)], "x");
});

Deno.test("DEL counts: of two concurrent DELs of one existing key only one may report 1", () => {
  const setA = set(1, "x", "a", 0, 1);
  assertLinearizable([setA, del(2, "x", 1, 5, 20), del(3, "x", 0, 5, 20)]);
  assertViolation([setA, del(2, "x", 1, 5, 20), del(3, "x", 1, 5, 20)], "x");
});

// ---- several keys ----

Deno.test("keys are independent: a violation on one key is reported with that key", () => {
  const history = [
    set(1, "a", "a1", 0, 10),
    set(2, "b", "b1", 0, 10),
    set(3, "c", "c1", 0, 10),
    get(1, "a", "a1", 20, 30),
    get(2, "b", null, 20, 30), // stale: b1 was acknowledged at 10
    get(3, "c", "c1", 20, 30),
    // A value from another key does not count for this one.
    get(3, "c", "a1", 40, 50),
  ];
  const explanation = assertViolation(history, "b");
  assert.match(explanation, /Key "b"/);
  // Without the bad read of b, the first failing key is c.
  assertViolation(history.filter((_, i) => i !== 4), "c");
  const fine = history.filter((_, i) => i !== 4 && i !== 6);
  assert.deepEqual(checkLinearizable(fine), { kind: "linearizable", operations: 5, keys: 3 });
});

// ---- budget and malformed input ----

Deno.test("a search past searchStatesMax is reported as unknown, after definite violations", () => {
  const busy = [set(1, "a", "a1", 0, 10), set(2, "a", "a2", 0, 10), get(3, "a", "a2", 20, 30)];
  const verdict = checkLinearizable(busy, { searchStatesMax: 1 });
  assert.equal(verdict.kind, "unknown", show(verdict));
  assert.equal(verdict.kind === "unknown" ? verdict.key : "", "a");
  assert.equal(checkLinearizable(busy).kind, "linearizable");
  // A definite violation on a later key beats an unknown on an earlier one.
  const verdict2 = checkLinearizable([...busy, get(1, "b", "ghost", 0, 1)], {
    searchStatesMax: 1,
  });
  assert.equal(verdict2.kind, "not-linearizable", show(verdict2));
  assert.throws(() => checkLinearizable(busy, { searchStatesMax: 0 }), /searchStatesMax/);
});

Deno.test("a malformed history throws and names the offending operation", () => {
  const badResult: Operation = { ...set(1, "x", "a", 0, 1), result: null };
  assert.throws(() => checkLinearizable([badResult]), /Operation 0 has completeMs 1/);
  const backwards = set(1, "x", "a", 10, 5);
  assert.throws(() => checkLinearizable([get(1, "x", null, 0, 1), backwards]), /Operation 1/);
  const wrongKind: Operation = { ...get(1, "x", null, 0, 1), result: { kind: "ok" } };
  assert.throws(() => checkLinearizable([wrongKind]), /is a get with a "ok" result/);
});

// ---- cross-check against brute force ----

/**
 * The definition, with no cleverness: some order of all determinate
 * operations and any subset of the indeterminate ones that respects real
 * time (A before B whenever A completed before B was invoked) and the model.
 */
function linearizableByBruteForce(history: readonly Operation[]): boolean {
  const ops = history.filter((o) => !(o.op.kind === "get" && o.result === null));
  const keys = new Set(ops.map((o) => o.op.key));
  for (const key of keys) {
    const mine = ops.filter((o) => o.op.key === key);
    const placed = new Array<boolean>(mine.length).fill(false);
    const search = (register: string | null, count: number): boolean => {
      if (mine.every((o, i) => placed[i] || o.result === null)) return true;
      for (let i = 0; i < mine.length; i++) {
        const o = mine[i]!;
        if (placed[i]) continue;
        // Every operation that completed before this one was invoked must be placed already.
        const ready = mine.every((p, j) =>
          placed[j] || p.completeMs === null || !(p.completeMs < o.invokeMs)
        );
        if (!ready) continue;
        let next = register;
        if (o.op.kind === "set") next = o.op.value;
        if (o.op.kind === "del") {
          if (o.result?.kind === "deleted" && o.result.count !== (register === null ? 0 : 1)) {
            continue;
          }
          next = null;
        }
        if (o.op.kind === "get" && o.result?.kind === "value" && o.result.value !== register) {
          continue;
        }
        placed[i] = true;
        const found = search(next, count + 1);
        placed[i] = false;
        if (found) return true;
      }
      return false;
    };
    if (!search(null, 0)) return false;
  }
  return true;
}

Deno.test("cross-check: agrees with brute force on small random histories", () => {
  const prng = new Prng(2024);
  const values = ["a", "b", "c"]; // few and repeated, so the checker cannot lean on uniqueness
  let linearizable = 0;
  for (let n = 0; n < 3000; n++) {
    const history: Operation[] = [];
    const count = prng.intBetween(1, 7);
    for (let i = 0; i < count; i++) {
      const client = i + 1;
      const key = prng.next() < 0.8 ? "x" : "y";
      const invokeMs = prng.intBetween(0, 12);
      const completeMs = prng.next() < 0.2 ? null : invokeMs + prng.intBetween(0, 6);
      const roll = prng.next();
      if (roll < 0.4) {
        history.push(set(client, key, values[prng.intBetween(0, 2)]!, invokeMs, completeMs));
      } else if (roll < 0.6) {
        history.push(del(client, key, prng.intBetween(0, 1), invokeMs, completeMs));
      } else {
        const seen = [null, ...values, "z"][prng.intBetween(0, 4)]!;
        history.push(get(client, key, seen, invokeMs, completeMs));
      }
    }
    const expected = linearizableByBruteForce(history);
    const verdict = checkLinearizable(history);
    assert.equal(
      verdict.kind,
      expected ? "linearizable" : "not-linearizable",
      `case ${n}: ${JSON.stringify(history)}\n${show(verdict)}`,
    );
    if (expected) linearizable++;
  }
  // Both outcomes must be well represented, or the cross-check proves little.
  assert.ok(linearizable > 600 && linearizable < 2400, `${linearizable} of 3000 linearizable`);
});

// ---- random histories from a sequential simulation ----

interface SimulationOptions {
  readonly seed: number;
  readonly clients: number;
  readonly opsPerClient: number;
  readonly keys: readonly string[];
  readonly indeterminateChance: number;
}

/**
 * Each client issues operations one at a time with random intervals; each
 * operation takes effect at a random instant inside its interval (or, for a
 * timed-out one, maybe never, maybe long after the client gave up). Replaying
 * those instants in order through a real map gives the replies, so the
 * history is linearizable by construction.
 */
function simulateHistory(o: SimulationOptions): Operation[] {
  const prng = new Prng(o.seed);
  const timeoutMs = 30;
  interface Planned {
    readonly client: number;
    readonly op: KvOp;
    readonly invokeMs: number;
    readonly completeMs: number | null;
    readonly effectMs: number | null; // null: it never took effect
  }
  const planned: Planned[] = [];
  let valueCounter = 0;
  for (let client = 1; client <= o.clients; client++) {
    let nowMs = prng.intBetween(0, 10);
    for (let n = 0; n < o.opsPerClient; n++) {
      const key = o.keys[prng.intBetween(0, o.keys.length - 1)]!;
      const roll = prng.next();
      const op: KvOp = roll < 0.45
        ? { kind: "get", key }
        : roll < 0.85
        ? { kind: "set", key, value: `v${valueCounter++}` }
        : { kind: "del", key };
      const invokeMs = nowMs;
      if (prng.next() < o.indeterminateChance) {
        // It may land well after the client gave up and moved on.
        const effectMs = prng.next() < 0.5 ? invokeMs + prng.next() * 3 * timeoutMs : null;
        planned.push({ client, op, invokeMs, completeMs: null, effectMs });
        nowMs = invokeMs + timeoutMs + prng.intBetween(0, 5);
      } else {
        const completeMs = invokeMs + prng.intBetween(0, 20);
        const effectMs = invokeMs + prng.next() * (completeMs - invokeMs);
        planned.push({ client, op, invokeMs, completeMs, effectMs });
        nowMs = completeMs + prng.intBetween(0, 5);
      }
    }
  }

  const state = new Map<string, string>();
  const results = new Map<Planned, Operation["result"]>();
  const effective = planned.filter((p) => p.effectMs !== null);
  effective.sort((a, b) => a.effectMs! - b.effectMs!);
  for (const p of effective) {
    const { op } = p;
    switch (op.kind) {
      case "set":
        state.set(op.key, op.value);
        results.set(p, { kind: "ok" });
        break;
      case "del":
        results.set(p, { kind: "deleted", count: state.delete(op.key) ? 1 : 0 });
        break;
      case "get":
        results.set(p, { kind: "value", value: state.get(op.key) ?? null });
        break;
    }
  }
  return planned
    .map((p) => ({
      client: p.client,
      op: p.op,
      invokeMs: p.invokeMs,
      completeMs: p.completeMs,
      result: p.completeMs === null ? null : results.get(p) ?? null,
    }))
    .sort((a, b) => a.invokeMs - b.invokeMs);
}

/** Replaces the reply of one determinate GET (picked by `prng`) with a value never written. */
function corruptOneRead(history: readonly Operation[], prng: Prng): [Operation[], string] {
  const reads = history.flatMap((o, i) => o.op.kind === "get" && o.result !== null ? [i] : []);
  const victim = reads[prng.intBetween(0, reads.length - 1)]!;
  const bad = history[victim]!;
  const corrupted = history.map((o, i) =>
    i === victim ? { ...o, result: { kind: "value", value: "never-written" } as const } : o
  );
  return [corrupted, bad.op.key];
}

Deno.test("random histories from a sequential simulation are linearizable; a corrupted read is not", () => {
  for (let seed = 1; seed <= 30; seed++) {
    const history = simulateHistory({
      seed,
      clients: 5,
      opsPerClient: 60,
      keys: ["a", "b", "c"],
      indeterminateChance: 0.05,
    });
    const verdict = checkLinearizable(history);
    assert.deepEqual(
      verdict,
      { kind: "linearizable", operations: history.length, keys: 3 },
      `seed ${seed}: ${show(verdict)}`,
    );
    const [corrupted, key] = corruptOneRead(history, new Prng(seed));
    const bad = checkLinearizable(corrupted);
    assert.equal(bad.kind, "not-linearizable", `seed ${seed}: ${show(bad)}`);
    assert.equal(bad.kind === "not-linearizable" ? bad.key : "", key, `seed ${seed}`);
  }
});

Deno.test("performance: 2000 operations on one key from 8 clients (time printed, not asserted)", () => {
  const history = simulateHistory({
    seed: 7,
    clients: 8,
    opsPerClient: 250,
    keys: ["hot"],
    indeterminateChance: 0.003,
  });
  const indeterminate = history.filter((o) => o.completeMs === null).length;
  let startedMs = performance.now();
  const verdict = checkLinearizable(history);
  const validMs = performance.now() - startedMs;
  assert.equal(verdict.kind, "linearizable", show(verdict));

  // A corrupted read near the end makes the search exhaust everything before it.
  const lastReads = history.flatMap((o, i) =>
    o.op.kind === "get" && o.result !== null && i > history.length * 0.9 ? [i] : []
  );
  const victim = lastReads[0]!;
  const corrupted = history.map((o, i) =>
    i === victim ? { ...o, result: { kind: "value", value: "never-written" } as const } : o
  );
  startedMs = performance.now();
  const bad = checkLinearizable(corrupted);
  const invalidMs = performance.now() - startedMs;
  assert.equal(bad.kind, "not-linearizable", show(bad));
  console.log(
    `${history.length} ops (${indeterminate} indeterminate), 8 clients, one key: ` +
      `linearizable in ${validMs.toFixed(0)} ms, corrupted read found in ${
        invalidMs.toFixed(0)
      } ms`,
  );
});
