// How a supervisor starts its role processes: by re-executing this very
// program. Compiled (`deno compile`), that is the binary itself; under
// `deno run`, it is the Deno executable running main.ts with all permissions.

import { fileURLToPath } from "node:url";

export function selfCommand(args: readonly string[]): { cmd: string; args: string[] } {
  if (Deno.build.standalone) return { cmd: Deno.execPath(), args: [...args] };
  const main = fileURLToPath(new URL("../../main.ts", import.meta.url));
  return {
    cmd: Deno.execPath(),
    args: ["run", "-A", "--no-prompt", "--v8-flags=--max-semi-space-size=64", main, ...args],
  };
}
