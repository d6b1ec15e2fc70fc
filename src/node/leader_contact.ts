// The staleness bound on reads served from a node's own copy (its read port):
// remembers when this node last knew it held everything its leader had
// committed, and refuses such reads with -STALE once that is longer ago than
// `--max-staleness-ms`. One instance lives for the whole role process, so a
// follower promoted to leader keeps what it knew.
//
// It takes every time as an argument and reads no clock itself: the role
// process passes `performance.now()` (monotonic: a wall-clock step must not
// make old data look fresh) and, to and from the commit hint file, Date.now().
// Used by follower_role.ts and role_process.ts.
//
// What "caught up" means is the caller's promise: at time t this node had
// applied every entry its leader had committed when it sent the message
// received at t (or, on the leader, its own commit index covers its term's
// first entry, so nothing an earlier leader committed is missing).

import { encodeError } from "../codec/resp.ts";

export class LeaderContact {
  readonly maxStalenessMs: number;
  readonly #nodeId: number;
  /** Monotonic ms of the last catch-up; null: none known since start. Never goes back. */
  #lastMs: number | null;

  constructor(nodeId: number, maxStalenessMs: number, lastMs: number | null = null) {
    this.#nodeId = nodeId;
    this.maxStalenessMs = maxStalenessMs;
    this.#lastMs = lastMs;
  }

  /** Takes the contact time a commit hint recorded (wall clock, ms since the
   * epoch). A time ahead of `nowEpochMs` means the wall clock was stepped
   * back since: its age cannot be known, so it counts as no contact at all. */
  static fromEpochMs(
    nodeId: number,
    maxStalenessMs: number,
    contactEpochMs: number | null,
    nowEpochMs: number,
    nowMs: number,
  ): LeaderContact {
    const ageMs = contactEpochMs === null ? -1 : nowEpochMs - contactEpochMs;
    return new LeaderContact(nodeId, maxStalenessMs, ageMs < 0 ? null : nowMs - ageMs);
  }

  /** This node held everything its leader had committed as of `atMs`. */
  caughtUp(atMs: number): void {
    if (this.#lastMs === null || atMs > this.#lastMs) this.#lastMs = atMs;
  }

  /** Ms since the last catch-up (whole ms), or null when there was none. */
  ageMs(nowMs: number): number | null {
    return this.#lastMs === null ? null : Math.max(0, Math.floor(nowMs - this.#lastMs));
  }

  /** The wall-clock time of the last catch-up, for the commit hint; null: none.
   * Rounded to the older side: taken back from the hint and saved again, a
   * contact time must never creep forward. */
  epochMs(nowMs: number, nowEpochMs: number): number | null {
    return this.#lastMs === null ? null : nowEpochMs - Math.ceil(Math.max(0, nowMs - this.#lastMs));
  }

  /** The -STALE error reply a local read gets now, or null when it may be answered. */
  staleReply(nowMs: number): Uint8Array | null {
    const text = this.staleText(nowMs);
    return text === null ? null : encodeError(text);
  }

  /** The text of that reply (without "-"), or null when reads may be answered. */
  staleText(nowMs: number): string | null {
    const age = this.ageMs(nowMs);
    const bound = `(bound ${this.maxStalenessMs} ms)`;
    if (age === null) {
      return `STALE node ${this.#nodeId} has not caught up with a leader since it started ${bound}`;
    }
    if (age <= this.maxStalenessMs) return null;
    return `STALE node ${this.#nodeId} last caught up with a leader ${age} ms ago ${bound}`;
  }

  /** INFO lines; the age is -1 when there was no catch-up. */
  infoLines(nowMs: number): string[] {
    return [
      `leader_contact_age_ms:${this.ageMs(nowMs) ?? -1}`,
      `max_staleness_ms:${this.maxStalenessMs}`,
    ];
  }
}
