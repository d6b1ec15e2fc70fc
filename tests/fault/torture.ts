// The torture run: a proxied 4-node cluster under a recorded concurrent
// workload while a random mix of process and network faults is injected, for
// as long as asked. The run is cut into epochs of about `epochSeconds`; each
// epoch uses fresh keys, ends with every fault healed, and is judged on its
// own (linearizability, read-port convergence, WAL agreement), so a long run
// never builds one unmanageable history. Used by `deno task torture` and, in
// a short form, by CI (torture_test.ts).

import { startCluster } from "../integration/harness.ts";
import { Workload } from "../support/workload.ts";
import {
  type FaultName,
  injectFault,
  linkFaults,
  processFaults,
  verifyAfterFaults,
} from "./fault_mix.ts";

export interface TortureOptions {
  readonly seconds: number;
  readonly epochSeconds: number;
  readonly log: (line: string) => void;
  /** Checked between faults: set it to end the run early (e.g. on Ctrl-C). */
  readonly stopRequested?: () => boolean;
}

export interface TortureSummary {
  readonly seconds: number;
  readonly epochs: number;
  readonly operations: number;
  readonly acknowledgedWrites: number;
  readonly indeterminateWrites: number;
  readonly faults: ReadonlyMap<FaultName, number>;
  readonly faultCount: number;
  readonly verdict: "linearizable" | string;
  readonly convergedMsMax: number;
}

const allFaults: readonly FaultName[] = [...processFaults, ...linkFaults];

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

function pick<T>(xs: readonly T[]): T {
  return xs[Math.floor(Math.random() * xs.length)]!;
}

export async function runTorture(opts: TortureOptions): Promise<TortureSummary> {
  const started = performance.now();
  const elapsedS = () => (performance.now() - started) / 1000;
  const faults = new Map<FaultName, number>();
  let operations = 0, acknowledgedWrites = 0, indeterminateWrites = 0, epochs = 0;
  let convergedMsMax = 0;
  let verdict = "linearizable";
  await using cluster = await startCluster(4, { proxied: true });
  await cluster.waitForCluster(30_000);
  while (elapsedS() < opts.seconds && !opts.stopRequested?.()) {
    epochs++;
    const workload = new Workload({
      clientPorts: new Map(cluster.nodes.map((n) => [n.id, n.clientPort])),
      clients: 4,
      keys: 3,
      opTimeoutMs: 2000,
      keyPrefix: `e${epochs}k`,
    });
    workload.start();
    const epochEnd = Math.min(opts.seconds, elapsedS() + opts.epochSeconds);
    try {
      while (elapsedS() < epochEnd && !opts.stopRequested?.()) {
        await sleep(500 + Math.random() * 1500);
        const fault = pick(allFaults);
        const line = await injectFault(cluster, fault, 500 + Math.floor(Math.random() * 2500));
        faults.set(fault, (faults.get(fault) ?? 0) + 1);
        opts.log(`[${elapsedS().toFixed(0)} s] ${line}`);
        await cluster.waitForCluster(30_000);
      }
    } finally {
      await workload.stop();
    }
    const h = workload.history;
    operations += h.length;
    acknowledgedWrites += h.filter((o) => o.op.kind !== "get" && o.completeMs !== null).length;
    indeterminateWrites += h.filter((o) => o.completeMs === null).length;
    try {
      const after = await verifyAfterFaults(cluster, h);
      convergedMsMax = Math.max(convergedMsMax, after.convergedMs);
      opts.log(
        `[${elapsedS().toFixed(0)} s] epoch ${epochs}: ${workload.summary()}; linearizable; ` +
          `read ports converged in ${after.convergedMs} ms; ${after.walLinesCompared} WAL lines agree`,
      );
    } catch (e) {
      verdict = `FAILED in epoch ${epochs}: ${(e as Error).message}`;
      opts.log(verdict);
      break;
    }
  }
  if (verdict === "linearizable") cluster.pass();
  return {
    seconds: Math.round(elapsedS()),
    epochs,
    operations,
    acknowledgedWrites,
    indeterminateWrites,
    faults,
    faultCount: [...faults.values()].reduce((a, b) => a + b, 0),
    verdict,
    convergedMsMax,
  };
}

/** The one summary line. */
export function summaryLine(s: TortureSummary): string {
  const kinds = [...s.faults].map(([k, n]) => `${k} ${n}`).join(", ");
  return `torture: ${s.seconds} s, ${s.epochs} epochs, ${s.operations} operations ` +
    `(${s.acknowledgedWrites} acknowledged writes, ${s.indeterminateWrites} indeterminate), ` +
    `${s.faultCount} faults (${kinds}), read ports converged within ${s.convergedMsMax} ms, ` +
    `verdict: ${s.verdict}`;
}
