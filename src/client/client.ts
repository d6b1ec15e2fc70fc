// The high-level kvstore client: send one command to a node and get the
// answer from whoever can give it. It follows `-REDIRECT host port` replies
// (bounded hops), and retries `-TRYAGAIN`, redirect cycles and unreachable
// nodes with capped, jittered backoff until a deadline, always restarting from
// the address the caller gave (during a failover that node learns the new
// leader first-hand; a stale redirect target may not).
//
// Called by the `kvstore client` subcommand (src/cli/client.ts) and by tests.
// It must not decide what a reply means beyond REDIRECT and TRYAGAIN: any
// other reply, `-ERR …` included, goes back to the caller unchanged.
//
// A retry happens only when the command cannot have taken effect: the node
// refused the connection, redirected, or said it knows no leader. A write
// (SET, DEL) whose request was sent and then met a lost connection, a reply
// timeout or the leader's "not committed in time" TRYAGAIN may still be
// applied; sending it again could apply it twice (DEL would then report 0,
// and a repeated SET could land after another client's later write). Such a
// write ends with OutcomeUnknownError instead. Reads are retried freely.

import { Connection, ConnectionError, formatAddress } from "./connection.ts";
import { type Reply, writeMayStillApplyText } from "../codec/resp.ts";

export interface ClientOptions {
  /** Deadline for the whole request, retries included. */
  timeoutMs?: number;
  /** Most REDIRECT replies followed in one attempt before giving up. */
  redirectsMax?: number;
  /** Upper bound on one attempt (connect + reply; for SET and DEL connect
   * only, as they are never re-sent); the remaining deadline bounds it too. */
  attemptTimeoutMs?: number;
  /** When false a REDIRECT reply is returned to the caller instead of followed. */
  followRedirects?: boolean;
  /** Told about each redirect and retry (the CLI's --verbose). */
  log?: (msg: string) => void;
}

/** A request that could not be completed; the message is one line for the user. */
export class KvClientError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "KvClientError";
  }
}

/** A write was sent but its fate is not known: it may or may not be applied.
 * Read the key back (GET on the leader is linearizable) to find out. */
export class OutcomeUnknownError extends KvClientError {
  constructor(message: string) {
    super(message);
    this.name = "OutcomeUnknownError";
  }
}

/** Commands that change data: never re-sent once they may have reached a leader. */
function isWrite(args: readonly (string | Uint8Array)[]): boolean {
  const first = args[0];
  const name = typeof first === "string" ? first : replyDecoder.decode(first ?? new Uint8Array());
  return /^(SET|DEL)$/i.test(name);
}

/** The leader's TRYAGAIN for a write it logged but could not commit in time
 * (src/node/leader_role.ts): the write may still apply. */
export function isMayStillApply(errorText: string): boolean {
  return isTryAgain(errorText) && errorText.includes(writeMayStillApplyText);
}

/** 10 s covers a leader election (timeouts of a few seconds) plus a retry or two. */
export const timeoutMsDefault = 10_000;
/** Four nodes need at most one hop to the leader; 5 leaves room for a stale view or two. */
export const redirectsMaxDefault = 5;
/**
 * A stopped (not dead) leader holds a connection open without answering. Capping
 * each attempt lets us return to the original node, which by then may know the
 * new leader, instead of spending the whole deadline on one silent socket.
 */
export const attemptTimeoutMsDefault = 3_000;
/** No attempt starts with less time than this left (or a quarter of the
 * whole timeout, if that is less): a write sent with a few ms to spare would
 * time out waiting for its reply and end as "outcome unknown" although the
 * node might have answered that it did nothing. */
const attemptMsMinDefault = 100;
const backoffMsInitial = 50;
const backoffMsMax = 500;

export interface Endpoint {
  readonly host: string;
  readonly port: number;
}

function isPort(n: number): boolean {
  return Number.isInteger(n) && n >= 1 && n <= 65535;
}

/**
 * Parses the text of a redirect error reply, `REDIRECT <host> <port>` (without
 * the leading "-"). Returns null if it is not a well-formed redirect. The host
 * may be a name, IPv4, or IPv6 (bracketed or not).
 */
export function parseRedirect(errorText: string): Endpoint | null {
  const words = errorText.trim().split(/\s+/);
  if (words.length !== 3) return null;
  const [word, rawHost, rawPort] = words as [string, string, string];
  if (word.toUpperCase() !== "REDIRECT") return null;
  if (!/^[0-9]{1,5}$/.test(rawPort)) return null;
  const port = Number(rawPort);
  if (!isPort(port)) return null;
  const host = rawHost.startsWith("[") && rawHost.endsWith("]") ? rawHost.slice(1, -1) : rawHost;
  if (host.length === 0 || /[[\]]/.test(host)) return null;
  return { host, port };
}

/** True for `-TRYAGAIN …`: the node knows no leader yet, or a write's outcome is not known in time. */
export function isTryAgain(errorText: string): boolean {
  return /^TRYAGAIN(\s|$)/i.test(errorText);
}

function isRedirectReply(reply: Reply): reply is { kind: "error"; value: string } {
  return reply.kind === "error" && /^REDIRECT(\s|$)/i.test(reply.value);
}

/** Transport failures that a node coming up, or a failover finishing, can cure. */
function isTransient(e: ConnectionError): boolean {
  return e.reason === "refused" || e.reason === "reset" || e.reason === "timeout" ||
    e.reason === "closed";
}

/**
 * One attempt against one address: connect, send, read the reply, close. No
 * redirect following, no retry. `timeoutMs` bounds connect and reply together.
 * Throws ConnectionError on transport failure.
 */
export async function requestOnce(
  host: string,
  port: number,
  args: readonly (string | Uint8Array)[],
  timeoutMs: number,
): Promise<Reply> {
  const started = performance.now();
  await using conn = await Connection.connect(host, port, timeoutMs);
  const remainingMs = Math.max(1, Math.ceil(timeoutMs - (performance.now() - started)));
  return await conn.call(args, remainingMs);
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

function endpointKey(e: Endpoint): string {
  return formatAddress(e.host.toLowerCase(), e.port);
}

/** Short lower-case reason for the user's one-line message, e.g. "connection refused". */
function transportReason(e: ConnectionError): string {
  switch (e.reason) {
    case "refused":
      return "connection refused";
    case "reset":
      return "connection reset";
    case "closed":
      return "connection closed before a reply";
    default:
      return e.message.charAt(0).toLowerCase() + e.message.slice(1);
  }
}

/** Why the last attempt wanted a retry; the final error message repeats it. */
type RetryCause =
  | { kind: "transport"; error: ConnectionError }
  | { kind: "tryagain"; address: string; text: string }
  | { kind: "cycle"; chain: string };

function describe(cause: RetryCause): string {
  switch (cause.kind) {
    case "transport":
      return transportReason(cause.error);
    case "tryagain":
      return `${cause.address} answered ${cause.text}`;
    case "cycle":
      return `redirect cycle ${cause.chain}`;
  }
}

/**
 * Sends `args` to host:port and returns the first reply that is neither a
 * redirect (when following) nor TRYAGAIN. Error replies such as `-ERR …` are
 * returned, not thrown. Throws KvClientError when the redirect chain is too
 * long, a redirect is malformed, a failure is permanent, or the deadline passes.
 */
export async function request(
  host: string,
  port: number,
  args: readonly (string | Uint8Array)[],
  opts: ClientOptions = {},
): Promise<Reply> {
  const timeoutMs = opts.timeoutMs ?? timeoutMsDefault;
  const redirectsMax = opts.redirectsMax ?? redirectsMaxDefault;
  const attemptTimeoutMs = opts.attemptTimeoutMs ?? attemptTimeoutMsDefault;
  const followRedirects = opts.followRedirects ?? true;
  const log = opts.log ?? (() => {});
  const origin: Endpoint = { host, port };
  const deadline = performance.now() + timeoutMs;
  const attemptMsMin = Math.min(attemptMsMinDefault, timeoutMs / 4);
  let backoffMs = backoffMsInitial;

  const giveUp = (cause: RetryCause): KvClientError => {
    const why = describe(cause);
    return cause.kind === "transport"
      ? new KvClientError(`cannot reach ${cause.error.address} within ${timeoutMs} ms (${why})`)
      : new KvClientError(
        `no leader answered via ${formatAddress(host, port)} within ${timeoutMs} ms (${why})`,
      );
  };

  // Bounded by the deadline: every pass returns, throws, or sleeps ≥ 1 ms, and
  // the pass after the sleep that reaches the deadline throws.
  for (let attempt = 1;; attempt++) {
    const cause = await attemptChain(origin, args, {
      deadline,
      attemptMsMin,
      write: isWrite(args),
      redirectsMax,
      attemptTimeoutMs,
      followRedirects,
      log,
    });
    if (cause.kind === "reply") return cause.reply;

    const remainingMs = deadline - performance.now();
    if (remainingMs < attemptMsMin) throw giveUp(cause);
    // Jitter (50–100 % of the step) keeps clients that failed together from
    // retrying in lockstep against a node that is just coming up.
    const sleepMs = Math.max(1, backoffMs * (0.5 + Math.random() * 0.5));
    log(`attempt ${attempt} failed (${describe(cause)}); retrying in ${Math.round(sleepMs)} ms`);
    await sleep(Math.min(sleepMs, remainingMs));
    // An attempt started now would have no time to finish: report why the last
    // one failed rather than "out of time".
    if (deadline - performance.now() < attemptMsMin) throw giveUp(cause);
    backoffMs = Math.min(backoffMsMax, backoffMs * 2);
  }
}

interface ChainOptions {
  readonly deadline: number;
  readonly attemptMsMin: number;
  /** SET/DEL: once sent, never sent again (see the header). */
  readonly write: boolean;
  readonly redirectsMax: number;
  readonly attemptTimeoutMs: number;
  readonly followRedirects: boolean;
  readonly log: (msg: string) => void;
}

/**
 * One attempt from the origin, following redirects. Returns the final reply, or
 * the reason this attempt should be retried; throws KvClientError for failures
 * no retry can cure.
 */
async function attemptChain(
  origin: Endpoint,
  args: readonly (string | Uint8Array)[],
  o: ChainOptions,
): Promise<{ kind: "reply"; reply: Reply } | RetryCause> {
  const chain: Endpoint[] = [origin];
  const seen = new Set<string>([endpointKey(origin)]);
  let target = origin;
  // Bounded: each pass returns or follows one more redirect, at most redirectsMax.
  for (;;) {
    const remainingMs = o.deadline - performance.now();
    const address = formatAddress(target.host, target.port);
    if (remainingMs < o.attemptMsMin) {
      const error = new ConnectionError(
        "timeout",
        address,
        `Deadline passed before ${address} was tried`,
      );
      return { kind: "transport", error };
    }
    let reply: Reply;
    const budgetMs = Math.max(1, Math.ceil(Math.min(remainingMs, o.attemptTimeoutMs)));
    const started = performance.now();
    let conn: Connection;
    try {
      conn = await Connection.connect(target.host, target.port, budgetMs);
    } catch (e) {
      // Not connected: nothing was sent, so any command may be tried again.
      if (!(e instanceof ConnectionError)) throw e;
      if (isTransient(e)) return { kind: "transport", error: e };
      throw new KvClientError(e.message);
    }
    try {
      // A write, once sent, is never sent again: giving up on its reply early
      // buys no retry, only "outcome unknown" for a write that is merely slow
      // (16 MiB takes seconds). It waits for the whole deadline instead.
      const leftMs = Math.max(
        1,
        Math.ceil(
          o.write ? o.deadline - performance.now() : budgetMs - (performance.now() - started),
        ),
      );
      reply = await conn.call(args, leftMs);
    } catch (e) {
      if (!(e instanceof ConnectionError)) throw e;
      if (o.write) {
        throw new OutcomeUnknownError(
          `outcome unknown: ${address} took the write but ${transportReason(e)}; ` +
            `it may or may not have been applied (read the key back to know)`,
        );
      }
      if (isTransient(e)) return { kind: "transport", error: e };
      throw new KvClientError(e.message);
    } finally {
      await conn.close();
    }

    if (reply.kind === "error" && isTryAgain(reply.value)) {
      if (o.write && isMayStillApply(reply.value)) {
        throw new OutcomeUnknownError(`outcome unknown: ${address} answered ${reply.value}`);
      }
      return { kind: "tryagain", address, text: reply.value };
    }
    if (!o.followRedirects || !isRedirectReply(reply)) return { kind: "reply", reply };

    const next = parseRedirect(reply.value);
    if (next === null) {
      throw new KvClientError(`Malformed redirect from ${address}: ${JSON.stringify(reply.value)}`);
    }
    const nextAddress = formatAddress(next.host, next.port);
    const chainText = [...chain, next].map((e) => formatAddress(e.host, e.port)).join(" -> ");
    if (seen.has(endpointKey(next))) {
      // Nodes pointing at each other: their views of the leader disagree, which
      // happens while an election settles. Wait and start again from the origin.
      return { kind: "cycle", chain: chainText };
    }
    if (chain.length > o.redirectsMax) {
      throw new KvClientError(`Too many redirects (max ${o.redirectsMax}): ${chainText}`);
    }
    o.log(`redirected to ${nextAddress}`);
    chain.push(next);
    seen.add(endpointKey(next));
    target = next;
  }
}

const replyDecoder = new TextDecoder();

/** A reply as one short line (for logs, demos and test assertions): bulk and
 * simple strings as text, "(nil)", "-ERROR …", ":42", "[a, b]". */
export function replyText(r: Reply): string {
  switch (r.kind) {
    case "bulk":
      return r.value === null ? "(nil)" : replyDecoder.decode(r.value);
    case "simple":
      return r.value;
    case "error":
      return `-${r.value}`;
    case "integer":
      return `:${r.value}`;
    case "array":
      return `[${(r.value ?? []).map(replyText).join(", ")}]`;
  }
}
