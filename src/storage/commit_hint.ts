// `nodeN.commit`: the highest log index this node knows to be committed, as a
// hint for its next start. Knowing that an index is committed is permanent
// truth in Raft, so a restarted role process can apply its WAL up to the hint
// at once and serve reads from its read port, instead of answering TRYAGAIN
// until a leader tells it the commit index again.
//
// The hint names the entry it vouches for: `<index> <term> <hash of its WAL
// line>`. It is used only if the WAL holds that very entry, so a damaged hint,
// one left over from an earlier cluster, or one beyond a WAL whose tail was
// lost can never make uncommitted entries look committed: by Log Matching, a
// log holding the committed entry at that index holds the committed prefix.
// Written without fsync (temp file + rename keeps it whole): losing it only
// means asking a leader.
//
// An optional fourth field, `<leaderContactEpochMs>`, is the wall-clock time
// (ms since the Unix epoch) at which this node last knew it was up to date
// with its leader: a restart soon after may go on serving follower reads
// within the staleness bound (`--max-staleness-ms`) without waiting for a
// leader. A three-field hint (written by older versions, or while the node
// had no such contact) is still read; it just vouches for no contact time.
// Older versions refuse a four-field hint as unreadable, which only costs
// them a wait for the leader.

export interface CommitHint {
  readonly index: number;
  readonly term: number;
  readonly lineHash: number;
  /** When the node last knew it was up to date with a leader; null: unknown. */
  readonly leaderContactEpochMs: number | null;
}

export function commitHintPath(dataDir: string, nodeId: number): string {
  return `${dataDir.replace(/\/+$/, "") || "."}/node${nodeId}.commit`;
}

/** FNV-1a over the line: not cryptographic, only telling entries apart. */
export function lineHash(line: Uint8Array): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < line.length; i++) {
    h ^= line[i]!;
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h;
}

/** The hint; "missing" when there is none, "unreadable" when it does not parse. */
export async function readCommitHint(path: string): Promise<CommitHint | "missing" | "unreadable"> {
  let text: string;
  try {
    text = (await Deno.readTextFile(path)).trim();
  } catch (e) {
    return e instanceof Deno.errors.NotFound ? "missing" : "unreadable";
  }
  return parseCommitHint(text);
}

/** Parses the file's text (without its newline); "unreadable" when it does not parse. */
export function parseCommitHint(text: string): CommitHint | "unreadable" {
  const m = /^(\d{1,15}) (\d{1,15}) (\d{1,10})(?: (\d{1,15}))?$/.exec(text);
  if (!m) return "unreadable";
  return {
    index: Number(m[1]),
    term: Number(m[2]),
    lineHash: Number(m[3]),
    leaderContactEpochMs: m[4] === undefined ? null : Number(m[4]),
  };
}

/** The file's text, newline included; the contact time only when known. */
export function formatCommitHint(hint: CommitHint): string {
  const contact = hint.leaderContactEpochMs === null
    ? ""
    : ` ${Math.max(0, Math.floor(hint.leaderContactEpochMs))}`;
  return `${hint.index} ${hint.term} ${hint.lineHash}${contact}\n`;
}

export async function writeCommitHint(path: string, hint: CommitHint): Promise<void> {
  const tmp = `${path}.tmp`;
  await Deno.writeTextFile(tmp, formatCommitHint(hint));
  await Deno.rename(tmp, path);
}
