// Unit tests of src/codec/replication.ts: encoder bytes, parser splits, limits, bad input.

import assert from "node:assert/strict";
import {
  encodeAck,
  encodeAppend,
  encodeErr,
  encodeHello,
  encodeNack,
  type ParsedReplication,
  type ReplicationMessage,
  ReplicationParser,
} from "../../../src/codec/replication.ts";
import { decodeWalLine, encodeWalLine } from "../../../src/codec/wal_line.ts";
import { replicationBatchBytesMax, replicationHeaderBytesMax } from "../../../src/config/limits.ts";
import { concatBytes } from "../../../src/net/write_all.ts";

const utf8 = new TextEncoder();
const b = (s: string): Uint8Array => utf8.encode(s);
const show = (bytes: Uint8Array): string => new TextDecoder().decode(bytes);
/** Latin-1 view, so binary bytes compare exactly. */
const latin1 = (bytes: Uint8Array): string => String.fromCharCode(...bytes);

const concat = (...parts: Uint8Array[]): Uint8Array => concatBytes(parts);

/** A message with APPEND lines as latin-1 strings, for deepEqual. */
type Plain = Record<string, unknown>;

function plain(m: ReplicationMessage): Plain {
  return m.kind === "APPEND" ? { ...m, lines: m.lines.map(latin1) } : { ...m };
}

/** Reads every complete message; stops at `incomplete` or an error. */
function drain(parser: ReplicationParser): { messages: Plain[]; end: ParsedReplication } {
  const messages: Plain[] = [];
  for (;;) {
    const r = parser.next();
    if (r.kind !== "message") return { messages, end: r };
    messages.push(plain(r.message));
  }
}

function parseAll(bytes: Uint8Array): { messages: Plain[]; end: ParsedReplication } {
  const parser = new ReplicationParser();
  parser.push(bytes);
  return drain(parser);
}

function parseOne(bytes: Uint8Array): ReplicationMessage {
  const parser = new ReplicationParser();
  parser.push(bytes);
  const r = parser.next();
  assert.equal(r.kind, "message", JSON.stringify(r));
  if (r.kind !== "message") throw new Error("unreachable");
  assert.deepEqual(parser.next(), { kind: "incomplete" }, "nothing left over");
  return r.message;
}

function errorOf(bytes: Uint8Array | string): string {
  const { messages, end } = parseAll(typeof bytes === "string" ? b(bytes) : bytes);
  assert.deepEqual(messages, []);
  assert.equal(end.kind, "error", JSON.stringify(end));
  return end.kind === "error" ? end.message : "";
}

const walLines = [
  encodeWalLine({ op: "TERM", index: 4, term: 3 }),
  encodeWalLine({ op: "SET", index: 5, key: b("user01"), value: b("Kaspa") }),
  encodeWalLine({ op: "SET", index: 6, key: Uint8Array.of(0, 10, 13, 9, 0xff), value: b("a\nb") }),
  encodeWalLine({ op: "DEL", index: 7, key: b("user01") }),
];

// ---------------------------------------------------------------- encoders

Deno.test("encoders: HELLO, ACK, NACK and ERR are single text lines", () => {
  assert.equal(show(encodeHello(3, 12, 40, 11)), "HELLO 3 12 40 11\n");
  assert.equal(show(encodeAck(12, 40, 7)), "ACK 12 40 7\n");
  assert.equal(show(encodeNack(12, 33, 8)), "NACK 12 33 8\n");
  assert.equal(show(encodeErr(12, "not the leader")), "ERR 12 not the leader\n");
});

Deno.test("encoders: ERR turns CR and LF in the reason into spaces, so it stays one line", () => {
  assert.equal(show(encodeErr(1, "a\r\nb\nc")), "ERR 1 a  b c\n");
});

Deno.test("encoders: APPEND is a header naming count and bytes, then the WAL lines verbatim", () => {
  const lines = [b("1\tTERM\t1\n"), b("2\tSET\tcity\tVilnius\n")];
  const out = encodeAppend(1, 0, 0, 0, 5, lines);
  assert.equal(show(out), "APPEND 1 0 0 0 2 28 5\n1\tTERM\t1\n2\tSET\tcity\tVilnius\n");
});

Deno.test("encoders: an empty APPEND (a heartbeat) has count 0 and no body", () => {
  assert.equal(show(encodeAppend(4, 9, 3, 8, 77, [])), "APPEND 4 9 3 8 0 0 77\n");
});

// ---------------------------------------------------------------- parsing

Deno.test("parser: every message kind round-trips through its encoder", () => {
  assert.deepEqual(parseOne(encodeHello(3, 12, 40, 11)), {
    kind: "HELLO",
    nodeId: 3,
    term: 12,
    lastIndex: 40,
    lastTerm: 11,
  });
  assert.deepEqual(parseOne(encodeAck(12, 40, 7)), {
    kind: "ACK",
    term: 12,
    matchIndex: 40,
    round: 7,
  });
  assert.deepEqual(parseOne(encodeNack(12, 33, 8)), {
    kind: "NACK",
    term: 12,
    hintIndex: 33,
    round: 8,
  });
  assert.deepEqual(parseOne(encodeErr(12, "stale  term, go away")), {
    kind: "ERR",
    term: 12,
    reason: "stale  term, go away",
  });
  assert.deepEqual(plain(parseOne(encodeAppend(3, 3, 2, 2, 9, walLines))), {
    kind: "APPEND",
    term: 3,
    prevIndex: 3,
    prevTerm: 2,
    leaderCommit: 2,
    round: 9,
    lines: walLines.map((l) => latin1(l.subarray(0, l.length - 1))),
  });
});

Deno.test("parser: APPEND lines come without their newline and decode as WAL records", () => {
  const m = parseOne(encodeAppend(3, 3, 2, 2, 9, walLines));
  assert.equal(m.kind, "APPEND");
  if (m.kind !== "APPEND") return;
  assert.equal(m.lines.length, 4);
  for (const [i, line] of m.lines.entries()) {
    assert.equal(line.includes(0x0a), false);
    const decoded = decodeWalLine(line);
    assert.ok(decoded.ok, decoded.ok ? "" : decoded.error);
    assert.equal(decoded.record.index, 4 + i);
    assert.deepEqual(encodeWalLine(decoded.record), walLines[i], "same bytes as on disk");
  }
});

Deno.test("parser: an empty APPEND parses with no lines and the next message follows", () => {
  const { messages, end } = parseAll(concat(encodeAppend(4, 9, 3, 8, 77, []), encodeAck(4, 9, 77)));
  assert.deepEqual(messages, [
    { kind: "APPEND", term: 4, prevIndex: 9, prevTerm: 3, leaderCommit: 8, round: 77, lines: [] },
    { kind: "ACK", term: 4, matchIndex: 9, round: 77 },
  ]);
  assert.deepEqual(end, { kind: "incomplete" });
});

Deno.test("parser: ERR with a term and no reason has an empty reason", () => {
  assert.deepEqual(parseOne(b("ERR 5\n")), { kind: "ERR", term: 5, reason: "" });
});

Deno.test("parser: 15-digit numbers are accepted", () => {
  assert.deepEqual(parseOne(b("ACK 999999999999999 1 0\n")), {
    kind: "ACK",
    term: 999999999999999,
    matchIndex: 1,
    round: 0,
  });
});

Deno.test("parser: nothing, or a header without its newline, is incomplete", () => {
  const parser = new ReplicationParser();
  assert.deepEqual(parser.next(), { kind: "incomplete" });
  parser.push(b("ACK 1 2"));
  assert.deepEqual(parser.next(), { kind: "incomplete" });
  parser.push(b(" 3\n"));
  assert.deepEqual(parser.next(), {
    kind: "message",
    message: { kind: "ACK", term: 1, matchIndex: 2, round: 3 },
  });
});

Deno.test("parser: an APPEND whose body has not all arrived is incomplete until it has", () => {
  const bytes = encodeAppend(3, 3, 2, 2, 9, walLines);
  const parser = new ReplicationParser();
  parser.push(bytes.subarray(0, bytes.length - 1));
  assert.deepEqual(parser.next(), { kind: "incomplete" });
  assert.deepEqual(parser.next(), { kind: "incomplete" }, "asking again changes nothing");
  parser.push(bytes.subarray(bytes.length - 1));
  assert.equal(parser.next().kind, "message");
});

function sampleStream(): { bytes: Uint8Array; messages: Plain[] } {
  const parts = [
    encodeHello(2, 7, 3, 2),
    encodeAppend(7, 3, 2, 3, 1, walLines),
    encodeAck(7, 7, 1),
    encodeAppend(7, 7, 3, 7, 2, []),
    encodeNack(7, 4, 3),
    encodeErr(8, "leader for term 8 is node 4"),
    encodeAppend(8, 0, 0, 0, 4, [walLines[0]!]),
  ];
  const bytes = concat(...parts);
  return { bytes, messages: parts.map((p) => plain(parseOne(p))) };
}

Deno.test("parser: a stream split at every byte boundary parses to the same messages", () => {
  const { bytes, messages } = sampleStream();
  for (let cut = 0; cut <= bytes.length; cut++) {
    const parser = new ReplicationParser();
    parser.push(bytes.subarray(0, cut));
    const first = drain(parser);
    assert.equal(first.end.kind, "incomplete", `cut ${cut}`);
    parser.push(bytes.subarray(cut));
    const second = drain(parser);
    assert.deepEqual(second.end, { kind: "incomplete" }, `cut ${cut}`);
    assert.deepEqual([...first.messages, ...second.messages], messages, `cut ${cut}`);
  }
});

Deno.test("parser: a stream fed one byte at a time parses to the same messages", () => {
  const { bytes, messages } = sampleStream();
  const parser = new ReplicationParser();
  const got: Plain[] = [];
  for (let i = 0; i < bytes.length; i++) {
    parser.push(bytes.subarray(i, i + 1));
    const r = drain(parser);
    assert.equal(r.end.kind, "incomplete", `byte ${i}`);
    got.push(...r.messages);
  }
  assert.deepEqual(got, messages);
});

Deno.test("parser: pushing an empty chunk changes nothing", () => {
  const parser = new ReplicationParser();
  parser.push(new Uint8Array(0));
  assert.deepEqual(parser.next(), { kind: "incomplete" });
  parser.push(encodeAck(1, 1, 1));
  parser.push(new Uint8Array(0));
  assert.equal(parser.next().kind, "message");
});

// ---------------------------------------------------------------- malformed input

Deno.test("malformed: an unknown verb, an empty line or a lowercase verb is an error naming the line", () => {
  assert.equal(errorOf("HELO 1 2 3 4\n"), 'Malformed replication message: "HELO 1 2 3 4"');
  assert.equal(errorOf("\n"), 'Malformed replication message: ""');
  assert.equal(errorOf("ack 1 2 3\n"), 'Malformed replication message: "ack 1 2 3"');
});

Deno.test("malformed: too few or too many fields are refused", () => {
  for (
    const line of [
      "HELLO 1 2 3\n",
      "HELLO 1 2 3 4 5\n",
      "ACK 1 2\n",
      "ACK 1 2 3 4\n",
      "NACK 1\n",
      "APPEND 1 2 3 4 0 0\n",
      "APPEND 1 2 3 4 0 0 7 8\n",
      "ERR\n",
    ]
  ) {
    assert.match(errorOf(line), /^Malformed replication message: /, line);
  }
});

Deno.test("malformed: non-decimal, negative, signed, fractional or 16-digit numbers are refused", () => {
  for (
    const field of ["x", "-1", "+1", "1.5", "1e3", "0x10", "", "1234567890123456", " 1"]
  ) {
    assert.match(errorOf(`ACK ${field} 2 3\n`), /^Malformed/, JSON.stringify(field));
  }
});

Deno.test("malformed: a trailing space or a CR before the newline is refused", () => {
  assert.match(errorOf("ACK 1 2 3 \n"), /^Malformed/);
  assert.match(errorOf("ACK 1 2 3\r\n"), /^Malformed/);
});

Deno.test("malformed: the error message quotes at most 80 characters of the line", () => {
  const message = errorOf(`X${"y".repeat(500)}\n`);
  assert.equal(message, `Malformed replication message: "X${"y".repeat(79)}"`);
});

Deno.test("limits: a header line of exactly replicationHeaderBytesMax bytes is accepted", () => {
  const head = "ERR 1 ";
  const line = head + "r".repeat(replicationHeaderBytesMax - head.length);
  assert.equal(line.length, replicationHeaderBytesMax);
  const m = parseOne(b(`${line}\n`));
  assert.equal(m.kind, "ERR");
});

Deno.test("limits: a header line one byte over replicationHeaderBytesMax is refused", () => {
  const head = "ERR 1 ";
  const line = head + "r".repeat(replicationHeaderBytesMax + 1 - head.length);
  assert.equal(errorOf(`${line}\n`), "Replication header line too long");
});

Deno.test("limits: a header with no newline is refused once it passes the limit, before the newline arrives", () => {
  const parser = new ReplicationParser();
  parser.push(new Uint8Array(replicationHeaderBytesMax).fill(0x41));
  assert.deepEqual(parser.next(), { kind: "incomplete" });
  parser.push(b("A"));
  assert.deepEqual(parser.next(), { kind: "error", message: "Replication header line too long" });
});

Deno.test("limits: an APPEND announcing a body over the batch limit plus slack is refused at once", () => {
  const maxBytes = replicationBatchBytesMax + 64 * 1024 * 1024;
  assert.equal(
    errorOf(`APPEND 1 0 0 0 1 ${maxBytes + 1} 0\n`),
    `Replication batch of ${maxBytes + 1} bytes is too large`,
  );
  // At the limit the header is accepted and the parser waits for the body.
  const parser = new ReplicationParser();
  parser.push(b(`APPEND 1 0 0 0 1 ${maxBytes} 0\n`));
  assert.deepEqual(parser.next(), { kind: "incomplete" });
});

Deno.test("malformed: an APPEND announcing more lines than bytes is refused", () => {
  assert.match(errorOf("APPEND 1 0 0 0 3 2 0\n"), /^Malformed/);
});

Deno.test("malformed: an APPEND body that ends inside a line is refused", () => {
  assert.equal(errorOf("APPEND 1 0 0 0 1 5 0\n1\tDEL"), "APPEND body ends inside a line");
});

Deno.test("malformed: an APPEND whose body holds a different number of lines than announced is refused", () => {
  assert.equal(
    errorOf("APPEND 1 0 0 0 1 6 0\na\nb\nc\n"),
    "APPEND announced 1 lines but carried 3",
  );
  assert.equal(errorOf("APPEND 1 0 0 0 0 2 0\na\n"), "APPEND announced 0 lines but carried 1");
});

Deno.test("malformed: an error is sticky; later bytes, even valid ones, are not parsed", () => {
  const parser = new ReplicationParser();
  parser.push(b("BOGUS\n"));
  const first = parser.next();
  assert.equal(first.kind, "error");
  parser.push(encodeAck(1, 2, 3));
  assert.deepEqual(parser.next(), first);
  assert.deepEqual(parser.next(), first);
});

Deno.test("malformed: messages before the bad line are still delivered", () => {
  const { messages, end } = parseAll(concat(encodeAck(1, 2, 3), b("NOPE\n"), encodeAck(1, 3, 4)));
  assert.deepEqual(messages, [{ kind: "ACK", term: 1, matchIndex: 2, round: 3 }]);
  assert.equal(end.kind, "error");
});

Deno.test("malformed: random garbage never throws and never yields more than it was given", () => {
  let state = 0x1234_5678;
  const seed = state;
  const nextByte = (): number => {
    state = (Math.imul(state, 1_103_515_245) + 12_345) >>> 0;
    return state >>> 24;
  };
  const alphabet = b("ACKNLOHEPDR 0123456789\n\t-x");
  for (let run = 0; run < 500; run++) {
    const parser = new ReplicationParser();
    const length = nextByte() % 120;
    const bytes = new Uint8Array(length);
    for (let i = 0; i < length; i++) bytes[i] = alphabet[nextByte() % alphabet.length]!;
    parser.push(bytes);
    for (let steps = 0; steps < 200; steps++) {
      let r: ParsedReplication;
      try {
        r = parser.next();
      } catch (e) {
        throw new Error(`seed ${seed} run ${run}: threw on ${JSON.stringify(show(bytes))}: ${e}`);
      }
      if (r.kind !== "message") break;
      assert.ok(steps < length, `seed ${seed} run ${run}: more messages than bytes`);
    }
  }
});
