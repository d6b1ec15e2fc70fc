// Node-to-node authentication with a shared cluster secret, for the control
// and replication connections. Without it anyone who can reach those ports
// can forge votes, heartbeats or acknowledgements, and a forged quorum of
// acknowledgements loses acknowledged writes.
//
// Challenge-response, one line each way, before any protocol byte:
//
//   acceptor → dialer    KVAUTH1 <nonce: 32 hex>
//   dialer → acceptor    AUTH <nodeId> <HMAC-SHA256(secret, "kvstore|<purpose>|<nonce>|<nodeId>"): 64 hex>
//   acceptor → dialer    OK
//
// The nonce makes a recorded answer useless on the next connection, and the
// node id inside the MAC binds the connection to one node: the acceptor then
// checks that what the connection says (HELLO, `from`) is that node. The
// dialer does not authenticate the acceptor: it only ever dials the addresses
// in the cluster file. No secret configured: no handshake at all.

import { timingSafeEqual } from "node:crypto";

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
  nonce: string,
  nodeId: number,
): Promise<string> {
  const sig = await crypto.subtle.sign(
    "HMAC",
    auth.key,
    encoder.encode(`kvstore|${purpose}|${nonce}|${nodeId}`),
  );
  return hex(new Uint8Array(sig));
}

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

async function writeLine(conn: Deno.Conn, line: string): Promise<void> {
  const bytes = encoder.encode(line + "\n");
  let at = 0;
  while (at < bytes.length) at += await conn.write(bytes.subarray(at));
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

/** Acceptor side: returns the authenticated node id, or throws (the caller closes). */
export function acceptPeer(
  conn: Deno.Conn,
  auth: PeerAuth,
  purpose: AuthPurpose,
  isPeer: (nodeId: number) => boolean,
): Promise<number> {
  return bounded(
    conn,
    (async () => {
      const nonce = hex(crypto.getRandomValues(new Uint8Array(16)));
      await writeLine(conn, `KVAUTH1 ${nonce}`);
      const parts = (await readLine(conn)).split(" ");
      const nodeId = Number(parts[1]);
      if (parts.length !== 3 || parts[0] !== "AUTH" || !Number.isSafeInteger(nodeId)) {
        throw new Error("malformed AUTH line");
      }
      if (!isPeer(nodeId)) throw new Error(`node ${nodeId} is not a peer`);
      const want = encoder.encode(await mac(auth, purpose, nonce, nodeId));
      const got = encoder.encode(parts[2]!);
      if (got.length !== want.length || !timingSafeEqual(got, want)) {
        throw new Error(`bad cluster secret from a connection claiming to be node ${nodeId}`);
      }
      await writeLine(conn, "OK");
      return nodeId;
    })(),
  );
}

/** Dialer side: proves we are `nodeId`; throws if the acceptor refuses. */
export function dialPeer(
  conn: Deno.Conn,
  auth: PeerAuth,
  purpose: AuthPurpose,
  nodeId: number,
): Promise<void> {
  return bounded(
    conn,
    (async () => {
      const parts = (await readLine(conn)).split(" ");
      if (parts.length !== 2 || parts[0] !== "KVAUTH1" || !/^[0-9a-f]{32}$/.test(parts[1]!)) {
        throw new Error("peer did not offer the cluster-secret handshake (is its secret set?)");
      }
      await writeLine(conn, `AUTH ${nodeId} ${await mac(auth, purpose, parts[1]!, nodeId)}`);
      if ((await readLine(conn)) !== "OK") throw new Error("peer refused our cluster secret");
    })(),
  );
}
