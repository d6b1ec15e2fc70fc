// Writing to sockets: a Deno.Conn write may take only part of a buffer, so
// every writer loops; and several pending buffers go out as one write, since
// under load it is the number of writes, not the bytes, that costs.

/** Anything with Deno's write contract: it may take only part of the bytes. */
export interface ByteWriter {
  write(bytes: Uint8Array): Promise<number>;
}

/** Writes all of `bytes`, however many partial writes that takes. */
export async function writeAll(to: ByteWriter, bytes: Uint8Array): Promise<void> {
  let at = 0;
  while (at < bytes.length) at += await to.write(bytes.subarray(at));
}

/** One buffer holding `parts` in order (the part itself when there is one). */
export function concatBytes(parts: readonly Uint8Array[]): Uint8Array {
  if (parts.length === 1) return parts[0]!;
  let n = 0;
  for (const p of parts) n += p.length;
  const out = new Uint8Array(n);
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}
