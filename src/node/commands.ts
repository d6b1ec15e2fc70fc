// Client command dispatch shared by every port that speaks RESP: argument
// checks, the connection-level commands that redis-cli, redis-benchmark and
// client libraries send on start-up (answered locally on every port), and
// the data commands (GET/SET/DEL), which each role answers its own way.

import {
  encodeArray,
  encodeBulk,
  encodeError,
  encodeInteger,
  encodeSimple,
} from "../codec/resp.ts";
import { keyBytesMax, valueBytesMax } from "../config/limits.ts";
import type { CommandContext, CommandHandler } from "../net/resp_server.ts";

export type ReplyBytes = Uint8Array | Promise<Uint8Array>;

/** What a role does with data commands; each returns an encoded reply. */
export interface DataCommands {
  get(key: Uint8Array, ctx: CommandContext): ReplyBytes;
  set(key: Uint8Array, value: Uint8Array, ctx: CommandContext): ReplyBytes;
  del(keys: Uint8Array[], ctx: CommandContext): ReplyBytes;
  /** Role line for INFO and HELLO, e.g. "master" or "slave". */
  readonly redisRole: string;
  /** Extra `field:value` lines for INFO's replication section. */
  info(): string[];
}

const decoder = new TextDecoder();
export const OK = encodeSimple("OK");
const PONG = encodeSimple("PONG");
const EMPTY_ARRAY = encodeArray([]);

function text(b: Uint8Array): string {
  return decoder.decode(b);
}

function upper(b: Uint8Array): string {
  // Command names are short ASCII; anything else simply matches nothing.
  return decoder.decode(b).toUpperCase();
}

export function wrongArity(name: string): Uint8Array {
  return encodeError(`ERR wrong number of arguments for '${name.toLowerCase()}' command`);
}

function unknownCommand(args: Uint8Array[]): Uint8Array {
  const name = text(args[0]!).slice(0, 128);
  const rest = args.slice(1, 4).map((a) => `'${text(a).slice(0, 64)}'`).join(" ");
  return encodeError(`ERR unknown command '${name}', with args beginning with: ${rest}`);
}

function keyTooLong(key: Uint8Array): Uint8Array | null {
  return key.length > keyBytesMax
    ? encodeError(`ERR key is ${key.length} bytes, over the ${keyBytesMax}-byte limit`)
    : null;
}

const serverVersion = "0.1.0";

export function makeCommandHandler(data: DataCommands): CommandHandler {
  return (args: Uint8Array[], ctx: CommandContext): ReplyBytes => {
    const name = upper(args[0]!);
    switch (name) {
      case "GET":
        if (args.length !== 2) return wrongArity(name);
        return keyTooLong(args[1]!) ?? data.get(args[1]!, ctx);
      case "SET": {
        if (args.length < 3) return wrongArity(name);
        if (args.length > 3) {
          return encodeError("ERR syntax error (SET options EX/PX/NX/XX/GET are not supported)");
        }
        const key = args[1]!;
        const value = args[2]!;
        const bad = keyTooLong(key);
        if (bad) return bad;
        if (value.length > valueBytesMax) {
          return encodeError(
            `ERR value is ${value.length} bytes, over the ${valueBytesMax}-byte limit`,
          );
        }
        return data.set(key, value, ctx);
      }
      case "DEL": {
        if (args.length < 2) return wrongArity(name);
        const keys = args.slice(1);
        for (const k of keys) {
          const bad = keyTooLong(k);
          if (bad) return bad;
        }
        return data.del(keys, ctx);
      }
      case "PING":
        if (args.length > 2) return wrongArity(name);
        return args.length === 2 ? encodeBulk(args[1]!) : PONG;
      case "ECHO":
        return args.length === 2 ? encodeBulk(args[1]!) : wrongArity(name);
      case "QUIT":
        ctx.closeAfterReply = true;
        return OK;
      case "SELECT":
        if (args.length !== 2) return wrongArity(name);
        return text(args[1]!) === "0" ? OK : encodeError("ERR DB index is out of range");
      case "HELLO": {
        if (args.length >= 2 && text(args[1]!) !== "2") {
          return encodeError("NOPROTO this server speaks RESP2 only");
        }
        const fields: [string, Uint8Array][] = [
          ["server", encodeBulk(new TextEncoder().encode("kvstore"))],
          ["version", encodeBulk(new TextEncoder().encode(serverVersion))],
          ["proto", encodeInteger(2)],
          ["id", encodeInteger(0)],
          ["mode", encodeBulk(new TextEncoder().encode("standalone"))],
          ["role", encodeBulk(new TextEncoder().encode(data.redisRole))],
          ["modules", EMPTY_ARRAY],
        ];
        return encodeArray(
          fields.flatMap(([k, v]) => [encodeBulk(new TextEncoder().encode(k)), v]),
        );
      }
      case "CLIENT": {
        const sub = args.length >= 2 ? upper(args[1]!) : "";
        if (sub === "GETNAME") return encodeBulk(null);
        if (sub === "ID") return encodeInteger(0);
        return OK; // SETNAME, SETINFO, NO-EVICT, …: accepted and ignored
      }
      case "COMMAND":
        // redis-cli asks for command docs for its hints; an empty answer is valid.
        return args.length >= 2 && upper(args[1]!) === "COUNT" ? encodeInteger(0) : EMPTY_ARRAY;
      case "CONFIG": {
        if (args.length !== 3 || upper(args[1]!) !== "GET") {
          return encodeError("ERR only CONFIG GET is supported");
        }
        const param = text(args[2]!).toLowerCase();
        // Answer what redis-benchmark asks about; every write is fsynced on a quorum.
        const known: Record<string, string> = { save: "", appendonly: "yes" };
        const hits = Object.entries(known).filter(([k]) => param === "*" || k === param);
        return encodeArray(
          hits.flatMap(([k, v]) => [
            encodeBulk(new TextEncoder().encode(k)),
            encodeBulk(new TextEncoder().encode(v)),
          ]),
        );
      }
      case "INFO": {
        const lines = [
          "# Server",
          `redis_version:${serverVersion}`,
          "kvstore:1",
          "# Replication",
          `role:${data.redisRole}`,
          ...data.info(),
          "",
        ];
        return encodeBulk(new TextEncoder().encode(lines.join("\r\n")));
      }
      default:
        return unknownCommand(args);
    }
  };
}
