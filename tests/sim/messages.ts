// What travels through the simulated network: the election core's control
// messages, the replication stream's AppendEntries and its replies, and client
// requests and replies. Addresses below `clientIdBase` are nodes.

import type { ControlMessage } from "../../src/raft/election.ts";
import type { LogEntry } from "../../src/raft/log.ts";
import type { KvOp, KvResult } from "../support/linearizability.ts";

export const clientIdBase = 100;

export type Outcome =
  | { readonly kind: "done"; readonly result: KvResult }
  | { readonly kind: "redirect"; readonly leaderId: number | null }
  /** `definite`: the operation certainly did not happen (it was never logged). */
  | { readonly kind: "error"; readonly message: string; readonly definite: boolean };

export type SimMessage =
  | {
    readonly kind: "control";
    readonly from: number;
    readonly to: number;
    readonly message: ControlMessage;
  }
  | {
    readonly kind: "Append";
    readonly from: number;
    readonly to: number;
    readonly term: number;
    readonly prevIndex: number;
    readonly prevTerm: number;
    readonly entries: readonly LogEntry[];
    readonly leaderCommit: number;
    /** ReadIndex round this message confirms leadership for (Raft §6.4). */
    readonly round: number;
  }
  | {
    readonly kind: "AppendReply";
    readonly from: number;
    readonly to: number;
    readonly term: number;
    readonly success: boolean;
    readonly matchIndex: number;
    readonly hintIndex: number;
    readonly round: number;
  }
  | {
    readonly kind: "Request";
    readonly from: number;
    readonly to: number;
    readonly requestId: number;
    readonly op: KvOp;
  }
  | {
    readonly kind: "Reply";
    readonly from: number;
    readonly to: number;
    readonly requestId: number;
    readonly outcome: Outcome;
  };

/** One short line for the trace. */
export function describe(m: SimMessage): string {
  switch (m.kind) {
    case "control": {
      const c = m.message;
      const extra = c.kind === "RequestVote"
        ? ` last ${c.lastLogIndex}/${c.lastLogTerm}${c.preVote ? " pre" : ""}`
        : c.kind === "RequestVoteResponse"
        ? ` ${c.voteGranted ? "granted" : "refused"}${c.preVote ? " pre" : ""}`
        : "";
      return `n${m.from}→n${m.to} ${c.kind} t${c.term}${extra}`;
    }
    case "Append":
      return `n${m.from}→n${m.to} Append t${m.term} prev ${m.prevIndex}/${m.prevTerm} +${m.entries.length} commit ${m.leaderCommit} r${m.round}`;
    case "AppendReply":
      return `n${m.from}→n${m.to} AppendReply t${m.term} ${
        m.success ? "ok" : "no"
      } match ${m.matchIndex} hint ${m.hintIndex} r${m.round}`;
    case "Request":
      return `c${m.from}→n${m.to} #${m.requestId} ${opText(m.op)}`;
    case "Reply":
      return `n${m.from}→c${m.to} #${m.requestId} ${outcomeText(m.outcome)}`;
  }
}

export function opText(op: KvOp): string {
  return op.kind === "set" ? `SET ${op.key} ${op.value}` : `${op.kind.toUpperCase()} ${op.key}`;
}

function outcomeText(o: Outcome): string {
  if (o.kind === "redirect") return `REDIRECT ${o.leaderId ?? "none"}`;
  if (o.kind === "error") return `ERR ${o.message}${o.definite ? "" : " (indeterminate)"}`;
  const r = o.result;
  return r.kind === "ok" ? "OK" : r.kind === "deleted" ? `:${r.count}` : `${r.value ?? "(nil)"}`;
}
