// Link faults between kvstore nodes for fault tests: a TCP proxy per directed
// pair of nodes (on 127.0.0.1 only) and one controller, `LinkFaults`, that
// decides per direction whether bytes flow, and how late. The harness
// (tests/integration/harness.ts, proxied mode) points each node's view of its
// peers' control and replication ports at these proxies, so a test can cut,
// delay or reset any node-to-node link without touching the host network.
//
//   node a ──dials──► LinkProxy(from a, to b) ──dials──► node b's real port
//            a→b bytes obey state (a→b)     b→a bytes obey state (b→a)
//
// A blocked direction behaves like a partition, not a refusal: the proxy
// stops reading from the sending socket, so TCP backpressure builds up at the
// sender, and bytes it has already read wait in the proxy until the direction
// is unblocked (they are never dropped). Connections are still accepted while
// blocked. Every queue is bounded: a connection holding more than
// `heldBytesMax` bytes in the proxy is closed.
//
// Test code only: nothing under src/ may import it. `close()` (or `await
// using`) ends every listener, socket, loop and timer it started, so Deno's
// test sanitizers stay on.

import { writeAll } from "../../src/net/write_all.ts";

/** Held bytes per connection before it is closed. A delayed link holds all
 * it reads within the delay; 8 MiB is far above heartbeats and ordinary test
 * writes, but a test delaying a 16 MiB value must pass a larger bound. */
export const heldBytesMaxDefault = 8 * 1024 * 1024;

/** Read size per socket read: the unit of holding and of delaying. */
const readChunkBytes = 64 * 1024;

/** With this many bytes waiting while the receiver is still taking the
 * previous write, the proxy stops reading: a slow receiver pushes back on the
 * sender like a real link, instead of tripping the overflow bound. Only bytes
 * held for a delay (read but not yet due) can reach `heldBytesMax`. */
const backpressureBytes = 1024 * 1024;

export interface LinkFaultsOptions {
  /** Bytes one connection may hold in the proxy (both directions) before it is closed. */
  readonly heldBytesMax?: number;
}

export interface FlapOptions {
  /** How long the link stays up in each cycle. */
  readonly upMs: number;
  /** How long the link stays down (both directions blocked) in each cycle. */
  readonly downMs: number;
}

/** Counters of one proxy: connections dialed by `from` towards `to`. */
export interface LinkStats {
  readonly from: number;
  readonly to: number;
  readonly port: number;
  readonly targetPort: number;
  readonly connectionsAccepted: number;
  readonly connectionsOpen: number;
  /** Connections closed because they held more than `heldBytesMax` bytes. */
  readonly connectionsOverflowed: number;
  /** Bytes delivered from → to (dialer to listener). */
  readonly bytesForward: number;
  /** Bytes delivered to → from (listener back to dialer). */
  readonly bytesBackward: number;
}

type Timer = ReturnType<typeof setTimeout>;

/** One waiter at a time; `wake()` ends its wait early, a timeout ends it late. */
class Wakeup {
  #resolve: (() => void) | null = null;
  #timer: Timer | undefined;

  wait(timeoutMs?: number): Promise<void> {
    return new Promise<void>((resolve) => {
      this.#resolve = resolve;
      if (timeoutMs !== undefined) this.#timer = setTimeout(() => this.wake(), timeoutMs);
    });
  }

  wake(): void {
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    this.#timer = undefined;
    const resolve = this.#resolve;
    this.#resolve = null;
    resolve?.();
  }
}

function closeQuietly(c: Deno.Conn | Deno.Listener): void {
  try {
    c.close();
  } catch {
    // already closed
  }
}

interface Chunk {
  readonly bytes: Uint8Array;
  /** performance.now() time at which the chunk may be delivered. */
  readonly dueMs: number;
}

/** One direction of one proxied connection: reads `src`, holds, writes `dst`. */
class Pump {
  readonly #faults: LinkFaults;
  readonly #conn: ProxiedConnection;
  readonly #src: Deno.Conn;
  readonly #dst: Deno.Conn;
  /** Node the bytes come from and node they go to (the state that applies is sender→receiver). */
  readonly sender: number;
  readonly receiver: number;
  readonly #onDelivered: (bytes: number) => void;
  readonly #queue: Chunk[] = [];
  readonly #readerWake = new Wakeup();
  readonly #writerWake = new Wakeup();
  queuedBytes = 0;
  #writing = false;
  #eof = false;
  readonly done: Promise<void>;

  constructor(
    faults: LinkFaults,
    conn: ProxiedConnection,
    src: Deno.Conn,
    dst: Deno.Conn,
    sender: number,
    receiver: number,
    onDelivered: (bytes: number) => void,
  ) {
    this.#faults = faults;
    this.#conn = conn;
    this.#src = src;
    this.#dst = dst;
    this.sender = sender;
    this.receiver = receiver;
    this.#onDelivered = onDelivered;
    this.done = Promise.all([this.#readLoop(), this.#writeLoop()]).then(() => {});
  }

  wake(): void {
    this.#readerWake.wake();
    this.#writerWake.wake();
  }

  async #readLoop(): Promise<void> {
    while (!this.#conn.closed) {
      if (this.#faults.isBlocked(this.sender, this.receiver) || this.#receiverIsSlow()) {
        await this.#readerWake.wait();
        continue;
      }
      const buf = new Uint8Array(readChunkBytes);
      let n: number | null;
      try {
        n = await this.#src.read(buf);
      } catch {
        this.#conn.close();
        return;
      }
      if (n === null) {
        this.#eof = true;
        this.#writerWake.wake();
        return;
      }
      // Chunks are delivered in the order read; a delay only sets the
      // earliest time, so shortening it never reorders bytes.
      const delayMs = this.#faults.delayMs(this.sender, this.receiver);
      this.#queue.push({ bytes: buf.slice(0, n), dueMs: performance.now() + delayMs });
      this.queuedBytes += n;
      if (this.#conn.heldBytes() > this.#faults.heldBytesMax) {
        this.#conn.overflow();
        return;
      }
      this.#writerWake.wake();
    }
  }

  /** The receiver is still taking a write and another read could pass the
   * backpressure mark or the overflow bound: wait for the write instead. */
  #receiverIsSlow(): boolean {
    if (!this.#writing) return false;
    return this.queuedBytes >= backpressureBytes ||
      this.#conn.heldBytes() + readChunkBytes > this.#faults.heldBytesMax;
  }

  async #writeLoop(): Promise<void> {
    while (!this.#conn.closed) {
      const head = this.#queue[0];
      if (head === undefined) {
        if (this.#eof) {
          // Pass the sender's half-close on; the connection ends when both
          // directions have.
          await this.#dst.closeWrite().catch(() => this.#conn.close());
          this.#conn.directionDone();
          return;
        }
        await this.#writerWake.wait();
        continue;
      }
      if (this.#faults.isBlocked(this.sender, this.receiver)) {
        await this.#writerWake.wait();
        continue;
      }
      const waitMs = head.dueMs - performance.now();
      if (waitMs > 0) {
        await this.#writerWake.wait(Math.ceil(waitMs));
        continue;
      }
      this.#writing = true;
      try {
        await writeAll(this.#dst, head.bytes);
      } catch {
        this.#conn.close();
        return;
      } finally {
        this.#writing = false;
      }
      this.#queue.shift();
      this.queuedBytes -= head.bytes.length;
      this.#onDelivered(head.bytes.length);
      this.#readerWake.wake();
    }
  }
}

/** An accepted connection and its dial to the target, with both pumps. */
class ProxiedConnection {
  readonly #proxy: LinkProxy;
  readonly #dialer: Deno.Conn;
  readonly #target: Deno.Conn;
  readonly forward: Pump;
  readonly backward: Pump;
  closed = false;
  #directionsDone = 0;
  readonly done: Promise<void>;

  constructor(faults: LinkFaults, proxy: LinkProxy, dialer: Deno.Conn, target: Deno.Conn) {
    this.#proxy = proxy;
    this.#dialer = dialer;
    this.#target = target;
    this.forward = new Pump(
      faults,
      this,
      dialer,
      target,
      proxy.from,
      proxy.to,
      (n) => proxy.counted("forward", n),
    );
    this.backward = new Pump(
      faults,
      this,
      target,
      dialer,
      proxy.to,
      proxy.from,
      (n) => proxy.counted("backward", n),
    );
    this.done = Promise.all([this.forward.done, this.backward.done]).then(() => {});
  }

  heldBytes(): number {
    return this.forward.queuedBytes + this.backward.queuedBytes;
  }

  wake(): void {
    this.forward.wake();
    this.backward.wake();
  }

  directionDone(): void {
    if (++this.#directionsDone === 2) this.close();
  }

  overflow(): void {
    this.#proxy.counted("overflow", 0);
    this.close();
  }

  /** Closes both sockets: pending reads and writes fail and both pumps end. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    closeQuietly(this.#dialer);
    closeQuietly(this.#target);
    this.wake();
  }
}

/** Forwards connections from its own port to `targetPort`; `from` dials, `to` listens. */
export class LinkProxy {
  readonly from: number;
  readonly to: number;
  readonly targetPort: number;
  /** Port this proxy listens on (chosen by the kernel). */
  readonly port: number;
  readonly #faults: LinkFaults;
  readonly #listener: Deno.TcpListener;
  readonly #connections = new Set<ProxiedConnection>();
  readonly #tasks = new Set<Promise<void>>();
  readonly #abort = new AbortController();
  #closed = false;
  #accepted = 0;
  #overflowed = 0;
  #bytesForward = 0;
  #bytesBackward = 0;

  /** Use `LinkFaults.listen`, which registers the proxy with its controller. */
  constructor(faults: LinkFaults, from: number, to: number, targetPort: number) {
    this.#faults = faults;
    this.from = from;
    this.to = to;
    this.targetPort = targetPort;
    this.#listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    this.port = this.#listener.addr.port;
    this.#track(this.#acceptLoop());
  }

  /** Counts delivered bytes and overflow closes (called by its connections). */
  counted(what: "forward" | "backward" | "overflow", bytes: number): void {
    if (what === "forward") this.#bytesForward += bytes;
    else if (what === "backward") this.#bytesBackward += bytes;
    else this.#overflowed++;
  }

  stats(): LinkStats {
    return {
      from: this.from,
      to: this.to,
      port: this.port,
      targetPort: this.targetPort,
      connectionsAccepted: this.#accepted,
      connectionsOpen: this.#connections.size,
      connectionsOverflowed: this.#overflowed,
      bytesForward: this.#bytesForward,
      bytesBackward: this.#bytesBackward,
    };
  }

  /** Re-evaluates fault state on every connection (after a state change). */
  wake(): void {
    for (const c of this.#connections) c.wake();
  }

  /** Closes every current connection (like an RST); returns how many. */
  resetConnections(): number {
    const n = this.#connections.size;
    for (const c of this.#connections) c.close();
    return n;
  }

  /** Stops listening, closes every connection, and waits for all its loops. */
  async close(): Promise<void> {
    if (!this.#closed) {
      this.#closed = true;
      this.#abort.abort();
      closeQuietly(this.#listener);
      this.resetConnections();
    }
    while (this.#tasks.size > 0) await Promise.all([...this.#tasks]);
  }

  #track(task: Promise<void>): void {
    // A loop that throws is a bug in the proxy: `close()` rethrows it.
    this.#tasks.add(task);
    const forget = () => this.#tasks.delete(task);
    task.then(forget, forget);
  }

  async #acceptLoop(): Promise<void> {
    while (!this.#closed) {
      let dialer: Deno.TcpConn;
      try {
        dialer = await this.#listener.accept();
      } catch {
        return; // listener closed
      }
      if (this.#closed) {
        closeQuietly(dialer);
        return;
      }
      this.#accepted++;
      this.#track(this.#serve(dialer));
    }
  }

  async #serve(dialer: Deno.TcpConn): Promise<void> {
    let target: Deno.TcpConn;
    try {
      target = await Deno.connect({
        hostname: "127.0.0.1",
        port: this.targetPort,
        signal: this.#abort.signal,
      });
    } catch {
      // Target down: the dialer sees its connection close, much as a refused
      // connection would look to it.
      closeQuietly(dialer);
      return;
    }
    if (this.#closed) {
      closeQuietly(dialer);
      closeQuietly(target);
      return;
    }
    // Nodes set no-delay on their own sockets; the proxy must not add Nagle
    // latency of its own to heartbeats.
    dialer.setNoDelay(true);
    target.setNoDelay(true);
    const conn = new ProxiedConnection(this.#faults, this, dialer, target);
    this.#connections.add(conn);
    await conn.done;
    conn.close();
    this.#connections.delete(conn);
  }
}

function pairKey(a: number, b: number): string {
  return `${a}>${b}`;
}

/** Shared fault state per directed pair of nodes, and the proxies it governs. */
export class LinkFaults {
  readonly heldBytesMax: number;
  readonly #proxies: LinkProxy[] = [];
  readonly #nodes = new Set<number>();
  readonly #blocked = new Set<string>();
  readonly #delaysMs = new Map<string, number>();
  readonly #flapTimers = new Set<Timer>();
  #closed = false;

  constructor(opts: LinkFaultsOptions = {}) {
    this.heldBytesMax = opts.heldBytesMax ?? heldBytesMaxDefault;
  }

  /** Starts a proxy on 127.0.0.1 (port chosen by the kernel) for `from` dialing `to` at `targetPort`. */
  listen(from: number, to: number, targetPort: number): LinkProxy {
    if (this.#closed) throw new Error(`Link faults are closed; cannot proxy ${from}→${to}`);
    if (from === to) throw new Error(`A link needs two nodes, got ${from}→${to}`);
    const proxy = new LinkProxy(this, from, to, targetPort);
    this.#proxies.push(proxy);
    this.#nodes.add(from);
    this.#nodes.add(to);
    return proxy;
  }

  /** Every node id seen by a proxy, ascending: "everyone" for `isolate`. */
  nodes(): number[] {
    return [...this.#nodes].sort((x, y) => x - y);
  }

  isBlocked(a: number, b: number): boolean {
    return this.#blocked.has(pairKey(a, b));
  }

  delayMs(a: number, b: number): number {
    return this.#delaysMs.get(pairKey(a, b)) ?? 0;
  }

  /** Stalls the a→b byte flow on every connection between a and b (held, not dropped). */
  block(a: number, b: number): void {
    this.#blocked.add(pairKey(a, b));
    this.#wake();
  }

  /** Lets a→b bytes flow again, held bytes first. */
  unblock(a: number, b: number): void {
    this.#blocked.delete(pairKey(a, b));
    this.#wake();
  }

  /** Blocks both directions between every node of `groupA` and every node of `groupB`. */
  partition(groupA: readonly number[], groupB: readonly number[]): void {
    for (const a of groupA) {
      for (const b of groupB) {
        if (a === b) continue;
        this.#blocked.add(pairKey(a, b));
        this.#blocked.add(pairKey(b, a));
      }
    }
    this.#wake();
  }

  /** Cuts node `n` from every other known node, both ways. */
  isolate(n: number): void {
    this.partition([n], this.nodes().filter((x) => x !== n));
  }

  /** Everything up: no blocks, no delays, no flapping. */
  heal(): void {
    this.#stopFlaps();
    this.#blocked.clear();
    this.#delaysMs.clear();
    this.#wake();
  }

  /** Delivers a→b bytes `delayMs` after the proxy read them, in order; 0 clears. */
  delay(a: number, b: number, delayMs: number): void {
    if (!Number.isFinite(delayMs) || delayMs < 0) throw new Error(`Bad delay: ${delayMs} ms`);
    if (delayMs === 0) this.#delaysMs.delete(pairKey(a, b));
    else this.#delaysMs.set(pairKey(a, b), delayMs);
    this.#wake();
  }

  /** Closes every current connection between a and b, whichever dialed; returns how many. */
  reset(a: number, b: number): number {
    let n = 0;
    for (const p of this.#proxies) {
      if ((p.from === a && p.to === b) || (p.from === b && p.to === a)) n += p.resetConnections();
    }
    return n;
  }

  /** Toggles the link a↔b (both directions): up `upMs`, down `downMs`, starting
   * up, until the returned stop function, `heal()` or `close()`. Stopping leaves it up. */
  flap(a: number, b: number, opts: FlapOptions): () => void {
    let timer: Timer | undefined;
    let stopped = false;
    const step = (down: boolean) => {
      if (down) this.partition([a], [b]);
      else {
        this.unblock(a, b);
        this.unblock(b, a);
      }
      const next = setTimeout(() => {
        this.#flapTimers.delete(next);
        step(!down);
      }, down ? opts.downMs : opts.upMs);
      timer = next;
      this.#flapTimers.add(next);
    };
    step(false);
    return () => {
      if (stopped) return;
      stopped = true;
      if (timer !== undefined) {
        clearTimeout(timer);
        this.#flapTimers.delete(timer);
      }
      this.unblock(a, b);
      this.unblock(b, a);
    };
  }

  /** Bytes delivered a→b on every connection between a and b, whichever dialed. */
  bytes(a: number, b: number): number {
    let n = 0;
    for (const p of this.#proxies) {
      if (p.from === a && p.to === b) n += p.stats().bytesForward;
      if (p.from === b && p.to === a) n += p.stats().bytesBackward;
    }
    return n;
  }

  stats(): LinkStats[] {
    return this.#proxies.map((p) => p.stats());
  }

  /** Blocked pairs, delays and per-proxy counters, for a failing test's output. */
  describe(): string {
    const lines = [
      `blocked: ${[...this.#blocked].sort().join(" ") || "none"}`,
      `delayed: ${[...this.#delaysMs].map(([k, ms]) => `${k}=${ms}ms`).sort().join(" ") || "none"}`,
    ];
    for (const s of this.stats()) {
      lines.push(
        `${s.from}→${s.to} :${s.port}→:${s.targetPort} accepted ${s.connectionsAccepted}, ` +
          `open ${s.connectionsOpen}, overflowed ${s.connectionsOverflowed}, ` +
          `bytes →${s.bytesForward} ←${s.bytesBackward}`,
      );
    }
    return lines.join("\n");
  }

  /** Closes every proxy and connection and stops flapping; waits for all of it. */
  async close(): Promise<void> {
    this.#closed = true;
    this.#stopFlaps();
    await Promise.all(this.#proxies.map((p) => p.close()));
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }

  #stopFlaps(): void {
    for (const t of this.#flapTimers) clearTimeout(t);
    this.#flapTimers.clear();
  }

  #wake(): void {
    for (const p of this.#proxies) p.wake();
  }
}
