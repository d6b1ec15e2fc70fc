// One accept loop for every listener: hands each connection to `onConn`, and
// survives accept errors. Running out of file descriptors (a connection flood)
// must not leave a port deaf once the flood is gone, so the loop backs off and
// tries again; it ends only when the listener is closed.

import type { Log } from "../log.ts";

const retryDelayMs = 100;
const warnEveryMs = 5000;

export async function acceptLoop(
  listener: Deno.Listener,
  onConn: (conn: Deno.Conn) => void,
  log: Log,
  what: string,
): Promise<void> {
  let lastWarnMs = 0;
  for (;;) {
    let conn: Deno.Conn;
    try {
      conn = await listener.accept();
    } catch (e) {
      if (e instanceof Deno.errors.BadResource || e instanceof Deno.errors.Interrupted) return;
      const now = Date.now();
      if (now - lastWarnMs > warnEveryMs) {
        log.warn(`${what} listener: accept failed (${(e as Error).message}); retrying`);
        lastWarnMs = now;
      }
      await new Promise((r) => setTimeout(r, retryDelayMs));
      continue;
    }
    onConn(conn);
  }
}
