// Keeps the architecture honest: the pure layers (src/raft, src/kv,
// src/codec) may not touch Deno, timers, clocks or randomness, and may import
// only each other and src/config. Run by `deno task layers` and CI.

const pureDirs = ["src/raft", "src/kv", "src/codec"];
const forbidden: [RegExp, string][] = [
  [/\bDeno\./, "Deno API"],
  [/\bset(Timeout|Interval)\s*\(/, "timer"],
  [/\bDate\.now\s*\(|\bnew Date\s*\(/, "clock"],
  [/\bperformance\.now\s*\(/, "clock"],
  [/\bMath\.random\s*\(/, "randomness"],
];
const importRe = /^\s*import[^"']*["']([^"']+)["']/gm;

let problems = 0;
for (const dir of pureDirs) {
  for await (const entry of Deno.readDir(dir)) {
    if (!entry.isFile || !entry.name.endsWith(".ts")) continue;
    const path = `${dir}/${entry.name}`;
    const text = await Deno.readTextFile(path);
    const code = text.replace(/\/\/.*$/gm, "").replace(/\/\*[\s\S]*?\*\//g, "");
    for (const [re, what] of forbidden) {
      if (re.test(code)) {
        console.error(`${path}: uses a ${what}; pure layers get time and I/O from their shells`);
        problems++;
      }
    }
    for (const m of code.matchAll(importRe)) {
      const spec = m[1]!;
      if (spec.startsWith("node:buffer")) continue;
      const ok = spec.startsWith("./") || spec.startsWith("../raft/") ||
        spec.startsWith("../kv/") || spec.startsWith("../codec/") || spec.startsWith("../config/");
      if (!ok) {
        console.error(`${path}: imports ${spec}; pure layers import only pure layers and config`);
        problems++;
      }
    }
  }
}
if (problems > 0) {
  console.error(`${problems} layer problem(s)`);
  Deno.exit(1);
}
console.log(`layers ok: ${pureDirs.join(", ")} are pure`);
