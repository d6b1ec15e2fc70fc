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
    help: { type: "boolean", default: false },
  },
});
if (values.help) {
  console.log(`Usage: deno task torture [--seconds N] [--epoch-seconds N]

  --seconds N        how long to run (default 60)
  --epoch-seconds N  judge the history every N seconds, then start on fresh keys (default 30)

Per epoch it prints the operations recorded: complete ones; indeterminate writes (sent, no
answer: they may or may not have taken effect); operations not executed (connection refused,
redirected, or no leader known: certainly not applied, so not recorded); failed reads (a GET
without an answer changes nothing, so it is left out). The run ends with one summary line and
exits 1 if any check failed.`);
  Deno.exit(0);
}
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
