import {
  closeSync,
  constants as fsConstants,
  fdatasync,
  fdatasyncSync,
  fstatSync,
  fsyncSync,
  ftruncateSync,
  openSync,
  statSync,
  writeSync,
} from "node:fs";
import { dirname } from "node:path";

import { isErrnoException, VallignusError, type ErrorCode } from "../errors.js";

const JOURNAL_MODE = 0o600;

export function describeError(err: unknown): string {
  return err instanceof Error ? err.message : "unknown error";
}

/**
 * How a journal is opened: `create` makes it if missing (the audit log: an empty log is a valid
 * log); `existing` never creates it (a ledger appears only whole, header included); `read` is for
 * readers that take no lock.
 */
export type JournalOpenMode = "create" | "existing" | "read";

const OPEN_FLAGS: Readonly<Record<JournalOpenMode, number>> = {
  // O_APPEND: every write lands at the end whatever the offset; reads stay positional.
  create: fsConstants.O_RDWR | fsConstants.O_APPEND | fsConstants.O_CREAT,
  existing: fsConstants.O_RDWR | fsConstants.O_APPEND,
  read: fsConstants.O_RDONLY,
};

/**
 * One append-only file shared by processes: its descriptor, the write that is all or nothing,
 * and the syncs. The audit log and every ledger write through it; what the lines mean, and the
 * lock that orders writers, are theirs.
 */
export class JournalFile {
  private constructor(
    readonly path: string,
    private fd: number | undefined,
    /** The code a failed write or sync is reported under (ERR_AUDIT_WRITE, ERR_LEDGER_WRITE). */
    private readonly writeCode: ErrorCode,
  ) {}

  /** Opens the file at `path`; undefined when it does not exist and `mode` is not `create`. */
  static open(path: string, mode: JournalOpenMode, writeCode: ErrorCode): JournalFile | undefined {
    let fd: number;
    try {
      fd = openSync(path, OPEN_FLAGS[mode], JOURNAL_MODE);
    } catch (err) {
      if (mode !== "create" && isErrnoException(err) && err.code === "ENOENT") return undefined;
      throw new VallignusError(writeCode, `cannot open ${path}: ${describeError(err)}`);
    }
    // A new file's directory entry must survive a power loss as well as its lines.
    if (mode === "create") fsyncDirectory(dirname(path));
    return new JournalFile(path, fd, writeCode);
  }

  get closed(): boolean {
    return this.fd === undefined;
  }

  /** The descriptor, for positional reads; throws `closedCode` once closed. */
  descriptor(closedCode: ErrorCode): number {
    if (this.fd === undefined) throw new VallignusError(closedCode, `${this.path} is closed`);
    return this.fd;
  }

  size(): number {
    return fstatSync(this.descriptor(this.writeCode)).size;
  }

  /** Whether the path still names the file we have open (not moved, removed or replaced). */
  isStillAtPath(): boolean {
    const ours = fstatSync(this.descriptor(this.writeCode));
    try {
      const onDisk = statSync(this.path);
      return onDisk.ino === ours.ino && onDisk.dev === ours.dev;
    } catch (err) {
      if (isErrnoException(err) && err.code === "ENOENT") return false;
      throw err;
    }
  }

  /**
   * For a log that others may move away (rotation) or remove: if the path no longer names our
   * file, opens (or creates) the file now there instead, since appending to the old inode would
   * lose lines silently. True when it reopened.
   */
  reopenIfMoved(): boolean {
    if (this.isStillAtPath()) return false;
    const fresh = JournalFile.open(this.path, "create", this.writeCode);
    this.close();
    this.fd = fresh?.fd;
    return true;
  }

  /**
   * Appends `data` with one write(2). Call only under the lock, with `sizeBefore` the size the
   * caller saw there: a write cut short is taken back, so no half line stays behind.
   */
  append(data: Buffer, sizeBefore: number): void {
    const fd = this.descriptor(this.writeCode);
    let written = 0;
    let failure: unknown;
    try {
      written = writeSync(fd, data);
    } catch (err) {
      failure = err;
    }
    if (written === data.length) return;
    try {
      // We hold the lock, so nobody wrote after us: take the partial line back.
      ftruncateSync(fd, sizeBefore);
    } catch {
      // The next writer finds the unfinished line and deals with it.
    }
    const why = failure === undefined ? "short write" : describeError(failure);
    throw new VallignusError(this.writeCode, `cannot append to ${this.path}: ${why}`);
  }

  /** Cuts off bytes after `size` (an unfinished line of a crashed writer); under the lock only. */
  truncate(size: number): void {
    ftruncateSync(this.descriptor(this.writeCode), size);
  }

  sync(): void {
    try {
      fdatasyncSync(this.descriptor(this.writeCode));
    } catch (err) {
      throw this.syncError(err);
    }
  }

  /** fdatasync on the thread pool: the event loop goes on serving while the disk works. */
  syncAsync(): Promise<void> {
    const fd = this.descriptor(this.writeCode);
    return new Promise((done, fail) => {
      fdatasync(fd, (err) => {
        if (err === null) done();
        // An error after close() is about a descriptor we gave up (close synced already).
        else if (this.fd !== fd) done();
        else fail(this.syncError(err));
      });
    });
  }

  close(): void {
    if (this.fd === undefined) return;
    closeSync(this.fd);
    this.fd = undefined;
  }

  private syncError(err: unknown): VallignusError {
    return err instanceof VallignusError
      ? err
      : new VallignusError(this.writeCode, `cannot sync ${this.path}: ${describeError(err)}`);
  }
}

/** The rename or create of a file is durable only once its directory entry is flushed. */
export function fsyncDirectory(dir: string): void {
  const fd = openSync(dir, "r");
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}
