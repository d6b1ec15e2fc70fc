// Unit tests of src/node/commands.ts: arity, limits, exact RESP replies of the local commands.

import assert from "node:assert/strict";
import { keyBytesMax, valueBytesMax } from "../../../src/config/limits.ts";
import type { CommandContext } from "../../../src/net/resp_server.ts";
import { type DataCommands, makeCommandHandler, OK } from "../../../src/node/commands.ts";

const utf8 = new TextEncoder();
const b = (s: string): Uint8Array => utf8.encode(s);
const show = (bytes: Uint8Array): string => new TextDecoder().decode(bytes);

type Call =
  | { op: "get"; key: string }
  | { op: "set"; key: string; value: string }
  | { op: "del"; keys: string[] };

/** A DataCommands that records each call and answers with a recognisable reply. */
class FakeData implements DataCommands {
  readonly calls: Call[] = [];
  /** The connection context each data command was given. */
  readonly contexts: CommandContext[] = [];
  readonly redisRole: string;
  readonly #info: string[];

  constructor(role = "master", info: string[] = []) {
    this.redisRole = role;
    this.#info = info;
  }

  get(key: Uint8Array, ctx: CommandContext): Uint8Array {
    this.contexts.push(ctx);
    this.calls.push({ op: "get", key: show(key) });
    return b("+GET-REPLY\r\n");
  }

  set(key: Uint8Array, value: Uint8Array, ctx: CommandContext): Promise<Uint8Array> {
    this.contexts.push(ctx);
    this.calls.push({ op: "set", key: show(key), value: show(value) });
    return Promise.resolve(b("+SET-REPLY\r\n"));
  }

  del(keys: Uint8Array[], ctx: CommandContext): Uint8Array {
    this.contexts.push(ctx);
    this.calls.push({ op: "del", keys: keys.map(show) });
    return b(":1\r\n");
  }

  info(): string[] {
    return this.#info;
  }
}

interface Run {
  reply: string;
  ctx: CommandContext;
}

async function run(data: DataCommands, args: (string | Uint8Array)[]): Promise<Run> {
  const handler = makeCommandHandler(data);
  const ctx: CommandContext = { closeAfterReply: false, lastWriteIndex: 0 };
  const reply = await handler(args.map((a) => typeof a === "string" ? b(a) : a), ctx);
  return { reply: show(reply), ctx };
}

async function reply(args: (string | Uint8Array)[], data: DataCommands = new FakeData()) {
  return (await run(data, args)).reply;
}

// ---------------------------------------------------------------- data commands

Deno.test("GET, SET and DEL are handed to the role's data commands with their arguments", async () => {
  const data = new FakeData();
  assert.equal(await reply(["GET", "user01"], data), "+GET-REPLY\r\n");
  assert.equal(await reply(["SET", "city", "Vilnius"], data), "+SET-REPLY\r\n");
  assert.equal(await reply(["DEL", "a", "b", "c"], data), ":1\r\n");
  assert.deepEqual(data.calls, [
    { op: "get", key: "user01" },
    { op: "set", key: "city", value: "Vilnius" },
    { op: "del", keys: ["a", "b", "c"] },
  ]);
});

Deno.test("data commands get the connection's own context object", async () => {
  const data = new FakeData();
  const handler = makeCommandHandler(data);
  const ctx: CommandContext = { closeAfterReply: false, lastWriteIndex: 7 };
  await handler([b("SET"), b("k"), b("v")], ctx);
  await handler([b("GET"), b("k")], ctx);
  await handler([b("DEL"), b("k")], ctx);
  assert.equal(data.contexts.length, 3);
  assert.ok(data.contexts.every((c) => c === ctx));
});

Deno.test("command names are case-insensitive", async () => {
  const data = new FakeData();
  assert.equal(await reply(["get", "k"], data), "+GET-REPLY\r\n");
  assert.equal(await reply(["sEt", "k", "v"], data), "+SET-REPLY\r\n");
  assert.equal(await reply(["ping"], data), "+PONG\r\n");
  assert.equal(data.calls.length, 2);
});

Deno.test("wrong arity gets Redis's message with the lowercase command name", async () => {
  const cases: [string[], string][] = [
    [["GET"], "get"],
    [["get", "a", "b"], "get"],
    [["SET", "k"], "set"],
    [["SET"], "set"],
    [["DEL"], "del"],
    [["PING", "a", "b"], "ping"],
    [["ECHO"], "echo"],
    [["ECHO", "a", "b"], "echo"],
    [["SELECT"], "select"],
    [["SELECT", "0", "1"], "select"],
  ];
  for (const [args, name] of cases) {
    const data = new FakeData();
    assert.equal(
      await reply(args, data),
      `-ERR wrong number of arguments for '${name}' command\r\n`,
      args.join(" "),
    );
    assert.deepEqual(data.calls, [], "nothing reaches the data commands");
  }
});

Deno.test("SET with options is refused as a syntax error", async () => {
  const data = new FakeData();
  assert.equal(
    await reply(["SET", "k", "v", "EX", "10"], data),
    "-ERR syntax error (SET options EX/PX/NX/XX/GET are not supported)\r\n",
  );
  assert.deepEqual(data.calls, []);
});

Deno.test("an unknown command names itself and up to three arguments", async () => {
  assert.equal(
    await reply(["FLUSHALL", "a", "b", "c", "d"]),
    "-ERR unknown command 'FLUSHALL', with args beginning with: 'a' 'b' 'c'\r\n",
  );
  assert.equal(
    await reply(["bogus"]),
    "-ERR unknown command 'bogus', with args beginning with: \r\n",
  );
});

Deno.test("an unknown command's name and arguments are cut short in the error", async () => {
  const out = await reply(["X".repeat(500), "y".repeat(500)]);
  assert.equal(
    out,
    `-ERR unknown command '${"X".repeat(128)}', with args beginning with: '${"y".repeat(64)}'\r\n`,
  );
});

Deno.test("an unknown command with CR or LF in it cannot break the reply line", async () => {
  const out = await reply(["FOO\r\n+OK", "a\nb"]);
  assert.equal(out.indexOf("\r\n"), out.length - 2, JSON.stringify(out));
  assert.ok(out.startsWith("-ERR unknown command"));
});

Deno.test("limits: a key of keyBytesMax bytes is accepted; one byte more is refused for GET, SET and DEL", async () => {
  const data = new FakeData();
  const atLimit = new Uint8Array(keyBytesMax).fill(0x6b);
  const over = new Uint8Array(keyBytesMax + 1).fill(0x6b);
  const tooLong = `-ERR key is ${keyBytesMax + 1} bytes, over the ${keyBytesMax}-byte limit\r\n`;
  assert.equal(await reply(["GET", atLimit], data), "+GET-REPLY\r\n");
  assert.equal(await reply(["GET", over], data), tooLong);
  assert.equal(await reply(["SET", over, "v"], data), tooLong);
  assert.equal(await reply(["DEL", "fine", over], data), tooLong);
  assert.equal(data.calls.length, 1, "only the key at the limit reached the data commands");
});

Deno.test("limits: a value of valueBytesMax bytes is accepted; one byte more is refused", async () => {
  const data = new FakeData();
  const atLimit = new Uint8Array(valueBytesMax);
  const over = new Uint8Array(valueBytesMax + 1);
  assert.equal(await reply(["SET", "k", atLimit], data), "+SET-REPLY\r\n");
  assert.equal(
    await reply(["SET", "k", over], data),
    `-ERR value is ${valueBytesMax + 1} bytes, over the ${valueBytesMax}-byte limit\r\n`,
  );
  assert.equal(data.calls.length, 1);
});

// ---------------------------------------------------------------- local commands

Deno.test("PING answers +PONG, or echoes its argument as a bulk string", async () => {
  assert.equal(await reply(["PING"]), "+PONG\r\n");
  assert.equal(await reply(["PING", "hello"]), "$5\r\nhello\r\n");
});

Deno.test("ECHO answers its argument as a binary-safe bulk string", async () => {
  assert.equal(await reply(["ECHO", "a\r\nb"]), "$4\r\na\r\nb\r\n");
  assert.equal(await reply(["ECHO", ""]), "$0\r\n\r\n");
});

Deno.test("QUIT answers +OK and asks for the connection to close after the reply", async () => {
  const r = await run(new FakeData(), ["QUIT"]);
  assert.equal(r.reply, "+OK\r\n");
  assert.equal(r.ctx.closeAfterReply, true);
  const other = await run(new FakeData(), ["PING"]);
  assert.equal(other.ctx.closeAfterReply, false);
});

Deno.test("OK is the +OK simple string", () => {
  assert.equal(show(OK), "+OK\r\n");
});

Deno.test("SELECT 0 is accepted; any other database is out of range", async () => {
  assert.equal(await reply(["SELECT", "0"]), "+OK\r\n");
  assert.equal(await reply(["SELECT", "1"]), "-ERR DB index is out of range\r\n");
  assert.equal(await reply(["SELECT", "00"]), "-ERR DB index is out of range\r\n");
});

Deno.test("HELLO answers the RESP2 server map with the role", async () => {
  const expected = [
    "*14",
    "$6",
    "server",
    "$7",
    "kvstore",
    "$7",
    "version",
    "$5",
    "0.1.0",
    "$5",
    "proto",
    ":2",
    "$2",
    "id",
    ":0",
    "$4",
    "mode",
    "$10",
    "standalone",
    "$4",
    "role",
    "$5",
    "slave",
    "$7",
    "modules",
    "*0",
    "",
  ].join("\r\n");
  assert.equal(await reply(["HELLO"], new FakeData("slave")), expected);
  assert.equal(await reply(["HELLO", "2"], new FakeData("slave")), expected);
  assert.equal(
    await reply(["HELLO", "2", "AUTH", "u", "p"], new FakeData("slave")),
    expected,
  );
});

Deno.test("HELLO 3 is refused with NOPROTO: the server speaks RESP2 only", async () => {
  assert.equal(await reply(["HELLO", "3"]), "-NOPROTO this server speaks RESP2 only\r\n");
});

Deno.test("CLIENT GETNAME is nil, CLIENT ID is 0, and other CLIENT subcommands are accepted", async () => {
  assert.equal(await reply(["CLIENT", "GETNAME"]), "$-1\r\n");
  assert.equal(await reply(["client", "getname"]), "$-1\r\n");
  assert.equal(await reply(["CLIENT", "ID"]), ":0\r\n");
  assert.equal(await reply(["CLIENT", "SETNAME", "bench"]), "+OK\r\n");
  assert.equal(await reply(["CLIENT", "SETINFO", "LIB-NAME", "x"]), "+OK\r\n");
  assert.equal(await reply(["CLIENT"]), "+OK\r\n");
});

Deno.test("COMMAND answers an empty array, and COMMAND COUNT zero", async () => {
  assert.equal(await reply(["COMMAND"]), "*0\r\n");
  assert.equal(await reply(["COMMAND", "DOCS"]), "*0\r\n");
  assert.equal(await reply(["COMMAND", "count"]), ":0\r\n");
});

Deno.test("CONFIG GET answers save and appendonly; other parameters are an empty array", async () => {
  assert.equal(
    await reply(["CONFIG", "GET", "*"]),
    "*4\r\n$4\r\nsave\r\n$0\r\n\r\n$10\r\nappendonly\r\n$3\r\nyes\r\n",
  );
  assert.equal(await reply(["config", "get", "SAVE"]), "*2\r\n$4\r\nsave\r\n$0\r\n\r\n");
  assert.equal(
    await reply(["CONFIG", "GET", "appendonly"]),
    "*2\r\n$10\r\nappendonly\r\n$3\r\nyes\r\n",
  );
  assert.equal(await reply(["CONFIG", "GET", "maxmemory"]), "*0\r\n");
});

Deno.test("CONFIG other than GET with one parameter is refused", async () => {
  const refusal = "-ERR only CONFIG GET is supported\r\n";
  assert.equal(await reply(["CONFIG", "SET", "save", ""]), refusal);
  assert.equal(await reply(["CONFIG", "SET", "x"]), refusal);
  assert.equal(await reply(["CONFIG", "GET"]), refusal);
  assert.equal(await reply(["CONFIG"]), refusal);
});

Deno.test("INFO answers a bulk string with the server and replication sections", async () => {
  const data = new FakeData("master", ["connected_slaves:3", "kvstore_term:12"]);
  const body = [
    "# Server",
    "redis_version:0.1.0",
    "kvstore:1",
    "# Replication",
    "role:master",
    "connected_slaves:3",
    "kvstore_term:12",
    "",
  ].join("\r\n");
  assert.equal(await reply(["INFO"], data), `$${body.length}\r\n${body}\r\n`);
  assert.equal(await reply(["INFO", "replication"], data), `$${body.length}\r\n${body}\r\n`);
});

Deno.test("local commands answer without touching the data commands", async () => {
  const data = new FakeData();
  for (
    const args of [
      ["PING"],
      ["ECHO", "x"],
      ["QUIT"],
      ["SELECT", "0"],
      ["HELLO"],
      ["CLIENT", "ID"],
      ["COMMAND"],
      ["CONFIG", "GET", "*"],
      ["INFO"],
    ]
  ) {
    await reply(args, data);
  }
  assert.deepEqual(data.calls, []);
});
