// The cluster: which nodes exist, where they listen and how to reach them.
// With no cluster file it is the request's four nodes on 127.0.0.1 with the
// port formula below; a JSON cluster file names real hosts and may override
// any port. Pure apart from `loadClusterFile`, which reads the file.

export type NodeId = number & { readonly __brand: "NodeId" };

export interface NodeAddress {
  readonly id: NodeId;
  /** Host other nodes and clients use to reach this node; redirects carry it verbatim. */
  readonly host: string;
  /** Address this node binds its listeners to. */
  readonly listenHost: string;
  readonly clientPort: number;
  readonly replicationPort: number;
  readonly readPort: number;
  readonly controlPort: number;
}

export interface Cluster {
  readonly nodes: readonly NodeAddress[];
}

/** The request's port scheme for node N (1-based). */
export function defaultPorts(n: number): {
  clientPort: number;
  replicationPort: number;
  readPort: number;
  controlPort: number;
} {
  return {
    clientPort: 7000 + 2 * n - 1,
    replicationPort: 7000 + 2 * n,
    readPort: 7100 + n,
    controlPort: 8000 + n,
  };
}

export const defaultNodeCount = 4;

export function defaultCluster(): Cluster {
  const nodes: NodeAddress[] = [];
  for (let n = 1; n <= defaultNodeCount; n++) {
    nodes.push({ id: n as NodeId, host: "127.0.0.1", listenHost: "127.0.0.1", ...defaultPorts(n) });
  }
  return { nodes };
}

/** Votes needed to win an election or commit an entry: ⌊n/2⌋+1 (3 of 4). */
export function quorumSize(nodeCount: number): number {
  return Math.floor(nodeCount / 2) + 1;
}

export type ParseResult<T> = { ok: true; value: T } | { ok: false; error: string };

function isPort(v: unknown): v is number {
  return typeof v === "number" && Number.isInteger(v) && v > 0 && v < 65536;
}

/**
 * Parses a cluster file:
 *
 *     { "nodes": [ { "id": 1, "host": "10.0.0.1" },
 *                  { "id": 2, "host": "10.0.0.2", "clientPort": 9001 }, … ] }
 *
 * Ports default to the request's formula for the node's id; `listenHost`
 * defaults to 0.0.0.0 (all interfaces) unless the host is a loopback address.
 */
export function parseCluster(text: string): ParseResult<Cluster> {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (e) {
    return { ok: false, error: `Cluster file is not valid JSON: ${(e as Error).message}` };
  }
  if (
    typeof raw !== "object" || raw === null || !Array.isArray((raw as { nodes?: unknown }).nodes)
  ) {
    return { ok: false, error: 'Cluster file needs a "nodes" array' };
  }
  const list = (raw as { nodes: unknown[] }).nodes;
  if (list.length < 1) return { ok: false, error: "Cluster file lists no nodes" };
  const nodes: NodeAddress[] = [];
  const seen = new Set<number>();
  const endpoints = new Set<string>();
  for (const [i, item] of list.entries()) {
    if (typeof item !== "object" || item === null) {
      return { ok: false, error: `Cluster node #${i + 1} is not an object` };
    }
    const o = item as Record<string, unknown>;
    const id = o.id;
    if (typeof id !== "number" || !Number.isInteger(id) || id < 1 || id > 1000) {
      return { ok: false, error: `Cluster node #${i + 1} has a bad id: ${JSON.stringify(id)}` };
    }
    if (seen.has(id)) return { ok: false, error: `Cluster node id ${id} appears twice` };
    seen.add(id);
    const host = o.host;
    if (typeof host !== "string" || host.length === 0 || /\s/.test(host)) {
      return { ok: false, error: `Cluster node ${id} has a bad host: ${JSON.stringify(host)}` };
    }
    const ports = defaultPorts(id);
    for (const name of ["clientPort", "replicationPort", "readPort", "controlPort"] as const) {
      const v = o[name];
      if (v === undefined) continue;
      if (!isPort(v)) {
        return { ok: false, error: `Cluster node ${id} has a bad ${name}: ${JSON.stringify(v)}` };
      }
      ports[name] = v;
    }
    const listen = o.listenHost;
    if (listen !== undefined && (typeof listen !== "string" || listen.length === 0)) {
      return {
        ok: false,
        error: `Cluster node ${id} has a bad listenHost: ${JSON.stringify(listen)}`,
      };
    }
    const loopback = host === "localhost" || host.startsWith("127.") || host === "::1";
    const listenHost = typeof listen === "string" ? listen : loopback ? host : "0.0.0.0";
    for (const p of Object.values(ports)) {
      const key = `${host}:${p}`;
      if (endpoints.has(key)) return { ok: false, error: `Cluster port ${key} is used twice` };
      endpoints.add(key);
    }
    nodes.push({ id: id as NodeId, host, listenHost, ...ports });
  }
  nodes.sort((a, b) => a.id - b.id);
  return { ok: true, value: { nodes } };
}

export async function loadCluster(path: string | undefined): Promise<ParseResult<Cluster>> {
  if (path === undefined) return { ok: true, value: defaultCluster() };
  let text: string;
  try {
    text = await Deno.readTextFile(path);
  } catch (e) {
    return { ok: false, error: `Cannot read cluster file ${path}: ${(e as Error).message}` };
  }
  const parsed = parseCluster(text);
  return parsed.ok ? parsed : { ok: false, error: `${path}: ${parsed.error}` };
}

export function findNode(cluster: Cluster, id: number): NodeAddress | undefined {
  return cluster.nodes.find((n) => n.id === id);
}
