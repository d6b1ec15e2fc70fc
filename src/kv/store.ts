// The replicated state machine: a map from key bytes to value bytes, changed
// only by applying committed log entries in index order. Pure.
//
// Keys and values are held as one-character-per-byte strings (latin1.ts):
// compact, and copies, so a stored value never pins the network or file
// buffer it arrived in.
//
// Point-in-time snapshots while writes go on: `beginSnapshot()` fixes the key
// list and from then on remembers the value each key had before its first
// change. The snapshot reads each key's value as of its start, chunk by
// chunk, between which entries keep being applied; nothing is copied up front
// but the key list.

import type { WalRecord } from "../codec/wal_line.ts";
import { bytesToLatin1, latin1ToBytes } from "./latin1.ts";

export type ApplyResult =
  | { readonly kind: "set" }
  | { readonly kind: "del"; readonly existed: boolean }
  | { readonly kind: "noop" };

/** One key and its value, both as latin1 strings (see latin1.ts). */
export type KvPair = readonly [key: string, value: string];

export class KvStore {
  #map: Map<string, string>;
  /** While a snapshot runs: each changed key's value at its start (undefined: absent). */
  #before: Map<string, string | undefined> | null = null;

  constructor(pairs?: Map<string, string>) {
    this.#map = pairs ?? new Map();
  }

  get size(): number {
    return this.#map.size;
  }

  get(key: Uint8Array): Uint8Array | undefined {
    const value = this.#map.get(bytesToLatin1(key));
    return value === undefined ? undefined : latin1ToBytes(value);
  }

  apply(record: WalRecord): ApplyResult {
    switch (record.op) {
      case "SET": {
        const key = bytesToLatin1(record.key);
        this.#remember(key);
        this.#map.set(key, bytesToLatin1(record.value));
        return { kind: "set" };
      }
      case "DEL": {
        const key = bytesToLatin1(record.key);
        this.#remember(key);
        return { kind: "del", existed: this.#map.delete(key) };
      }
      case "TERM":
        return { kind: "noop" };
    }
  }

  /** Replaces the whole state (a snapshot received from the leader). */
  replaceAll(pairs: Map<string, string>): void {
    this.#map = pairs;
    this.#before = null;
  }

  #remember(key: string): void {
    const before = this.#before;
    if (before !== null && !before.has(key)) before.set(key, this.#map.get(key));
  }

  /** Starts a point-in-time view of the state as it is now; read it with
   * the returned cursor, then `end()` it. One at a time. */
  beginSnapshot(): SnapshotCursor {
    if (this.#before !== null) throw new Error("A snapshot is already being taken");
    const before = new Map<string, string | undefined>();
    this.#before = before;
    const keys = Array.from(this.#map.keys());
    const map = this.#map;
    let at = 0;
    return {
      keys: keys.length,
      next: (max: number, bytesMax = Number.MAX_SAFE_INTEGER): KvPair[] | null => {
        if (at >= keys.length) return null;
        const out: KvPair[] = [];
        let bytes = 0;
        const stop = Math.min(keys.length, at + max);
        for (; at < stop && bytes < bytesMax; at++) {
          const key = keys[at]!;
          const value = before.has(key) ? before.get(key) : map.get(key);
          if (value !== undefined) {
            out.push([key, value]);
            bytes += key.length + value.length;
          }
        }
        return out;
      },
      end: () => {
        if (this.#before === before) this.#before = null;
      },
    };
  }
}

export interface SnapshotCursor {
  /** Keys when the snapshot began. */
  readonly keys: number;
  /** Up to `max` more pairs as of the snapshot's start, fewer once they hold
   * `bytesMax` bytes (at least one); null when done. */
  next(max: number, bytesMax?: number): KvPair[] | null;
  /** Stops recording changes for this snapshot. */
  end(): void;
}
