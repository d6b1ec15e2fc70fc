// Linearizability checker for histories recorded against kvstore, in the model
// of one register per key (a string, or null when the key is absent). Fault and
// simulator tests record what each client sent, what came back and when, and
// ask `checkLinearizable` whether some sequential order of the operations
// explains every reply while respecting real time. Test tooling only: it must
// stay pure (no clock, no I/O, no randomness) so a verdict is reproducible
// from the history alone, and it must not be imported by src/.
//
// Algorithm: Wing & Gong's search with Lowe's memoisation, as in Knossos and
// Porcupine. Every operation touches one key and linearizability is
// compositional, so each key is checked on its own. For one key a depth-first
// search picks which pending operation takes effect next; a state is (which
// operations have taken effect, register value) and is explored at most once.
//
// Time: intervals are closed. Operation A precedes B only if
// A.completeMs < B.invokeMs, so a completion and an invocation at the same
// millisecond count as concurrent. Clocks are coarse and a reply and the next
// request often share a millisecond; calling that "concurrent" can only make
// the checker more lenient, never report a violation that did not happen.
//
// Indeterminate operations (completeMs null: timeout, lost connection) may
// take effect at any point after their invocation, or never. Indeterminate
// GETs carry no information and are dropped. The search succeeds once every
// determinate operation is placed.

export type KvOp =
  | { readonly kind: "set"; readonly key: string; readonly value: string }
  | { readonly kind: "del"; readonly key: string }
  | { readonly kind: "get"; readonly key: string };

export type KvResult =
  | { readonly kind: "ok" } // SET acknowledged
  | { readonly kind: "deleted"; readonly count: number } // DEL reply: 1 if the key existed, else 0
  | { readonly kind: "value"; readonly value: string | null }; // GET reply; null = key absent

export interface Operation {
  readonly client: number; // which client issued it (a client has at most one op outstanding)
  readonly op: KvOp;
  readonly invokeMs: number; // when it was sent (monotonic clock, any origin)
  /** null = indeterminate: the client gave up (timeout, connection lost). The
   * operation may or may not have taken effect, at any time after invokeMs. */
  readonly completeMs: number | null;
  readonly result: KvResult | null; // null exactly when completeMs is null
}

export type Verdict =
  | { readonly kind: "linearizable"; readonly operations: number; readonly keys: number }
  | { readonly kind: "not-linearizable"; readonly key: string; readonly explanation: string }
  | { readonly kind: "unknown"; readonly key: string; readonly reason: string }; // search budget exhausted

/** Default cap on search states per key: about a few hundred MB of memo at worst. */
export const searchStatesMaxDefault = 2_000_000;

// Explanations stay readable: at most this many operations of the prefix and
// of the blocked candidates are listed.
const explanationPrefixOpsMax = 10;
const explanationBlockedOpsMax = 8;

/** Register value ids. A GET compares the register with the value it saw and
 * a DEL only asks whether it is absent, so values that no determinate GET of
 * the key returned are indistinguishable and share one id: that merges search
 * states that differ only in which unread value the register holds. */
const absentValueId = 0;
const unreadValueId = 1;
const firstReadValueId = 2;
/** What a GET expects when it saw a value no SET of the key wrote: no state has it. */
const neverWrittenValueId = -1;

/**
 * Checks whether `history` is linearizable for a map of independent registers.
 *
 * Returns "linearizable" (with the number of operations in the history and of
 * distinct keys), or the first key in order of first appearance that is
 * "not-linearizable", with an explanation for a human. If no key fails but the
 * search on some key exceeded `searchStatesMax` states, returns "unknown" for
 * the first such key. Throws on a malformed history (result and completion not
 * both null or both set, a result of the wrong kind, a completion before its
 * invocation): those are bugs in the recorder, not in the store.
 */
export function checkLinearizable(
  history: readonly Operation[],
  opts?: { searchStatesMax?: number },
): Verdict {
  const searchStatesMax = opts?.searchStatesMax ?? searchStatesMaxDefault;
  if (!Number.isInteger(searchStatesMax) || searchStatesMax < 1) {
    throw new RangeError(
      `Option searchStatesMax must be a positive integer, got ${searchStatesMax}`,
    );
  }

  // Map keeps insertion order, so "first failing key" means first to appear.
  const byKey = new Map<string, Operation[]>();
  const indices = new Map<string, number[]>();
  history.forEach((operation, index) => {
    validate(operation, index);
    const key = operation.op.key;
    let ops = byKey.get(key);
    let ids = indices.get(key);
    if (ops === undefined || ids === undefined) {
      ops = [];
      ids = [];
      byKey.set(key, ops);
      indices.set(key, ids);
    }
    ops.push(operation);
    ids.push(index);
  });

  let firstUnknown: Verdict | null = null;
  for (const [key, ops] of byKey) {
    const outcome = checkKey(key, ops, indices.get(key) ?? [], searchStatesMax);
    switch (outcome.kind) {
      case "ok":
        break;
      case "fail":
        return { kind: "not-linearizable", key, explanation: outcome.explanation };
      case "unknown":
        // Keep going: a definite violation on a later key is more useful.
        firstUnknown ??= { kind: "unknown", key, reason: outcome.reason };
        break;
    }
  }
  return firstUnknown ?? { kind: "linearizable", operations: history.length, keys: byKey.size };
}

function validate(operation: Operation, index: number): void {
  const { invokeMs, completeMs, result, op } = operation;
  if (!Number.isFinite(invokeMs)) {
    throw new RangeError(`Operation ${index} has invokeMs ${invokeMs}, expected a finite number`);
  }
  if ((completeMs === null) !== (result === null)) {
    throw new TypeError(
      `Operation ${index} has completeMs ${completeMs} but result ${JSON.stringify(result)}; ` +
        "both must be null or neither",
    );
  }
  if (completeMs !== null && !(Number.isFinite(completeMs) && completeMs >= invokeMs)) {
    throw new RangeError(
      `Operation ${index} completes at ${completeMs} ms, not after its invocation at ${invokeMs} ms`,
    );
  }
  if (result === null) return;
  const expectedKind = op.kind === "set" ? "ok" : op.kind === "del" ? "deleted" : "value";
  if (result.kind !== expectedKind) {
    throw new TypeError(
      `Operation ${index} is a ${op.kind} with a "${result.kind}" result, expected "${expectedKind}"`,
    );
  }
}

/** One operation of the key under check, with what the model needs precomputed. */
interface Entry {
  readonly index: number; // position in the caller's history, for explanations
  readonly operation: Operation;
  readonly invokeMs: number;
  readonly completeMs: number; // Infinity when indeterminate
  readonly writeValueId: number; // SET: the id it stores; DEL: absentValueId
  readonly expectValueId: number; // determinate GET: the id it saw
  readonly expectDeletedCount: number | null; // determinate DEL: the count it saw
}

type KeyOutcome =
  | { readonly kind: "ok" }
  | { readonly kind: "fail"; readonly explanation: string }
  | { readonly kind: "unknown"; readonly reason: string };

/** One step of the current search path, with what undoing it needs. */
interface Step {
  readonly candidate: number; // >= 0: index into det; < 0: indet index -candidate - 1
  readonly valueIdBefore: number;
  readonly frontierBefore: number;
}

/** How many indeterminate operations of each class a search state has placed. */
type Counts = readonly number[];

/** True if state counts `a` placed no more of any class than `b`. */
function covers(a: Counts, b: Counts): boolean {
  if (a === b) return true;
  for (let c = 0; c < a.length; c++) if (a[c]! > b[c]!) return false;
  return true;
}

interface InternedCounts {
  readonly counts: Counts;
  readonly alone: readonly Counts[];
}

interface Frame {
  readonly candidates: readonly number[];
  cursor: number;
}

function checkKey(
  key: string,
  operations: readonly Operation[],
  historyIndices: readonly number[],
  searchStatesMax: number,
): KeyOutcome {
  const readValues = new Set<string>();
  const writtenValues = new Set<string>();
  for (const { op, result } of operations) {
    if (result?.kind === "value" && result.value !== null) readValues.add(result.value);
    if (op.kind === "set") writtenValues.add(op.value);
  }
  const readValueIds = new Map<string, number>();
  for (const value of readValues) readValueIds.set(value, firstReadValueId + readValueIds.size);

  const det: Entry[] = [];
  const indet: Entry[] = [];
  operations.forEach((operation, i) => {
    const { op, result } = operation;
    // An indeterminate GET neither changes the register nor tells us anything.
    if (result === null && op.kind === "get") return;
    let expectValueId = absentValueId;
    if (result?.kind === "value" && result.value !== null) {
      expectValueId = writtenValues.has(result.value)
        ? readValueIds.get(result.value) ?? neverWrittenValueId
        : neverWrittenValueId;
    }
    const entry: Entry = {
      index: historyIndices[i] ?? i,
      operation,
      invokeMs: operation.invokeMs,
      completeMs: operation.completeMs ?? Infinity,
      writeValueId: op.kind === "set" ? readValueIds.get(op.value) ?? unreadValueId : absentValueId,
      expectValueId,
      expectDeletedCount: result?.kind === "deleted" ? result.count : null,
    };
    (result === null ? indet : det).push(entry);
  });
  if (det.length === 0) return { kind: "ok" };
  det.sort((a, b) => a.invokeMs - b.invokeMs || a.completeMs - b.completeMs || a.index - b.index);
  indet.sort((a, b) => a.invokeMs - b.invokeMs || a.index - b.index);

  // Indeterminate operations with the same effect (the value they write, or
  // absent for a DEL) form a class. Along a search path the earliest pending
  // completion only grows, so members of a class that are placeable now stay
  // placeable and are interchangeable: the search offers one per class. Two
  // states with the same determinate set have the same earliest pending
  // completion, so the same members are placeable in both, and every member
  // placed so far is among them: the memo records how many of each class
  // were placed, not which.
  const classOfWrite = new Map<number, number>();
  const indetClass = indet.map((entry) => {
    const known = classOfWrite.get(entry.writeValueId);
    if (known !== undefined) return known;
    classOfWrite.set(entry.writeValueId, classOfWrite.size);
    return classOfWrite.size - 1;
  });
  const classCount = classOfWrite.size;

  const detDone = new Uint8Array(det.length);
  const indetDone = new Uint8Array(indet.length);
  const placedByClass = new Int32Array(classCount);
  const classOffered = new Uint8Array(classCount);
  let frontier = 0; // every det[i] with i < frontier has taken effect; det[frontier] has not
  let detDoneCount = 0;
  let valueId = absentValueId;

  const entryOf = (candidate: number): Entry =>
    (candidate >= 0 ? det[candidate] : indet[-candidate - 1])!;

  /** The register after `candidate` takes effect in state `from`, or null if its reply rules that out. */
  const transition = (candidate: number, from: number): number | null => {
    const entry = entryOf(candidate);
    switch (entry.operation.op.kind) {
      case "set":
        return entry.writeValueId;
      case "del":
        if (entry.expectDeletedCount !== null) {
          if (entry.expectDeletedCount !== (from === absentValueId ? 0 : 1)) return null;
        }
        return absentValueId;
      case "get":
        return entry.expectValueId === from ? from : null;
    }
  };

  // A pending operation may take effect next only if it was invoked no later
  // than the earliest completion among pending determinate operations: that
  // one must take effect before it completes. Ties are allowed (closed
  // intervals). det is sorted by invocation, so the scan stops at the first
  // operation invoked after the running minimum.
  const candidatesNow = (withIndeterminate = true): number[] => {
    let completeMsMin = Infinity;
    const candidates: number[] = [];
    for (let i = frontier; i < det.length; i++) {
      const entry = det[i]!;
      if (entry.invokeMs > completeMsMin) break;
      if (detDone[i] === 1) continue;
      // Partial-order reduction: a GET that matches the register now can be
      // placed now without loss, because a read changes nothing and placing it
      // earlier only relaxes the constraints on everything else.
      if (entry.operation.op.kind === "get" && entry.expectValueId === valueId) return [i];
      if (entry.completeMs < completeMsMin) completeMsMin = entry.completeMs;
      candidates.push(i);
    }
    // Earliest deadline first: the likeliest order for a correct store.
    candidates.sort((a, b) => det[a]!.completeMs - det[b]!.completeMs || a - b);
    if (!withIndeterminate) return candidates;
    // Indeterminate ones last, so "it never happened" is tried first; one per
    // class, and none that would leave the register as it is.
    classOffered.fill(0);
    for (let j = 0; j < indet.length && indet[j]!.invokeMs <= completeMsMin; j++) {
      const classIndex = indetClass[j]!;
      if (indetDone[j] === 1 || classOffered[classIndex] === 1) continue;
      classOffered[classIndex] = 1;
      if (transition(-j - 1, valueId) !== valueId) candidates.push(-j - 1);
    }
    return candidates;
  };

  // Right after an indeterminate operation X is placed, only a determinate
  // operation that notices X may follow: one whose reply fits the register
  // with X but not without it (a GET of X's value, a DEL count that needs X).
  // This loses nothing: in any valid order, an indeterminate operation that
  // the next operation does not notice (or that comes last) can be dropped
  // from the order, since taking effect is optional and it never constrains
  // when others may go (for a register, a reply that fits both with and
  // without X also leaves the same register). It keeps "maybe it happened
  // here" from multiplying the search by every point in time.
  const noticingCandidates = (valueIdWithout: number): number[] =>
    candidatesNow(false).filter((candidate) =>
      transition(candidate, valueId) !== null &&
      transition(candidate, valueIdWithout) === null
    );

  // Memo of explored states (all but those right after an indeterminate
  // operation), keyed by (determinate set, register); the value lists the
  // per-class counts of placed indeterminate operations seen with it. A state
  // that placed at least as many of every class as an explored one is
  // subsumed: anything it can still do, the other can too, by leaving the
  // extra indeterminate operations out.
  // The determinate set is written as the frontier plus the placed operations
  // beyond it; those were all invoked before det[frontier] completed, so a
  // short scan finds them and the key stays small.
  // Count vectors repeat across many states, so each distinct one is stored
  // once (with a one-element list for the usual case of one vector per key):
  // that keeps a memo entry to its key string, which bounds memory.
  const memo = new Map<string, readonly Counts[]>();
  const countsInterned = new Map<string, InternedCounts>();
  let countsNow: InternedCounts | null = null; // null: placedByClass changed since interned
  const internCounts = (): InternedCounts => {
    if (countsNow !== null) return countsNow;
    const name = placedByClass.join(",");
    let interned = countsInterned.get(name);
    if (interned === undefined) {
      const counts = Array.from(placedByClass);
      interned = { counts, alone: [counts] };
      countsInterned.set(name, interned);
    }
    return (countsNow = interned);
  };
  let statesVisited = 0;
  const remember = (): boolean => {
    const head = det[frontier]!;
    let memoKey = `${valueId}:${frontier}`;
    for (let i = frontier + 1; i < det.length && det[i]!.invokeMs <= head.completeMs; i++) {
      if (detDone[i] === 1) memoKey += `,${i}`;
    }
    const { counts, alone } = internCounts();
    const seen = memo.get(memoKey);
    if (seen === undefined) {
      memo.set(memoKey, alone);
    } else {
      if (seen.some((placed) => covers(placed, counts))) return false;
      // Entries the new one covers are now redundant.
      const kept = seen.filter((placed) => !covers(counts, placed));
      kept.push(counts);
      memo.set(memoKey, kept);
    }
    statesVisited++;
    return true;
  };

  const apply = (candidate: number, valueIdAfter: number): Step => {
    const step: Step = { candidate, valueIdBefore: valueId, frontierBefore: frontier };
    if (candidate >= 0) {
      detDone[candidate] = 1;
      detDoneCount++;
      while (frontier < det.length && detDone[frontier] === 1) frontier++;
    } else {
      indetDone[-candidate - 1] = 1;
      placedByClass[indetClass[-candidate - 1]!]!++;
      countsNow = null;
    }
    valueId = valueIdAfter;
    return step;
  };

  const undo = (step: Step): void => {
    const { candidate } = step;
    if (candidate >= 0) {
      detDone[candidate] = 0;
      detDoneCount--;
    } else {
      indetDone[-candidate - 1] = 0;
      placedByClass[indetClass[-candidate - 1]!]!--;
      countsNow = null;
    }
    valueId = step.valueIdBefore;
    frontier = step.frontierBefore;
  };

  // The deepest state reached, measured in determinate operations placed, for
  // the explanation. A deeper state is never a memo hit (its determinate set
  // is new), so at the deepest state every determinate candidate was refused
  // by its reply, which is exactly what a human needs to see.
  let deepestPath: number[] = [];
  let deepestCount = 0;

  remember();
  const path: Step[] = [];
  const frames: Frame[] = [{ candidates: candidatesNow(), cursor: 0 }];
  while (frames.length > 0) {
    const frame = frames[frames.length - 1]!;
    if (frame.cursor === frame.candidates.length) {
      frames.pop();
      const step = path.pop();
      if (step !== undefined) undo(step);
      continue;
    }
    const candidate = frame.candidates[frame.cursor++]!;
    const valueIdAfter = transition(candidate, valueId);
    if (valueIdAfter === null) continue;
    const step = apply(candidate, valueIdAfter);
    path.push(step);
    if (detDoneCount === det.length) return { kind: "ok" };
    if (candidate < 0) {
      // Not memoised: its only children are the few operations noticing it,
      // and the state after one of those is memoised as usual.
      statesVisited++;
      frames.push({ candidates: noticingCandidates(step.valueIdBefore), cursor: 0 });
      continue;
    }
    if (!remember()) {
      undo(path.pop()!);
      continue;
    }
    if (detDoneCount > deepestCount) {
      deepestCount = detDoneCount;
      deepestPath = path.map((step) => step.candidate);
    }
    if (statesVisited > searchStatesMax) {
      return {
        kind: "unknown",
        reason:
          `Search budget of ${searchStatesMax} states exhausted on key ${
            JSON.stringify(key)
          } after placing at most ${deepestCount} of ${det.length} determinate operations; ` +
          "raise searchStatesMax or record a shorter history",
      };
    }
    frames.push({ candidates: candidatesNow(), cursor: 0 });
  }

  // Rebuild the deepest state to describe why nothing fits after it.
  for (const candidate of deepestPath) apply(candidate, transition(candidate, valueId) ?? valueId);
  const prefix = deepestPath.map(entryOf);
  let register: string | null = null; // the real value, where valueId may say only "unread"
  for (const { operation: { op } } of prefix) {
    if (op.kind === "set") register = op.value;
    if (op.kind === "del") register = null;
  }
  return {
    kind: "fail",
    explanation: explain(key, det, indet, prefix, candidatesNow().map(entryOf), register),
  };
}

function explain(
  key: string,
  det: readonly Entry[],
  indet: readonly Entry[],
  prefix: readonly Entry[],
  blocked: readonly Entry[],
  register: string | null,
): string {
  const placedDet = prefix.filter((entry) => entry.operation.result !== null).length;
  const lines: string[] = [
    `Key ${JSON.stringify(key)}: no order of its ${det.length} determinate and ${indet.length} ` +
    "indeterminate operations explains every reply within real time",
  ];
  const shown = prefix.slice(-explanationPrefixOpsMax);
  lines.push(
    `Longest linearizable prefix places ${placedDet} of ${det.length} determinate operations` +
      (shown.length < prefix.length
        ? `; its last ${shown.length} steps, in order:`
        : shown.length > 0
        ? ", in order:"
        : " (none)"),
  );
  for (const entry of shown) lines.push(`  ${describe(entry)}`);
  lines.push(`Register then holds ${JSON.stringify(register)}; none of these fits next:`);
  const blockedDet = blocked.filter((entry) => entry.operation.result !== null);
  for (const entry of blockedDet.slice(0, explanationBlockedOpsMax)) {
    lines.push(`  ${describe(entry)}: ${refusal(entry, register)}`);
  }
  if (blockedDet.length > explanationBlockedOpsMax) {
    lines.push(`  ... and ${blockedDet.length - explanationBlockedOpsMax} more`);
  }
  if (blocked.length > blockedDet.length) {
    lines.push("  (an indeterminate operation could go next, but none leads further)");
  }
  lines.push("Other orders of concurrent operations were tried too; none got further");
  return lines.join("\n");
}

function refusal(entry: Entry, register: string | null): string {
  const { op } = entry.operation;
  if (op.kind === "get") {
    return entry.expectValueId === neverWrittenValueId
      ? "no SET of this key ever wrote that value"
      : `register holds ${JSON.stringify(register)}`;
  }
  if (op.kind === "del") return register === null ? "key is absent" : "key is present";
  return "refused"; // A SET always fits; listed only for completeness.
}

function describe(entry: Entry): string {
  const { client, op, result, invokeMs, completeMs } = entry.operation;
  const command = op.kind === "set" ? `set ${JSON.stringify(op.value)}` : op.kind;
  let reply = "?";
  if (result !== null) {
    switch (result.kind) {
      case "ok":
        reply = "ok";
        break;
      case "deleted":
        reply = `deleted ${result.count}`;
        break;
      case "value":
        reply = JSON.stringify(result.value);
        break;
    }
  }
  const interval = `[${invokeMs}, ${completeMs === null ? "never" : completeMs}] ms`;
  return `#${entry.index} client ${client} ${command} -> ${reply} ${interval}`;
}
