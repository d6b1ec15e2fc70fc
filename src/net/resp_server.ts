// A RESP2 listener: accepts client connections, parses requests (RESP or
// inline), hands each command to the role's handler and writes the replies in
// request order. Replies to one read's worth of pipelined commands are
// gathered into a single write, and the next read waits for them: that is
// the per-connection back-pressure, so a client cannot queue unbounded work.
//
// After a framing error the client gets one `-ERR Protocol error: …` and that
// connection alone is closed; the listener goes on. Used by the leader and
// follower role processes for their client and read ports.

import { encodeError, RequestParser } from "../codec/resp.ts";
import { clientConnectionsMax } from "../config/limits.ts";
import type { Log } from "../log.ts";
import { acceptLoop } from "./accept_loop.ts";
import { concatBytes, writeAll } from "./write_all.ts";

export interface CommandContext {
  /** Set by a handler (QUIT) to close the connection after its reply. */
  closeAfterReply: boolean;
  /** Log index of this connection's latest write: a later read on the same
   * connection must see it (Redis runs one connection's commands in order). */
  lastWriteIndex: number;
}

export type CommandHandler = (
  args: Uint8Array[],
  ctx: CommandContext,
) => Uint8Array | Promise<Uint8Array>;

export interface RespServer {
  readonly port: number;
  close(): void;
}

const readBufferBytes = 64 * 1024;

/** Commands at least this large are followed by a turn of the event loop. */
const largeCommandBytes = 1024 * 1024;

async function serveConnection(conn: Deno.Conn, handler: CommandHandler): Promise<void> {
  const parser = new RequestParser();
  const buf = new Uint8Array(readBufferBytes);
  const ctx: CommandContext = { closeAfterReply: false, lastWriteIndex: 0 };
  try {
    for (;;) {
      const n = await conn.read(buf);
      if (n === null) return;
      parser.push(buf.subarray(0, n));
      const replies: (Uint8Array | Promise<Uint8Array>)[] = [];
      let pending = false;
      let close = false;
      for (;;) {
        const r = parser.next();
        if (r.kind === "incomplete") break;
        if (r.kind === "error") {
          replies.push(encodeError(`ERR Protocol error: ${r.message}`));
          close = true;
          break;
        }
        let reply: Uint8Array | Promise<Uint8Array>;
        try {
          reply = handler(r.args, ctx);
        } catch (e) {
          // A handler bug must not take the node down: report it to this client.
          reply = encodeError(`ERR internal error: ${(e as Error).message}`);
        }
        if (reply instanceof Promise) pending = true;
        replies.push(reply);
        if (ctx.closeAfterReply) {
          close = true;
          break;
        }
        // A command with megabytes of arguments costs the handler real CPU (a
        // 16 MiB binary value is escaped to up to 64 MiB for the WAL), which
        // it may spread over several turns of the event loop: the next
        // command of this connection waits for its reply, so it still sees
        // this one's effect (a pipelined GET after a large SET).
        let argBytes = 0;
        for (const a of r.args) argBytes += a.length;
        if (argBytes >= largeCommandBytes) {
          if (reply instanceof Promise) await reply.catch(() => {});
          else await new Promise((res) => setTimeout(res, 0));
        }
      }
      if (replies.length > 0) {
        const parts = pending
          ? await Promise.all(
            replies.map((r) =>
              r instanceof Promise
                ? r.catch((e) => encodeError(`ERR internal error: ${(e as Error).message}`))
                : r
            ),
          )
          : replies as Uint8Array[];
        await writeAll(conn, concatBytes(parts));
      }
      if (close) return;
    }
  } catch {
    // The client went away mid-request or mid-reply: only its connection ends.
  } finally {
    try {
      conn.close();
    } catch {
      // already closed
    }
  }
}

export function startRespServer(
  hostname: string,
  port: number,
  handler: CommandHandler,
  log: Log,
  what: string,
): RespServer {
  const listener = Deno.listen({ hostname, port, transport: "tcp" });
  let active = 0;
  acceptLoop(
    listener,
    (conn) => {
      if (active >= clientConnectionsMax) {
        writeAll(conn, encodeError("ERR max number of clients reached"))
          .catch(() => {})
          .finally(() => conn.close());
        return;
      }
      active++;
      (conn as Deno.TcpConn).setNoDelay(true);
      serveConnection(conn, handler).finally(() => active--);
    },
    log,
    what,
  );
  return {
    port: (listener.addr as Deno.NetAddr).port,
    close: () => {
      try {
        listener.close();
      } catch {
        // already closed
      }
    },
  };
}
