// Drives a pure codec's step generator (decodeWalLineSteps, escapeFieldSteps)
// to its end, giving the event loop a turn at every step, so that work on a
// 16 MiB value does not keep a role process from answering its supervisor's
// pings and fences, or other clients. Shell code: it uses a timer.

/** Values and lines from this size on are worked on in steps of this size:
 * below it a whole field takes a few milliseconds at most. */
export const stepBytes = 1024 * 1024;

export async function runInSteps<T>(steps: Generator<void, T>): Promise<T> {
  for (;;) {
    const r = steps.next();
    if (r.done) return r.value;
    await new Promise((resolve) => setTimeout(resolve, 0));
  }
}
