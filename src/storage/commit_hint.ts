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

/** FNV-1a over the line: not cryptographic, only telling entries apart. A
 * line longer than 64 KiB is hashed by its first and last 32 KiB and its
 * length (its seq, op and key are at its start): hashing all of a 64 MiB line
 * took a tenth of a second, every time the commit index landed on it. */
export function lineHash(line: Uint8Array): number {
  let h = 0x811c9dc5;
  const mix = (from: number, to: number) => {
    for (let i = from; i < to; i++) {
      h ^= line[i]!;
      h = Math.imul(h, 0x01000193) >>> 0;
    }
  };
  if (line.length <= lineHashWholeBytesMax) {
    mix(0, line.length);
    return h;
  }
  mix(0, lineHashWholeBytesMax / 2);
  mix(line.length - lineHashWholeBytesMax / 2, line.length);
  h ^= line.length % 0x100000000;
  return Math.imul(h, 0x01000193) >>> 0;
}

const lineHashWholeBytesMax = 64 * 1024;

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
