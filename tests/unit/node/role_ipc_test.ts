// Unit tests of src/node/role_ipc.ts: encodeIpc framing and readIpc over hand-built streams.

import assert from "node:assert/strict";
import { encodeIpc, type FromRole, readIpc, type ToRole } from "../../../src/node/role_ipc.ts";

const utf8 = new TextEncoder();

function streamOf(chunks: readonly (string | Uint8Array)[]): ReadableStream<Uint8Array> {
  return new ReadableStream<Uint8Array>({
    start(controller) {
      for (const c of chunks) controller.enqueue(typeof c === "string" ? utf8.encode(c) : c);
      controller.close();
    },
  });
}

async function readAll(
  stream: ReadableStream<Uint8Array>,
): Promise<({ ok: true; value: unknown } | { ok: false; line: string })[]> {
  const out: ({ ok: true; value: unknown } | { ok: false; line: string })[] = [];
  for await (const item of readIpc(stream)) out.push(item);
  return out;
}

Deno.test("encodeIpc writes one JSON object per line", () => {
  const m: ToRole = { kind: "fence", id: 7, term: 12 };
  assert.equal(new TextDecoder().decode(encodeIpc(m)), '{"kind":"fence","id":7,"term":12}\n');
});

Deno.test("readIpc gives back every message encodeIpc wrote, in order", async () => {
  const messages: (ToRole | FromRole)[] = [
    { kind: "ready", lastIndex: 0, lastTerm: 0 },
    { kind: "fence", id: 1, term: 3 },
    { kind: "fenced", id: 1, term: 3, lastIndex: 40, lastTerm: 2 },
    { kind: "leader", term: 3, leaderId: null },
    { kind: "higherTerm", term: 9 },
  ];
  const got = await readAll(streamOf(messages.map(encodeIpc)));
  assert.deepEqual(got, messages.map((value) => ({ ok: true, value })));
});

Deno.test("readIpc joins a message split across chunks at every byte", async () => {
  const bytes = encodeIpc({ kind: "fenced", id: 2, term: 5, lastIndex: 10, lastTerm: 4 });
  for (let cut = 0; cut <= bytes.length; cut++) {
    const got = await readAll(streamOf([bytes.subarray(0, cut), bytes.subarray(cut)]));
    assert.deepEqual(got, [{
      ok: true,
      value: { kind: "fenced", id: 2, term: 5, lastIndex: 10, lastTerm: 4 },
    }], `cut ${cut}`);
  }
});

Deno.test("readIpc decodes a UTF-8 character split between chunks", async () => {
  const bytes = utf8.encode('{"note":"Šiauliai"}\n');
  const split = bytes.indexOf(0xc5) + 1; // inside the two-byte "Š"
  const got = await readAll(streamOf([bytes.subarray(0, split), bytes.subarray(split)]));
  assert.deepEqual(got, [{ ok: true, value: { note: "Šiauliai" } }]);
});

Deno.test("readIpc handles many messages in one chunk and skips blank lines", async () => {
  const got = await readAll(streamOf(['{"a":1}\n\n   \n{"b":2}\n{"c":3}\n']));
  assert.deepEqual(got, [
    { ok: true, value: { a: 1 } },
    { ok: true, value: { b: 2 } },
    { ok: true, value: { c: 3 } },
  ]);
});

Deno.test("readIpc reports a malformed line and goes on with the next", async () => {
  const got = await readAll(streamOf(['{"a":1}\nnot json\n{"b":2}\n']));
  assert.deepEqual(got, [
    { ok: true, value: { a: 1 } },
    { ok: false, line: "not json" },
    { ok: true, value: { b: 2 } },
  ]);
});

Deno.test("readIpc drops a torn last line that has no newline before EOF", async () => {
  const got = await readAll(streamOf(['{"a":1}\n{"kind":"fen']));
  assert.deepEqual(got, [{ ok: true, value: { a: 1 } }]);
});

Deno.test("readIpc ends quietly on an empty stream", async () => {
  assert.deepEqual(await readAll(streamOf([])), []);
});
