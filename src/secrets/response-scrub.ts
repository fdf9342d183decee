/** A stream filter that hides values: each replaced by its replacement (stub until built). */
export interface Scrubber {
  push(chunk: Buffer): Buffer;
  end(): Buffer;
}

export function createScrubber(
  pairs: readonly { readonly value: string; readonly replacement: string }[],
): Scrubber {
  if (pairs.length === 0) return { push: (chunk) => chunk, end: () => Buffer.alloc(0) };
  throw new Error("createScrubber: not yet built");
}
