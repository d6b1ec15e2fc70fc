// Per-connection ordering on the leader's client port: Redis executes the
// commands of one connection in the order they were sent, so a GET pipelined
// right behind a SET or DEL (sent before its reply arrived, in the same TCP
// segment) must see that write. Clients and tools (redis-cli --pipe, client
// libraries' pipelines) rely on it.

import assert from "node:assert/strict";
import { encodeCommand, type Reply, ReplyParser } from "../../src/codec/resp.ts";
import { startCluster, text } from "./harness.ts";

const rounds = 100;

/** Reads replies from `conn` until `count` have arrived. */
async function readReplies(conn: Deno.Conn, parser: ReplyParser, count: number): Promise<Reply[]> {
  const replies: Reply[] = [];
  const buf = new Uint8Array(4096);
  for (;;) {
    for (let r = parser.next(); r.kind !== "incomplete"; r = parser.next()) {
      if (r.kind === "error") throw new Error(`Bad reply: ${r.message}`);
      replies.push(r.reply);
    }
    if (replies.length >= count) return replies;
    const n = await conn.read(buf);
    if (n === null) throw new Error("Server closed the connection");
    parser.push(buf.subarray(0, n));
  }
}

Deno.test("pipelining: a GET sent in one write behind a SET or DEL sees that write", async () => {
  await using cluster = await startCluster(4);
  const leader = cluster.node(await cluster.waitForLeader());
  using conn = await Deno.connect({ hostname: "127.0.0.1", port: leader.clientPort });
  const parser = new ReplyParser();
  const stale: string[] = [];
  for (let i = 0; i < rounds; i++) {
    // SET, GET, DEL, GET in one write: each GET must see the command before it.
    const commands = [
      ["SET", "counter", String(i)],
      ["GET", "counter"],
      ["DEL", "counter"],
      ["GET", "counter"],
    ].map((c) => encodeCommand(c));
    const bytes = new Uint8Array(commands.reduce((n, c) => n + c.length, 0));
    commands.reduce((at, c) => (bytes.set(c, at), at + c.length), 0);
    await conn.write(bytes);
    const replies = (await readReplies(conn, parser, 4)).map(text);
    assert.equal(replies[0], "OK");
    assert.equal(replies[2], ":1", `round ${i}: DEL found the key`);
    if (replies[1] !== String(i)) stale.push(`round ${i}: GET after SET read ${replies[1]}`);
    if (replies[3] !== "(nil)") stale.push(`round ${i}: GET after DEL read ${replies[3]}`);
  }
  assert.deepEqual(
    stale,
    [],
    `${stale.length} pipelined GETs (of ${2 * rounds}) missed the write sent before them`,
  );
  cluster.pass();
});
