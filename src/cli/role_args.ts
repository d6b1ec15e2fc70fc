// Options shared by `kvstore run`, `kvstore leader` and `kvstore follower`.

import { parseArgs } from "node:util";
import { type Cluster, findNode, loadCluster, type NodeAddress } from "../config/cluster.ts";
import { maxStalenessMsDefault, maxStalenessMsMax, maxStalenessMsMin } from "../config/timing.ts";
import { type LevelName, parseLevel } from "../log.ts";
import { loadPeerAuth, type PeerAuth } from "../net/peer_auth.ts";
import { snapshotBytesDefault, snapshotEntriesDefault } from "../config/limits.ts";

export interface NodeOptions {
  readonly cluster: Cluster;
  readonly self: NodeAddress;
  readonly clusterFile: string | undefined;
  readonly dataDir: string;
  readonly logLevel: LevelName;
  readonly term: number | undefined;
  /** Shared cluster secret for node-to-node connections; null: none. */
  readonly auth: PeerAuth | null;
  readonly secretFile: string | undefined;
  /** Follower reads answer -STALE once no leader has brought this node up to
   * date for longer than this (`--max-staleness-ms`). */
  readonly maxStalenessMs: number;
  /** Snapshot policy (`--snapshot-entries`, `--snapshot-wal-bytes`). */
  readonly snapshotEntries: number;
  readonly snapshotWalBytes: number;
}

export type NodeArgs =
  | { ok: true; value: NodeOptions }
  /** `usage`: the command line is wrong; otherwise the cluster file is. */
  | { ok: false; error: string; usage: boolean };

/** The `--max-staleness-ms` value (undefined: the default), or why it is refused. */
export function parseMaxStalenessMs(
  text: string | undefined,
): { ok: true; value: number } | { ok: false; error: string } {
  if (text === undefined) return { ok: true, value: maxStalenessMsDefault };
  // Digits only: Number() would also take "1e3", "0x64" or " 500 ".
  const value = /^\d{1,10}$/.test(text) ? Number(text) : NaN;
  if (!(value >= maxStalenessMsMin && value <= maxStalenessMsMax)) {
    return {
      ok: false,
      error: `Invalid --max-staleness-ms ${
        JSON.stringify(text)
      }: expected a whole number of milliseconds from ${maxStalenessMsMin} to ${maxStalenessMsMax}`,
    };
  }
  return { ok: true, value };
}

/** Fewest entries and bytes a snapshot policy may name: below them a node
 * would spend its time rewriting its state. */
const snapshotEntriesMin = 100;
const snapshotWalBytesMin = 64 * 1024;

/** A whole-number option from `min` up (undefined: the default). */
function parseCount(
  flag: string,
  text: string | undefined,
  fallback: number,
  min: number,
): { ok: true; value: number } | { ok: false; error: string } {
  if (text === undefined) return { ok: true, value: fallback };
  const value = /^\d{1,15}$/.test(text) ? Number(text) : NaN;
  if (!(value >= min && Number.isSafeInteger(value))) {
    return {
      ok: false,
      error: `Invalid ${flag} ${JSON.stringify(text)}: expected a whole number of at least ${min}`,
    };
  }
  return { ok: true, value };
}

/** Parses `<N> [--cluster F] [--data-dir D] [--log-level L] [--term T]
 * [--secret-file F] [--max-staleness-ms MS]`. */
export async function parseNodeArgs(argv: string[], needTerm: boolean): Promise<NodeArgs> {
  let parsed;
  try {
    parsed = parseArgs({
      args: argv,
      allowPositionals: true,
      options: {
        cluster: { type: "string" },
        "data-dir": { type: "string" },
        "log-level": { type: "string" },
        term: { type: "string" },
        "secret-file": { type: "string" },
        "max-staleness-ms": { type: "string" },
        "snapshot-entries": { type: "string" },
        "snapshot-wal-bytes": { type: "string" },
      },
    });
  } catch (e) {
    return { ok: false, error: (e as Error).message, usage: true };
  }
  const [idText, ...extra] = parsed.positionals;
  if (idText === undefined || extra.length > 0 || !/^\d+$/.test(idText)) {
    return {
      ok: false,
      error: `Expected one node number, got ${JSON.stringify(parsed.positionals)}`,
      usage: true,
    };
  }
  const cluster = await loadCluster(parsed.values.cluster);
  if (!cluster.ok) return { ...cluster, usage: false };
  const self = findNode(cluster.value, Number(idText));
  if (!self) {
    const ids = cluster.value.nodes.map((n) => n.id).join(", ");
    return {
      ok: false,
      error: `Node ${idText} is not in the cluster (nodes: ${ids})`,
      usage: false,
    };
  }
  const logLevel = parseLevel(parsed.values["log-level"] ?? "info");
  if (logLevel === null) {
    return {
      ok: false,
      error: `Unknown log level ${JSON.stringify(parsed.values["log-level"])}`,
      usage: true,
    };
  }
  let term: number | undefined;
  if (needTerm) {
    const t = parsed.values.term;
    if (t === undefined || !/^\d+$/.test(t) || Number(t) < 1) {
      return {
        ok: false,
        error: `A role process needs --term N (N ≥ 1), got ${JSON.stringify(t)}`,
        usage: true,
      };
    }
    term = Number(t);
  }
  // Not a usage slip but a wrong setting, like a bad cluster file: exit 3.
  const maxStaleness = parseMaxStalenessMs(parsed.values["max-staleness-ms"]);
  if (!maxStaleness.ok) return { ok: false, error: maxStaleness.error, usage: false };
  const snapshotEntries = parseCount(
    "--snapshot-entries",
    parsed.values["snapshot-entries"],
    snapshotEntriesDefault,
    snapshotEntriesMin,
  );
  if (!snapshotEntries.ok) return { ok: false, error: snapshotEntries.error, usage: false };
  const snapshotWalBytes = parseCount(
    "--snapshot-wal-bytes",
    parsed.values["snapshot-wal-bytes"],
    snapshotBytesDefault,
    snapshotWalBytesMin,
  );
  if (!snapshotWalBytes.ok) return { ok: false, error: snapshotWalBytes.error, usage: false };
  let auth: PeerAuth | null = null;
  const secretFile = parsed.values["secret-file"];
  if (secretFile !== undefined) {
    const loaded = await loadPeerAuth(secretFile);
    if (!loaded.ok) return { ok: false, error: loaded.error, usage: false };
    auth = loaded.value;
  }
  return {
    ok: true,
    value: {
      auth,
      secretFile,
      cluster: cluster.value,
      self,
      clusterFile: parsed.values.cluster,
      dataDir: parsed.values["data-dir"] ?? ".",
      logLevel,
      term,
      maxStalenessMs: maxStaleness.value,
      snapshotEntries: snapshotEntries.value,
      snapshotWalBytes: snapshotWalBytes.value,
    },
  };
}
