// LeaderRole's replication links: only real peers count toward a write quorum
// (regression: a HELLO naming the leader's own id, or an id outside the
// cluster, used to be counted).
import assert from "node:assert/strict";
import {
  encodeAck,
  encodeHello,
  encodeNack,
  encodeSnapAck,
} from "../../../src/codec/replication.ts";
import { defaultCluster } from "../../../src/config/cluster.ts";
import type { Log } from "../../../src/log.ts";
import { LeaderRole } from "../../../src/node/leader_role.ts";
import { ReplicaState } from "../../../src/node/replica_state.ts";
import { concatBytes } from "../../../src/net/write_all.ts";

const quiet: Log = { debug() {}, info() {}, warn() {}, error() {} };

/** A Deno.Conn stand-in: reads come from `feed`, writes are kept. */
class FakeConn {
  written: Uint8Array[] = [];
  #queue: Uint8Array[] = [];
  #wake: (() => void) | null = null;
  #closed = false;
  feed(b: Uint8Array) {
    this.#queue.push(b);
    this.#wake?.();
  }
  async read(buf: Uint8Array): Promise<number | null> {
    while (this.#queue.length === 0) {
      if (this.#closed) return null;
      await new Promise<void>((r) => (this.#wake = r));
    }
    const b = this.#queue.shift()!;
    buf.set(b);
    return b.length;
  }
  write(b: Uint8Array): Promise<number> {
    this.written.push(b.slice());
    return Promise.resolve(b.length);
  }
  close() {
    this.#closed = true;
    this.#wake?.();
  }
  get closed(): boolean {
    return this.#closed;
  }
  setNoDelay() {}
}

Deno.test("leader: a HELLO from a non-peer (its own id, or one not in the cluster) never counts toward a quorum", async () => {
  const dir = await Deno.makeTempDir();
  const state = await ReplicaState.open(`${dir}/node1.log`, quiet);
  const self = defaultCluster().nodes[0]!;
  const leader = new LeaderRole(1, self, [2, 3, 4], state, quiet);
  const impostors = [new FakeConn(), new FakeConn()];
  const served = impostors.map((c) => leader.serveFollower(c as unknown as Deno.Conn));
  impostors[0]!.feed(encodeHello(1, 1, 0, 0)); // claims to be the leader itself
  impostors[1]!.feed(encodeHello(99, 1, 0, 0)); // not in the cluster at all
  await new Promise((r) => setTimeout(r, 20));
  const reply = leader.data.set(new TextEncoder().encode("k"), new TextEncoder().encode("v"), {
    closeAfterReply: false,
    lastWriteIndex: 0,
  });
  await new Promise((r) => setTimeout(r, 20));
  for (const c of impostors) c.feed(encodeAck(1, 2, 1_000_000));
  const timeout = new Promise<string>((r) => setTimeout(() => r("still waiting"), 500));
  const got = await Promise.race([
    Promise.resolve(reply).then((b) => new TextDecoder().decode(b)),
    timeout,
  ]);
  for (const c of impostors) c.close();
  await Promise.all(served);
  state.wal.close();
  await Deno.remove(dir, { recursive: true });
  // What Raft requires: no real follower has the entry, so it must not be acknowledged.
  assert.equal(
    got,
    "still waiting",
    `write acknowledged without a real quorum: ${JSON.stringify(got)}`,
  );
});

Deno.test("leader §7: entries a follower receiving the snapshot will need are kept across the next snapshot", async () => {
  // Regression: the leader compacted them away during the transfer, so the
  // follower, once it had installed the snapshot, needed yet another one;
  // under a steady write load a large state could be resent forever.
  const dir = await Deno.makeTempDir();
  const utf8 = new TextEncoder();
  const policy = { entries: 1000, walBytes: 1 << 20, retainEntries: 2, retainBytes: 1 << 20 };
  const state = await ReplicaState.open(`${dir}/node1.log`, quiet, undefined, {}, {
    path: `${dir}/node1.snap`,
    policy,
  });
  state.append([state.nextEntry(1, { op: "TERM", term: 1 })]);
  for (let i = 1; i <= 10; i++) {
    state.append([
      state.nextEntry(1, { op: "SET", key: utf8.encode(`k${i}`), value: utf8.encode("v") }),
    ]);
  }
  await state.wal.sync();
  state.commitTo(11);
  await state.takeSnapshot(); // at 11, keeping 10 and 11 in memory
  assert.equal(state.log.snapshotIndex, 9);

  const self = defaultCluster().nodes[0]!;
  const leader = new LeaderRole(2, self, [2, 3, 4], state, quiet); // TERM 2 at 12
  const [empty, f3, f4] = [new FakeConn(), new FakeConn(), new FakeConn()];
  const served = [empty, f3, f4].map((c) => leader.serveFollower(c as unknown as Deno.Conn));
  try {
    empty.feed(encodeHello(2, 2, 0, 0)); // needs entry 1: gets the snapshot, never answers
    f3.feed(encodeHello(3, 2, 11, 1));
    f4.feed(encodeHello(4, 2, 11, 1));
    await new Promise((r) => setTimeout(r, 50));
    const ctx = { closeAfterReply: false, lastWriteIndex: 0 };
    const writes = [13, 14, 15].map((i) =>
      leader.data.set(utf8.encode(`n${i}`), utf8.encode("v"), ctx)
    );
    await new Promise((r) => setTimeout(r, 20));
    for (const c of [f3, f4]) c.feed(encodeAck(2, 15, 1_000_000));
    for (const w of writes) assert.equal(new TextDecoder().decode(await w), "+OK\r\n");
    assert.ok(empty.written.length > 0, "the snapshot transfer began");

    await state.takeSnapshot(); // at 15
    assert.equal(state.snapshot.index, 15);
    assert.equal(state.log.snapshotIndex, 11, "entries after the snapshot being sent are kept");
  } finally {
    for (const c of [empty, f3, f4]) c.close();
    await Promise.all(served);
    state.wal.close();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("leader §7: a snapshot transfer the follower refuses while a chunk is being read keeps the link", async () => {
  // Regression: the refusal closed the file under the pending read, and the
  // read's failure dropped the whole link.
  const dir = await Deno.makeTempDir();
  const utf8 = new TextEncoder();
  const state = await ReplicaState.open(`${dir}/node1.log`, quiet, undefined, {}, {
    path: `${dir}/node1.snap`,
    policy: { entries: 1000, walBytes: 1 << 30, retainEntries: 0, retainBytes: 0 },
  });
  state.append([state.nextEntry(1, { op: "TERM", term: 1 })]);
  const big = new Uint8Array(256 * 1024).fill(0x61);
  for (let i = 1; i <= 16; i++) {
    state.append([state.nextEntry(1, { op: "SET", key: utf8.encode(`k${i}`), value: big })]);
  }
  await state.wal.sync();
  state.commitTo(17);
  await state.takeSnapshot(); // 4 MiB: four chunks, two in flight at a time
  const leader = new LeaderRole(2, defaultCluster().nodes[0]!, [2, 3, 4], state, quiet);
  const follower = new FakeConn();
  const served = leader.serveFollower(follower as unknown as Deno.Conn);
  try {
    follower.feed(encodeHello(2, 2, 0, 0));
    await new Promise((r) => setTimeout(r, 100));
    const sent = follower.written.length;
    assert.ok(sent >= 2, `two chunks in flight, got ${sent} messages`);
    // The first chunk's answer starts the read of the third; the refusal
    // right behind it abandons the transfer while that read is pending.
    follower.feed(concatBytes([encodeSnapAck(2, 1 << 20, 1), encodeNack(2, 1, 2)]));
    await new Promise((r) => setTimeout(r, 100));
    assert.equal(follower.closed, false, "the link stays up");
    assert.ok(follower.written.length > sent, "and the snapshot is offered again");
  } finally {
    follower.close();
    await served;
    state.wal.close();
    await Deno.remove(dir, { recursive: true });
  }
});
