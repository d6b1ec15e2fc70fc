// The link-fault proxy against plain echo servers on loopback: blocking
// stalls and later delivers, one-way blocks stall one direction only, reset
// closes, delay delays without reordering, and held bytes stay bounded.
// Every socket, loop and timer ends inside its test, so sanitizers stay on.

import assert from "node:assert/strict";
import { writeAll } from "../../src/net/write_all.ts";
import { LinkFaults } from "./link_proxy.ts";

const encoder = new TextEncoder();

/** Node ids in these tests: 1 dials through the proxy, 2 is the echo server. */
const client = 1;
const server = 2;

/** How long "nothing arrives" is watched: many scheduler turns on a loaded machine. */
const quietMs = 300;

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

async function waitFor(check: () => boolean, timeoutMs: number, what: string): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  while (!check()) {
    if (performance.now() > deadline) throw new Error(`Timed out after ${timeoutMs} ms: ${what}`);
    await sleep(10);
  }
}

/** Reads a socket until it ends, keeping the text and byte count; may echo. */
class Collector {
  text = "";
  bytes = 0;
  ended = false;
  readonly done: Promise<void>;
  readonly #decoder = new TextDecoder();

  constructor(conn: Deno.Conn, echo = false) {
    this.done = this.#loop(conn, echo);
  }

  async #loop(conn: Deno.Conn, echo: boolean): Promise<void> {
    const buf = new Uint8Array(64 * 1024);
    try {
      for (;;) {
        const n = await conn.read(buf);
        if (n === null) break;
        this.bytes += n;
        if (this.bytes <= 4096) this.text += this.#decoder.decode(buf.subarray(0, n));
        if (echo) await writeAll(conn, buf.slice(0, n));
      }
    } catch {
      // reset or closed by the test: the same "ended" to the reader
    }
    this.ended = true;
  }
}

function closeQuietly(c: Deno.Conn | Deno.Listener): void {
  try {
    c.close();
  } catch {
    // already closed
  }
}

/** An echo server that also lets a test write from its side of each connection. */
class EchoServer {
  readonly port: number;
  readonly peers: { conn: Deno.Conn; received: Collector }[] = [];
  readonly #listener: Deno.TcpListener;
  readonly #accepting: Promise<void>;

  constructor(echo = true) {
    this.#listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    this.port = this.#listener.addr.port;
    this.#accepting = this.#accept(echo);
  }

  async #accept(echo: boolean): Promise<void> {
    for (;;) {
      let conn: Deno.Conn;
      try {
        conn = await this.#listener.accept();
      } catch {
        return;
      }
      this.peers.push({ conn, received: new Collector(conn, echo) });
    }
  }

  async [Symbol.asyncDispose](): Promise<void> {
    closeQuietly(this.#listener);
    for (const p of this.peers) closeQuietly(p.conn);
    await this.#accepting;
    await Promise.all(this.peers.map((p) => p.received.done));
  }
}

/** A client connection to a proxy port with a collector of what it receives. */
async function dial(port: number): Promise<{ conn: Deno.Conn; got: Collector } & AsyncDisposable> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  const got = new Collector(conn);
  return {
    conn,
    got,
    async [Symbol.asyncDispose]() {
      closeQuietly(conn);
      await got.done;
    },
  };
}

Deno.test("link proxy: forwards both ways and counts connections and bytes", async () => {
  await using echo = new EchoServer();
  await using faults = new LinkFaults();
  const proxy = faults.listen(client, server, echo.port);
  await using c = await dial(proxy.port);
  await writeAll(c.conn, encoder.encode("hello"));
  await waitFor(() => c.got.text === "hello", 2000, "the echo");
  const s = proxy.stats();
  assert.deepEqual(
    [s.connectionsAccepted, s.connectionsOpen, s.bytesForward, s.bytesBackward],
    [1, 1, 5, 5],
  );
  assert.equal(faults.bytes(client, server), 5);
  assert.equal(faults.bytes(server, client), 5);
});

Deno.test("link proxy: a blocked link stalls bytes and delivers them in order once unblocked", async () => {
  await using echo = new EchoServer();
  await using faults = new LinkFaults();
  const proxy = faults.listen(client, server, echo.port);
  faults.block(client, server);
  // New connections are still accepted while blocked.
  await using c = await dial(proxy.port);
  await writeAll(c.conn, encoder.encode("one "));
  await writeAll(c.conn, encoder.encode("two"));
  await sleep(quietMs);
  assert.equal(echo.peers[0]?.received.bytes ?? 0, 0, "the server got nothing while blocked");
  assert.equal(c.got.text, "");
  faults.unblock(client, server);
  await waitFor(() => c.got.text === "one two", 2000, "held bytes after unblock");
  assert.equal(proxy.stats().connectionsAccepted, 1);
});

Deno.test("link proxy: a one-way block stalls that direction only", async () => {
  await using echo = new EchoServer();
  await using faults = new LinkFaults();
  const proxy = faults.listen(client, server, echo.port);
  await using c = await dial(proxy.port);
  await waitFor(() => echo.peers.length === 1, 2000, "the server to accept");
  const peer = echo.peers[0]!;

  // client → server blocked: the server hears nothing, but still reaches the client.
  faults.block(client, server);
  await writeAll(c.conn, encoder.encode("x"));
  await writeAll(peer.conn, encoder.encode("hi "));
  await waitFor(
    () => c.got.text === "hi ",
    2000,
    "server → client while client → server is blocked",
  );
  await sleep(quietMs);
  assert.equal(peer.received.text, "");
  faults.unblock(client, server);
  await waitFor(() => c.got.text === "hi x", 2000, "x, echoed after unblock");

  // server → client blocked: the client's bytes arrive; the echo waits.
  faults.block(server, client);
  await writeAll(c.conn, encoder.encode("y"));
  await waitFor(
    () => peer.received.text === "xy",
    2000,
    "client → server while the reply is blocked",
  );
  await sleep(quietMs);
  assert.equal(c.got.text, "hi x");
  faults.unblock(server, client);
  await waitFor(() => c.got.text === "hi xy", 2000, "y, echoed after unblock");
});

Deno.test("link proxy: partition, isolate and heal block the right directed pairs", async () => {
  await using echo = new EchoServer();
  await using faults = new LinkFaults();
  for (const [a, b] of [[1, 2], [2, 3], [3, 4], [4, 1]] as const) faults.listen(a, b, echo.port);
  assert.deepEqual(faults.nodes(), [1, 2, 3, 4]);
  const blocked = () => {
    const out: string[] = [];
    for (const a of faults.nodes()) {
      for (const b of faults.nodes()) if (faults.isBlocked(a, b)) out.push(`${a}>${b}`);
    }
    return out;
  };
  faults.partition([1, 2], [3]);
  assert.deepEqual(blocked(), ["1>3", "2>3", "3>1", "3>2"]);
  faults.heal();
  faults.isolate(4);
  assert.deepEqual(blocked(), ["1>4", "2>4", "3>4", "4>1", "4>2", "4>3"]);
  faults.delay(1, 2, 50);
  faults.heal();
  assert.deepEqual(blocked(), []);
  assert.equal(faults.delayMs(1, 2), 0);
});

Deno.test("link proxy: reset closes every current connection between the pair, both ways", async () => {
  await using echo = new EchoServer();
  await using faults = new LinkFaults();
  const outbound = faults.listen(client, server, echo.port);
  const inbound = faults.listen(server, client, echo.port);
  await using c1 = await dial(outbound.port);
  await using c2 = await dial(inbound.port);
  await writeAll(c1.conn, encoder.encode("a"));
  await writeAll(c2.conn, encoder.encode("b"));
  await waitFor(() => c1.got.text === "a" && c2.got.text === "b", 2000, "both echoes");

  assert.equal(faults.reset(server, client), 2);
  await waitFor(() => c1.got.ended && c2.got.ended, 2000, "both clients to see the close");
  await waitFor(() => echo.peers.every((p) => p.received.ended), 2000, "the server side to close");
  await waitFor(() => outbound.stats().connectionsOpen === 0, 2000, "the proxy to forget them");

  // The link itself is fine: a new connection works.
  await using c3 = await dial(outbound.port);
  await writeAll(c3.conn, encoder.encode("again"));
  await waitFor(() => c3.got.text === "again", 2000, "an echo on a new connection");
});

Deno.test("link proxy: delay holds a direction's bytes for that long, in order", async () => {
  await using echo = new EchoServer();
  await using faults = new LinkFaults();
  const proxy = faults.listen(client, server, echo.port);
  await using c = await dial(proxy.port);
  const delayMs = 400;
  faults.delay(client, server, delayMs);
  const sentMs = performance.now();
  await writeAll(c.conn, encoder.encode("a"));
  await waitFor(() => c.got.text === "a", 3000, "the delayed echo");
  const elapsedMs = performance.now() - sentMs;
  assert.ok(elapsedMs >= delayMs - 5, `echo came after ${elapsedMs} ms, before ${delayMs} ms`);

  // Bytes read after the delay is lifted still wait behind earlier ones.
  await writeAll(c.conn, encoder.encode("b"));
  await sleep(50);
  faults.delay(client, server, 0);
  await writeAll(c.conn, encoder.encode("c"));
  await sleep(100);
  assert.equal(c.got.text, "a", "c did not overtake b");
  await waitFor(() => c.got.text === "abc", 3000, "b then c");
});

Deno.test("link proxy: a block stops reading, so the sender feels backpressure, not a close", async () => {
  await using echo = new EchoServer(false);
  await using faults = new LinkFaults({ heldBytesMax: 128 * 1024 });
  const proxy = faults.listen(client, server, echo.port);
  faults.block(client, server);
  await using c = await dial(proxy.port);
  const totalBytes = 4 * 1024 * 1024;
  const sending = writeAll(c.conn, new Uint8Array(totalBytes));
  await sleep(quietMs);
  assert.equal(proxy.stats().bytesForward, 0);
  assert.equal(proxy.stats().connectionsOverflowed, 0);
  faults.unblock(client, server);
  await sending;
  await waitFor(() => echo.peers[0]?.received.bytes === totalBytes, 5000, "every byte");
  assert.equal(proxy.stats().connectionsOverflowed, 0);
});

Deno.test("link proxy: a connection holding more than heldBytesMax is closed", async () => {
  await using echo = new EchoServer(false);
  await using faults = new LinkFaults({ heldBytesMax: 256 * 1024 });
  const proxy = faults.listen(client, server, echo.port);
  // A long delay keeps everything the proxy reads held.
  faults.delay(client, server, 10_000);
  await using c = await dial(proxy.port);
  await writeAll(c.conn, new Uint8Array(1024 * 1024)).catch(() => {});
  await waitFor(() => c.got.ended, 3000, "the client to see the close");
  assert.equal(proxy.stats().connectionsOverflowed, 1);
  assert.equal(proxy.stats().bytesForward, 0);
  await waitFor(() => echo.peers[0]?.received.ended === true, 3000, "the server to see the close");
  assert.equal(echo.peers[0]?.received.bytes, 0);
});

Deno.test("link proxy: flap toggles the link until stopped, and close ends everything", async () => {
  await using echo = new EchoServer();
  const faults = new LinkFaults();
  const proxy = faults.listen(client, server, echo.port);
  const stop = faults.flap(client, server, { upMs: 60, downMs: 60 });
  const seen = new Set<boolean>();
  await waitFor(
    () => {
      seen.add(faults.isBlocked(client, server) && faults.isBlocked(server, client));
      return seen.size === 2;
    },
    2000,
    "the link to go down and up",
  );
  stop();
  assert.equal(faults.isBlocked(client, server), false);
  await using c = await dial(proxy.port);
  await writeAll(c.conn, encoder.encode("z"));
  await waitFor(() => c.got.text === "z", 2000, "the echo after flapping stops");
  await faults.close();
  await waitFor(() => c.got.ended, 2000, "close to end the client's connection");
  assert.throws(() => faults.listen(client, server, echo.port), /closed/);
});
