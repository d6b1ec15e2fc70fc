// Unit tests for src/codec/resp.ts, the RESP2 codec: request parsing (multibulk
// and inline, including every framing error and limit), the encoders' exact
// bytes, and the client's reply parser. Run by `deno task test`. Pure: no I/O,
// no clock; the one randomised test uses its own seeded PRNG and prints the
// seed on failure.

import { strict as assert } from "node:assert";
import {
  encodeArray,
  encodeBulk,
  encodeCommand,
  encodeError,
  encodeInteger,
  encodeReply,
  encodeSimple,
  type ParsedReply,
  type ParsedRequest,
  type Reply,
  ReplyParser,
  type RequestLimits,
  RequestParser,
} from "../../../src/codec/resp.ts";

const encoder = new TextEncoder();
const decoder = new TextDecoder();

function bytes(s: string): Uint8Array {
  return encoder.encode(s);
}

function text(b: Uint8Array): string {
  return decoder.decode(b);
}

/** Latin-1 view of raw bytes, so exact binary expectations read naturally. */
function latin1(b: Uint8Array): string {
  return String.fromCharCode(...b);
}

function concat(...parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let pos = 0;
  for (const p of parts) {
    out.set(p, pos);
    pos += p.length;
  }
  return out;
}

/** Every result `next` gives until it reports incomplete or an error. */
function drain(parser: RequestParser): ParsedRequest[] {
  const results: ParsedRequest[] = [];
  for (;;) {
    const r = parser.next();
    if (r.kind === "incomplete") return results;
    results.push(r);
    if (r.kind === "error") return results;
  }
}

/** Feeds `chunks` in order, draining after each, and returns the commands' args
 * (as arrays of byte arrays) plus the first error, if any. */
function parseChunks(
  chunks: Uint8Array[],
  limits?: RequestLimits,
): { commands: Uint8Array[][]; error: string | null } {
  const parser = limits === undefined ? new RequestParser() : new RequestParser(limits);
  const commands: Uint8Array[][] = [];
  for (const chunk of chunks) {
    parser.push(chunk);
    for (const r of drain(parser)) {
      if (r.kind === "error") return { commands, error: r.message };
      if (r.kind === "command") commands.push(r.args);
    }
  }
  return { commands, error: null };
}

function parseAll(input: Uint8Array | string, limits?: RequestLimits) {
  return parseChunks([typeof input === "string" ? bytes(input) : input], limits);
}

function argsAsText(commands: Uint8Array[][]): string[][] {
  return commands.map((args) => args.map(text));
}

/** The request (or reply stream) split into two at every byte boundary, and
 * also delivered one byte at a time. */
function splits(input: Uint8Array): Uint8Array[][] {
  const ways: Uint8Array[][] = [];
  for (let i = 0; i <= input.length; i++) {
    ways.push([input.slice(0, i), input.slice(i)]);
  }
  ways.push(Array.from(input, (b) => Uint8Array.of(b)));
  return ways;
}

function expectError(input: string | Uint8Array, message: string, limits?: RequestLimits): void {
  const { error } = parseAll(input, limits);
  assert.equal(error, message);
}

const smallLimits: RequestLimits = { argCountMax: 4, bulkBytesMax: 16, inlineBytesMax: 32 };

// ------------------------------------------------------------ request parsing

Deno.test("RequestParser: parses a multibulk command into its arguments", () => {
  const { commands, error } = parseAll("*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$5\r\nvalue\r\n");
  assert.equal(error, null);
  assert.deepEqual(argsAsText(commands), [["SET", "k", "value"]]);
});

Deno.test("RequestParser: multibulk arguments are binary-safe, empty ones included", () => {
  const value = Uint8Array.of(0, 13, 10, 255, 42, 13, 10, 0);
  const input = concat(bytes("*3\r\n$3\r\nSET\r\n$0\r\n\r\n$8\r\n"), value, bytes("\r\n"));
  const { commands, error } = parseAll(input);
  assert.equal(error, null);
  assert.equal(commands.length, 1);
  assert.deepEqual(commands[0], [bytes("SET"), new Uint8Array(0), value]);
});

Deno.test("RequestParser: parses an inline command split on blanks", () => {
  const { commands, error } = parseAll("SET  k\tvalue \r\nGET k\n");
  assert.equal(error, null);
  assert.deepEqual(argsAsText(commands), [["SET", "k", "value"], ["GET", "k"]]);
});

Deno.test("RequestParser: inline quoting follows Redis's sdssplitargs", () => {
  const cases: [string, string[]][] = [
    [`SET "hello world" x`, ["SET", "hello world", "x"]],
    [`ECHO "a\\n\\r\\t\\b\\a\\\\\\"z"`, ["ECHO", 'a\n\r\t\b\x07\\"z']],
    [`ECHO "\\x41\\x4a\\x6b"`, ["ECHO", "AJk"]],
    [`ECHO "\\xZZ"`, ["ECHO", "xZZ"]],
    [`ECHO "\\q"`, ["ECHO", "q"]],
    [`ECHO 'it\\'s' 'a\\nb'`, ["ECHO", "it's", "a\\nb"]],
    [`ECHO pre"mid dle"`, ["ECHO", "premid dle"]],
    [`ECHO "" ''`, ["ECHO", "", ""]],
    [`ECHO \x0bx\x0c`, ["ECHO", "x\x0c"]],
  ];
  for (const [line, expected] of cases) {
    const { commands, error } = parseAll(line + "\r\n");
    assert.equal(error, null, line);
    assert.deepEqual(argsAsText(commands), [expected], line);
  }
});

Deno.test("RequestParser: inline \\xHH escapes produce raw bytes, NUL included", () => {
  const { commands } = parseAll(`SET k "\\x00\\xff\\x0d\\x0a"\n`);
  assert.deepEqual(commands[0]?.[2], Uint8Array.of(0, 255, 13, 10));
});

Deno.test("RequestParser: pipelined commands in one chunk come out in order", () => {
  const input = concat(
    encodeCommand(["SET", "a", "1"]),
    bytes("PING\r\n"),
    encodeCommand(["GET", "a"]),
    bytes('ECHO "x y"\n'),
    encodeCommand(["DEL", "a", "b", "c"]),
  );
  const { commands, error } = parseAll(input);
  assert.equal(error, null);
  assert.deepEqual(argsAsText(commands), [
    ["SET", "a", "1"],
    ["PING"],
    ["GET", "a"],
    ["ECHO", "x y"],
    ["DEL", "a", "b", "c"],
  ]);
});

Deno.test("RequestParser: thousands of pipelined commands in one chunk all parse", () => {
  const count = 20_000;
  const parts: Uint8Array[] = [];
  for (let i = 0; i < count; i++) parts.push(encodeCommand(["SET", `key:${i}`, `value:${i}`]));
  const { commands, error } = parseAll(concat(...parts));
  assert.equal(error, null);
  assert.equal(commands.length, count);
  assert.deepEqual(argsAsText([commands[count - 1] ?? []]), [[
    "SET",
    `key:${count - 1}`,
    `value:${count - 1}`,
  ]]);
});

Deno.test("RequestParser: a binary multibulk split at every byte boundary yields the same args", () => {
  const value = Uint8Array.of(0, 13, 10, 36, 51, 13, 10, 42, 0, 13);
  const input = concat(
    bytes("*3\r\n$3\r\nSET\r\n$4\r\nk\r\n\0\r\n$10\r\n"),
    value,
    bytes("\r\n"),
    encodeCommand(["GET", "x"]),
  );
  const expected = [[bytes("SET"), Uint8Array.of(107, 13, 10, 0), value], [
    bytes("GET"),
    bytes("x"),
  ]];
  for (const chunks of splits(input)) {
    const { commands, error } = parseChunks(chunks);
    assert.equal(error, null);
    assert.deepEqual(commands, expected);
  }
});

Deno.test("RequestParser: a quoted inline command split at every byte boundary yields the same args", () => {
  const input = bytes(`SET "k e\\"y" 'v a\\'l' "\\x00\\r"\r\nPING\n`);
  const expected = [["SET", 'k e"y', "v a'l", "\0\r"], ["PING"]];
  for (const chunks of splits(input)) {
    const { commands, error } = parseChunks(chunks);
    assert.equal(error, null);
    assert.deepEqual(argsAsText(commands), expected);
  }
});

Deno.test("RequestParser: skips *0, *-1 and blank inline lines like Redis", () => {
  const input = "*0\r\n*-1\r\n\r\n   \r\n\n*1\r\n$4\r\nPING\r\n\t\nECHO hi\n";
  for (const chunks of splits(bytes(input))) {
    const { commands, error } = parseChunks(chunks);
    assert.equal(error, null);
    assert.deepEqual(argsAsText(commands), [["PING"], ["ECHO", "hi"]]);
  }
});

Deno.test("RequestParser: an empty push yields nothing", () => {
  const parser = new RequestParser();
  parser.push(new Uint8Array(0));
  assert.deepEqual(parser.next(), { kind: "incomplete" });
  assert.equal(parser.bufferedBytes, 0);
});

Deno.test("RequestParser: args stay intact when the caller reuses its chunk", () => {
  const parser = new RequestParser();
  const chunk = encodeCommand(["SET", "key", "val"]);
  parser.push(chunk.subarray(0, 20));
  chunk.fill(0x21, 0, 20);
  parser.push(chunk.subarray(20));
  chunk.fill(0x21);
  const r = parser.next();
  assert.equal(r.kind, "command");
  assert.deepEqual(r.kind === "command" ? argsAsText([r.args]) : [], [["SET", "key", "val"]]);
});

Deno.test("RequestParser: args returned earlier are not altered by later pushes", () => {
  const parser = new RequestParser();
  parser.push(encodeCommand(["SET", "a", "first"]));
  const first = parser.next();
  for (let i = 0; i < 200; i++) parser.push(encodeCommand(["SET", "b", "x".repeat(500)]));
  assert.equal(drain(parser).length, 200);
  assert.deepEqual(first.kind === "command" ? argsAsText([first.args]) : [], [[
    "SET",
    "a",
    "first",
  ]]);
});

Deno.test("RequestParser: a large bulk arriving in small pieces parses intact", () => {
  const value = new Uint8Array(3 * 1024 * 1024);
  for (let i = 0; i < value.length; i++) value[i] = (i * 31) & 0xff;
  const input = concat(encodeCommand([bytes("SET"), bytes("big"), value]), encodeCommand(["PING"]));
  const chunks: Uint8Array[] = [];
  for (let i = 0; i < input.length; i += 1000) chunks.push(input.slice(i, i + 1000));
  const { commands, error } = parseChunks(chunks);
  assert.equal(error, null);
  assert.equal(commands.length, 2);
  assert.deepEqual(commands[0]?.[2], value);
  assert.deepEqual(argsAsText([commands[1] ?? []]), [["PING"]]);
});

Deno.test("RequestParser: bufferedBytes counts unparsed bytes and shrinks after consumption", () => {
  const parser = new RequestParser();
  const command = encodeCommand(["SET", "k", "v"]);
  parser.push(command);
  parser.push(command.subarray(0, 15)); // "*3\r\n$3\r\nSET\r\n$1" of a second one
  assert.equal(parser.bufferedBytes, command.length + 15);
  assert.equal(parser.next().kind, "command");
  assert.equal(parser.next().kind, "incomplete");
  // The partly received second command is still held, all 15 bytes of it.
  assert.equal(parser.bufferedBytes, 15);
  parser.push(command.subarray(15));
  assert.equal(parser.next().kind, "command");
  assert.equal(parser.bufferedBytes, 0);
});

Deno.test("RequestParser: random commands split at random points round-trip encodeCommand", () => {
  const seed = 0x5eed_1234;
  const random = mulberry32(seed);
  const expected: Uint8Array[][] = [];
  const parts: Uint8Array[] = [];
  for (let i = 0; i < 500; i++) {
    const argCount = 1 + Math.floor(random() * 5);
    const args: Uint8Array[] = [];
    for (let j = 0; j < argCount; j++) {
      const arg = new Uint8Array(Math.floor(random() * (random() < 0.1 ? 5000 : 20)));
      for (let k = 0; k < arg.length; k++) arg[k] = Math.floor(random() * 256);
      args.push(arg);
    }
    expected.push(args);
    parts.push(encodeCommand(args));
  }
  const input = concat(...parts);
  const chunks: Uint8Array[] = [];
  for (let pos = 0; pos < input.length;) {
    const size = 1 + Math.floor(random() * 3000);
    chunks.push(input.slice(pos, pos + size));
    pos += size;
  }
  const { commands, error } = parseChunks(chunks);
  assert.equal(error, null, `seed ${seed}`);
  assert.deepEqual(commands, expected, `seed ${seed}`);
});

// ----------------------------------------------------------- request errors

Deno.test("RequestParser: refuses a multibulk count above argCountMax", () => {
  expectError("*5\r\n", "invalid multibulk length", smallLimits);
});

Deno.test("RequestParser: refuses a non-numeric or malformed multibulk count", () => {
  for (const line of ["*x\r\n", "*\r\n", "*1a\r\n", "*+1\r\n", "*01\r\n", "* 1\r\n", "*1\rX"]) {
    expectError(line, "invalid multibulk length");
  }
});

Deno.test("RequestParser: refuses a bulk length above bulkBytesMax", () => {
  expectError("*1\r\n$17\r\n", "invalid bulk length", smallLimits);
});

Deno.test("RequestParser: refuses a negative, non-numeric or malformed bulk length", () => {
  for (const header of ["$-1", "$-0", "$abc", "$", "$1.5", "$007", "$ 3"]) {
    expectError(`*1\r\n${header}\r\n`, "invalid bulk length");
  }
  expectError("*1\r\n$3\rXfoo\r\n", "invalid bulk length");
});

Deno.test("RequestParser: refuses an argument that does not start with '$'", () => {
  expectError("*2\r\n$3\r\nGET\r\n:1\r\n", "expected '$', got ':'");
  expectError("*1\r\nPING\r\n", "expected '$', got 'P'");
  expectError("*1\r\n\r\n", "expected '$', got '\\x0d'");
});

Deno.test("RequestParser: refuses bulk data not followed by CRLF", () => {
  expectError("*1\r\n$4\r\nPINGX\r\n", "expected CRLF after bulk data");
  expectError("*1\r\n$4\r\nPING\rX", "expected CRLF after bulk data");
  expectError("*1\r\n$3\r\nPING\r\n", "expected CRLF after bulk data");
});

Deno.test("RequestParser: refuses a length line without CRLF past 64 bytes", () => {
  expectError("*" + "1".repeat(64), "too big mbulk count string");
  expectError("*1\r\n$" + "1".repeat(64), "too big bulk count string");
  // A complete but absurd line is refused too, whatever the split.
  expectError("*" + "1".repeat(70) + "\r\n", "too big mbulk count string");
});

Deno.test("RequestParser: a length line just under the line limit waits for more bytes", () => {
  const parser = new RequestParser();
  parser.push(bytes("*" + "0".repeat(63)));
  assert.deepEqual(parser.next(), { kind: "incomplete" });
});

Deno.test("RequestParser: refuses unbalanced quotes in an inline command", () => {
  for (const line of [`SET "k v`, `SET 'k v`, `SET "k"v`, `SET 'k'v`, `SET "k\\"`]) {
    expectError(line + "\r\n", "unbalanced quotes in request");
  }
});

Deno.test("RequestParser: refuses an inline line longer than inlineBytesMax", () => {
  // Without a newline yet: refused as soon as the line is too long.
  expectError("x".repeat(33), "too big inline request", smallLimits);
  // With the newline already there: refused the same way.
  expectError("x".repeat(33) + "\n", "too big inline request", smallLimits);
  // Exactly at the limit is fine.
  const { commands, error } = parseAll("x".repeat(32) + "\n", smallLimits);
  assert.equal(error, null);
  assert.equal(commands.length, 1);
});

Deno.test("RequestParser: an inline line under the limit waits for its newline", () => {
  const parser = new RequestParser(smallLimits);
  for (let i = 0; i < 32; i++) {
    parser.push(bytes("x"));
    assert.deepEqual(parser.next(), { kind: "incomplete" });
  }
  parser.push(bytes("\n"));
  assert.equal(parser.next().kind, "command");
});

Deno.test("RequestParser: refuses a huge multibulk count before any argument arrives", () => {
  const parser = new RequestParser();
  parser.push(bytes("*99999999\r\n"));
  assert.deepEqual(parser.next(), { kind: "error", message: "invalid multibulk length" });
});

Deno.test("RequestParser: refuses a huge bulk length before its bytes arrive", () => {
  const parser = new RequestParser();
  parser.push(bytes("*2\r\n$3\r\nSET\r\n$999999999\r\n"));
  assert.deepEqual(parser.next(), { kind: "error", message: "invalid bulk length" });
});

Deno.test("RequestParser: an error is sticky and later pushes are ignored", () => {
  const parser = new RequestParser();
  parser.push(bytes("*1\r\nXYZ\r\n"));
  const error: ParsedRequest = { kind: "error", message: "expected '$', got 'X'" };
  assert.deepEqual(parser.next(), error);
  parser.push(encodeCommand(["PING"]));
  assert.deepEqual(parser.next(), error);
  assert.deepEqual(parser.next(), error);
  assert.equal(parser.bufferedBytes, 0);
});

Deno.test("RequestParser: commands before a framing error are still returned", () => {
  const { commands, error } = parseAll(concat(encodeCommand(["PING"]), bytes("*1\r\n$x\r\n")));
  assert.deepEqual(argsAsText(commands), [["PING"]]);
  assert.equal(error, "invalid bulk length");
});

Deno.test("RequestParser: every error case fails the same way at every split", () => {
  const cases: [string, string][] = [
    ["*1\r\n$4\r\nPINGX\r\n", "expected CRLF after bulk data"],
    ["*2\r\n$3\r\nGET\r\n:1\r\n", "expected '$', got ':'"],
    ["*1\r\n$17\r\n", "invalid bulk length"],
    ["*5\r\n", "invalid multibulk length"],
    [`SET "k v\r\n`, "unbalanced quotes in request"],
    ["x".repeat(40) + "\n", "too big inline request"],
    ["*" + "1".repeat(70) + "\r\n", "too big mbulk count string"],
  ];
  for (const [input, message] of cases) {
    for (const chunks of splits(bytes(input))) {
      assert.equal(parseChunks(chunks, smallLimits).error, message, JSON.stringify(input));
    }
  }
});

Deno.test("RequestParser: rejects limits that are not positive integers", () => {
  assert.throws(() => new RequestParser({ ...smallLimits, argCountMax: 0 }), RangeError);
  assert.throws(() => new RequestParser({ ...smallLimits, bulkBytesMax: 1.5 }), RangeError);
});

// ------------------------------------------------------------------ encoders

Deno.test("encodeSimple and encodeError: exact bytes, CR and LF become spaces", () => {
  assert.equal(latin1(encodeSimple("OK")), "+OK\r\n");
  assert.equal(latin1(encodeSimple("a\r\nb\nc")), "+a  b c\r\n");
  assert.equal(latin1(encodeError("ERR bad\r\nthing")), "-ERR bad  thing\r\n");
  assert.equal(text(encodeSimple("héllo")), "+héllo\r\n");
});

Deno.test("encodeInteger: exact bytes for zero, positive and negative", () => {
  assert.equal(latin1(encodeInteger(0)), ":0\r\n");
  assert.equal(latin1(encodeInteger(42)), ":42\r\n");
  assert.equal(latin1(encodeInteger(-7)), ":-7\r\n");
  assert.equal(latin1(encodeInteger(Number.MAX_SAFE_INTEGER)), ":9007199254740991\r\n");
  assert.throws(() => encodeInteger(1.5), RangeError);
  assert.throws(() => encodeInteger(NaN), RangeError);
});

Deno.test("encodeBulk: exact bytes, binary-safe, nil as $-1", () => {
  assert.equal(latin1(encodeBulk(bytes("hi"))), "$2\r\nhi\r\n");
  assert.equal(latin1(encodeBulk(new Uint8Array(0))), "$0\r\n\r\n");
  assert.equal(latin1(encodeBulk(Uint8Array.of(0, 13, 10))), "$3\r\n\0\r\n\r\n");
  assert.equal(latin1(encodeBulk(null)), "$-1\r\n");
});

Deno.test("encodeArray: header plus already-encoded items, nil as *-1", () => {
  assert.equal(
    latin1(encodeArray([encodeInteger(1), encodeBulk(bytes("a"))])),
    "*2\r\n:1\r\n$1\r\na\r\n",
  );
  assert.equal(latin1(encodeArray([])), "*0\r\n");
  assert.equal(latin1(encodeArray(null)), "*-1\r\n");
});

Deno.test("encodeReply: exact bytes for every kind, nested", () => {
  const reply: Reply = {
    kind: "array",
    value: [
      { kind: "simple", value: "OK\n" },
      { kind: "error", value: "ERR x" },
      { kind: "integer", value: -3 },
      { kind: "bulk", value: bytes("ab") },
      { kind: "bulk", value: null },
      { kind: "array", value: null },
      { kind: "array", value: [{ kind: "array", value: [] }] },
    ],
  };
  assert.equal(
    latin1(encodeReply(reply)),
    "*7\r\n+OK \r\n-ERR x\r\n:-3\r\n$2\r\nab\r\n$-1\r\n*-1\r\n*1\r\n*0\r\n",
  );
});

Deno.test("encodeReply: sizes multi-byte and lone-surrogate strings exactly", () => {
  const value = "é€😀\ud800x";
  const encoded = encodeReply({ kind: "simple", value });
  assert.deepEqual(encoded, encodeSimple(value));
  assert.equal(text(encoded), "+é€😀\ufffdx\r\n");
});

Deno.test("encodeCommand: exact multibulk bytes for strings and byte arrays", () => {
  assert.equal(
    latin1(encodeCommand(["SET", "k", Uint8Array.of(0, 10)])),
    "*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$2\r\n\0\n\r\n",
  );
  assert.equal(text(encodeCommand(["ECHO", "€"])), "*2\r\n$4\r\nECHO\r\n$3\r\n€\r\n");
});

// -------------------------------------------------------------- reply parser

/** Feeds `chunks`, draining after each; returns replies and the first error. */
function parseReplies(
  chunks: Uint8Array[],
  bulkBytesMax?: number,
): { replies: Reply[]; error: string | null } {
  const parser = bulkBytesMax === undefined ? new ReplyParser() : new ReplyParser(bulkBytesMax);
  const replies: Reply[] = [];
  for (const chunk of chunks) {
    parser.push(chunk);
    for (;;) {
      const r: ParsedReply = parser.next();
      if (r.kind === "incomplete") break;
      if (r.kind === "error") return { replies, error: r.message };
      replies.push(r.reply);
    }
  }
  return { replies, error: null };
}

const sampleReplies: Reply[] = [
  { kind: "simple", value: "OK" },
  { kind: "error", value: "REDIRECT 127.0.0.1 7001" },
  { kind: "integer", value: -12345 },
  { kind: "integer", value: 0 },
  { kind: "bulk", value: Uint8Array.of(0, 13, 10, 36, 13) },
  { kind: "bulk", value: new Uint8Array(0) },
  { kind: "bulk", value: null },
  { kind: "array", value: null },
  { kind: "array", value: [] },
  {
    kind: "array",
    value: [
      { kind: "bulk", value: bytes("a") },
      {
        kind: "array",
        value: [
          { kind: "integer", value: 1 },
          { kind: "array", value: [{ kind: "simple", value: "deep" }] },
          { kind: "array", value: [] },
          { kind: "bulk", value: null },
        ],
      },
      { kind: "error", value: "ERR inner" },
    ],
  },
  { kind: "simple", value: "héllo" },
];

Deno.test("ReplyParser: round-trips encodeReply for every kind, nested arrays included", () => {
  const { replies, error } = parseReplies([concat(...sampleReplies.map(encodeReply))]);
  assert.equal(error, null);
  assert.deepEqual(replies, sampleReplies);
});

Deno.test("ReplyParser: a reply stream split at every byte boundary yields the same replies", () => {
  const input = concat(...sampleReplies.map(encodeReply));
  for (const chunks of splits(input)) {
    const { replies, error } = parseReplies(chunks);
    assert.equal(error, null);
    assert.deepEqual(replies, sampleReplies);
  }
});

Deno.test("ReplyParser: parses a large bulk arriving in small pieces", () => {
  const value = new Uint8Array(1024 * 1024).map((_, i) => i & 0xff);
  const input = concat(encodeBulk(value), encodeSimple("OK"));
  const chunks: Uint8Array[] = [];
  for (let i = 0; i < input.length; i += 777) chunks.push(input.slice(i, i + 777));
  const { replies, error } = parseReplies(chunks);
  assert.equal(error, null);
  assert.deepEqual(replies, [{ kind: "bulk", value }, { kind: "simple", value: "OK" }]);
});

Deno.test("ReplyParser: refuses malformed reply streams", () => {
  const cases: [string, string][] = [
    ["?x\r\n", "unexpected reply type byte '?'"],
    ["$abc\r\n", "invalid bulk length"],
    ["$-2\r\n", "invalid bulk length"],
    ["$17\r\n", "invalid bulk length"],
    ["*-2\r\n", "invalid multibulk length"],
    ["*x\r\n", "invalid multibulk length"],
    [":1.5\r\n", "invalid integer reply"],
    [":\r\n", "invalid integer reply"],
    ["$2\r\nabc\r\n", "expected CRLF after bulk data"],
    ["+OK\rX", "expected CRLF after reply line"],
    ["+" + "x".repeat(18), "reply line too long"],
    ["$" + "1".repeat(70), "invalid bulk length"],
  ];
  for (const [input, message] of cases) {
    for (const chunks of splits(bytes(input))) {
      assert.equal(parseReplies(chunks, 16).error, message, JSON.stringify(input));
    }
  }
});

Deno.test("ReplyParser: refuses arrays nested deeper than it will hand to callers", () => {
  const { error } = parseReplies([bytes("*1\r\n".repeat(200))]);
  assert.equal(error, "reply nested too deeply");
});

Deno.test("ReplyParser: an error is sticky", () => {
  const parser = new ReplyParser();
  parser.push(bytes("!\r\n"));
  const first = parser.next();
  parser.push(encodeSimple("OK"));
  assert.deepEqual(parser.next(), first);
  assert.equal(first.kind, "error");
});

Deno.test("ReplyParser: returns incomplete until a whole top-level reply is there", () => {
  const parser = new ReplyParser();
  parser.push(bytes("*2\r\n:1\r\n"));
  assert.deepEqual(parser.next(), { kind: "incomplete" });
  parser.push(bytes(":2\r\n"));
  assert.deepEqual(parser.next(), {
    kind: "reply",
    reply: { kind: "array", value: [{ kind: "integer", value: 1 }, { kind: "integer", value: 2 }] },
  });
  assert.deepEqual(parser.next(), { kind: "incomplete" });
});

/** Small seeded PRNG (mulberry32) so a failing random test replays exactly. */
function mulberry32(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

Deno.test("RequestParser: a command whose arguments add up past commandBytesMax is refused as its header arrives", () => {
  // Regression: 65536 arguments of 16 MiB each were accepted one by one, so a
  // single unfinished command could make the node buffer gigabytes.
  const parser = new RequestParser({
    argCountMax: 100,
    bulkBytesMax: 1000,
    inlineBytesMax: 100,
    commandBytesMax: 2500,
  });
  const enc = new TextEncoder();
  parser.push(enc.encode(`*5\r\n$3\r\nDEL\r\n$1000\r\n${"a".repeat(1000)}\r\n`));
  assert.equal(parser.next().kind, "incomplete");
  parser.push(enc.encode(`$1000\r\n${"b".repeat(1000)}\r\n`));
  assert.equal(parser.next().kind, "incomplete");
  parser.push(enc.encode("$1000\r\n"));
  const r = parser.next();
  assert.equal(r.kind, "error");
  assert.match(r.kind === "error" ? r.message : "", /command larger than 2500 bytes/);
});
