// Network faults between nodes, through the test's TCP proxies (the host's
// network is untouched): the leader cut off from every follower while
// clients still reach it, a 2/2 split, and a flapping link.

import { runScenario } from "./scenario.ts";

Deno.test("fault: the leader cut off from all followers while clients still reach it", async () => {
  await runScenario("isolate-leader", 3000);
});

Deno.test("fault: a 2/2 split of the four nodes", async () => {
  await runScenario("split-2-2", 3000);
});

Deno.test("fault: a flapping link between the leader and a follower", async () => {
  await runScenario("flap-link", 4000);
});
