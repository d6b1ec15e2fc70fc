// Every node killed at once while clients write, then all restarted; and the
// leader frozen with SIGSTOP for longer than an election timeout.

import { runScenario } from "./scenario.ts";

Deno.test("fault: kill -9 of all four nodes at once, then restart", async () => {
  await runScenario("kill-all", 1000);
});

Deno.test("fault: SIGSTOP of the leader for 2.5 s (beyond the election timeout), then SIGCONT", async () => {
  await runScenario("pause-leader", 2500);
});
