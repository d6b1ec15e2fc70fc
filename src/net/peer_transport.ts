// The control plane between supervisors: one JSON message per line over TCP
// on the control ports. Each supervisor dials every peer for what it sends and
// accepts peers' dials for what it receives, so each direction has one
// connection and no handshake. Sending never blocks the caller: messages wait
// in a small bounded queue while a peer is unreachable (elections are
// timing-based, so an old message is worth little) and the oldest go first.
// Malformed input is logged and dropped; the connection that sent it closes.

import type { Cluster, NodeAddress } from "../config/cluster.ts";
import { controlMessageBytesMax, termMax } from "../config/limits.ts";
import { peerReconnectMsMax } from "../config/timing.ts";
import type { Log } from "../log.ts";
import type { ControlMessage } from "../raft/election.ts";
import { acceptPeer, dialPeer, type PeerAuth } from "./peer_auth.ts";
import { acceptLoop } from "./accept_loop.ts";

function inboundConnectionsMax(cluster: Cluster): number {
  return 4 * cluster.nodes.length;
}

const queueMessagesMax = 64;
const encoder = new TextEncoder();

function isInt(v: unknown): v is number {
  return typeof v === "number" && Number.isSafeInteger(v) && v >= 0;
}

/** Checks a decoded message from the network; returns null for anything off. */
export function validateControlMessage(raw: unknown, cluster: Cluster): ControlMessage | null {
  if (typeof raw !== "object" || raw === null) return null;
  const m = raw as Record<string, unknown>;
  if (!isInt(m.from) || !cluster.nodes.some((n) => n.id === m.from) || !isInt(m.term)) return null;
  if (m.term > termMax) return null;
  switch (m.kind) {
    case "RequestVote":
      if (
        !isInt(m.lastLogIndex) || !isInt(m.lastLogTerm) || m.lastLogTerm > termMax ||
        typeof m.preVote !== "boolean"
      ) {
        return null;
      }
      return {
        kind: "RequestVote",
        from: m.from,
        term: m.term,
        lastLogIndex: m.lastLogIndex,
        lastLogTerm: m.lastLogTerm,
        preVote: m.preVote,
      };
    case "RequestVoteResponse":
      if (typeof m.voteGranted !== "boolean" || typeof m.preVote !== "boolean") return null;
      return {
        kind: "RequestVoteResponse",
        from: m.from,
        term: m.term,
        voteGranted: m.voteGranted,
        preVote: m.preVote,
      };
    case "Heartbeat":
    case "HeartbeatResponse":
    case "StepDown":
      return { kind: m.kind, from: m.from, term: m.term };
    default:
      return null;
  }
}

interface Outbound {
  readonly peer: NodeAddress;
  queue: Uint8Array[];
  wake: (() => void) | null;
}

export class PeerTransport {
  readonly #self: NodeAddress;
  readonly #cluster: Cluster;
  readonly #log: Log;
  readonly #auth: PeerAuth | null;
  readonly #onMessage: (m: ControlMessage) => void;
  readonly #outbound = new Map<number, Outbound>();
  readonly #listener: Deno.Listener;
  #closed = false;
  readonly #conns = new Set<Deno.Conn>();

  constructor(
    self: NodeAddress,
    cluster: Cluster,
    auth: PeerAuth | null,
    onMessage: (m: ControlMessage) => void,
    log: Log,
  ) {
    this.#auth = auth;
    this.#self = self;
    this.#cluster = cluster;
    this.#onMessage = onMessage;
    this.#log = log;
    this.#listener = Deno.listen({ hostname: self.listenHost, port: self.controlPort });
    this.#accept();
    for (const peer of cluster.nodes) {
      if (peer.id === self.id) continue;
      const out: Outbound = { peer, queue: [], wake: null };
      this.#outbound.set(peer.id, out);
      this.#dial(out);
    }
  }

  send(to: number, message: ControlMessage): void {
    const out = this.#outbound.get(to);
    if (!out) return;
    out.queue.push(encoder.encode(JSON.stringify(message) + "\n"));
    if (out.queue.length > queueMessagesMax) out.queue.shift();
    out.wake?.();
  }

  close(): void {
    this.#closed = true;
    try {
      this.#listener.close();
    } catch {
      // already closed
    }
    for (const c of this.#conns) {
      try {
        c.close();
      } catch {
        // already closed
      }
    }
    for (const out of this.#outbound.values()) out.wake?.();
  }

  async #accept(): Promise<void> {
    await acceptLoop(
      this.#listener,
      (conn) => {
        // Peers dial once each (twice while reconnecting); anything beyond that
        // is not a peer, and must not use up our file descriptors.
        if (this.#inbound >= inboundConnectionsMax(this.#cluster)) {
          try {
            conn.close();
          } catch {
            // already closed
          }
          return;
        }
        this.#inbound++;
        this.#receive(conn).finally(() => this.#inbound--);
      },
      this.#log,
      "control",
    );
  }

  #inbound = 0;

  async #receive(conn: Deno.Conn): Promise<void> {
    this.#conns.add(conn);
    const decoder = new TextDecoder();
    const buf = new Uint8Array(16 * 1024);
    let pending = "";
    try {
      // With a cluster secret, only a proven peer gets heard, and only as itself.
      let sender: number | null = null;
      if (this.#auth !== null) {
        try {
          sender = await acceptPeer(
            conn,
            this.#auth,
            "control",
            this.#self.id,
            (id) => id !== this.#self.id && this.#cluster.nodes.some((n) => n.id === id),
          );
        } catch (e) {
          const reason = (e as Error).message;
          this.#warnOnce(`refuse:${reason}`, `refusing a control connection: ${reason}`);
          return;
        }
      }
      for (;;) {
        const n = await conn.read(buf);
        if (n === null) return;
        pending += decoder.decode(buf.subarray(0, n), { stream: true });
        let nl: number;
        while ((nl = pending.indexOf("\n")) >= 0) {
          const line = pending.slice(0, nl);
          pending = pending.slice(nl + 1);
          let raw: unknown;
          try {
            raw = JSON.parse(line);
          } catch {
            raw = undefined;
          }
          const m = validateControlMessage(raw, this.#cluster);
          if (m === null || (sender !== null && m.from !== sender)) {
            this.#log.warn(
              `dropping malformed control message ${JSON.stringify(line.slice(0, 80))}`,
            );
            return;
          }
          this.#onMessage(m);
        }
        if (pending.length > controlMessageBytesMax) {
          this.#log.warn("dropping a control connection that sent an oversized line");
          return;
        }
      }
    } catch {
      // peer went away
    } finally {
      this.#conns.delete(conn);
      try {
        conn.close();
      } catch {
        // already closed
      }
    }
  }

  async #dial(out: Outbound): Promise<void> {
    let delayMs = 50;
    let warned = false;
    while (!this.#closed) {
      let conn: Deno.Conn;
      try {
        conn = await Deno.connect({ hostname: out.peer.host, port: out.peer.controlPort });
      } catch (e) {
        if (!warned) {
          this.#log.debug(`cannot reach node ${out.peer.id} control port: ${(e as Error).name}`);
          warned = true;
        }
        await new Promise((r) => setTimeout(r, delayMs));
        delayMs = Math.min(delayMs * 2, peerReconnectMsMax);
        continue;
      }
      (conn as Deno.TcpConn).setNoDelay(true);
      this.#conns.add(conn);
      if (this.#auth !== null) {
        try {
          await dialPeer(conn, this.#auth, "control", this.#self.id, out.peer.id);
        } catch (e) {
          if (!warned) this.#log.warn(`node ${out.peer.id} control port: ${(e as Error).message}`);
          warned = true;
          this.#conns.delete(conn);
          try {
            conn.close();
          } catch {
            // already closed
          }
          await new Promise((r) => setTimeout(r, delayMs));
          delayMs = Math.min(delayMs * 2, peerReconnectMsMax);
          continue;
        }
      }
      warned = false;
      delayMs = 50;
      // Our dials only write once set up: anything the peer sends means it
      // closed, or that it wants a handshake we are not configured for.
      let peerClosed = false;
      let peerSpoke = false;
      const probe = new Uint8Array(64);
      conn.read(probe).then((n) => {
        if (n !== null) {
          peerSpoke = true;
          if (new TextDecoder().decode(probe.subarray(0, n)).startsWith("KVAUTH1")) {
            this.#warnOnce(
              `auth:${out.peer.id}`,
              `node ${out.peer.id} requires the cluster secret: start this node with --secret-file`,
            );
          }
        }
        peerClosed = true;
        out.wake?.();
      }, () => {
        peerClosed = true;
        out.wake?.();
      });
      try {
        while (!this.#closed && !peerClosed) {
          if (out.queue.length === 0) {
            await new Promise<void>((r) => (out.wake = r));
            out.wake = null;
            continue;
          }
          const parts = out.queue;
          out.queue = [];
          for (const p of parts) {
            let at = 0;
            while (at < p.length) at += await conn.write(p.subarray(at));
          }
        }
      } catch {
        // connection lost: redial
      } finally {
        this.#conns.delete(conn);
        try {
          conn.close();
        } catch {
          // already closed
        }
      }
      if (peerSpoke) {
        // Not a plain close: do not hammer a peer that refuses us.
        await new Promise((r) => setTimeout(r, delayMs));
        delayMs = Math.min(delayMs * 2, peerReconnectMsMax);
      }
    }
  }

  #warnedAt = new Map<string, number>();

  /** Warns about `key` at most once every 10 s: a misconfigured peer retries
   * often, and its log should say why without drowning in it. */
  #warnOnce(key: string, message: string): void {
    const now = Date.now();
    if (now - (this.#warnedAt.get(key) ?? 0) < 10_000) return;
    this.#warnedAt.set(key, now);
    this.#log.warn(message);
  }
}
