// Unit tests for the client side: Connection (src/client/connection.ts), the
// redirect/retry policy (src/client/client.ts) and `kvstore client`
// (src/cli/client.ts). The "servers" here are tiny fake RESP servers on
// loopback ports chosen by the OS; they are test doubles for the client only
// and know nothing of Raft. Every server, connection and timer is closed or
// awaited before a test ends, so Deno's sanitizers stay on.

import assert from "node:assert/strict";
import { Connection, ConnectionError } from "../../../src/client/connection.ts";
import {
  isTryAgain,
  KvClientError,
  OutcomeUnknownError,
  parseRedirect,
  replyText,
  request,
  requestOnce,
} from "../../../src/client/client.ts";
import { clientMain, formatReply, parseHostPort, type Writer } from "../../../src/cli/client.ts";
import { RequestParser } from "../../../src/codec/resp.ts";

const encoder = new TextEncoder();
const decoder = new TextDecoder();

// ---------------------------------------------------------------------------
// Fake RESP server

/** What a fake server does with one command: send these bytes, stay silent, or hang up. */
type FakeAction = string | Uint8Array | "hang" | "close";
type FakeHandler = (args: string[], raw: Uint8Array[]) => FakeAction | Promise<FakeAction>;

interface FakeServer {
  readonly port: number;
  /** Every command received, in order, as UTF-8 strings. */
  readonly calls: string[][];
  close(): Promise<void>;
  [Symbol.asyncDispose](): Promise<void>;
}

function startFake(handler: FakeHandler, port = 0): FakeServer {
  const listener = Deno.listen({ hostname: "127.0.0.1", port });
  const conns = new Set<Deno.Conn>();
  const loops: Promise<void>[] = [];
  const calls: string[][] = [];

  const serve = async (conn: Deno.Conn): Promise<void> => {
    const parser = new RequestParser();
    const buffer = new Uint8Array(4096);
    try {
      // Bounded by the peer: ends at EOF, or when close() closes the socket.
      for (;;) {
        const n = await conn.read(buffer);
        if (n === null) return;
        parser.push(buffer.slice(0, n));
        for (;;) {
          const step = parser.next();
          if (step.kind === "incomplete") break;
          if (step.kind === "error") throw new Error(`Fake server got bad RESP: ${step.message}`);
          const args = step.args.map((a) => decoder.decode(a));
          calls.push(args);
          const action = await handler(args, step.args);
          if (action === "hang") continue;
          if (action === "close") return;
          const bytes = typeof action === "string" ? encoder.encode(action) : action;
          let offset = 0;
          while (offset < bytes.length) offset += await conn.write(bytes.subarray(offset));
        }
      }
    } catch (e) {
      if (!(e instanceof Deno.errors.BadResource || e instanceof Deno.errors.Interrupted)) {
        if (!(e instanceof Deno.errors.ConnectionReset || e instanceof Deno.errors.BrokenPipe)) {
          throw e;
        }
      }
    } finally {
      conns.delete(conn);
      try {
        conn.close();
      } catch {
        // Closed by close() already.
      }
    }
  };

  const acceptLoop = (async () => {
    try {
      for await (const conn of listener) {
        conns.add(conn);
        loops.push(serve(conn));
      }
    } catch (e) {
      if (!(e instanceof Deno.errors.BadResource)) throw e;
    }
  })();

  const close = async (): Promise<void> => {
    listener.close();
    await acceptLoop;
    for (const c of conns) {
      try {
        c.close();
      } catch {
        // Raced with the peer closing it.
      }
    }
    await Promise.all(loops);
  };
  return {
    port: (listener.addr as Deno.NetAddr).port,
    calls,
    close,
    [Symbol.asyncDispose]: close,
  };
}

/** A port nothing listens on right now: bind one, then let it go. */
function freePort(): number {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (l.addr as Deno.NetAddr).port;
  l.close();
  return port;
}

function bulk(value: string | Uint8Array | null): Uint8Array {
  if (value === null) return encoder.encode("$-1\r\n");
  const bytes = typeof value === "string" ? encoder.encode(value) : value;
  const head = encoder.encode(`$${bytes.length}\r\n`);
  const out = new Uint8Array(head.length + bytes.length + 2);
  out.set(head, 0);
  out.set(bytes, head.length);
  out.set(encoder.encode("\r\n"), head.length + bytes.length);
  return out;
}

/** A fake leader: SET/GET/DEL on a map, PING, and an error for anything else. */
function storeHandler(store: Map<string, Uint8Array>): FakeHandler {
  return (args, raw) => {
    const [cmd, key] = args;
    switch (cmd?.toUpperCase()) {
      case "SET":
        if (args.length !== 3 || key === undefined || raw[2] === undefined) {
          return "-ERR wrong number of arguments for 'set' command\r\n";
        }
        store.set(key, raw[2]);
        return "+OK\r\n";
      case "GET":
        return bulk(key === undefined ? null : store.get(key) ?? null);
      case "DEL":
        return `:${args.slice(1).filter((k) => store.delete(k)).length}\r\n`;
      case "PING":
        return "+PONG\r\n";
      default:
        return `-ERR unknown command '${cmd}'\r\n`;
    }
  };
}

function capture(): { writer: Writer; bytes(): Uint8Array; text(): string } {
  const chunks: Uint8Array[] = [];
  const bytes = (): Uint8Array => {
    const out = new Uint8Array(chunks.reduce((n, c) => n + c.length, 0));
    let offset = 0;
    for (const c of chunks) {
      out.set(c, offset);
      offset += c.length;
    }
    return out;
  };
  return {
    writer: {
      write(p: Uint8Array): Promise<number> {
        chunks.push(p.slice());
        return Promise.resolve(p.length);
      },
    },
    bytes,
    text: () => decoder.decode(bytes()),
  };
}

async function runCli(
  argv: string[],
): Promise<{ code: number; stdout: string; stdoutBytes: Uint8Array; stderr: string }> {
  const out = capture();
  const err = capture();
  const code = await clientMain(argv, { stdout: out.writer, stderr: err.writer });
  return { code, stdout: out.text(), stdoutBytes: out.bytes(), stderr: err.text() };
}

// ---------------------------------------------------------------------------
// parseRedirect and friends

Deno.test("parseRedirect reads host and port from a REDIRECT error", () => {
  assert.deepEqual(parseRedirect("REDIRECT 10.0.0.2 7003"), { host: "10.0.0.2", port: 7003 });
  assert.deepEqual(parseRedirect("REDIRECT node3.example 7005"), {
    host: "node3.example",
    port: 7005,
  });
  assert.deepEqual(parseRedirect("REDIRECT ::1 7001"), { host: "::1", port: 7001 });
  assert.deepEqual(parseRedirect("REDIRECT [::1] 7001"), { host: "::1", port: 7001 });
  assert.deepEqual(parseRedirect("redirect 127.0.0.1 1"), { host: "127.0.0.1", port: 1 });
});

Deno.test("parseRedirect returns null for anything that is not a well-formed redirect", () => {
  for (
    const text of [
      "",
      "ERR unknown command",
      "TRYAGAIN no leader",
      "REDIRECT",
      "REDIRECT 127.0.0.1",
      "REDIRECT 127.0.0.1 0",
      "REDIRECT 127.0.0.1 65536",
      "REDIRECT 127.0.0.1 70x1",
      "REDIRECT 127.0.0.1 7001 extra",
      "REDIRECTED 127.0.0.1 7001",
    ]
  ) {
    assert.equal(parseRedirect(text), null, JSON.stringify(text));
  }
});

Deno.test("isTryAgain matches TRYAGAIN as the first word only", () => {
  assert.ok(isTryAgain("TRYAGAIN no leader known yet"));
  assert.ok(isTryAgain("TRYAGAIN"));
  assert.ok(!isTryAgain("ERR TRYAGAIN"));
  assert.ok(!isTryAgain("TRYAGAINX"));
});

Deno.test("parseHostPort accepts host:port, [ipv6]:port and bare ::1:port", () => {
  assert.deepEqual(parseHostPort("127.0.0.1:7102"), { host: "127.0.0.1", port: 7102 });
  assert.deepEqual(parseHostPort("node2:7102"), { host: "node2", port: 7102 });
  assert.deepEqual(parseHostPort("[::1]:7102"), { host: "::1", port: 7102 });
  assert.deepEqual(parseHostPort("::1:7102"), { host: "::1", port: 7102 });
  for (const bad of ["", "7102", ":7102", "host:", "host:0", "host:65536", "host:x", "[::1]"]) {
    assert.equal(parseHostPort(bad), null, bad);
  }
});

Deno.test("formatReply prints replies the way redis-cli does", () => {
  assert.deepEqual(formatReply({ kind: "simple", value: "PONG" }), ["PONG"]);
  assert.deepEqual(formatReply({ kind: "integer", value: 3 }), ["(integer) 3"]);
  assert.deepEqual(formatReply({ kind: "bulk", value: null }), ["(nil)"]);
  assert.deepEqual(formatReply({ kind: "bulk", value: new Uint8Array([0x61, 0x22, 0x0a, 0xff]) }), [
    '"a\\"\\n\\xff"',
  ]);
  assert.deepEqual(formatReply({ kind: "array", value: [] }), ["(empty array)"]);
  assert.deepEqual(
    formatReply({
      kind: "array",
      value: [
        { kind: "bulk", value: encoder.encode("a") },
        {
          kind: "array",
          value: [{ kind: "integer", value: 1 }, { kind: "error", value: "ERR x" }],
        },
      ],
    }),
    ['1) "a"', "2) 1) (integer) 1", "   2) (error) ERR x"],
  );
});

// ---------------------------------------------------------------------------
// Connection

Deno.test("Connection pipelines calls and matches replies in order", async () => {
  await using server = startFake((args) => bulk(args[1] ?? ""));
  await using conn = await Connection.connect("127.0.0.1", server.port, 1000);
  const replies = await Promise.all(
    ["a", "b", "c"].map((v) => conn.call(["ECHO", v], 1000)),
  );
  assert.deepEqual(
    replies.map((r) => r.kind === "bulk" && r.value !== null ? decoder.decode(r.value) : "?"),
    ["a", "b", "c"],
  );
});

Deno.test("Connection.close rejects a call still waiting for its reply", async () => {
  await using server = startFake(() => "hang");
  const conn = await Connection.connect("127.0.0.1", server.port, 1000);
  // Attach the expectation before closing, or the rejection would count as unhandled.
  const rejected = assert.rejects(
    conn.call(["GET", "k"]),
    (e) => e instanceof ConnectionError && e.reason === "closed",
  );
  await conn.close();
  await rejected;
  assert.ok(conn.closed);
  await assert.rejects(conn.call(["GET", "k"]), ConnectionError);
});

Deno.test("Connection reports a reply timeout and a refused connect with their reasons", async () => {
  await using server = startFake(() => "hang");
  await using conn = await Connection.connect("127.0.0.1", server.port, 1000);
  await assert.rejects(
    conn.call(["GET", "k"], 50),
    (e) => e instanceof ConnectionError && e.reason === "timeout",
  );
  await assert.rejects(
    Connection.connect("127.0.0.1", freePort(), 1000),
    (e) => e instanceof ConnectionError && e.reason === "refused",
  );
});

Deno.test("Connection fails with reason closed when the server hangs up before replying", async () => {
  await using server = startFake(() => "close");
  await assert.rejects(
    requestOnce("127.0.0.1", server.port, ["GET", "k"], 1000),
    (e) => e instanceof ConnectionError && e.reason === "closed",
  );
});

// ---------------------------------------------------------------------------
// request: redirects and retries

Deno.test("request follows a redirect chain to the final reply", async () => {
  await using c = startFake(() => bulk("hello"));
  await using b = startFake(() => `-REDIRECT 127.0.0.1 ${c.port}\r\n`);
  await using a = startFake(() => `-REDIRECT 127.0.0.1 ${b.port}\r\n`);
  const logs: string[] = [];
  const reply = await request("127.0.0.1", a.port, ["GET", "k"], { log: (m) => logs.push(m) });
  assert.deepEqual(reply, { kind: "bulk", value: encoder.encode("hello") });
  assert.deepEqual(logs, [
    `redirected to 127.0.0.1:${b.port}`,
    `redirected to 127.0.0.1:${c.port}`,
  ]);
  assert.equal(a.calls.length, 1);
  assert.equal(c.calls.length, 1);
});

Deno.test("request stops after the maximum number of redirects and names the chain", async () => {
  const beyond = freePort();
  const servers: FakeServer[] = [];
  try {
    // Six nodes each pointing at the next: the sixth redirect is one too many.
    let next = beyond;
    for (let i = 0; i < 6; i++) {
      const target = next;
      const s = startFake(() => `-REDIRECT 127.0.0.1 ${target}\r\n`);
      servers.unshift(s);
      next = s.port;
    }
    const chain = [...servers.map((s) => s.port), beyond].map((p) => `127.0.0.1:${p}`).join(" -> ");
    await assert.rejects(
      request("127.0.0.1", next, ["SET", "k", "v"], { timeoutMs: 2000 }),
      (e) => {
        assert.ok(e instanceof KvClientError);
        assert.equal(e.message, `Too many redirects (max 5): ${chain}`);
        return true;
      },
    );
    assert.ok(servers.every((s) => s.calls.length === 1), "no retry after too many redirects");
  } finally {
    for (const s of servers) await s.close();
  }
});

Deno.test("request honours a smaller redirectsMax", async () => {
  await using b = startFake(() => "+OK\r\n");
  await using a = startFake(() => `-REDIRECT 127.0.0.1 ${b.port}\r\n`);
  await assert.rejects(
    request("127.0.0.1", a.port, ["SET", "k", "v"], { redirectsMax: 0 }),
    /Too many redirects \(max 0\)/,
  );
  assert.equal(b.calls.length, 0);
});

Deno.test("request treats a redirect cycle as a failover: retries from the origin until the deadline", async () => {
  let bPort = 0;
  await using a = startFake(() => `-REDIRECT 127.0.0.1 ${bPort}\r\n`);
  await using b = startFake(() => `-REDIRECT 127.0.0.1 ${a.port}\r\n`);
  bPort = b.port;
  const started = performance.now();
  await assert.rejects(
    request("127.0.0.1", a.port, ["GET", "k"], { timeoutMs: 400 }),
    (e) => {
      assert.ok(e instanceof KvClientError);
      assert.match(e.message, /^no leader answered via 127\.0\.0\.1:\d+ within 400 ms/);
      assert.match(e.message, /redirect cycle/);
      return true;
    },
  );
  // No attempt starts in the last 100 ms: it could not finish in time.
  assert.ok(performance.now() - started >= 250, "waited for (nearly) the deadline");
  assert.ok(a.calls.length >= 2, `retried from the origin (${a.calls.length} calls)`);
});

Deno.test("request starts no attempt too close to the deadline: a refused write is not reported unknown", async () => {
  // A node that answers "no leader known" 20 ms after each request: the write
  // is never executed. An attempt started with less than that left would time
  // out waiting and have to call the outcome unknown.
  await using server = startFake(async () => {
    await new Promise((r) => setTimeout(r, 20));
    return "-TRYAGAIN no leader known yet\r\n";
  });
  const outcomes: string[] = [];
  for (let i = 0; i < 20; i++) {
    try {
      await request("127.0.0.1", server.port, ["SET", "k", "v"], { timeoutMs: 200 + i * 11 });
      outcomes.push("reply");
    } catch (e) {
      outcomes.push(e instanceof OutcomeUnknownError ? "unknown" : "no leader");
    }
  }
  assert.deepEqual(outcomes, Array(20).fill("no leader"));
});

Deno.test("request retries TRYAGAIN and returns the reply that follows", async () => {
  let n = 0;
  await using server = startFake(() => ++n <= 2 ? "-TRYAGAIN no leader known yet\r\n" : "+OK\r\n");
  const logs: string[] = [];
  const reply = await request("127.0.0.1", server.port, ["SET", "k", "v"], {
    log: (m) => logs.push(m),
  });
  assert.deepEqual(reply, { kind: "simple", value: "OK" });
  assert.equal(server.calls.length, 3);
  assert.equal(logs.filter((l) => l.includes("TRYAGAIN")).length, 2);
});

Deno.test("request restarts from the origin after TRYAGAIN from a redirect target", async () => {
  let n = 0;
  await using leader = startFake(() => ++n === 1 ? "-TRYAGAIN no leader known yet\r\n" : "+OK\r\n");
  await using follower = startFake(() => `-REDIRECT 127.0.0.1 ${leader.port}\r\n`);
  const reply = await request("127.0.0.1", follower.port, ["SET", "k", "v"]);
  assert.deepEqual(reply, { kind: "simple", value: "OK" });
  assert.equal(follower.calls.length, 2);
  assert.equal(leader.calls.length, 2);
});

Deno.test("request never sends a write again once it may have been applied: lost connection", async () => {
  await using server = startFake(() => "close");
  await assert.rejects(
    request("127.0.0.1", server.port, ["DEL", "k"], { timeoutMs: 2000 }),
    (e: unknown) =>
      e instanceof OutcomeUnknownError && /outcome unknown: .* connection closed/.test(e.message),
  );
  assert.equal(server.calls.length, 1, "the DEL went out exactly once");
});

Deno.test("request never sends a write again once it may have been applied: reply timeout", async () => {
  await using server = startFake(() => "hang");
  await assert.rejects(
    request("127.0.0.1", server.port, ["set", "k", "v"], {
      timeoutMs: 2000,
      attemptTimeoutMs: 200,
    }),
    OutcomeUnknownError,
  );
  assert.equal(server.calls.length, 1, "the SET went out exactly once");
});

Deno.test("a write's reply is awaited for the whole timeout, not one attempt's cap", async () => {
  // Regression: a 16 MiB SET that took 3.2 s to commit was reported as
  // "outcome unknown" by the 3 s attempt cap, whatever --timeout-ms said.
  await using server = startFake(() => new Promise((r) => setTimeout(() => r("+OK\r\n"), 400)));
  const reply = await request("127.0.0.1", server.port, ["SET", "k", "v"], {
    timeoutMs: 3000,
    attemptTimeoutMs: 200,
  });
  assert.equal(replyText(reply), "OK");
  assert.equal(server.calls.length, 1);
});

Deno.test("request never sends a write again after the leader's may-still-apply TRYAGAIN", async () => {
  await using server = startFake(() =>
    "-TRYAGAIN write not committed within 5000 ms; it may still apply\r\n"
  );
  await assert.rejects(
    request("127.0.0.1", server.port, ["SET", "k", "v"], { timeoutMs: 2000 }),
    (e: unknown) => e instanceof OutcomeUnknownError && /may still apply/.test(e.message),
  );
  assert.equal(server.calls.length, 1);
});

Deno.test("request sends a read again after a lost connection", async () => {
  let n = 0;
  await using server = startFake(() => ++n === 1 ? "close" : "$1\r\nv\r\n");
  const reply = await request("127.0.0.1", server.port, ["GET", "k"], { timeoutMs: 2000 });
  assert.equal(replyText(reply), "v");
  assert.equal(server.calls.length, 2);
});

Deno.test("kvstore client exits 3 when a write's outcome is unknown", async () => {
  await using server = startFake(() => "close");
  const r = await runCli([
    "--timeout-ms",
    "2000",
    "127.0.0.1",
    String(server.port),
    "SET",
    "k",
    "v",
  ]);
  assert.equal(r.code, 3);
  assert.match(
    r.stderr,
    /^error: outcome unknown: 127\.0\.0\.1:\d+ took the write but connection closed before a reply; it may or may not have been applied/,
  );
  assert.equal(server.calls.length, 1);
});

Deno.test("request returns other error replies at once, without retrying", async () => {
  await using server = startFake(() => "-ERR wrong number of arguments for 'set' command\r\n");
  const reply = await request("127.0.0.1", server.port, ["SET", "k"]);
  assert.deepEqual(reply, {
    kind: "error",
    value: "ERR wrong number of arguments for 'set' command",
  });
  assert.equal(server.calls.length, 1);
});

Deno.test("request fails at once on a malformed redirect", async () => {
  await using server = startFake(() => "-REDIRECT nowhere\r\n");
  await assert.rejects(
    request("127.0.0.1", server.port, ["GET", "k"]),
    /Malformed redirect from 127\.0\.0\.1:\d+: "REDIRECT nowhere"/,
  );
  assert.equal(server.calls.length, 1);
});

Deno.test("request succeeds once a refused port gets a server", async () => {
  const port = freePort();
  let server: FakeServer | undefined;
  const timer = setTimeout(() => {
    server = startFake(() => "+OK\r\n", port);
  }, 200);
  try {
    const started = performance.now();
    const reply = await request("127.0.0.1", port, ["SET", "k", "v"], { timeoutMs: 5000 });
    assert.deepEqual(reply, { kind: "simple", value: "OK" });
    assert.ok(performance.now() - started >= 150);
  } finally {
    clearTimeout(timer);
    await server?.close();
  }
});

Deno.test("request gives up on a refused port at the deadline and says why", async () => {
  const port = freePort();
  const started = performance.now();
  await assert.rejects(
    request("127.0.0.1", port, ["GET", "k"], { timeoutMs: 300 }),
    (e) => {
      assert.ok(e instanceof KvClientError);
      assert.equal(
        e.message,
        `cannot reach 127.0.0.1:${port} within 300 ms (connection refused)`,
      );
      return true;
    },
  );
  // It retries until less than a quarter of the 300 ms (75 ms) is left for
  // another attempt, then stops.
  const elapsedMs = performance.now() - started;
  assert.ok(elapsedMs >= 200 && elapsedMs < 2000, `elapsed ${elapsedMs} ms`);
});

Deno.test("request bounds each attempt, so a silent node is retried until the deadline", async () => {
  await using server = startFake(() => "hang");
  await assert.rejects(
    request("127.0.0.1", server.port, ["GET", "k"], { timeoutMs: 400, attemptTimeoutMs: 100 }),
    /within 400 ms \(no reply from 127\.0\.0\.1:\d+ within \d+ ms\)/,
  );
  assert.ok(server.calls.length >= 2, `retried (${server.calls.length} attempts)`);
});

Deno.test("request with followRedirects false returns the redirect as the reply", async () => {
  await using server = startFake(() => "-REDIRECT 127.0.0.1 7001\r\n");
  const reply = await request("127.0.0.1", server.port, ["GET", "k"], { followRedirects: false });
  assert.deepEqual(reply, { kind: "error", value: "REDIRECT 127.0.0.1 7001" });
});

// ---------------------------------------------------------------------------
// kvstore client

Deno.test("kvstore client SET prints OK, GET prints the value, DEL prints the count", async () => {
  const store = new Map<string, Uint8Array>();
  await using server = startFake(storeHandler(store));
  const at = ["127.0.0.1", String(server.port)];

  assert.deepEqual(await runCli([...at, "SET", "user01", "Kaspa"]), {
    code: 0,
    stdout: "OK\n",
    stdoutBytes: encoder.encode("OK\n"),
    stderr: "",
  });
  const got = await runCli([...at, "get", "user01"]);
  assert.equal(got.code, 0);
  assert.equal(got.stdout, "Kaspa\n");
  const deleted = await runCli([...at, "DEL", "user01", "nope"]);
  assert.deepEqual([deleted.code, deleted.stdout], [0, "1\n"]);
  assert.deepEqual(server.calls, [
    ["SET", "user01", "Kaspa"],
    ["GET", "user01"],
    ["DEL", "user01", "nope"],
  ]);
});

Deno.test("kvstore client GET of a missing key prints NOT_FOUND and exits 1", async () => {
  await using server = startFake(storeHandler(new Map()));
  const r = await runCli(["127.0.0.1", String(server.port), "GET", "nope"]);
  assert.deepEqual([r.code, r.stdout, r.stderr], [1, "NOT_FOUND\n", ""]);
});

Deno.test("kvstore client GET writes the value's raw bytes, not a decoding of them", async () => {
  const value = new Uint8Array([0xff, 0x00, 0x0a, 0xc3, 0x28]);
  await using server = startFake(storeHandler(new Map([["bin", value]])));
  const r = await runCli(["127.0.0.1", String(server.port), "GET", "bin"]);
  assert.equal(r.code, 0);
  assert.deepEqual(r.stdoutBytes, new Uint8Array([...value, 0x0a]));
});

Deno.test("kvstore client passes values that look like options through unchanged", async () => {
  const store = new Map<string, Uint8Array>();
  await using server = startFake(storeHandler(store));
  const r = await runCli([
    "--timeout-ms",
    "2000",
    "127.0.0.1",
    String(server.port),
    "SET",
    "n",
    "-5",
  ]);
  assert.equal(r.code, 0, r.stderr);
  assert.deepEqual(server.calls, [["SET", "n", "-5"]]);
});

Deno.test("kvstore client --verbose logs redirects on stderr", async () => {
  await using leader = startFake(storeHandler(new Map([["city", encoder.encode("Vilnius")]])));
  await using follower = startFake(() => `-REDIRECT 127.0.0.1 ${leader.port}\r\n`);
  const r = await runCli(["--verbose", "127.0.0.1", String(follower.port), "GET", "city"]);
  assert.deepEqual([r.code, r.stdout], [0, "Vilnius\n"]);
  assert.equal(r.stderr, `redirected to 127.0.0.1:${leader.port}\n`);
});

Deno.test("kvstore client GETFB falls back to the leader when the follower has no value", async () => {
  await using leader = startFake(storeHandler(new Map([["k", encoder.encode("fresh")]])));
  await using follower = startFake(storeHandler(new Map()));
  const r = await runCli([
    "127.0.0.1",
    String(leader.port),
    "GETFB",
    "k",
    `127.0.0.1:${follower.port}`,
  ]);
  assert.deepEqual([r.code, r.stdout, r.stderr], [0, "fresh\n", ""]);
  assert.deepEqual(follower.calls, [["GET", "k"]]);
  assert.deepEqual(leader.calls, [["GET", "k"]]);
});

Deno.test("kvstore client GETFB answers from the follower when it has the value", async () => {
  await using leader = startFake(storeHandler(new Map([["k", encoder.encode("fresh")]])));
  await using follower = startFake(storeHandler(new Map([["k", encoder.encode("stale")]])));
  const r = await runCli([
    "127.0.0.1",
    String(leader.port),
    "GETFB",
    "k",
    `127.0.0.1:${follower.port}`,
  ]);
  assert.deepEqual([r.code, r.stdout], [0, "stale\n"]);
  assert.equal(leader.calls.length, 0);
});

Deno.test("kvstore client GETFF reads only the follower: nil is NOT_FOUND, no fallback", async () => {
  await using leader = startFake(storeHandler(new Map([["k", encoder.encode("fresh")]])));
  await using follower = startFake(storeHandler(new Map()));
  const r = await runCli([
    "127.0.0.1",
    String(leader.port),
    "GETFF",
    "k",
    `127.0.0.1:${follower.port}`,
  ]);
  assert.deepEqual([r.code, r.stdout, r.stderr], [1, "NOT_FOUND\n", ""]);
  assert.equal(leader.calls.length, 0);
  assert.deepEqual(follower.calls, [["GET", "k"]]);
});

Deno.test("kvstore client prints one error line and exits 2 on an error reply", async () => {
  await using server = startFake(() => "-ERR wrong number of arguments for 'set' command\r\n");
  const r = await runCli(["127.0.0.1", String(server.port), "SET", "k", "v"]);
  assert.deepEqual([r.code, r.stdout], [2, ""]);
  assert.equal(r.stderr, "error: ERR wrong number of arguments for 'set' command\n");
});

Deno.test("kvstore client exits 2 naming the address when no node can be reached", async () => {
  const port = freePort();
  const r = await runCli(["--timeout-ms", "200", "127.0.0.1", String(port), "GET", "k"]);
  assert.equal(r.code, 2);
  assert.equal(
    r.stderr,
    `error: cannot reach 127.0.0.1:${port} within 200 ms (connection refused)\n`,
  );
});

Deno.test("kvstore client sends other commands as-is and prints the reply redis-cli style", async () => {
  await using server = startFake(storeHandler(new Map()));
  const at = ["127.0.0.1", String(server.port)];
  assert.deepEqual(await runCli([...at, "PING"]), {
    code: 0,
    stdout: "PONG\n",
    stdoutBytes: encoder.encode("PONG\n"),
    stderr: "",
  });
  const r = await runCli([...at, "FLUSHALL"]);
  assert.deepEqual([r.code, r.stderr], [2, "error: ERR unknown command 'FLUSHALL'\n"]);
});

Deno.test("kvstore client rejects bad usage with exit 2 before touching the network", async () => {
  for (
    const argv of [
      [],
      ["127.0.0.1"],
      ["127.0.0.1", "7001"],
      ["127.0.0.1", "0", "GET", "k"],
      ["127.0.0.1", "65536", "GET", "k"],
      ["127.0.0.1", "70o1", "GET", "k"],
      ["127.0.0.1", "7001", "SET", "k"],
      ["127.0.0.1", "7001", "GET"],
      ["127.0.0.1", "7001", "DEL"],
      ["127.0.0.1", "7001", "GETFF", "k"],
      ["127.0.0.1", "7001", "GETFB", "k", "nohostport"],
      ["--timeout-ms", "0", "127.0.0.1", "7001", "GET", "k"],
      ["--timeout-ms", "soon", "127.0.0.1", "7001", "GET", "k"],
      ["--bogus", "127.0.0.1", "7001", "GET", "k"],
    ]
  ) {
    const r = await runCli(argv);
    assert.equal(r.code, 2, JSON.stringify(argv));
    assert.equal(r.stdout, "");
    assert.match(r.stderr, /^error: .*\nUsage:/s, JSON.stringify(argv));
  }
  const help = await runCli(["--help"]);
  assert.equal(help.code, 0);
  assert.match(help.stdout, /^Usage:/);
});
