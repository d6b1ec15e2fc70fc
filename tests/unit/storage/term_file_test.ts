// Unit tests of src/storage/term_file.ts: the term/vote file round-trips, and
// a write that fails (disk full, a path that cannot be created) leaves the
// old state in place, names the file and the step, and leaves no temporary
// file behind to hold space a full disk needs back.

import assert from "node:assert/strict";
import {
  readTermFile,
  termFilePath,
  TermFileWriteError,
  writeTermFile,
} from "../../../src/storage/term_file.ts";
import { exists, withTempDir } from "../../support/temp_dir.ts";

Deno.test("term file: what is written is read back; a missing file is term 0 with no vote", async () => {
  await withTempDir(async (dir) => {
    const path = termFilePath(dir, 3);
    assert.deepEqual(await readTermFile(path), {
      ok: true,
      value: { currentTerm: 0, votedFor: null },
    });
    await writeTermFile(path, { currentTerm: 7, votedFor: 2 });
    assert.deepEqual(await readTermFile(path), {
      ok: true,
      value: { currentTerm: 7, votedFor: 2 },
    });
    assert.equal(await exists(`${path}.tmp`), false);
  });
});

Deno.test({
  name: "term file: a write that fails with ENOSPC keeps the old state, names file and step, " +
    "and removes its temporary file",
  // /dev/full fails every write with ENOSPC, as a full disk does.
  ignore: Deno.build.os !== "linux",
  fn: async () => {
    await withTempDir(async (dir) => {
      const path = termFilePath(dir, 1);
      await writeTermFile(path, { currentTerm: 4, votedFor: 1 });
      await Deno.symlink("/dev/full", `${path}.tmp`);
      const error = await writeTermFile(path, { currentTerm: 5, votedFor: null }).then(
        () => null,
        (e) => e,
      );
      assert.ok(error instanceof TermFileWriteError, String(error));
      assert.equal(error.path, path);
      assert.match(error.message, new RegExp(`^Cannot write term/vote file ${path} \\(write `));
      assert.match(error.message, /No space left on device/);
      assert.deepEqual(await readTermFile(path), {
        ok: true,
        value: { currentTerm: 4, votedFor: 1 },
      });
      assert.equal(await exists(`${path}.tmp`), false, "the temporary file is left behind");
    });
  },
});

Deno.test("term file: a temporary path that cannot be created fails at 'create' and touches nothing", async () => {
  await withTempDir(async (dir) => {
    const path = termFilePath(dir, 2);
    await writeTermFile(path, { currentTerm: 9, votedFor: 3 });
    // Something that is not ours sits where the temporary file would go.
    await Deno.mkdir(`${path}.tmp`);
    await Deno.writeTextFile(`${path}.tmp/keep`, "x");
    await assert.rejects(
      writeTermFile(path, { currentTerm: 10, votedFor: null }),
      (e: Error) => e instanceof TermFileWriteError && e.message.includes(`(create ${path}.tmp `),
    );
    assert.deepEqual(await readTermFile(path), {
      ok: true,
      value: { currentTerm: 9, votedFor: 3 },
    });
    assert.equal(await Deno.readTextFile(`${path}.tmp/keep`), "x");
  });
});
