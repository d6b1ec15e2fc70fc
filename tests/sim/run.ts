// Runs the simulator from the command line: one seed to replay a failure
// exactly (with its trace), or a batch of random seeds to hunt for one.
//
//   deno run -A tests/sim/run.ts --seed 42 --nodes 4 --trace
//   deno run -A tests/sim/run.ts --random 200 --nodes 5

import { parseArgs } from "node:util";
import { report, simulate } from "./world.ts";

const { values } = parseArgs({
  args: Deno.args,
  options: {
    seed: { type: "string" },
    random: { type: "string" },
    nodes: { type: "string", default: "4" },
    trace: { type: "boolean", default: false },
    help: { type: "boolean", default: false },
  },
});

if (values.help) {
  console.log(
    `Usage: deno run -A tests/sim/run.ts (--seed N | --random COUNT) [--nodes 3|4|5] [--trace]

  --seed N        replay one run exactly (same seed and node count, same events)
  --random COUNT  run COUNT fresh random seeds and report each (about 0.2 s of CPU per seed)
  --nodes N       cluster size: 3, 4 (default) or 5
  --trace         print every event of the run (with --seed); without it a failure
                  prints only its last 40 events`,
  );
  Deno.exit(0);
}

const nodes = Number(values.nodes);
if (![3, 4, 5].includes(nodes)) {
  console.error(`--nodes must be 3, 4 or 5, not ${values.nodes}`);
  Deno.exit(2);
}
const seeds: number[] = [];
if (values.seed !== undefined) seeds.push(Number(values.seed));
const randomCount = Number(values.random ?? 0);
for (let i = 0; i < randomCount; i++) seeds.push(Math.floor(Math.random() * 2 ** 31));
if (values.seed !== undefined && !/^[0-9]+$/.test(values.seed)) {
  console.error(`--seed must be a whole number, not ${JSON.stringify(values.seed)}`);
  Deno.exit(2);
}
if (seeds.length === 0 || seeds.some((s) => !Number.isSafeInteger(s))) {
  console.error("Give --seed N (replay one run) or --random COUNT (run COUNT random seeds)");
  Deno.exit(2);
}

let failed = 0;
for (const seed of seeds) {
  const r = simulate(seed, { nodes, fullTrace: values.trace });
  const s = r.stats;
  console.log(
    `seed ${seed} nodes ${nodes}: ${r.ok ? "ok" : "FAILED"} — ${s.operations} operations, ` +
      `${s.acknowledgedWrites} acknowledged writes, ${s.faults} faults, ${s.leaders} leaders, ` +
      `${s.events} events`,
  );
  if (!r.ok) {
    failed++;
    console.log(report(r, values.trace ? Infinity : 40));
  } else if (values.trace) {
    console.log(r.trace.join("\n"));
  }
}
console.log(`${seeds.length - failed} of ${seeds.length} seeds passed`);
Deno.exit(failed === 0 ? 0 : 1);
