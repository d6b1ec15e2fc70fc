// `deno task torture [--seconds N] [--epoch-seconds N]`: a proxied 4-node
// cluster on free loopback ports under a recorded workload and a random mix of
// kill -9, SIGSTOP, isolation, split and flapping-link faults, judged for
// linearizability, convergence and WAL agreement every epoch. Prints one
// summary line at the end; exits 1 if any check failed. Ctrl-C ends the run
// after the current fault and still cleans up every process it started.

import { parseArgs } from "node:util";
import { runTorture, summaryLine } from "../tests/fault/torture.ts";

const { values } = parseArgs({
  args: Deno.args,
  options: {
    seconds: { type: "string", default: "60" },
    "epoch-seconds": { type: "string", default: "30" },
  },
});
const seconds = Number(values.seconds);
const epochSeconds = Number(values["epoch-seconds"]);
if (!(seconds > 0) || !(epochSeconds > 0)) {
  console.error(`--seconds and --epoch-seconds must be positive numbers`);
  Deno.exit(2);
}
let stop = false;
const onInt = () => {
  stop = true;
  console.log("stopping after the current fault…");
};
Deno.addSignalListener("SIGINT", onInt);
const summary = await runTorture({
  seconds,
  epochSeconds,
  log: (line) => console.log(line),
  stopRequested: () => stop,
});
Deno.removeSignalListener("SIGINT", onInt);
console.log(summaryLine(summary));
Deno.exit(summary.verdict === "linearizable" ? 0 : 1);
