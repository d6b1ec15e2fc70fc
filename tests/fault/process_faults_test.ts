// Process faults under a recorded concurrent workload: kill -9 of the leader
// node, of its role process only, of a follower, of all four nodes, and a
// SIGSTOP of the leader longer than the election timeout. Each run ends with
// the linearizability check, read-port convergence and WAL agreement.

import { runScenario } from "./scenario.ts";

Deno.test("fault: kill -9 of the leader node (supervisor and role) while clients write", async () => {
  await runScenario("kill-leader-node", 1500);
});

Deno.test("fault: kill -9 of the leader's role process only", async () => {
  await runScenario("kill-leader-role", 1500);
});

Deno.test("fault: kill -9 of a follower node", async () => {
  await runScenario("kill-follower-node", 1500);
});
