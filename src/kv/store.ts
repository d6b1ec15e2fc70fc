// The replicated state machine: a map from key bytes to value bytes, changed
// only by applying committed log entries in index order. Pure.

import { Buffer } from "node:buffer";
import type { WalRecord } from "../codec/wal_line.ts";

/** Keys are binary; latin1 maps each byte to one UTF-16 unit, so it is a fast,
 * exact, collision-free Map key. */
function mapKey(key: Uint8Array): string {
  return Buffer.from(key.buffer, key.byteOffset, key.byteLength).toString("latin1");
}

export type ApplyResult =
  | { readonly kind: "set" }
  | { readonly kind: "del"; readonly existed: boolean }
  | { readonly kind: "noop" };

export class KvStore {
  #map = new Map<string, Uint8Array>();

  get size(): number {
    return this.#map.size;
  }

  get(key: Uint8Array): Uint8Array | undefined {
    return this.#map.get(mapKey(key));
  }

  apply(record: WalRecord): ApplyResult {
    switch (record.op) {
      case "SET":
        this.#map.set(mapKey(record.key), record.value);
        return { kind: "set" };
      case "DEL":
        return { kind: "del", existed: this.#map.delete(mapKey(record.key)) };
      case "TERM":
        return { kind: "noop" };
    }
  }
}
