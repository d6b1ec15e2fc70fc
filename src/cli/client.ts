// `kvstore client …`: one command against the cluster from the shell, as in
// the request's examples (SET / GET / DEL / GETFF / GETFB), plus any other
// command sent as-is and printed the way redis-cli prints it.
//
// Called by the subcommand dispatcher with the arguments after `client`; it
// returns the exit code and never calls Deno.exit itself, so tests can run it
// in-process with captured output. It holds no retry or redirect policy of its
// own: that lives in src/client/client.ts.
//
// Exit codes: 0 success, 1 key not found (GET/GETFF/GETFB nil), 2 any error
// (one `error: …` line on stderr) or bad usage (usage text on stderr), 3 a write
// whose outcome is unknown (sent, then the connection or the commit timed out).

import { parseArgs } from "node:util";
import {
  type ClientOptions,
  type Endpoint,
  KvClientError,
  OutcomeUnknownError,
  request,
  timeoutMsDefault,
} from "../client/client.ts";
import { formatAddress } from "../client/connection.ts";
import type { Reply } from "../codec/resp.ts";
import { writeAll } from "../net/write_all.ts";

/** Anything with Deno.stdout's `write`, so tests can capture output. */
export interface Writer {
  write(p: Uint8Array): Promise<number>;
}

export interface CliIo {
  readonly stdout: Writer;
  readonly stderr: Writer;
  /** Read for \`-x\`: all of standard input. */
  readonly stdin?: ReadableStream<Uint8Array>;
}

export const usage = `Usage:
  kvstore client [options] <host> <port> SET <key> <value>
  kvstore client [options] <host> <port> GET <key>            (follows REDIRECT)
  kvstore client [options] <host> <port> DEL <key> [key…]
  kvstore client [options] <host> <port> GETFF <key> <followerHost:port>
      read directly from that follower's read port (may be stale); no fallback
  kvstore client [options] <host> <port> GETFB <key> <followerHost:port>
      read from that follower; if it answers "not found", ask <host> <port>
  kvstore client [options] <host> <port> <any other command…>  (printed redis-cli style)

Options (before <host>):
  -x, --stdin      read the command's last argument from standard input, byte for byte
                   (a value too large or too binary for the command line:
                   kvstore client -x <host> <port> SET <key> < file)
  --timeout-ms N   give up after N ms, retries included (default ${timeoutMsDefault})
  --verbose        log each redirect and retry to stderr
  --help           show this text
`;

/** Longest --timeout-ms accepted: a day; more is surely a typo. */
const timeoutMsMax = 86_400_000;

const encoder = new TextEncoder();

/** Thrown for bad command lines; the caller prints the reason and the usage. */
class UsageError extends Error {}

function parsePort(text: string, what: string): number {
  const port = /^[0-9]{1,5}$/.test(text) ? Number(text) : NaN;
  if (!(port >= 1 && port <= 65535)) {
    throw new UsageError(`Bad ${what}: ${JSON.stringify(text)} (expected 1..65535)`);
  }
  return port;
}

/** `host:port` or `[ipv6]:port`; an unbracketed IPv6 literal splits at its last colon. */
export function parseHostPort(text: string): Endpoint | null {
  let host: string;
  let portText: string;
  const bracketed = /^\[([^\]]+)\]:([^:]*)$/.exec(text);
  if (bracketed !== null) {
    host = bracketed[1] ?? "";
    portText = bracketed[2] ?? "";
  } else {
    const colon = text.lastIndexOf(":");
    if (colon <= 0) return null;
    host = text.slice(0, colon);
    portText = text.slice(colon + 1);
  }
  if (!/^[0-9]{1,5}$/.test(portText)) return null;
  const port = Number(portText);
  if (host.length === 0 || port < 1 || port > 65535) return null;
  return { host, port };
}

/**
 * Splits leading options from the command. Options are only read before
 * <host>, so a key or value that starts with "-" (a negative number, say)
 * is never mistaken for one; `--` ends the options explicitly.
 */
function splitOptions(argv: readonly string[]): { options: string[]; rest: string[] } {
  let i = 0;
  while (i < argv.length) {
    const a = argv[i] ?? "";
    if (a === "--") return { options: argv.slice(0, i), rest: argv.slice(i + 1) };
    if (!a.startsWith("-") || a === "-") break;
    i += a === "--timeout-ms" ? 2 : 1;
  }
  return { options: argv.slice(0, i), rest: argv.slice(i) };
}

interface Invocation {
  readonly help: boolean;
  readonly verbose: boolean;
  readonly stdin: boolean;
  readonly timeoutMs: number;
  readonly target: Endpoint;
  readonly command: string;
  readonly args: readonly (string | Uint8Array)[];
}

function parseInvocation(argv: readonly string[]): Invocation {
  const { options, rest } = splitOptions(argv);
  let values: { "timeout-ms"?: string; verbose?: boolean; help?: boolean; stdin?: boolean };
  try {
    values = parseArgs({
      args: options,
      options: {
        "timeout-ms": { type: "string" },
        verbose: { type: "boolean" },
        stdin: { type: "boolean", short: "x" },
        help: { type: "boolean", short: "h" },
      },
      strict: true,
      allowPositionals: false,
    }).values;
  } catch (e) {
    throw new UsageError((e as Error).message);
  }
  const help = values.help === true;
  let timeoutMs = timeoutMsDefault;
  const rawTimeout = values["timeout-ms"];
  if (rawTimeout !== undefined) {
    timeoutMs = /^[0-9]{1,9}$/.test(rawTimeout) ? Number(rawTimeout) : NaN;
    if (!(timeoutMs >= 1 && timeoutMs <= timeoutMsMax)) {
      throw new UsageError(
        `Bad --timeout-ms: ${JSON.stringify(rawTimeout)} (expected 1..${timeoutMsMax})`,
      );
    }
  }
  if (help) {
    return {
      help,
      verbose: false,
      stdin: false,
      timeoutMs,
      target: { host: "", port: 0 },
      command: "",
      args: [],
    };
  }
  const [host, portText, command, ...args] = rest;
  if (host === undefined || portText === undefined || command === undefined) {
    throw new UsageError("Expected <host> <port> <command> [args…]");
  }
  if (host.length === 0) throw new UsageError("Empty host");
  const port = parsePort(portText, "port");
  return {
    help,
    verbose: values.verbose === true,
    stdin: values.stdin === true,
    timeoutMs,
    target: { host, port },
    command,
    args,
  };
}

/** redis-cli's quoting of a bulk string: printable ASCII as is, the rest escaped. */
function quoteBytes(bytes: Uint8Array): string {
  let out = '"';
  for (const b of bytes) {
    switch (b) {
      case 0x5c:
        out += "\\\\";
        break;
      case 0x22:
        out += '\\"';
        break;
      case 0x0a:
        out += "\\n";
        break;
      case 0x0d:
        out += "\\r";
        break;
      case 0x09:
        out += "\\t";
        break;
      case 0x07:
        out += "\\a";
        break;
      case 0x08:
        out += "\\b";
        break;
      default:
        out += b >= 0x20 && b < 0x7f
          ? String.fromCharCode(b)
          : `\\x${b.toString(16).padStart(2, "0")}`;
    }
  }
  return out + '"';
}

/** Lines redis-cli would print for a reply; nested arrays are indented under their index. */
export function formatReply(reply: Reply): string[] {
  switch (reply.kind) {
    case "simple":
      return [reply.value];
    case "error":
      return [`(error) ${reply.value}`];
    case "integer":
      return [`(integer) ${reply.value}`];
    case "bulk":
      return [reply.value === null ? "(nil)" : quoteBytes(reply.value)];
    case "array": {
      if (reply.value === null) return ["(nil)"];
      if (reply.value.length === 0) return ["(empty array)"];
      const width = String(reply.value.length).length;
      const lines: string[] = [];
      reply.value.forEach((item, i) => {
        const prefix = `${String(i + 1).padStart(width)}) `;
        formatReply(item).forEach((line, j) => {
          lines.push((j === 0 ? prefix : " ".repeat(prefix.length)) + line);
        });
      });
      return lines;
    }
  }
}

/** A reply the command does not expect: report it as the server said it. */
function unexpected(command: string, reply: Reply): KvClientError {
  if (reply.kind === "error") return new KvClientError(reply.value);
  return new KvClientError(`Unexpected reply to ${command}: ${formatReply(reply).join(" ")}`);
}

/**
 * Runs `kvstore client …`; `argv` is what follows `client`. Returns the exit
 * code. `io` defaults to the process's stdout and stderr.
 */
export async function clientMain(
  argv: readonly string[],
  io: CliIo = { stdout: Deno.stdout, stderr: Deno.stderr },
): Promise<number> {
  const out = (text: string): Promise<void> => writeAll(io.stdout, encoder.encode(text));
  const err = (text: string): Promise<void> => writeAll(io.stderr, encoder.encode(text));

  let inv: Invocation;
  try {
    inv = parseInvocation(argv);
  } catch (e) {
    if (!(e instanceof UsageError)) throw e;
    await err(`error: ${e.message}\n${usage}`);
    return 2;
  }
  if (inv.help) {
    await out(usage);
    return 0;
  }

  // The retry log is synchronous for the library; chain the writes so they
  // stay in order and all land before we return.
  let logChain: Promise<void> = Promise.resolve();
  const opts: ClientOptions = { timeoutMs: inv.timeoutMs };
  if (inv.verbose) {
    opts.log = (msg) => {
      logChain = logChain.then(() => err(`${msg}\n`));
    };
  }

  let code: number;
  try {
    if (inv.stdin) {
      const input = await new Response(io.stdin ?? Deno.stdin.readable).bytes();
      inv = { ...inv, args: [...inv.args, input] };
    }
    code = await runCommand(inv, opts, out, (bytes) => writeAll(io.stdout, bytes));
  } catch (e) {
    await logChain;
    if (e instanceof UsageError) {
      await err(`error: ${e.message}\n${usage}`);
      return 2;
    }
    const message = e instanceof Error ? e.message : String(e);
    // One line, whatever the server put in its error text.
    await err(`error: ${message.replace(/[\r\n]+/g, " ")}\n`);
    // A write that may or may not have been applied is not a plain failure:
    // scripts must not blindly repeat it.
    return e instanceof OutcomeUnknownError ? 3 : 2;
  }
  await logChain;
  return code;
}

async function runCommand(
  inv: Invocation,
  opts: ClientOptions,
  out: (text: string) => Promise<void>,
  outBytes: (bytes: Uint8Array) => Promise<void>,
): Promise<number> {
  const { host, port } = inv.target;
  const name = inv.command.toUpperCase();
  const deadline = performance.now() + inv.timeoutMs;
  const remaining = (): number => Math.max(1, Math.ceil(deadline - performance.now()));

  /** GET's output contract: raw value bytes and a newline, or NOT_FOUND and exit 1. */
  const printValue = async (command: string, reply: Reply): Promise<number> => {
    if (reply.kind !== "bulk") throw unexpected(command, reply);
    if (reply.value === null) {
      await out("NOT_FOUND\n");
      return 1;
    }
    await outBytes(reply.value);
    await out("\n");
    return 0;
  };

  switch (name) {
    case "SET": {
      if (inv.args.length !== 2) throw new UsageError("SET needs <key> <value>");
      const reply = await request(host, port, ["SET", ...inv.args], opts);
      if (reply.kind !== "simple") throw unexpected(name, reply);
      await out(`${reply.value}\n`);
      return 0;
    }
    case "GET": {
      if (inv.args.length !== 1) throw new UsageError("GET needs <key>");
      return await printValue(name, await request(host, port, ["GET", ...inv.args], opts));
    }
    case "DEL": {
      if (inv.args.length < 1) throw new UsageError("DEL needs <key> [key…]");
      const reply = await request(host, port, ["DEL", ...inv.args], opts);
      if (reply.kind !== "integer") throw unexpected(name, reply);
      await out(`${reply.value}\n`);
      return 0;
    }
    case "GETFF":
    case "GETFB": {
      const [key, followerText] = inv.args;
      if (
        inv.args.length !== 2 || key === undefined || typeof followerText !== "string"
      ) {
        throw new UsageError(`${name} needs <key> <followerHost:port> (not from -x)`);
      }
      const follower = parseHostPort(followerText);
      if (follower === null) {
        throw new UsageError(
          `Bad follower address: ${JSON.stringify(followerText)} (expected host:port)`,
        );
      }
      // A follower's read port answers from its own copy; following a redirect
      // from it would no longer be "read from that follower", so don't.
      const fromFollower = await request(follower.host, follower.port, ["GET", key], {
        ...opts,
        followRedirects: false,
      });
      const missing = fromFollower.kind === "bulk" && fromFollower.value === null;
      if (name === "GETFF" || !missing) return await printValue(name, fromFollower);
      opts.log?.(`not found on ${followerText}; asking ${formatAddress(host, port)}`);
      const fromLeader = await request(host, port, ["GET", key], {
        ...opts,
        timeoutMs: remaining(),
      });
      return await printValue(name, fromLeader);
    }
    default: {
      const reply = await request(host, port, [inv.command, ...inv.args], opts);
      if (reply.kind === "error") throw unexpected(inv.command, reply);
      if (name === "INFO" && reply.kind === "bulk" && reply.value !== null) {
        // Like redis-cli: INFO is a text report, shown as its lines.
        await out(new TextDecoder().decode(reply.value).replaceAll("\r\n", "\n"));
        return 0;
      }
      await out(formatReply(reply).map((line) => `${line}\n`).join(""));
      return 0;
    }
  }
}
