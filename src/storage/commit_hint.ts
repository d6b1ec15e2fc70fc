// `nodeN.commit`: the highest log index this node knows to be committed, as a
// hint for its next start. Knowing that an index is committed is permanent
// truth in Raft, so a restarted role process can apply its WAL up to the hint
// at once and serve reads from its read port, instead of answering TRYAGAIN
// until a leader tells it the commit index again.
//
// It is only a lower bound and is never trusted beyond the log: the reader
// clamps it to the WAL's last index, and a missing or unreadable file means
// "no hint". So it is written without fsync (temp file + rename keeps it whole).

export function commitHintPath(dataDir: string, nodeId: number): string {
  return `${dataDir.replace(/\/+$/, "") || "."}/node${nodeId}.commit`;
}

export async function readCommitHint(path: string): Promise<number> {
  try {
    const text = (await Deno.readTextFile(path)).trim();
    return /^\d{1,15}$/.test(text) ? Number(text) : 0;
  } catch {
    return 0;
  }
}

export async function writeCommitHint(path: string, index: number): Promise<void> {
  const tmp = `${path}.tmp`;
  await Deno.writeTextFile(tmp, `${index}\n`);
  await Deno.rename(tmp, path);
}
