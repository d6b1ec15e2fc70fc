// How a supervisor starts its role processes: by re-executing this very
// program. Compiled (`deno compile`), that is the binary itself; under
// `deno run`, it is the Deno executable running main.ts with all permissions.

import { fileURLToPath } from "node:url";

/** The young generation's cap. 64 MiB semi-spaces once looked cheaper per
 * SET, but redis-benchmark shows no difference against 16 MiB (SET -c 50:
 * 10.6k–10.9k vs 9.8k–12.3k ops/s; -P 16: 29.9k–30.9k vs 31.2k–33.8k), while
 * a role holding 1M keys took 3.6× the raw data in RSS and 2.1 s to load with
 * 64, and 2.9× and 1.5 s with 16 (scripts/bench_storage.ts: the survivors of
 * a load are copied through the larger space). `deno task compile` bakes the
 * same flag in. */
const v8Flags = "--v8-flags=--max-semi-space-size=16";

export function selfCommand(args: readonly string[]): { cmd: string; args: string[] } {
  if (Deno.build.standalone) return { cmd: Deno.execPath(), args: [...args] };
  const main = fileURLToPath(new URL("../../main.ts", import.meta.url));
  return {
    cmd: Deno.execPath(),
    args: ["run", "-A", "--no-prompt", v8Flags, main, ...args],
  };
}
