import { randomBytes } from "node:crypto";
import {
  closeSync,
  fsyncSync,
  linkSync,
  openSync,
  renameSync,
  unlinkSync,
  writeSync,
} from "node:fs";
import { dirname, join, basename } from "node:path";

import { VallignusError, isErrnoException } from "../errors.js";

export const SECRET_FILE_MODE = 0o600;
export const PUBLIC_FILE_MODE = 0o644;

function tempPathFor(path: string): string {
  return join(dirname(path), `.${basename(path)}.${randomBytes(6).toString("hex")}.tmp`);
}

/**
 * write(2) may write less than asked (a file-size limit, a quota, a disk filling up) and say so
 * only in its count: unchecked, a truncated temp file would be renamed over a good one. Writing
 * the rest makes the condition an error (EFBIG, ENOSPC), which the caller sees.
 */
function writeAll(fd: number, bytes: Uint8Array): void {
  for (let done = 0; done < bytes.length;) {
    done += writeSync(fd, bytes, done, bytes.length - done);
  }
}

/** A temp file beside `path` holding `data`, on disk; on failure none is left behind. */
function writeDurableTemp(path: string, data: string | Uint8Array, mode: number): string {
  const temp = tempPathFor(path);
  const fd = openSync(temp, "wx", mode);
  try {
    try {
      writeAll(fd, typeof data === "string" ? Buffer.from(data, "utf8") : data);
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
  } catch (err) {
    // A partial temp file would be litter at best, and part of a secret at worst.
    removeQuietly(temp);
    throw err;
  }
  return temp;
}

/** The rename itself is durable only once the directory entry is flushed. */
function fsyncDirectory(dir: string): void {
  const fd = openSync(dir, "r");
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

function removeQuietly(path: string): void {
  try {
    unlinkSync(path);
  } catch {
    // The temp file may already be gone; nothing depends on it.
  }
}

/** Replaces `path` atomically: readers see the old bytes or the new, never a mix. */
export function writeFileAtomic(path: string, data: string | Uint8Array, mode: number): void {
  const temp = writeDurableTemp(path, data, mode);
  try {
    renameSync(temp, path);
  } catch (err) {
    removeQuietly(temp);
    throw err;
  }
  fsyncDirectory(dirname(path));
}

/**
 * Creates `path` atomically and only if it does not exist yet (link(2) refuses to replace).
 * Returns false when the file already existed; the existing file is left byte-for-byte as it was.
 */
export function createFileExclusive(
  path: string,
  data: string | Uint8Array,
  mode: number,
): boolean {
  const temp = writeDurableTemp(path, data, mode);
  try {
    linkSync(temp, path);
  } catch (err) {
    if (isErrnoException(err) && err.code === "EEXIST") return false;
    throw new VallignusError("ERR_HOME_WRITE", `cannot write ${path}: ${String(err)}`);
  } finally {
    removeQuietly(temp);
  }
  fsyncDirectory(dirname(path));
  return true;
}
