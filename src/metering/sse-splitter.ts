/**
 * Cuts a server-sent-events byte stream into whole events, each kept as the exact bytes that came
 * in. The usage reader forwards these bytes unchanged, or drops one event whole; parsing the
 * fields of an event is left to eventsource-parser.
 */

const LF = 0x0a;
const CR = 0x0d;
const EMPTY = Buffer.alloc(0);

export interface SseSplitter {
  /** Adds bytes; returns the events they completed, each ending with its blank line. */
  push(chunk: Buffer): Buffer[];
  /**
   * The stream ended: returns the events still waiting on a final CR (which can no longer be the
   * start of a CRLF), then `rest` holds only an event the stream cut short.
   */
  finish(): Buffer[];
  /** The bytes after the last complete event (an event the stream cut short), then resets. */
  rest(): Buffer;
  /** How many bytes wait for their event to complete. */
  pendingBytes(): number;
}

/**
 * An event ends at an empty line; a line ends at CRLF, LF or CR (the SSE spec allows all three).
 * Events are cut only between whole line terminators, so a CRLF is never split between two events
 * and a multi-byte UTF-8 character (which contains no CR or LF byte) never is either.
 */
export function createSseSplitter(): SseSplitter {
  let pending: Buffer = EMPTY;
  // Scan state, kept across pushes so that each byte is examined once.
  let scanned = 0;
  let lineStart = 0;

  /** Cuts the complete events off `pending`; `final` when no more bytes will come. */
  function scan(final: boolean): Buffer[] {
    const events: Buffer[] = [];
    let eventStart = 0;
    let index = scanned;
    // indexOf runs in native code; a JS loop over every byte was most of the cost of reading a
    // stream. Streams rarely carry CR, so its position is looked up again only once passed.
    let cr = pending.indexOf(CR, index);
    while (index < pending.length) {
      if (cr !== -1 && cr < index) cr = pending.indexOf(CR, index);
      const lf = pending.indexOf(LF, index);
      const next = lf === -1 ? cr : cr === -1 ? lf : Math.min(lf, cr);
      if (next === -1) {
        index = pending.length;
        break;
      }
      index = next;
      const byte = pending[index];
      // A CR as the last byte may be the first half of a CRLF: wait for the next byte.
      if (byte === CR && index + 1 === pending.length && !final) break;
      const end = byte === CR && pending[index + 1] === LF ? index + 2 : index + 1;
      if (index === lineStart) {
        events.push(pending.subarray(eventStart, end));
        eventStart = end;
      }
      lineStart = end;
      index = end;
    }
    pending = pending.subarray(eventStart);
    scanned = index - eventStart;
    lineStart -= eventStart;
    return events;
  }

  function push(chunk: Buffer): Buffer[] {
    if (chunk.length === 0) return [];
    pending = pending.length === 0 ? chunk : Buffer.concat([pending, chunk]);
    return scan(false);
  }

  function rest(): Buffer {
    const remaining = pending;
    pending = EMPTY;
    scanned = 0;
    lineStart = 0;
    return remaining;
  }

  return { push, finish: () => scan(true), rest, pendingBytes: () => pending.length };
}
