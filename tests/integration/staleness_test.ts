// The staleness bound on follower reads (`--max-staleness-ms`) with real
// processes: a follower cut off from every leader answers GET on its read
// port with -STALE once the bound has passed (PING and INFO still answer),
// and serves reads again once a leader is back; a restarted node trusts the
// contact time in its commit hint only while it is within the bound.

import assert from "node:assert/strict";
import { startCluster, type TestCluster, text, waitForValue, waitUntil } from "./harness.ts";

const boundMs = 1000;
const staleness = ["--max-staleness-ms", String(boundMs)];

/** INFO on `port` as `field → value`. */
async function info(cluster: TestCluster, port: number): Promise<Map<string, string>> {
  const lines = text(await cluster.call(port, ["INFO"])).split(/\r?\n/);
  return new Map(
    lines.filter((l) => l.includes(":")).map((l) => {
      const at = l.indexOf(":");
      return [l.slice(0, at), l.slice(at + 1)];
    }),
  );
}

/** Starts every node with `args` and waits until the key is on every read port. */
async function clusterWithKey(args: string[]): Promise<{ cluster: TestCluster; leader: number }> {
  const cluster = await startCluster(4, { start: false });
  for (const n of cluster.nodes) cluster.start(n.id, args);
  const leader = await cluster.waitForCluster();
  const set = await cluster.call(cluster.node(leader).clientPort, ["SET", "city", "Vilnius"]);
  assert.equal(text(set), "OK");
  for (const n of cluster.nodes) await waitForValue(cluster, n.readPort, "city", "Vilnius");
  return { cluster, leader };
}

Deno.test("staleness: followers cut off from every leader answer -STALE within the bound, then serve again", async () => {
  const { cluster, leader } = await clusterWithKey(staleness);
  await using _ = cluster;
  const followers = cluster.nodes.filter((n) => n.id !== leader);
  for (const f of followers) {
    const fields = await info(cluster, f.readPort);
    assert.equal(fields.get("max_staleness_ms"), String(boundMs));
    assert.ok(Number(fields.get("leader_contact_age_ms")) <= boundMs, `node ${f.id} is current`);
  }
  // Kill the leader and one more node: two of four cannot elect a leader.
  const [gone, ...survivors] = followers;
  const killedAtMs = Date.now();
  await Promise.all([cluster.stop(leader, "SIGKILL"), cluster.stop(gone!.id, "SIGKILL")]);
  for (const s of survivors) {
    let last = "";
    await waitUntil(
      async () => (last = text(await cluster.call(s.readPort, ["GET", "city"]))).startsWith("-"),
      boundMs + 3000,
      `node ${s.id}'s read port to stop answering as if current`,
    ).catch((e) => {
      throw new Error(`${(e as Error).message}; last reply ${JSON.stringify(last)}`);
    });
    assert.match(
      last,
      new RegExp(
        `^-STALE node ${s.id} last caught up with a leader \\d+ ms ago \\(bound 1000 ms\\)$`,
      ),
    );
    const ageMs = Number(/ (\d+) ms ago/.exec(last)![1]);
    assert.ok(ageMs > boundMs, `age ${ageMs} ms`);
    // The bound plus slack for two loaded cores, counted from the kill.
    const sinceKillMs = Date.now() - killedAtMs;
    assert.ok(sinceKillMs <= boundMs + 2500, `stale only ${sinceKillMs} ms after the kill`);
    // Still alive and saying why: PING, INFO, and writes still redirect or TRYAGAIN.
    assert.equal(text(await cluster.call(s.readPort, ["PING"])), "PONG");
    const fields = await info(cluster, s.readPort);
    assert.ok(Number(fields.get("leader_contact_age_ms")) > boundMs, JSON.stringify([...fields]));
    assert.equal(fields.get("max_staleness_ms"), String(boundMs));
  }
  // The bound holds from the kill on, not only once: a second look is still stale.
  for (const s of survivors) {
    assert.match(text(await cluster.call(s.readPort, ["GET", "city"])), /^-STALE /);
  }
  cluster.start(leader, staleness);
  cluster.start(gone!.id, staleness);
  await cluster.waitForCluster(20_000);
  for (const n of cluster.nodes) await waitForValue(cluster, n.readPort, "city", "Vilnius");
  for (const s of survivors) {
    const age = Number((await info(cluster, s.readPort)).get("leader_contact_age_ms"));
    assert.ok(age >= 0 && age <= boundMs, `node ${s.id} current again, age ${age} ms`);
  }
  cluster.pass();
});

Deno.test("staleness: a restarted node trusts its commit hint's contact time only within the bound", async () => {
  const { cluster } = await clusterWithKey(staleness);
  await using _ = cluster;
  const info0 = text(
    await cluster.call(cluster.node(await cluster.waitForLeader()).clientPort, [
      "INFO",
    ]),
  );
  const committed = Number(/commit_index:(\d+)/.exec(info0)![1]);
  // Every node records what it knows is committed, with a contact time.
  const hints = new Map<number, string>();
  await waitUntil(
    async () => {
      for (const n of cluster.nodes) {
        const hint = (await Deno.readTextFile(`${cluster.dir}/node${n.id}.commit`).catch(() => ""))
          .trim().split(" ");
        if (!(Number(hint[0]) >= committed) || hint.length !== 4) return false;
        hints.set(n.id, hint.slice(0, 3).join(" "));
      }
      return true;
    },
    5000,
    "every node's nodeN.commit to record the key, with a contact time",
  );
  await Promise.all(cluster.nodes.map((n) => cluster.stop(n.id)));

  // Each case runs one node alone, so no leader can bring it up to date.
  const alone = async (id: number, hint: string, args: string[], expected: RegExp) => {
    await Deno.writeTextFile(`${cluster.dir}/node${id}.commit`, `${hint}\n`);
    cluster.start(id, args);
    await cluster.waitForPorts();
    const reply = text(await cluster.call(cluster.node(id).readPort, ["GET", "city"]));
    assert.match(reply, expected, `node ${id} with hint ${JSON.stringify(hint)}`);
    await cluster.stop(id);
  };
  const [a, b, c] = cluster.nodes.map((n) => n.id);
  // Old three-field hint: the index is trusted, but nothing says how recent it is.
  await alone(
    a!,
    hints.get(a!)!,
    staleness,
    /^-STALE node \d has not caught up with a leader since it started \(bound 1000 ms\)$/,
  );
  // A contact a minute ago is past a one-second bound.
  await alone(
    b!,
    `${hints.get(b!)} ${Date.now() - 60_000}`,
    staleness,
    /^-STALE node \d last caught up with a leader \d{5,} ms ago \(bound 1000 ms\)$/,
  );
  // Within the bound (a generous one here, so start-up time cannot matter):
  // served at once, with no leader.
  await alone(c!, `${hints.get(c!)} ${Date.now()}`, ["--max-staleness-ms", "600000"], /^Vilnius$/);

  // Once a leader brings node a up to date, it serves again.
  for (const n of cluster.nodes) cluster.start(n.id, staleness);
  await cluster.waitForCluster(20_000);
  await waitForValue(cluster, cluster.node(a!).readPort, "city", "Vilnius");
  cluster.pass();
});

Deno.test("staleness: kvstore run refuses a bad --max-staleness-ms with exit code 3", async () => {
  await using cluster = await startCluster(4, { start: false });
  cluster.start(1, ["--max-staleness-ms", "50"]);
  assert.equal(await cluster.waitExit(1, 15_000), 3);
  assert.match(cluster.log(1), /Invalid --max-staleness-ms "50": expected a whole number/);
  cluster.pass();
});
