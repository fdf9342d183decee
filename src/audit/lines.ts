import { readSync } from "node:fs";

const CHUNK_BYTES = 64 * 1024;

export interface RawLine {
  /** The line without its newline. */
  readonly text: string;
  /** False only for bytes after the last newline: a line whose write was cut short. */
  readonly terminated: boolean;
  /** File offset just past this line (and its newline). */
  readonly end: number;
}

/**
 * The lines of `fd` between two byte offsets, read in chunks so a large log is never held whole.
 * Lines are split on the byte 0x0A, which never occurs inside a multi-byte UTF-8 sequence, so
 * each line is decoded whole.
 */
export function* readLines(fd: number, from: number, to: number): Generator<RawLine> {
  const chunk = Buffer.allocUnsafe(CHUNK_BYTES);
  let carry = Buffer.alloc(0);
  let pos = from;
  while (pos < to) {
    const n = readSync(fd, chunk, 0, Math.min(CHUNK_BYTES, to - pos), pos);
    if (n === 0) break;
    pos += n;
    const data = carry.length > 0 ? Buffer.concat([carry, chunk.subarray(0, n)]) : chunk;
    const dataEnd = carry.length > 0 ? data.length : n;
    const dataStart = pos - dataEnd;
    let start = 0;
    for (
      let nl = data.indexOf(10, start);
      nl !== -1 && nl < dataEnd;
      nl = data.indexOf(10, start)
    ) {
      yield { text: data.toString("utf8", start, nl), terminated: true, end: dataStart + nl + 1 };
      start = nl + 1;
    }
    // Copied, because `chunk` is reused by the next read.
    carry = Buffer.from(data.subarray(start, dataEnd));
  }
  if (carry.length > 0) yield { text: carry.toString("utf8"), terminated: false, end: pos };
}
