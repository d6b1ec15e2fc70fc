// kvstore entry point: argv → subcommand, nothing else. Every subcommand lives
// in src/cli/ and returns the process exit code.
import { runMain } from "./src/cli/main.ts";

if (import.meta.main) {
  Deno.exit(await runMain(Deno.args));
}
