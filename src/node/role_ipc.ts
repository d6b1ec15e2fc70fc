// The pipe between a node's supervisor and its role process: one JSON object
// per line, supervisor → role on the role's stdin, role → supervisor on its
// stdout (the role logs to stderr). A role process whose stdin reaches EOF
// knows its supervisor is gone (even after `kill -9`) and exits, so no orphan
// keeps a port.

/** Role process exit codes the supervisor acts on. Damage to the data files
 * needs an operator: restarts will not cure it, so the node stops. */
export const exitWalDamaged = 3;
/** Anything a fresh start from disk may cure (a failed fsync, a broken
 * invariant, a load that failed for another reason than damage): the
 * supervisor restarts the role with backoff. */
export const exitRoleFailed = 70;

export type ToRole =
  /** Stop acknowledging anything of a term below `term`, then report where the log ends. */
  | { readonly kind: "fence"; readonly id: number; readonly term: number }
  /** Follower only: who leads `term` (null: nobody known yet). */
  | { readonly kind: "leader"; readonly term: number; readonly leaderId: number | null }
  /** Follower only: this node won `term`; become its leader in place, keeping
   * the loaded log and state (no reload, so failover does not grow with data). */
  | { readonly kind: "lead"; readonly term: number }
  /** Liveness: answered at once with a pong carrying the same id. */
  | { readonly kind: "ping"; readonly id: number };

export type FromRole =
  | { readonly kind: "ready"; readonly lastIndex: number; readonly lastTerm: number }
  | {
    readonly kind: "fenced";
    readonly id: number;
    readonly term: number;
    readonly lastIndex: number;
    readonly lastTerm: number;
  }
  | { readonly kind: "pong"; readonly id: number }
  /** The role saw a higher term on the replication stream. */
  | { readonly kind: "higherTerm"; readonly term: number };

const encoder = new TextEncoder();

export function encodeIpc(message: ToRole | FromRole): Uint8Array {
  return encoder.encode(JSON.stringify(message) + "\n");
}

/** Splits a byte stream into JSON messages; malformed lines are reported, not thrown. */
export async function* readIpc(
  stream: ReadableStream<Uint8Array>,
): AsyncGenerator<{ ok: true; value: unknown } | { ok: false; line: string }> {
  const decoder = new TextDecoder();
  let pending = "";
  for await (const chunk of stream) {
    pending += decoder.decode(chunk, { stream: true });
    let nl: number;
    while ((nl = pending.indexOf("\n")) >= 0) {
      const line = pending.slice(0, nl);
      pending = pending.slice(nl + 1);
      if (line.trim() === "") continue;
      try {
        yield { ok: true, value: JSON.parse(line) };
      } catch {
        yield { ok: false, line };
      }
    }
  }
}

/** Role side: write one message to the supervisor. Synchronous, so a message
 * is out before anything the role does next (a `fenced` reply before acks). */
export function sendToSupervisor(message: FromRole): void {
  const bytes = encodeIpc(message);
  let at = 0;
  try {
    while (at < bytes.length) at += Deno.stdout.writeSync(bytes.subarray(at));
  } catch {
    // Supervisor gone: the stdin watcher ends this process.
  }
}

/** Role side: handle supervisor messages; exit when the supervisor is gone. */
export function watchSupervisor(onMessage: (m: ToRole) => void, onGone: () => void): void {
  (async () => {
    try {
      for await (const item of readIpc(Deno.stdin.readable)) {
        if (item.ok) onMessage(item.value as ToRole);
      }
    } catch {
      // fall through: treat a broken pipe like EOF
    }
    onGone();
  })();
}
