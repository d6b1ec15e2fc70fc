// The cluster-secret handshake over a real loopback connection.

import assert from "node:assert/strict";
import { acceptPeer, dialPeer, loadPeerAuth, type PeerAuth } from "../../../src/net/peer_auth.ts";

async function authFrom(secret: string): Promise<PeerAuth> {
  const dir = await Deno.makeTempDir();
  try {
    await Deno.writeTextFile(`${dir}/s`, secret);
    const r = await loadPeerAuth(`${dir}/s`);
    if (!r.ok) throw new Error(r.error);
    return r.value;
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

/** Runs acceptPeer and dialPeer against each other; returns both outcomes. */
async function handshake(
  acceptorAuth: PeerAuth,
  dialerAuth: PeerAuth,
  dialerId: number,
  isPeer: (id: number) => boolean = () => true,
  acceptorId = 1,
  dialedId = acceptorId,
): Promise<{ accepted: number | string; dialed: string }> {
  using listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;
  const [server, client] = await Promise.all([
    listener.accept(),
    Deno.connect({ hostname: "127.0.0.1", port }),
  ]);
  try {
    const [accepted, dialed] = await Promise.all([
      acceptPeer(server, acceptorAuth, "replication", acceptorId, isPeer).catch((e: Error) => {
        server.close();
        return `refused: ${e.message}`;
      }),
      dialPeer(client, dialerAuth, "replication", dialerId, dialedId).then(
        () => "ok",
        (e: Error) => `failed: ${e.message}`,
      ),
    ]);
    return { accepted, dialed };
  } finally {
    for (const c of [server, client]) {
      try {
        c.close();
      } catch {
        // already closed
      }
    }
  }
}

Deno.test("peer auth: the same secret proves the dialer's node id", async () => {
  const auth = await authFrom("a shared secret of some length");
  assert.deepEqual(await handshake(auth, auth, 3), { accepted: 3, dialed: "ok" });
});

Deno.test("peer auth: a different secret is refused", async () => {
  const r = await handshake(
    await authFrom("a shared secret of some length"),
    await authFrom("another secret, also long enough"),
    3,
  );
  assert.match(String(r.accepted), /^refused: bad cluster secret/);
  assert.match(r.dialed, /^failed/);
});

Deno.test("peer auth: a node id that is not a peer is refused even with the secret", async () => {
  const auth = await authFrom("a shared secret of some length");
  const r = await handshake(auth, auth, 99, (id) => id >= 1 && id <= 4);
  assert.match(String(r.accepted), /^refused: node 99 is not a peer/);
});

Deno.test("peer auth: a secret file shorter than 16 bytes is rejected", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await Deno.writeTextFile(`${dir}/s`, "  short \n");
    const r = await loadPeerAuth(`${dir}/s`);
    assert.equal(r.ok, false);
    assert.match(r.ok ? "" : r.error, /fewer than 16 bytes/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("peer auth: a dial meant for node 2 is refused by node 3, so it cannot be relayed", async () => {
  // Regression: the proof named only the dialer, so a man in the middle on a
  // dead node's address could forward a live node's dial to another node and
  // be taken for the dialer.
  const auth = await authFrom("a shared secret of some length");
  const r = await handshake(auth, auth, 1, () => true, 3, 2);
  assert.match(String(r.accepted), /^refused: bad cluster secret/);
  assert.match(r.dialed, /^failed/);
});

Deno.test("peer auth: the dialer checks the other end holds the secret", async () => {
  const r = await handshake(
    await authFrom("the acceptor's different secret!"),
    await authFrom("a shared secret of some length"),
    1,
  );
  assert.match(r.dialed, /^failed/);
});
