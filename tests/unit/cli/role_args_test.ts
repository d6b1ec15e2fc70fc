// Unit tests of the node options (src/cli/role_args.ts): the
// `--max-staleness-ms` flag's default, range and refusals.

import assert from "node:assert/strict";
import { parseMaxStalenessMs, parseNodeArgs } from "../../../src/cli/role_args.ts";
import {
  maxStalenessMsDefault,
  maxStalenessMsMax,
  maxStalenessMsMin,
} from "../../../src/config/timing.ts";

Deno.test("--max-staleness-ms: absent means the default of 2000 ms", async () => {
  assert.equal(maxStalenessMsDefault, 2000);
  assert.deepEqual(parseMaxStalenessMs(undefined), { ok: true, value: 2000 });
  const parsed = await parseNodeArgs(["1"], false);
  assert.ok(parsed.ok);
  assert.equal(parsed.value.maxStalenessMs, 2000);
});

Deno.test("--max-staleness-ms: a whole number of ms within 100…3600000 is taken", async () => {
  for (const ms of [maxStalenessMsMin, 1000, 2500, maxStalenessMsMax]) {
    assert.deepEqual(parseMaxStalenessMs(String(ms)), { ok: true, value: ms });
  }
  const parsed = await parseNodeArgs(["3", "--max-staleness-ms", "1000"], false);
  assert.ok(parsed.ok);
  assert.equal(parsed.value.maxStalenessMs, 1000);
  const role = await parseNodeArgs(["3", "--term", "2", "--max-staleness-ms=750"], true);
  assert.ok(role.ok);
  assert.equal(role.value.maxStalenessMs, 750);
});

Deno.test("--max-staleness-ms: out of range or not a whole number is a config error naming the value", async () => {
  for (const bad of ["99", "0", "3600001", "-5", "1.5", "1e3", "0x64", " 500", "", "abc"]) {
    const r = parseMaxStalenessMs(bad);
    assert.ok(!r.ok, `${JSON.stringify(bad)} must be refused`);
    assert.match(r.error, /^Invalid --max-staleness-ms /);
    assert.ok(r.error.includes(JSON.stringify(bad)), r.error);
    assert.ok(r.error.includes("100 to 3600000"), r.error);
    // `--flag=value`: parseArgs itself refuses a separate value that starts with "-".
    const parsed = await parseNodeArgs(["1", `--max-staleness-ms=${bad}`], false);
    // usage: false → `kvstore run` exits 3, like a bad cluster or secret file.
    assert.deepEqual(parsed, { ok: false, error: r.error, usage: false });
  }
});

Deno.test("--max-staleness-ms: a missing value is a usage error", async () => {
  const parsed = await parseNodeArgs(["1", "--max-staleness-ms"], false);
  assert.ok(!parsed.ok);
  assert.equal(parsed.usage, true);
});
