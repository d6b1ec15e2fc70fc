// The durable half of the election state, `nodeN.state`: the current term
// and the vote cast in it (Raft Figure 2's "persistent state"). Written
// atomically: temp file, fsync, rename, fsync the directory, so a crash
// leaves either the old or the new state, never a torn one. The supervisor
// is the only writer; it reads the file once, at start.

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

/**
 * Replaces the term/vote file with `state`: write a temporary file, fsync,
 * rename it over the old one, fsync the directory. Throws if any step fails
 * (disk full, permissions, I/O error), naming the file and the step; the old
 * file is then still in place unless the rename itself went through, and the
 * caller must not act on `state` (Raft §5.2). A temporary file we created is
 * removed on failure: on a full disk it holds blocks the next try needs.
 */
export async function writeTermFile(path: string, state: TermState): Promise<void> {
  const tmp = `${path}.tmp`;
  let step = `create ${tmp}`;
  let created = false;
  let renamed = false;
  try {
    const file = await Deno.open(tmp, { write: true, create: true, truncate: true });
    created = true;
    try {
      step = `write ${tmp}`;
      const bytes = new TextEncoder().encode(JSON.stringify(state) + "\n");
      let at = 0;
      while (at < bytes.length) at += await file.write(bytes.subarray(at));
      step = `fsync ${tmp}`;
      await file.sync();
    } finally {
      file.close();
    }
    step = `rename ${tmp} to ${path}`;
    await Deno.rename(tmp, path);
    renamed = true;
    const dirPath = dirname(path) || ".";
    step = `fsync directory ${dirPath}`;
    const dir = await Deno.open(dirPath, { read: true });
    try {
      await dir.sync();
    } finally {
      dir.close();
    }
  } catch (e) {
    if (created && !renamed) await Deno.remove(tmp).catch(() => {});
    throw new TermFileWriteError(path, step, e);
  }
}

/** The term/vote file could not be replaced; `step` says where it failed. */
export class TermFileWriteError extends Error {
  readonly path: string;
  constructor(path: string, step: string, cause: unknown) {
    super(
      `Cannot write term/vote file ${path} (${step} failed): ${
        cause instanceof Error ? cause.message : String(cause)
      }`,
      { cause },
    );
    this.name = "TermFileWriteError";
    this.path = path;
  }
}
