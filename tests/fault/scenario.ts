// One fault scenario with real processes: a 4-node cluster, the recorded
// workload running throughout, one fault injected and healed, then the
// post-fault checks of fault_mix.ts. Shared by the fault test files.

import { startCluster } from "../integration/harness.ts";
import { type FaultName, injectFault, startWorkload, verifyAfterFaults } from "./fault_mix.ts";

export async function runScenario(fault: FaultName, holdMs: number): Promise<void> {
  await using cluster = await startCluster(4, {
    proxied: fault === "isolate-leader" || fault === "split-2-2" || fault === "flap-link",
  });
  await cluster.waitForCluster();
  const workload = startWorkload(cluster);
  let what = "";
  try {
    await new Promise((r) => setTimeout(r, 1000));
    what = await injectFault(cluster, fault, holdMs);
    await cluster.waitForCluster(30_000);
    await new Promise((r) => setTimeout(r, 1000));
  } finally {
    await workload.stop();
  }
  const after = await verifyAfterFaults(cluster, workload.history);
  const completeWrites = workload.history.filter((o) =>
    o.op.kind !== "get" && o.completeMs !== null
  );
  if (completeWrites.length < 10) {
    throw new Error(`Too few acknowledged writes to judge anything: ${workload.summary()}`);
  }
  console.log(
    `${what}: ${workload.summary()}; linearizable; read ports converged in ` +
      `${after.convergedMs} ms; ${after.walLinesCompared} WAL lines agree`,
  );
  cluster.pass();
}
