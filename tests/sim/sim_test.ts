// The simulator in CI: a fixed set of seeds for 3, 4 and 5 nodes (always the
// same runs), the seeds that once failed (kept as regressions), and a bounded
// batch of fresh random seeds, printed so any failure can be replayed. A
// failure reports the seed, the replay command and the last events.
//
// SIM_RANDOM=N sets the size of the random batch (default 24).

import { report, simulate } from "./world.ts";

function runSeeds(seeds: readonly number[], nodes: number): string[] {
  const failures: string[] = [];
  for (const seed of seeds) {
    const r = simulate(seed, { nodes });
    if (!r.ok) failures.push(report(r));
  }
  return failures;
}

function assertNoFailures(failures: string[]): void {
  if (failures.length > 0) throw new Error(failures.join("\n\n"));
}

const fixedSeeds = Array.from({ length: 16 }, (_, i) => i + 1);

for (const nodes of [3, 4, 5]) {
  Deno.test(`simulator: ${fixedSeeds.length} fixed seeds, ${nodes} nodes`, () => {
    assertNoFailures(runSeeds(fixedSeeds, nodes));
  });
}

/** Seeds that found bugs (each in the simulator's own model so far; see the
 * commit history): a wiped follower the leader kept sending from its old
 * match index; a leader of an old term elected late after a pause, judged
 * against entries committed in later terms; the same DEL at one index in two
 * terms taken for one entry; a stale-term rejection (hint 0) that moved a
 * leader's next index to 0, and a heartbeat at -1 accepted. */
const regressions: readonly { seed: number; nodes: number }[] = [
  { seed: 1789806582, nodes: 4 },
  { seed: 312869113, nodes: 4 },
  { seed: 31516753, nodes: 4 },
  { seed: 362245105, nodes: 3 },
  { seed: 519266661, nodes: 3 },
  { seed: 1888114227, nodes: 3 },
];

Deno.test(`simulator: ${regressions.length} regression seeds`, () => {
  const failures: string[] = [];
  for (const { seed, nodes } of regressions) failures.push(...runSeeds([seed], nodes));
  assertNoFailures(failures);
});

Deno.test("simulator: random seeds", () => {
  const count = Number(Deno.env.get("SIM_RANDOM") ?? 24);
  const seeds = Array.from(
    { length: count },
    () => crypto.getRandomValues(new Uint32Array(1))[0]! & 0x7fffffff,
  );
  const sizes = seeds.map((_, i) => [3, 4, 5][i % 3]!);
  console.log(`simulator random seeds: ${seeds.map((s, i) => `${s}/${sizes[i]}`).join(" ")}`);
  const failures: string[] = [];
  seeds.forEach((seed, i) => failures.push(...runSeeds([seed], sizes[i]!)));
  assertNoFailures(failures);
});

Deno.test("simulator: a seed replays exactly", () => {
  const a = simulate(7, { nodes: 4 });
  const b = simulate(7, { nodes: 4 });
  if (JSON.stringify(a.stats) !== JSON.stringify(b.stats) || a.trace.join() !== b.trace.join()) {
    throw new Error(
      `Seed 7 ran differently twice: ${JSON.stringify(a.stats)} vs ${JSON.stringify(b.stats)}`,
    );
  }
  if (a.stats.acknowledgedWrites < 50 || a.stats.faults < 5) {
    throw new Error(`Seed 7 did too little to mean anything: ${JSON.stringify(a.stats)}`);
  }
});
