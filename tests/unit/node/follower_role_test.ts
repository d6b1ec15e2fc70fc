// FollowerRole's read staleness bound against a fake leader on a loopback
// socket: hearing from a leader is not enough to serve reads; the follower
// must hold everything the leader says is committed (src/node/follower_role.ts,
// src/node/leader_contact.ts).

import assert from "node:assert/strict";
import { crc32 } from "node:zlib";
import {
  encodeAppend,
  encodeSnapshotChunk,
  type ReplicationMessage,
  ReplicationParser,
} from "../../../src/codec/replication.ts";
import {
  encodeSnapshotHeader,
  encodeSnapshotPairs,
  encodeSnapshotTrailer,
} from "../../../src/codec/snapshot.ts";
import { concatBytes } from "../../../src/net/write_all.ts";
import { lineHash } from "../../../src/storage/commit_hint.ts";
import { encodeWalLine, type WalRecord } from "../../../src/codec/wal_line.ts";
import type { NodeOptions } from "../../../src/cli/role_args.ts";
import { type NodeAddress, type NodeId } from "../../../src/config/cluster.ts";
import type { Log } from "../../../src/log.ts";
import { FollowerRole } from "../../../src/node/follower_role.ts";
import { LeaderContact } from "../../../src/node/leader_contact.ts";
import { ReplicaState } from "../../../src/node/replica_state.ts";

const quiet: Log = { debug() {}, info() {}, warn: console.error, error: console.error };
const utf8 = new TextEncoder();
const ctx = { closeAfterReply: false, lastWriteIndex: 0 };

function node(id: number, replicationPort: number): NodeAddress {
  return {
    id: id as NodeId,
    host: "127.0.0.1",
    listenHost: "127.0.0.1",
    clientPort: 1,
    replicationPort,
    readPort: 1,
    controlPort: 1,
  };
}

/** Reads replication messages from the follower until one of `kind` arrives. */
async function expect(
  conn: Deno.Conn,
  parser: ReplicationParser,
  kind: ReplicationMessage["kind"],
): Promise<ReplicationMessage> {
  const buf = new Uint8Array(4096);
  for (;;) {
    const r = parser.next();
    if (r.kind === "message") {
      if (r.message.kind === kind) return r.message;
      throw new Error(`Expected ${kind}, got ${JSON.stringify(r.message)}`);
    }
    if (r.kind === "error") throw new Error(r.message);
    const n = await conn.read(buf);
    if (n === null) throw new Error(`Connection closed waiting for ${kind}`);
    parser.push(buf.slice(0, n));
  }
}

/** GET on `follower`'s read port, as the raw RESP reply text. */
function reader(follower: FollowerRole): (key: string) => Promise<string> {
  return async (key) =>
    new TextDecoder().decode(await follower.readData.get(utf8.encode(key), ctx));
}

Deno.test("follower staleness: reads are served only once the follower holds all the leader committed", async () => {
  const { dir, listener, opts } = await fakeLeaderSetup();
  const state = await ReplicaState.open(`${dir}/node2.log`, quiet);
  const contact = new LeaderContact(2, opts.maxStalenessMs);
  const follower = new FollowerRole(opts, state, quiet, contact);
  const get = reader(follower);
  let conn: Deno.Conn | null = null;
  try {
    assert.match(await get("x"), /^-TRYAGAIN/);
    follower.setLeader(1, 1);
    conn = await listener.accept();
    const parser = new ReplicationParser();
    await expect(conn, parser, "HELLO");
    const x = utf8.encode("x");
    const entries: WalRecord[] = [
      { op: "TERM", index: 1, term: 1 },
      { op: "SET", index: 2, key: x, value: utf8.encode("old") },
      { op: "SET", index: 3, key: x, value: utf8.encode("new") },
    ];
    // The leader has committed 3 but sends only up to 2: the follower hears
    // from it, applies 2, and is still behind.
    await conn.write(encodeAppend(1, 0, 0, 3, 1, entries.slice(0, 2).map((r) => encodeWalLine(r))));
    assert.equal((await expect(conn, parser, "ACK")).kind, "ACK");
    assert.equal(state.commitIndex, 2);
    assert.equal(
      await get("x"),
      "-STALE node 2 has not caught up with a leader since it started (bound 60000 ms)\r\n",
    );
    assert.equal(contact.ageMs(performance.now()), null);
    // Now it holds what the leader committed: current again.
    await conn.write(encodeAppend(1, 2, 1, 3, 2, entries.slice(2).map((r) => encodeWalLine(r))));
    await expect(conn, parser, "ACK");
    assert.equal(await get("x"), "$3\r\nnew\r\n");
    assert.ok(contact.ageMs(performance.now())! < 60_000);
    // A heartbeat that finds the follower complete keeps it current; INFO says how long ago.
    await conn.write(encodeAppend(1, 3, 1, 3, 3, []));
    await expect(conn, parser, "ACK");
    const info = follower.clientData.info();
    assert.ok(info.some((l) => /^leader_contact_age_ms:\d+$/.test(l)), info.join(" "));
    assert.ok(info.includes("max_staleness_ms:60000"), info.join(" "));
  } finally {
    await follower.quiesce();
    conn?.close();
    listener.close();
    state.wal.close();
    await Deno.remove(dir, { recursive: true });
  }
});

/** A temporary data directory, a listener standing in for leader node 1, and
 * node 2's options pointing at it. */
async function fakeLeaderSetup(): Promise<
  { dir: string; listener: Deno.TcpListener; opts: NodeOptions }
> {
  const dir = await Deno.makeTempDir();
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const leader = node(1, (listener.addr as Deno.NetAddr).port);
  const self = node(2, 1);
  const opts: NodeOptions = {
    cluster: { nodes: [leader, self] },
    self,
    clusterFile: undefined,
    dataDir: dir,
    logLevel: "error",
    term: undefined,
    auth: null,
    secretFile: undefined,
    maxStalenessMs: 60_000,
    snapshotEntries: 100_000,
    snapshotWalBytes: 64 * 1024 * 1024,
  };
  return { dir, listener, opts };
}

/** Names the fake leader to `follower`, waits for its HELLO, and sends the
 * first batch (a TERM marker and `SET k v`, commit index 0). */
async function sendFirstBatch(
  follower: FollowerRole,
  listener: Deno.TcpListener,
  parser: ReplicationParser,
): Promise<Deno.Conn> {
  follower.setLeader(1, 1);
  const conn = await listener.accept();
  await expect(conn, parser, "HELLO");
  const records: WalRecord[] = [
    { op: "TERM", index: 1, term: 1 },
    { op: "SET", index: 2, key: utf8.encode("k"), value: utf8.encode("v") },
  ];
  await conn.write(encodeAppend(1, 0, 0, 0, 1, records.map((r) => encodeWalLine(r))));
  return conn;
}

Deno.test("follower acknowledges entries only after their fsync has completed (Raft §5.3)", async () => {
  const { dir, listener, opts } = await fakeLeaderSetup();
  // A disk whose fdatasync does not return until the test says so.
  let releaseSync = () => {};
  let syncsStarted = 0;
  const gate = new Promise<void>((r) => (releaseSync = r));
  const state = await ReplicaState.open(`${dir}/node2.log`, quiet, undefined, {
    wrapHandle: (file) => ({
      write: (p) => file.write(p),
      truncate: (n) => file.truncate(n),
      close: () => file.close(),
      syncData: async () => {
        syncsStarted++;
        await gate;
        await file.syncData();
      },
    }),
  });
  const follower = new FollowerRole(opts, state, quiet, new LeaderContact(2, 60_000));
  let conn: Deno.Conn | null = null;
  try {
    const parser = new ReplicationParser();
    conn = await sendFirstBatch(follower, listener, parser);
    // The entries are written and their fsync has begun, but not finished:
    // an ACK now would promise the leader something a crash could undo.
    const buf = new Uint8Array(4096);
    const read = conn.read(buf);
    let timer: ReturnType<typeof setTimeout> | undefined;
    const quiet400ms = new Promise<"quiet">((r) => (timer = setTimeout(() => r("quiet"), 400)));
    const first = await Promise.race([read, quiet400ms]);
    clearTimeout(timer);
    assert.equal(first, "quiet", "nothing from the follower before its fsync completes");
    assert.ok(syncsStarted >= 1, "the follower started an fsync");
    releaseSync();
    const n = await read;
    assert.ok(n !== null, "the follower answers once the fsync completes");
    parser.push(buf.slice(0, n));
    const ack = await expect(conn, parser, "ACK");
    assert.equal(ack.kind === "ACK" ? ack.matchIndex : -1, 2);
  } finally {
    releaseSync();
    await follower.quiesce();
    conn?.close();
    listener.close();
    state.wal.close();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("follower role ends (exit 70) when its WAL fsync fails, acknowledging nothing", async () => {
  const { dir, listener, opts } = await fakeLeaderSetup();
  const state = await ReplicaState.open(`${dir}/node2.log`, quiet, undefined, {
    wrapHandle: (file) => ({
      write: (p) => file.write(p),
      truncate: (n) => file.truncate(n),
      close: () => file.close(),
      syncData: () => Promise.reject(new Error("Input/output error (os error 5)")),
    }),
  });
  const exits: number[] = [];
  let exited = () => {};
  const exitSeen = new Promise<void>((r) => (exited = r));
  const errors: string[] = [];
  const log: Log = { ...quiet, error: (m) => errors.push(m) };
  const follower = new FollowerRole(opts, state, log, new LeaderContact(2, 60_000), (code) => {
    exits.push(code);
    exited();
  });
  let conn: Deno.Conn | null = null;
  try {
    const parser = new ReplicationParser();
    conn = await sendFirstBatch(follower, listener, parser);
    let timer: ReturnType<typeof setTimeout> | undefined;
    await Promise.race([exitSeen, new Promise((r) => (timer = setTimeout(r, 5000)))]);
    clearTimeout(timer);
    assert.deepEqual(exits, [70], "the role ends after the failed fsync");
    assert.match(errors.join("\n"), /WAL sync failed, stopping the follower role: .*os error 5/);
    // Nothing was acknowledged on that connection: it ends without an ACK.
    const rest = new Uint8Array(4096);
    for (;;) {
      const n = await conn.read(rest);
      if (n === null) break;
      parser.push(rest.slice(0, n));
      const m = parser.next();
      assert.ok(m.kind !== "message" || m.message.kind !== "ACK", "no ACK after a failed fsync");
    }
  } finally {
    await follower.quiesce();
    conn?.close();
    listener.close();
    try {
      state.wal.close();
    } catch {
      // the failed WalFile may refuse; the file is closed either way
    }
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("follower §5.3/§7: a snapshot from a new leader commits none of its own old-term entries after it", async () => {
  // Regression: the match index learned from the old leader survived into the
  // new leader's connection; after installing a snapshot at 4 the follower
  // committed min(6, 6) and served "UNCOMMITTED2", which no leader committed.
  await withFollower(async ({ state, follower, accept }) => {
    const get = reader(follower);
    // The term-1 leader sends entries 1..6 and has committed 3.
    follower.setLeader(1, 1);
    let conn = await accept();
    let parser = new ReplicationParser();
    await expect(conn, parser, "HELLO");
    const x = utf8.encode("x");
    const old: WalRecord[] = [
      { op: "TERM", index: 1, term: 1 },
      { op: "SET", index: 2, key: x, value: utf8.encode("a") },
      { op: "SET", index: 3, key: x, value: utf8.encode("b") },
      { op: "SET", index: 4, key: x, value: utf8.encode("c") },
      { op: "SET", index: 5, key: x, value: utf8.encode("UNCOMMITTED") },
      { op: "SET", index: 6, key: x, value: utf8.encode("UNCOMMITTED2") },
    ];
    await conn.write(encodeAppend(1, 0, 0, 3, 1, old.map((r) => encodeWalLine(r))));
    await expect(conn, parser, "ACK");
    assert.equal(state.commitIndex, 3);
    conn.close();

    // The term-2 leader holds 1..4, its own entries from 5 on, has committed
    // 6, and has compacted up to 4: it sends its snapshot at 4.
    follower.setLeader(2, 1);
    conn = await accept();
    parser = new ReplicationParser();
    await expect(conn, parser, "HELLO");
    const meta = { index: 4, term: 1, lineHash: lineHash(encodeWalLine(old[3]!)) };
    const body = concatBytes([encodeSnapshotHeader(meta), encodeSnapshotPairs([["x", "c"]])]);
    const file = concatBytes([body, encodeSnapshotTrailer(1, crc32(body))]);
    await conn.write(encodeSnapshotChunk({
      term: 2,
      index: 4,
      snapTerm: 1,
      lineHash: meta.lineHash,
      offset: 0,
      total: file.length,
      leaderCommit: 6,
      round: 1,
    }, file));
    const ack = await expect(conn, parser, "ACK");
    assert.equal(ack.kind === "ACK" ? ack.matchIndex : null, 4);
    assert.equal(state.commitIndex, 4, "only the snapshot is committed");
    assert.equal(await get("x"), "$1\r\nc\r\n");
  });
});

Deno.test("follower §7: a snapshot transfer cut off with its connection leaves no partial file", async () => {
  await withFollower(async ({ state, follower, accept }) => {
    follower.setLeader(1, 1);
    const conn = await accept();
    const parser = new ReplicationParser();
    await expect(conn, parser, "HELLO");
    const first = new Uint8Array(1000).fill(0x61);
    await conn.write(encodeSnapshotChunk({
      term: 1,
      index: 4,
      snapTerm: 1,
      lineHash: 0,
      offset: 0,
      total: 5000,
      leaderCommit: 4,
      round: 1,
    }, first));
    await expect(conn, parser, "SNAPACK");
    assert.equal((await Deno.stat(state.snapshotReceivePath)).size, 1000);
    conn.close();
    // The follower reconnects (a new HELLO) with the partial file gone.
    const again = await accept();
    await expect(again, new ReplicationParser(), "HELLO");
    await assert.rejects(() => Deno.stat(state.snapshotReceivePath), Deno.errors.NotFound);
  });
});

/** A follower role (node 2, with a snapshot path) following a fake leader on
 * `accept()`ed loopback connections; everything is closed and removed after
 * `body`, however it ends. */
async function withFollower(
  body: (f: {
    state: ReplicaState;
    follower: FollowerRole;
    accept: () => Promise<Deno.Conn>;
  }) => Promise<void>,
): Promise<void> {
  const { dir, listener, opts } = await fakeLeaderSetup();
  const state = await ReplicaState.open(`${dir}/node2.log`, quiet, undefined, {}, {
    path: `${dir}/node2.snap`,
  });
  const follower = new FollowerRole(opts, state, quiet, new LeaderContact(2, 60_000));
  const conns: Deno.Conn[] = [];
  const accept = async () => {
    const conn = await listener.accept();
    conns.push(conn);
    return conn;
  };
  try {
    await body({ state, follower, accept });
  } finally {
    await follower.quiesce();
    for (const c of conns) {
      try {
        c.close();
      } catch {
        // closed by the test
      }
    }
    listener.close();
    state.wal.close();
    await Deno.remove(dir, { recursive: true });
  }
}
