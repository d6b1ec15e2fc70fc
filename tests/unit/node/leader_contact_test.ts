// Unit tests of the follower read staleness bound (src/node/leader_contact.ts)
// with a fake clock: when reads turn -STALE, what the reply and INFO say, and
// how a contact time survives a restart through the commit hint.

import assert from "node:assert/strict";
import { LeaderContact } from "../../../src/node/leader_contact.ts";

const decode = (b: Uint8Array | null): string | null =>
  b === null ? null : new TextDecoder().decode(b);

Deno.test("staleness: no catch-up since start is stale, and the reply says so", () => {
  const c = new LeaderContact(3, 2000);
  assert.equal(
    decode(c.staleReply(5)),
    "-STALE node 3 has not caught up with a leader since it started (bound 2000 ms)\r\n",
  );
  assert.deepEqual(c.infoLines(5), ["leader_contact_age_ms:-1", "max_staleness_ms:2000"]);
});

Deno.test("staleness: reads are answered up to the bound and refused past it", () => {
  const c = new LeaderContact(3, 2000);
  c.caughtUp(1000);
  assert.equal(c.staleReply(1000), null);
  assert.equal(c.staleReply(3000), null); // exactly the bound: still within it
  assert.deepEqual(c.infoLines(3000), ["leader_contact_age_ms:2000", "max_staleness_ms:2000"]);
  assert.equal(
    decode(c.staleReply(3450.7)),
    "-STALE node 3 last caught up with a leader 2450 ms ago (bound 2000 ms)\r\n",
  );
  c.caughtUp(3500);
  assert.equal(c.staleReply(3600), null);
  assert.equal(c.ageMs(3600), 100);
});

Deno.test("staleness: a late, older catch-up time never moves the contact back", () => {
  const c = new LeaderContact(1, 500);
  c.caughtUp(2000);
  c.caughtUp(1000);
  assert.equal(c.ageMs(2100), 100);
});

Deno.test("staleness: a contact time from the commit hint keeps its age across a restart", () => {
  // Saved 300 ms before the restart (wall clock); the new process's monotonic
  // clock starts near 0.
  const c = LeaderContact.fromEpochMs(2, 2000, 1_000_000 - 300, 1_000_000, 12);
  assert.equal(c.ageMs(12), 300);
  assert.equal(c.staleReply(12 + 1700), null);
  assert.match(decode(c.staleReply(12 + 1701))!, /^-STALE node 2 last caught up .* 2001 ms ago/);
  // And back to wall clock for the next hint: the same instant.
  assert.equal(c.epochMs(500, 1_000_000 + 488), 1_000_000 - 300);
});

Deno.test("staleness: no contact time in the hint, or one from the future, counts as none", () => {
  assert.equal(LeaderContact.fromEpochMs(2, 2000, null, 1_000_000, 12).ageMs(12), null);
  // The wall clock was stepped back since the hint was written: its age is unknown.
  const future = LeaderContact.fromEpochMs(2, 2000, 1_000_050, 1_000_000, 12);
  assert.equal(future.ageMs(12), null);
  assert.equal(future.epochMs(12, 1_000_000), null);
  assert.match(decode(future.staleReply(12))!, /^-STALE node 2 has not caught up/);
});
