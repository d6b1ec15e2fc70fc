// Node-to-node authentication with a shared cluster secret, for the control
// and replication connections. Without it anyone who can reach those ports
// can forge votes, heartbeats or acknowledgements, and a forged quorum of
// acknowledgements loses acknowledged writes.
//
// Mutual challenge-response, before any protocol byte (n = 32 hex nonce):
//
//   acceptor → dialer    KVAUTH1 <nA>
//   dialer → acceptor    AUTH <dialerId> <nD> <MAC("dial", nA, nD, dialerId → acceptorId)>
//   acceptor → dialer    OK <MAC("accept", nA, nD, acceptorId → dialerId)>
//
// MAC = HMAC-SHA256(secret, "kvstore|<purpose>|…") in hex. Both sides bring a
// fresh nonce, so a recorded exchange is useless later, and each proof names
// both ends: a dialer's proof for node D is refused by any other node T, so a
// man in the middle cannot relay a node's dial (to a dead host's address, say)
// on to another node, and the dialer checks it reached a holder of the secret
// who is the node it meant to dial. The acceptor then checks that what the
// connection says (HELLO, `from`) is the proven node. No secret: no handshake.

import { timingSafeEqual } from "node:crypto";
import { writeAll } from "./write_all.ts";

export type AuthPurpose = "control" | "replication";

export interface PeerAuth {
  readonly key: CryptoKey;
}

const encoder = new TextEncoder();
const decoder = new TextDecoder();
const handshakeLineBytesMax = 256;
export const handshakeTimeoutMs = 3000;

/** Reads a secret file; at least 16 bytes once surrounding whitespace is trimmed. */
export async function loadPeerAuth(
  path: string,
): Promise<{ ok: true; value: PeerAuth } | { ok: false; error: string }> {
  let text: string;
  try {
    text = (await Deno.readTextFile(path)).trim();
  } catch (e) {
    return { ok: false, error: `Cannot read secret file ${path}: ${(e as Error).message}` };
  }
  if (encoder.encode(text).length < 16) {
    return { ok: false, error: `Secret file ${path} holds fewer than 16 bytes` };
  }
  const key = await crypto.subtle.importKey(
    "raw",
    encoder.encode(text),
    { name: "HMAC", hash: "SHA-256" },
    false,
    ["sign"],
  );
  return { ok: true, value: { key } };
}

function hex(bytes: Uint8Array): string {
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

async function mac(
  auth: PeerAuth,
  purpose: AuthPurpose,
  step: "dial" | "accept",
  acceptorNonce: string,
  dialerNonce: string,
  fromId: number,
  toId: number,
): Promise<string> {
  const text = `kvstore|${purpose}|${step}|${acceptorNonce}|${dialerNonce}|${fromId}|${toId}`;
  return hex(new Uint8Array(await crypto.subtle.sign("HMAC", auth.key, encoder.encode(text))));
}

function sameMac(got: string, want: string): boolean {
  const a = encoder.encode(got);
  const b = encoder.encode(want);
  return a.length === b.length && timingSafeEqual(a, b);
}

const nonceRe = /^[0-9a-f]{32}$/;

/** Reads one handshake line. The other side waits for our answer before it
 * sends anything more, so a read that goes past the newline is a violation. */
async function readLine(conn: Deno.Conn): Promise<string> {
  const buf = new Uint8Array(handshakeLineBytesMax);
  let have = 0;
  for (;;) {
    const n = await conn.read(buf.subarray(have));
    if (n === null) throw new Error("connection closed during the handshake");
    have += n;
    const nl = buf.subarray(0, have).indexOf(0x0a);
    if (nl >= 0) {
      if (nl !== have - 1) throw new Error("bytes after the handshake line");
      return decoder.decode(buf.subarray(0, nl));
    }
    if (have >= buf.length) throw new Error("handshake line too long");
  }
}

function writeLine(conn: Deno.Conn, line: string): Promise<void> {
  return writeAll(conn, encoder.encode(line + "\n"));
}

/** Closes the connection if `work` has not finished in time, so a silent
 * peer cannot hold a handshake (and its socket) open forever. */
async function bounded<T>(conn: Deno.Conn, work: Promise<T>): Promise<T> {
  const timer = setTimeout(() => {
    try {
      conn.close();
    } catch {
      // already closed
    }
  }, handshakeTimeoutMs);
  try {
    return await work;
  } finally {
    clearTimeout(timer);
  }
}

/** Acceptor side (we are `selfId`): returns the authenticated node id, or
 * throws (the caller closes). */
export function acceptPeer(
  conn: Deno.Conn,
  auth: PeerAuth,
  purpose: AuthPurpose,
  selfId: number,
  isPeer: (nodeId: number) => boolean,
): Promise<number> {
  return bounded(
    conn,
    (async () => {
      const nonceA = hex(crypto.getRandomValues(new Uint8Array(16)));
      await writeLine(conn, `KVAUTH1 ${nonceA}`);
      const parts = (await readLine(conn)).split(" ");
      const nodeId = Number(parts[1]);
      const nonceD = parts[2] ?? "";
      if (
        parts.length !== 4 || parts[0] !== "AUTH" || !Number.isSafeInteger(nodeId) ||
        !nonceRe.test(nonceD)
      ) {
        throw new Error("malformed AUTH line");
      }
      if (!isPeer(nodeId)) throw new Error(`node ${nodeId} is not a peer`);
      if (!sameMac(parts[3]!, await mac(auth, purpose, "dial", nonceA, nonceD, nodeId, selfId))) {
        throw new Error(`bad cluster secret from a connection claiming to be node ${nodeId}`);
      }
      await writeLine(
        conn,
        `OK ${await mac(auth, purpose, "accept", nonceA, nonceD, selfId, nodeId)}`,
      );
      return nodeId;
    })(),
  );
}

/** Dialer side: proves we are `selfId` to node `peerId` and checks that the
 * other end holds the secret as `peerId`; throws otherwise. */
export function dialPeer(
  conn: Deno.Conn,
  auth: PeerAuth,
  purpose: AuthPurpose,
  selfId: number,
  peerId: number,
): Promise<void> {
  return bounded(
    conn,
    (async () => {
      const parts = (await readLine(conn)).split(" ");
      if (parts.length !== 2 || parts[0] !== "KVAUTH1" || !nonceRe.test(parts[1]!)) {
        throw new Error("peer did not offer the cluster-secret handshake (is its secret set?)");
      }
      const nonceA = parts[1]!;
      const nonceD = hex(crypto.getRandomValues(new Uint8Array(16)));
      const proof = await mac(auth, purpose, "dial", nonceA, nonceD, selfId, peerId);
      await writeLine(conn, `AUTH ${selfId} ${nonceD} ${proof}`);
      const reply = (await readLine(conn)).split(" ");
      if (reply.length !== 2 || reply[0] !== "OK") {
        throw new Error("peer refused our cluster secret");
      }
      if (!sameMac(reply[1]!, await mac(auth, purpose, "accept", nonceA, nonceD, peerId, selfId))) {
        throw new Error(`the other end could not prove it is node ${peerId} holding the secret`);
      }
    })(),
  );
}
