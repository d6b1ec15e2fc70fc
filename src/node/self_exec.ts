// How a supervisor starts its role processes: by re-executing this very
// program. Compiled (`deno compile`), that is the binary itself; under
// `deno run`, it is the Deno executable running main.ts with all permissions.

import { fileURLToPath } from "node:url";

/** Role processes allocate a little per request and keep little: a larger
 * young generation makes scavenges rarer. Measured on the write path: about
 * 20% less CPU per replicated SET. `deno task compile` bakes the same flag in. */
const v8Flags = "--v8-flags=--max-semi-space-size=64";

export function selfCommand(args: readonly string[]): { cmd: string; args: string[] } {
  if (Deno.build.standalone) return { cmd: Deno.execPath(), args: [...args] };
  const main = fileURLToPath(new URL("../../main.ts", import.meta.url));
  return {
    cmd: Deno.execPath(),
    args: ["run", "-A", "--no-prompt", v8Flags, main, ...args],
  };
}
