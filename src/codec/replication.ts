// The replication stream between a leader role process and its followers.
// Text header lines, and for APPEND a body of raw WAL lines, so what crosses
// the wire is byte for byte what lands in the follower's WAL:
//
//   follower → leader   HELLO <nodeId> <term> <lastIndex> <lastTerm>
//                       ACK <term> <matchIndex> <round>
//                       NACK <term> <hintIndex> <round>
//                       SNAPACK <term> <receivedBytes> <round>
//   leader → follower   APPEND <term> <prevIndex> <prevTerm> <leaderCommit> <count> <bytes> <round>
//                       <bytes of `count` WAL lines>
//                       SNAPSHOT <term> <index> <snapTerm> <lineHash> <offset> <total> <bytes>
//                                <leaderCommit> <round>
//                       <`bytes` bytes of the snapshot file from `offset`>
//                       ERR <term> <reason…>
//
// `round` numbers each APPEND or SNAPSHOT a leader sends; an ACK, NACK or
// SNAPACK echoes it, which lets the leader confirm it still leads after a
// read arrived (ReadIndex).
//
// SNAPSHOT (Raft §7, InstallSnapshot) carries the leader's snapshot file in
// chunks, in order from offset 0 to `total`, to a follower that needs entries
// the leader has compacted away. The follower answers each chunk with
// SNAPACK, and the last one, once the snapshot is installed, with ACK <index>.
// Pure: callers feed bytes in and get decoded messages out; bad input yields
// an error value, never an exception.

import {
  replicationBatchBytesMax,
  replicationHeaderBytesMax,
  snapshotChunkBytes,
} from "../config/limits.ts";

export type ReplicationMessage =
  | {
    readonly kind: "HELLO";
    readonly nodeId: number;
    readonly term: number;
    readonly lastIndex: number;
    readonly lastTerm: number;
  }
  | {
    readonly kind: "ACK";
    readonly term: number;
    readonly matchIndex: number;
    readonly round: number;
  }
  | {
    readonly kind: "NACK";
    readonly term: number;
    readonly hintIndex: number;
    readonly round: number;
  }
  | {
    readonly kind: "APPEND";
    readonly term: number;
    readonly prevIndex: number;
    readonly prevTerm: number;
    readonly leaderCommit: number;
    readonly round: number;
    /** The WAL lines, each WITHOUT its trailing newline. */
    readonly lines: readonly Uint8Array[];
  }
  | {
    readonly kind: "SNAPSHOT";
    readonly term: number;
    /** Last index and term the snapshot covers, and that entry's line hash. */
    readonly index: number;
    readonly snapTerm: number;
    readonly lineHash: number;
    readonly offset: number;
    readonly total: number;
    readonly leaderCommit: number;
    readonly round: number;
    readonly chunk: Uint8Array;
  }
  | {
    readonly kind: "SNAPACK";
    readonly term: number;
    readonly receivedBytes: number;
    readonly round: number;
  }
  | { readonly kind: "ERR"; readonly term: number; readonly reason: string };

const encoder = new TextEncoder();
const decoder = new TextDecoder();
const NL = 0x0a;

export function encodeHello(
  nodeId: number,
  term: number,
  lastIndex: number,
  lastTerm: number,
): Uint8Array {
  return encoder.encode(`HELLO ${nodeId} ${term} ${lastIndex} ${lastTerm}\n`);
}

export function encodeAck(term: number, matchIndex: number, round: number): Uint8Array {
  return encoder.encode(`ACK ${term} ${matchIndex} ${round}\n`);
}

export function encodeNack(term: number, hintIndex: number, round: number): Uint8Array {
  return encoder.encode(`NACK ${term} ${hintIndex} ${round}\n`);
}

export function encodeSnapAck(term: number, receivedBytes: number, round: number): Uint8Array {
  return encoder.encode(`SNAPACK ${term} ${receivedBytes} ${round}\n`);
}

export interface SnapshotChunkHeader {
  readonly term: number;
  readonly index: number;
  readonly snapTerm: number;
  readonly lineHash: number;
  readonly offset: number;
  readonly total: number;
  readonly leaderCommit: number;
  readonly round: number;
}

export function encodeSnapshotChunk(h: SnapshotChunkHeader, chunk: Uint8Array): Uint8Array {
  const header = encoder.encode(
    `SNAPSHOT ${h.term} ${h.index} ${h.snapTerm} ${h.lineHash} ${h.offset} ${h.total} ` +
      `${chunk.length} ${h.leaderCommit} ${h.round}\n`,
  );
  const out = new Uint8Array(header.length + chunk.length);
  out.set(header, 0);
  out.set(chunk, header.length);
  return out;
}

export function encodeErr(term: number, reason: string): Uint8Array {
  return encoder.encode(`ERR ${term} ${reason.replace(/[\r\n]/g, " ")}\n`);
}

/** `lines` are full WAL lines, trailing newline included. */
export function encodeAppend(
  term: number,
  prevIndex: number,
  prevTerm: number,
  leaderCommit: number,
  round: number,
  lines: readonly Uint8Array[],
): Uint8Array {
  let bytes = 0;
  for (const l of lines) bytes += l.length;
  const header = encoder.encode(
    `APPEND ${term} ${prevIndex} ${prevTerm} ${leaderCommit} ${lines.length} ${bytes} ${round}\n`,
  );
  const out = new Uint8Array(header.length + bytes);
  out.set(header, 0);
  let at = header.length;
  for (const l of lines) {
    out.set(l, at);
    at += l.length;
  }
  return out;
}

export type ParsedReplication =
  | { readonly kind: "message"; readonly message: ReplicationMessage }
  | { readonly kind: "incomplete" }
  | { readonly kind: "error"; readonly message: string };

function nums(parts: string[], from: number, count: number): number[] | null {
  const out: number[] = [];
  for (let i = from; i < from + count; i++) {
    const p = parts[i];
    if (p === undefined || !/^\d{1,15}$/.test(p)) return null;
    out.push(Number(p));
  }
  return out;
}

/** Incremental parser for either direction of the stream. */
export class ReplicationParser {
  // Bytes live in #buf[#start, #end). push() only ever writes past #end or
  // into a fresh buffer, so lines handed out as views stay intact, and a large
  // batch arriving in many chunks costs linear, not quadratic, copying.
  #buf = new Uint8Array(0);
  #start = 0;
  #end = 0;
  #failed: string | null = null;
  /** A parsed APPEND or SNAPSHOT header waiting for its body. */
  #pending:
    | { kind: "APPEND"; header: number[]; bodyBytes: number; count: number }
    | { kind: "SNAPSHOT"; header: number[]; bodyBytes: number }
    | null = null;

  push(chunk: Uint8Array): void {
    if (this.#end + chunk.length > this.#buf.length) {
      const live = this.#end - this.#start;
      const next = new Uint8Array(Math.max(2 * live, live + chunk.length, 64 * 1024));
      next.set(this.#buf.subarray(this.#start, this.#end), 0);
      this.#buf = next;
      this.#start = 0;
      this.#end = live;
    }
    this.#buf.set(chunk, this.#end);
    this.#end += chunk.length;
  }

  next(): ParsedReplication {
    if (this.#failed !== null) return { kind: "error", message: this.#failed };
    const r = this.#next();
    if (r.kind === "error") this.#failed = r.message;
    return r;
  }

  #next(): ParsedReplication {
    const buf = this.#buf.subarray(0, this.#end);
    if (this.#pending === null) {
      const nl = buf.indexOf(NL, this.#start);
      if (nl < 0) {
        if (this.#end - this.#start > replicationHeaderBytesMax) {
          return { kind: "error", message: "Replication header line too long" };
        }
        return { kind: "incomplete" };
      }
      if (nl - this.#start > replicationHeaderBytesMax) {
        return { kind: "error", message: "Replication header line too long" };
      }
      const line = decoder.decode(buf.subarray(this.#start, nl));
      this.#start = nl + 1;
      const parts = line.split(" ");
      switch (parts[0]) {
        case "HELLO": {
          const n = nums(parts, 1, 4);
          if (n === null || parts.length !== 5) return bad(line);
          const [nodeId, term, lastIndex, lastTerm] = n as [number, number, number, number];
          return { kind: "message", message: { kind: "HELLO", nodeId, term, lastIndex, lastTerm } };
        }
        case "SNAPACK": {
          const n = nums(parts, 1, 3);
          if (n === null || parts.length !== 4) return bad(line);
          const [term, receivedBytes, round] = n as [number, number, number];
          return { kind: "message", message: { kind: "SNAPACK", term, receivedBytes, round } };
        }
        case "SNAPSHOT": {
          const n = nums(parts, 1, 9);
          if (n === null || parts.length !== 10) return bad(line);
          const [, index, snapTerm, , offset, total, bytes] = n as number[];
          if (
            bytes! > snapshotChunkBytes || offset! + bytes! > total! || index! < 1 || snapTerm! < 1
          ) {
            return bad(line);
          }
          this.#pending = { kind: "SNAPSHOT", header: n, bodyBytes: bytes! };
          break;
        }
        case "ACK":
        case "NACK": {
          const n = nums(parts, 1, 3);
          if (n === null || parts.length !== 4) return bad(line);
          const [term, idx, round] = n as [number, number, number];
          return {
            kind: "message",
            message: parts[0] === "ACK"
              ? { kind: "ACK", term, matchIndex: idx, round }
              : { kind: "NACK", term, hintIndex: idx, round },
          };
        }
        case "ERR": {
          const n = nums(parts, 1, 1);
          if (n === null) return bad(line);
          return {
            kind: "message",
            message: { kind: "ERR", term: n[0]!, reason: parts.slice(2).join(" ") },
          };
        }
        case "APPEND": {
          const n = nums(parts, 1, 7);
          if (n === null || parts.length !== 8) return bad(line);
          const bodyBytes = n[5]!;
          const count = n[4]!;
          if (bodyBytes > replicationBatchBytesMax + 64 * 1024 * 1024) {
            return {
              kind: "error",
              message: `Replication batch of ${bodyBytes} bytes is too large`,
            };
          }
          if (count > bodyBytes) return bad(line);
          this.#pending = { kind: "APPEND", header: n, bodyBytes, count };
          break;
        }
        default:
          return bad(line);
      }
    }
    const p = this.#pending!;
    if (this.#end - this.#start < p.bodyBytes) return { kind: "incomplete" };
    const body = this.#buf.subarray(this.#start, this.#start + p.bodyBytes);
    this.#start += p.bodyBytes;
    this.#pending = null;
    if (p.kind === "SNAPSHOT") {
      const [term, index, snapTerm, lineHash, offset, total, , leaderCommit, round] = p
        .header as [number, number, number, number, number, number, number, number, number];
      return {
        kind: "message",
        message: {
          kind: "SNAPSHOT",
          term,
          index,
          snapTerm,
          lineHash,
          offset,
          total,
          leaderCommit,
          round,
          chunk: body,
        },
      };
    }
    const lines: Uint8Array[] = [];
    let at = 0;
    while (at < body.length) {
      const nl = body.indexOf(NL, at);
      if (nl < 0) return { kind: "error", message: "APPEND body ends inside a line" };
      lines.push(body.subarray(at, nl));
      at = nl + 1;
    }
    if (lines.length !== p.count) {
      return {
        kind: "error",
        message: `APPEND announced ${p.count} lines but carried ${lines.length}`,
      };
    }
    const [term, prevIndex, prevTerm, leaderCommit, , , round] = p.header as [
      number,
      number,
      number,
      number,
      number,
      number,
      number,
    ];
    return {
      kind: "message",
      message: { kind: "APPEND", term, prevIndex, prevTerm, leaderCommit, round, lines },
    };
  }
}

function bad(line: string): ParsedReplication {
  return {
    kind: "error",
    message: `Malformed replication message: ${JSON.stringify(line.slice(0, 80))}`,
  };
}
