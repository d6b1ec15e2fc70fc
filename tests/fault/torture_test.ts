// CI's short torture run: the same random fault mix as `deno task torture`,
// for TORTURE_SECONDS (default 45) in epochs of 15 s.

import { runTorture, summaryLine } from "./torture.ts";

Deno.test("torture: random process and network faults under a recorded workload", async () => {
  const seconds = Number(Deno.env.get("TORTURE_SECONDS") ?? 45);
  const s = await runTorture({ seconds, epochSeconds: 15, log: (l) => console.log(l) });
  console.log(summaryLine(s));
  if (s.verdict !== "linearizable") throw new Error(s.verdict);
  if (s.faultCount < 3 || s.acknowledgedWrites < 100) {
    throw new Error(`The run did too little to judge: ${summaryLine(s)}`);
  }
});
