/** Replaces values in a byte stream whose chunks may split a value anywhere. */
export interface Scrubber {
  /** The bytes that can be passed on now; a tail that may begin a value is held back. */
  push(chunk: Buffer): Buffer;
  /** What is still held back (no value can complete any more), scrubbed. */
  end(): Buffer;
}

interface Pair {
  readonly value: Buffer;
  readonly replacement: Buffer;
}

/**
 * The earliest full occurrence of any value at or after `from`; the longest on a tie. `found`
 * keeps each value's last answer for this data (-1: none left), so a body that echoes a value
 * many times is searched once per value and occurrence, not once per occurrence and value.
 */
function firstMatch(
  pairs: readonly Pair[],
  data: Buffer,
  from: number,
  found: number[],
): { at: number; pair: Pair } | undefined {
  let best: { at: number; pair: Pair } | undefined;
  pairs.forEach((pair, i) => {
    let at = found[i] ?? -2;
    if (at === -1) return;
    if (at < from) {
      at = data.indexOf(pair.value, from);
      found[i] = at;
      if (at === -1) return;
    }
    if (
      best === undefined ||
      at < best.at ||
      (at === best.at && pair.value.length > best.pair.value.length)
    )
      best = { at, pair };
  });
  return best;
}

/**
 * The earliest position at or after `from` where the data's tail is a proper prefix of some
 * value (so the value may complete in the next chunk), or -1. Only the last (longest value - 1)
 * bytes can start one, and only where the value's first byte stands.
 */
function firstOpenPrefix(pairs: readonly Pair[], data: Buffer, from: number): number {
  let earliest = -1;
  for (const { value } of pairs) {
    const first = value[0] ?? 0;
    let at = data.indexOf(first, Math.max(from, data.length - value.length + 1));
    while (at !== -1 && (earliest === -1 || at < earliest)) {
      if (data.compare(value, 0, data.length - at, at) === 0) {
        earliest = at;
        break;
      }
      at = data.indexOf(first, at + 1);
    }
  }
  return earliest;
}

/**
 * A scrubber over `pairs`: every `value` in the stream becomes its `replacement`, across chunk
 * boundaries, leftmost first (the longest on a tie). Only a tail that is a proper prefix of some
 * value is held back, so bytes that cannot begin a value (an SSE event's closing "\n\n") are
 * never delayed; a chunk with nothing to replace or hold comes back as the same Buffer. Values
 * are what the upstream must never hand the agent (a real key echoed in an error message).
 */
export function createScrubber(
  pairs: readonly { readonly value: string; readonly replacement: string }[],
): Scrubber {
  const compiled: Pair[] = pairs
    .filter((p) => p.value !== "")
    .map((p) => ({ value: Buffer.from(p.value), replacement: Buffer.from(p.replacement) }));
  let held: Buffer = Buffer.alloc(0);

  function scrub(data: Buffer, final: boolean): Buffer {
    const out: Buffer[] = [];
    const found = compiled.map(() => -2);
    let cursor = 0;
    for (;;) {
      const match = firstMatch(compiled, data, cursor, found);
      const open = final ? -1 : firstOpenPrefix(compiled, data, cursor);
      // A value that may still complete, starting before (or where) a full match starts, wins:
      // leftmost-longest must not depend on where the chunks were cut.
      if (open !== -1 && (match === undefined || open <= match.at)) {
        // A copy: the caller may reuse the chunk's memory once push returns.
        held = Buffer.from(data.subarray(open));
        out.push(data.subarray(cursor, open));
        break;
      }
      if (match === undefined) {
        held = Buffer.alloc(0);
        // Nothing replaced or held: the very same bytes go on, without a copy.
        if (cursor === 0) return data;
        out.push(data.subarray(cursor));
        break;
      }
      out.push(data.subarray(cursor, match.at), match.pair.replacement);
      cursor = match.at + match.pair.value.length;
    }
    return Buffer.concat(out);
  }

  return {
    push(chunk) {
      if (compiled.length === 0) return chunk;
      const data = held.length === 0 ? chunk : Buffer.concat([held, chunk]);
      return scrub(data, false);
    },
    end() {
      if (held.length === 0) return Buffer.alloc(0);
      return scrub(held, true);
    },
  };
}
