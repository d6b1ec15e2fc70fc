// The durable half of the election state, `nodeN.state`: the current term
// and the vote cast in it (Raft Figure 2's "persistent state"). Written
// atomically: temp file, fsync, rename, fsync the directory, so a crash
// leaves either the old or the new state, never a torn one.

import { dirname } from "node:path";

export interface TermState {
  readonly currentTerm: number;
  readonly votedFor: number | null;
}

export function termFilePath(dataDir: string, nodeId: number): string {
  return `${dataDir.replace(/\/+$/, "") || "."}/node${nodeId}.state`;
}

export type ReadTermResult = { ok: true; value: TermState } | { ok: false; error: string };

export async function readTermFile(path: string): Promise<ReadTermResult> {
  let text: string;
  try {
    text = await Deno.readTextFile(path);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) {
      return { ok: true, value: { currentTerm: 0, votedFor: null } };
    }
    return { ok: false, error: `Cannot read ${path}: ${(e as Error).message}` };
  }
  try {
    const raw = JSON.parse(text) as Record<string, unknown>;
    const t = raw.currentTerm;
    const v = raw.votedFor;
    if (typeof t !== "number" || !Number.isInteger(t) || t < 0) throw new Error("bad currentTerm");
    if (v !== null && (typeof v !== "number" || !Number.isInteger(v))) {
      throw new Error("bad votedFor");
    }
    return { ok: true, value: { currentTerm: t, votedFor: v } };
  } catch (e) {
    return {
      ok: false,
      error: `${path} is damaged (${(e as Error).message}): ${JSON.stringify(text.slice(0, 80))}`,
    };
  }
}

export async function writeTermFile(path: string, state: TermState): Promise<void> {
  const tmp = `${path}.tmp`;
  const file = await Deno.open(tmp, { write: true, create: true, truncate: true });
  try {
    const bytes = new TextEncoder().encode(JSON.stringify(state) + "\n");
    let at = 0;
    while (at < bytes.length) at += await file.write(bytes.subarray(at));
    await file.sync();
  } finally {
    file.close();
  }
  await Deno.rename(tmp, path);
  const dir = await Deno.open(dirname(path) || ".", { read: true });
  try {
    await dir.sync();
  } finally {
    dir.close();
  }
}
