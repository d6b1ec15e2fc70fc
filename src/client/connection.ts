// One TCP connection to a kvstore port speaking RESP2 from the client side:
// connect with a timeout, send commands, read their replies in order, close.
// Used by the high-level client (src/client/client.ts), by tests and by the
// benchmarks, which pipeline many calls on one connection.
//
// It must not interpret replies (a REDIRECT or TRYAGAIN is just an error reply
// here), retry, or reconnect: that policy belongs to client.ts. Transport
// failures reject with a ConnectionError whose `reason` tells the caller whether
// a retry can help.
//
// Lifecycle:
//
//   connect() ──► open ──(close() | EOF | I/O error | reply timeout | bad reply)──► failed
//
// Once failed, every pending and future call rejects with the same error; the
// socket is closed exactly once.

import { encodeCommand, type Reply, ReplyParser } from "../codec/resp.ts";
import { bulkBytesMax } from "../config/limits.ts";

/** Why a connection failed; client.ts retries the transient ones. */
export type ConnectionErrorReason =
  | "refused" // nothing listens there (yet): a node restarting or not started
  | "reset" // the peer went away mid-conversation
  | "timeout" // connect or reply did not arrive in time
  | "closed" // EOF from the peer, or we closed it ourselves
  | "protocol" // the peer sent bytes that are not a RESP2 reply
  | "unresolved" // the host name does not resolve
  | "other";

export class ConnectionError extends Error {
  readonly reason: ConnectionErrorReason;
  /** `host:port` of the peer, for messages naming the failing hop. */
  readonly address: string;

  constructor(reason: ConnectionErrorReason, address: string, message: string) {
    super(message);
    this.name = "ConnectionError";
    this.reason = reason;
    this.address = address;
  }
}

/** `host:port`, bracketing IPv6 literals so the port stays unambiguous. */
export function formatAddress(host: string, port: number): string {
  return host.includes(":") ? `[${host}]:${port}` : `${host}:${port}`;
}

/** Maps a Deno I/O error onto the reasons the retry policy cares about. */
function classify(e: unknown, address: string): ConnectionError {
  if (e instanceof ConnectionError) return e;
  const text = e instanceof Error ? e.message : String(e);
  if (e instanceof Deno.errors.ConnectionRefused) {
    return new ConnectionError("refused", address, `Connection refused by ${address}`);
  }
  if (
    e instanceof Deno.errors.ConnectionReset || e instanceof Deno.errors.BrokenPipe ||
    e instanceof Deno.errors.ConnectionAborted
  ) {
    return new ConnectionError("reset", address, `Connection reset by ${address}`);
  }
  if (e instanceof Deno.errors.TimedOut) {
    return new ConnectionError("timeout", address, `Connection to ${address} timed out`);
  }
  if (e instanceof Deno.errors.Interrupted || e instanceof Deno.errors.BadResource) {
    return new ConnectionError("closed", address, `Connection to ${address} closed`);
  }
  if (/lookup address|Name or service not known|nodename nor servname/i.test(text)) {
    return new ConnectionError("unresolved", address, `Cannot resolve host of ${address}`);
  }
  return new ConnectionError("other", address, `Connection to ${address} failed: ${text}`);
}

interface PendingCall {
  readonly resolve: (reply: Reply) => void;
  readonly reject: (error: ConnectionError) => void;
  timer: ReturnType<typeof setTimeout> | undefined;
}

/** Bytes asked of the socket per read; replies larger than this arrive in pieces. */
const readChunkBytes = 64 * 1024;

export class Connection implements AsyncDisposable {
  readonly address: string;
  readonly #conn: Deno.TcpConn;
  readonly #parser = new ReplyParser(bulkBytesMax);
  /** Calls whose replies have not arrived, oldest first: RESP2 answers in request order. */
  readonly #pending: PendingCall[] = [];
  /** Writes run one after another in call order, so requests and #pending stay aligned. */
  #writeChain: Promise<void> = Promise.resolve();
  #failure: ConnectionError | null = null;
  readonly #readerDone: Promise<void>;

  private constructor(conn: Deno.TcpConn, address: string) {
    this.#conn = conn;
    this.address = address;
    this.#readerDone = this.#readLoop();
  }

  /**
   * Opens a connection, giving up after `timeoutMs` with reason "timeout".
   * `host` may be a name, an IPv4 literal or an IPv6 literal with or without brackets.
   */
  static async connect(host: string, port: number, timeoutMs: number): Promise<Connection> {
    const bare = host.startsWith("[") && host.endsWith("]") ? host.slice(1, -1) : host;
    const address = formatAddress(bare, port);
    const abort = new AbortController();
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      abort.abort();
    }, Math.max(0, timeoutMs));
    try {
      const conn = await Deno.connect({ hostname: bare, port, signal: abort.signal });
      return new Connection(conn, address);
    } catch (e) {
      if (timedOut) {
        throw new ConnectionError(
          "timeout",
          address,
          `Cannot connect to ${address} within ${timeoutMs} ms`,
        );
      }
      throw classify(e, address);
    } finally {
      clearTimeout(timer);
    }
  }

  /** True once the connection has failed or been closed; every call now rejects. */
  get closed(): boolean {
    return this.#failure !== null;
  }

  /**
   * Sends one command and resolves with its reply, error replies included.
   * Calls may be issued without awaiting earlier ones (pipelining); replies are
   * matched to calls in order. If `timeoutMs` passes without this reply the
   * whole connection fails, because a late reply would otherwise be taken as
   * the answer to the next call.
   */
  call(args: readonly (string | Uint8Array)[], timeoutMs?: number): Promise<Reply> {
    if (this.#failure !== null) return Promise.reject(this.#failure);
    const bytes = encodeCommand(args);
    const promise = new Promise<Reply>((resolve, reject) => {
      const entry: PendingCall = { resolve, reject, timer: undefined };
      if (timeoutMs !== undefined) {
        entry.timer = setTimeout(() => {
          this.#fail(
            new ConnectionError(
              "timeout",
              this.address,
              `No reply from ${this.address} within ${timeoutMs} ms`,
            ),
          );
        }, Math.max(0, timeoutMs));
      }
      this.#pending.push(entry);
    });
    this.#writeChain = this.#writeChain.then(() => this.#writeAll(bytes)).catch((e) =>
      this.#fail(classify(e, this.address))
    );
    return promise;
  }

  /** Closes the socket, rejects calls still waiting, and waits until no I/O is in flight. */
  async close(): Promise<void> {
    this.#fail(new ConnectionError("closed", this.address, `Connection to ${this.address} closed`));
    await this.#writeChain;
    await this.#readerDone;
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }

  async #writeAll(bytes: Uint8Array): Promise<void> {
    let offset = 0;
    while (offset < bytes.length) {
      // A failure (timeout, EOF) while earlier writes queued: the socket is gone.
      if (this.#failure !== null) return;
      offset += await this.#conn.write(bytes.subarray(offset));
    }
  }

  async #readLoop(): Promise<void> {
    const buffer = new Uint8Array(readChunkBytes);
    try {
      while (this.#failure === null) {
        const n = await this.#conn.read(buffer);
        if (n === null) {
          this.#fail(
            new ConnectionError("closed", this.address, `Connection closed by ${this.address}`),
          );
          return;
        }
        // ReplyParser.push copies the bytes, so `buffer` can be reused by the next read.
        this.#parser.push(buffer.subarray(0, n));
        this.#drainReplies();
      }
    } catch (e) {
      this.#fail(classify(e, this.address));
    }
  }

  /** Hands every complete reply in the parser to the oldest waiting call. */
  #drainReplies(): void {
    while (this.#failure === null) {
      const step = this.#parser.next();
      switch (step.kind) {
        case "incomplete":
          return;
        case "error":
          this.#fail(
            new ConnectionError(
              "protocol",
              this.address,
              `Bad reply from ${this.address}: ${step.message}`,
            ),
          );
          return;
        case "reply": {
          const entry = this.#pending.shift();
          if (entry === undefined) {
            // Nothing asked for this: we can no longer tell which reply answers what.
            this.#fail(
              new ConnectionError(
                "protocol",
                this.address,
                `Unsolicited reply from ${this.address}`,
              ),
            );
            return;
          }
          clearTimeout(entry.timer);
          entry.resolve(step.reply);
          break;
        }
        default: {
          const unreachable: never = step;
          throw new Error(`Unknown parser step: ${JSON.stringify(unreachable)}`);
        }
      }
    }
  }

  /** First failure wins: close the socket once and reject everything outstanding. */
  #fail(error: ConnectionError): void {
    if (this.#failure !== null) return;
    this.#failure = error;
    try {
      this.#conn.close();
    } catch {
      // Already closed by the runtime; nothing left to release.
    }
    for (const entry of this.#pending.splice(0)) {
      clearTimeout(entry.timer);
      entry.reject(error);
    }
  }
}
