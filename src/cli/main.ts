// argv → subcommand. Each subcommand returns the process exit code:
// 0 success, 1 not found (client), 2 usage or request error, 3 data/config
// problem that a restart will not fix, 4 cannot listen (port in use).

import { clientMain } from "./client.ts";
import { walMain } from "./wal_check.ts";
import { parseNodeArgs } from "./role_args.ts";
import { runMain as superviseMain } from "../node/supervisor.ts";
import { roleMain } from "../node/role_process.ts";

export const usage = `kvstore — a replicated key-value store

usage:
  kvstore run <N> [--cluster FILE] [--data-dir DIR] [--secret-file FILE]
                [--log-level debug|info|warn|error] [--max-staleness-ms MS]
                [--snapshot-entries N] [--snapshot-wal-bytes BYTES]
      run node N's supervisor (it starts the leader/follower role process itself);
      --max-staleness-ms: a node not caught up with its leader for longer than
      MS (default 2000, 100…3600000) answers GET on its read port with -STALE;
      --snapshot-entries / --snapshot-wal-bytes: write a snapshot and compact
      the WAL once it holds N applied entries past the last snapshot (default
      100000, at least 100) or BYTES (default 67108864, at least 65536)
  kvstore client [-x] [--timeout-ms N] [--verbose] <host> <port> SET <key> <value>
  kvstore client … <host> <port> GET <key>
  kvstore client … <host> <port> DEL <key> [key…]
  kvstore client … <host> <port> GETFF <key> <followerHost:port>
  kvstore client … <host> <port> GETFB <key> <followerHost:port>
  kvstore client … <host> <port> <any other command…>   (printed redis-cli style)
      -x: the last argument is read from standard input (large or binary values);
      'kvstore client --help' explains each form
  kvstore wal check FILE
      what a WAL file (nodeN.log, checked with the nodeN.snap beside it) or a
      snapshot file (nodeN.snap) holds and whether it is intact: exit 0 intact,
      1 torn last line (cut off at start), 3 damaged (a node will not start on
      it), 2 unreadable or not a regular file
  kvstore leader <N> --term T …  /  kvstore follower <N> …
      role processes, started by 'run'; not for direct use
`;

export async function runMain(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  switch (command) {
    case "run":
    case "leader":
    case "follower": {
      const opts = await parseNodeArgs(rest, command === "leader");
      if (!opts.ok) {
        if (!opts.usage) {
          console.error(`error: ${opts.error}`);
          return 3;
        }
        console.error(`error: ${opts.error}\n\n${usage}`);
        return 2;
      }
      if (command === "run") return await superviseMain(opts.value);
      return await roleMain(opts.value, command);
    }
    case "client":
      return await clientMain(rest);
    case "wal":
      return await walMain(rest);
    case "help":
    case "--help":
    case "-h":
      console.log(usage);
      return 0;
    default:
      console.error(
        command === undefined
          ? usage
          : `error: unknown command ${JSON.stringify(command)}\n\n${usage}`,
      );
      return 2;
  }
}
