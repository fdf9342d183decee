import {
  closeSync,
  fdatasync,
  fdatasyncSync,
  fstatSync,
  fsyncSync,
  ftruncateSync,
  mkdirSync,
  openSync,
  readSync,
  statSync,
  writeSync,
} from "node:fs";
import { dirname } from "node:path";

import { LinkedFileLock } from "../authority/file-lock.js";
import type { Home } from "../authority/index.js";
import { isErrnoException, VallignusError } from "../errors.js";
import { sha256Hex } from "../authority/canonical-json.js";
import { GENESIS_HASH, isHashHex, type AuditAppendInput, type AuditRecord } from "./records.js";

/**
 * Durability: every append is one write(2) finished before `append` returns, so a crash of
 * Vallignus loses nothing. Only an OS crash or power loss can lose records, and at most those
 * of the last SYNC_INTERVAL_MS: an fdatasync per decision would cost more than the request it
 * records, so they are batched on a timer (and done at once on `close()`).
 */
const SYNC_INTERVAL_MS = 100;
const TAIL_CHUNK_BYTES = 4096;
const LOG_FILE_MODE = 0o600;

function describeError(err: unknown): string {
  return err instanceof Error ? err.message : "unknown error";
}

export function auditLogPath(home: Home): string {
  return home.path("audit", "audit.jsonl");
}

export function auditLockPath(home: Home): string {
  return home.path("audit", ".lock");
}

interface ChainTail {
  readonly seq: number;
  readonly hash: string;
}

function chainBroken(message: string): VallignusError {
  return new VallignusError(
    "ERR_AUDIT_CHAIN_BROKEN",
    `${message}; run \`vallignus audit verify\` and repair the log before new records can be added`,
  );
}

/** The seq and hash of the last line, read backwards from the end of the file. */
function readChainTail(fd: number, size: number): ChainTail {
  if (size === 0) return { seq: 0, hash: GENESIS_HASH };
  let buf = Buffer.alloc(0);
  let pos = size;
  let lineStart = -1;
  while (lineStart === -1 && pos > 0) {
    const len = Math.min(TAIL_CHUNK_BYTES, pos);
    pos -= len;
    const chunk = Buffer.alloc(len);
    readSync(fd, chunk, 0, len, pos);
    buf = Buffer.concat([chunk, buf]);
    if (buf[buf.length - 1] !== 10) {
      // Appending after a cut-short line would glue two records together for good.
      throw chainBroken("the audit log's last line is incomplete");
    }
    const nl = buf.length >= 2 ? buf.lastIndexOf(10, buf.length - 2) : -1;
    if (nl !== -1) lineStart = nl + 1;
  }
  const text = buf.toString("utf8", Math.max(lineStart, 0), buf.length - 1);
  let last: unknown;
  try {
    last = JSON.parse(text);
  } catch {
    throw chainBroken("the audit log's last line is not valid JSON");
  }
  const { seq, hash } = (typeof last === "object" && last !== null ? last : {}) as Record<
    string,
    unknown
  >;
  if (typeof seq !== "number" || !Number.isSafeInteger(seq) || seq < 1 || !isHashHex(hash)) {
    throw chainBroken("the audit log's last line has no valid seq and hash");
  }
  return { seq, hash };
}

interface Stamped {
  readonly fields: AuditAppendInput;
  readonly ts: string;
}

/** Fields the log owns; a caller's copy of them is dropped, never trusted. */
const OWN_FIELDS = new Set(["ts", "seq", "prev_hash", "hash"]);

/** Readable key order: when, which, who, what; then the rest; the chain fields last. */
function orderedRecord(
  fields: Readonly<Record<string, unknown>>,
  ts: string,
  seq: number,
  prevHash: string,
): Record<string, unknown> {
  const record: Record<string, unknown> = { ts, seq, session_id: fields["session_id"] };
  if ("decision" in fields) record["decision"] = fields["decision"];
  if ("event" in fields) record["event"] = fields["event"];
  for (const key of Object.keys(fields)) {
    const value = fields[key];
    if (value !== undefined && !OWN_FIELDS.has(key)) record[key] = value;
  }
  record["prev_hash"] = prevHash;
  return record;
}

/**
 * The append side of `$VALLIGNUS_HOME/audit/audit.jsonl`: one JSON line per decision or event,
 * hash-chained. Any number of processes may append at once: each append holds the audit lock,
 * links to whatever line is last in the file, and writes its line with one write(2).
 */
export class AuditLog {
  private fd: number | undefined;
  /** The file size after our own last write, and the chain tail at that size. */
  private knownSize = -1;
  private tail: ChainTail = { seq: 0, hash: GENESIS_HASH };
  private syncTimer: NodeJS.Timeout | undefined;
  /** A failed background fdatasync, reported by the next append or close (fail closed). */
  private syncError: unknown;

  private constructor(
    private readonly path: string,
    private readonly lockPath: string,
    private readonly now: () => Date,
    private readonly onFailure: ((err: VallignusError) => void) | undefined,
  ) {
    this.fd = AuditLog.openFile(path);
    this.lock = new LinkedFileLock(lockPath);
  }

  private readonly lock: LinkedFileLock;

  /**
   * `onFailure` is called (once) when a write or sync done in the background fails, where no
   * caller is there to see a throw; without it such a failure is thrown (uncaught).
   */
  static open(
    home: Home,
    now: () => Date = () => new Date(),
    options: { readonly onFailure?: (err: VallignusError) => void } = {},
  ): AuditLog {
    mkdirSync(home.dir("audit"), { recursive: true, mode: 0o700 });
    return new AuditLog(auditLogPath(home), auditLockPath(home), now, options.onFailure);
  }

  private failed = false;

  /** A background failure goes to onFailure once; later appends still throw (fail closed). */
  private reportFailure(err: unknown): void {
    const failure =
      err instanceof VallignusError
        ? err
        : new VallignusError("ERR_AUDIT_WRITE", `cannot write ${this.path}: ${describeError(err)}`);
    if (this.onFailure === undefined) throw failure;
    if (this.failed) return;
    this.failed = true;
    this.onFailure(failure);
  }

  /** "a+": appends land at the end whatever the offset, and the tail stays readable. */
  private static openFile(path: string): number {
    const fd = openSync(path, "a+", LOG_FILE_MODE);
    // A new file's directory entry must survive a power loss as well as its lines.
    const dirFd = openSync(dirname(path), "r");
    try {
      fsyncSync(dirFd);
    } finally {
      closeSync(dirFd);
    }
    return fd;
  }

  /**
   * Appends one record and returns it as written. Throws (and writes nothing) when the log
   * cannot be extended safely: a broken last line, an I/O error, a closed log.
   */
  append(fields: AuditAppendInput): AuditRecord {
    this.flushQueue();
    const [record] = this.appendAll([this.stamp(fields)]);
    if (record === undefined) throw new Error("unreachable: one record in, one out");
    return record;
  }

  /**
   * Queues a record and writes every record queued in the same turn of the event loop under one
   * lock and one write(2) (setImmediate), so a busy proxy takes the cross-process lock once per
   * turn instead of once per request. `ts` is taken now; `close()` writes what is still queued.
   */
  enqueue(fields: AuditAppendInput, durable = false): void {
    this.throwIfUnusable();
    this.queue.push(this.stamp(fields));
    // A deny is fsync'd with its batch: the record of a refusal must survive a crash.
    if (durable) this.syncAfterFlush = true;
    this.flushScheduled ??= setImmediate(() => {
      this.flushScheduled = undefined;
      try {
        this.flushQueue();
      } catch (err) {
        this.reportFailure(err);
      }
    });
  }

  private readonly queue: Stamped[] = [];
  private syncAfterFlush = false;
  private flushScheduled: NodeJS.Immediate | undefined;

  /** The record's time, taken now unless given; the fields are not copied. */
  private stamp(fields: AuditAppendInput): Stamped {
    return { fields, ts: typeof fields.ts === "string" ? fields.ts : this.now().toISOString() };
  }

  private flushQueue(): void {
    if (this.flushScheduled !== undefined) clearImmediate(this.flushScheduled);
    this.flushScheduled = undefined;
    if (this.queue.length === 0) return;
    this.appendAll(this.queue.splice(0));
    if (this.syncAfterFlush) {
      this.syncAfterFlush = false;
      this.flush();
    }
  }

  private appendAll(batch: readonly Stamped[]): AuditRecord[] {
    this.throwIfUnusable();
    return this.lock.run(() => {
      const { fd, size } = this.currentFile();
      if (size !== this.knownSize) this.tail = readChainTail(fd, size);
      const records: AuditRecord[] = [];
      const lines: string[] = [];
      let tail = this.tail;
      for (const { fields, ts } of batch) {
        const record = orderedRecord(fields, ts, tail.seq + 1, tail.hash);
        // What auditRecordHash(record) computes, from the text we write anyway.
        const text = JSON.stringify(record);
        const hash = sha256Hex(text);
        record["hash"] = hash;
        lines.push(`${text.slice(0, -1)},"hash":"${hash}"}\n`);
        records.push(record as AuditRecord);
        tail = { seq: tail.seq + 1, hash };
      }
      const data = Buffer.from(lines.join(""), "utf8");
      this.writeLine(fd, data, size);
      this.knownSize = size + data.length;
      this.tail = tail;
      this.scheduleSync();
      return records;
    });
  }

  /** Forces the written records to disk now. */
  flush(): void {
    if (this.syncTimer !== undefined) clearTimeout(this.syncTimer);
    this.syncTimer = undefined;
    if (this.fd !== undefined) fdatasyncSync(this.fd);
  }

  /** Flushes and closes; appending afterwards is an error. */
  close(): void {
    this.flushQueue();
    if (this.fd === undefined) return;
    try {
      this.flush();
    } finally {
      closeSync(this.fd);
      this.fd = undefined;
      this.lock.close();
    }
    this.throwIfUnusable(false);
  }

  private throwIfUnusable(checkOpen = true): void {
    if (this.syncError !== undefined) {
      const err = this.syncError;
      this.syncError = undefined;
      throw new VallignusError(
        "ERR_AUDIT_WRITE",
        `cannot sync ${this.path}: ${describeError(err)}`,
      );
    }
    if (checkOpen && this.fd === undefined)
      throw new VallignusError("ERR_AUDIT_CLOSED", "the audit log is closed");
  }

  /**
   * The fd for the file now at our path. If the log was moved or deleted while we held it,
   * appending to the old inode would lose records silently, so we reopen.
   */
  private currentFile(): { fd: number; size: number } {
    let fd = this.fd ?? AuditLog.openFile(this.path);
    let ours = fstatSync(fd);
    let onDisk;
    try {
      onDisk = statSync(this.path);
    } catch (err) {
      if (!(isErrnoException(err) && err.code === "ENOENT")) throw err;
    }
    if (onDisk?.ino !== ours.ino || onDisk.dev !== ours.dev) {
      closeSync(fd);
      fd = AuditLog.openFile(this.path);
      ours = fstatSync(fd);
      this.knownSize = -1;
    }
    this.fd = fd;
    return { fd, size: ours.size };
  }

  private writeLine(fd: number, line: Buffer, sizeBefore: number): void {
    let written = 0;
    let failure: unknown;
    try {
      written = writeSync(fd, line);
    } catch (err) {
      failure = err;
    }
    if (written === line.length) return;
    // We hold the lock, so nobody appended after us: cut the partial line off again.
    try {
      ftruncateSync(fd, sizeBefore);
    } catch {
      // The next append finds the partial line and refuses; verify names it.
    }
    this.knownSize = -1;
    throw new VallignusError(
      "ERR_AUDIT_WRITE",
      `cannot append to ${this.path}: ${failure === undefined ? "short write" : describeError(failure)}`,
    );
  }

  private scheduleSync(): void {
    if (this.syncTimer !== undefined) return;
    this.syncTimer = setTimeout(() => {
      this.syncTimer = undefined;
      const fd = this.fd;
      if (fd === undefined) return;
      // Off the event loop: a busy proxy must not stall on the disk every 100 ms.
      fdatasync(fd, (err) => {
        // An error after close() is about a descriptor we gave up (close synced already).
        if (err !== null && this.fd === fd) {
          this.syncError = err;
          if (this.onFailure !== undefined) this.reportFailure(err);
        }
      });
    }, SYNC_INTERVAL_MS);
    // A pending sync must not keep a finished run alive; close() syncs anyway.
    this.syncTimer.unref();
  }
}
