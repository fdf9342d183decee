import { mkdirSync, readSync } from "node:fs";

import type { Home } from "../authority/index.js";
import { VallignusError } from "../errors.js";
import { sha256Hex } from "../authority/canonical-json.js";
import {
  describeError,
  FailureLatch,
  JournalFile,
  LinkedFileLock,
  TurnBatcher,
  type BatchOutcome,
} from "../storage/index.js";
import { GENESIS_HASH, isHashHex, type AuditAppendInput, type AuditRecord } from "./records.js";

/**
 * Durability: every batch is one write(2) finished before its turn of the event loop ends, so a
 * crash of Vallignus loses nothing. Only an OS crash or power loss can lose records, and at most
 * those of the last SYNC_INTERVAL_MS: an fdatasync per decision would cost more than the request
 * it records, so they are batched on a timer (and done at once on `close()`). A deny is synced
 * with its batch: the record of a refusal must survive a crash.
 */
const SYNC_INTERVAL_MS = 100;
const TAIL_CHUNK_BYTES = 4096;

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
  /** Synced with its batch before the batch counts as written. */
  readonly durable: boolean;
  /** For `append`, which hands the record back. */
  readonly done?: (record: AuditRecord) => void;
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

export interface AuditLogOptions {
  /**
   * Called once, the first time a write or sync of the log fails (disk full, EIO, a broken last
   * line, a lock that never came free); every later append is refused with the same error. A run
   * stops on it: decisions it cannot record are decisions it must not make.
   */
  readonly onFailure?: (err: VallignusError) => void;
}

/**
 * The append side of `$VALLIGNUS_HOME/audit/audit.jsonl`: one JSON line per decision or event,
 * hash-chained. Any number of processes may append at once: each batch holds the audit lock,
 * links to whatever line is last in the file, and writes its lines with one write(2).
 */
export class AuditLog {
  /** The file size after our own last write, and the chain tail at that size. */
  private knownSize = -1;
  private tail: ChainTail = { seq: 0, hash: GENESIS_HASH };
  private closed = false;
  private readonly lock: LinkedFileLock;
  private readonly failure: FailureLatch;
  private readonly batcher: TurnBatcher<Stamped, AuditRecord[]>;

  private constructor(
    private readonly file: JournalFile,
    lockPath: string,
    private readonly now: () => Date,
    options: AuditLogOptions,
  ) {
    this.lock = new LinkedFileLock(lockPath);
    this.failure = new FailureLatch(
      (err) => new VallignusError("ERR_AUDIT_WRITE", `${file.path}: ${describeError(err)}`),
      options.onFailure,
    );
    this.batcher = new TurnBatcher({
      lock: this.lock,
      file,
      failure: this.failure,
      lazySyncMs: SYNC_INTERVAL_MS,
      target: {
        write: (batch) => this.writeBatch(batch),
        deliver: (batch, records) => {
          batch.forEach((s, i) => {
            const record = records[i];
            if (record !== undefined) s.done?.(record);
          });
        },
        reject: () => {
          // Nobody waits on a queued record; the latch reports the failure.
        },
      },
    });
  }

  static open(
    home: Home,
    now: () => Date = () => new Date(),
    options: AuditLogOptions = {},
  ): AuditLog {
    mkdirSync(home.dir("audit"), { recursive: true, mode: 0o700 });
    const file = JournalFile.open(auditLogPath(home), "create", "ERR_AUDIT_WRITE");
    if (file === undefined) throw new Error("unreachable: a created journal exists");
    return new AuditLog(file, auditLockPath(home), now, options);
  }

  /**
   * Appends one record now, with what is queued before it, and returns it as written. Throws
   * (and writes nothing) when the log cannot be extended safely: a broken last line, an I/O
   * error, a closed log. It waits for the lock with the thread asleep: for short commands and
   * tests; a run appends with `enqueue`.
   */
  append(fields: AuditAppendInput): AuditRecord {
    let written: AuditRecord | undefined;
    this.add(fields, false, (record) => {
      written = record;
    });
    this.batcher.flushNow();
    if (written === undefined) throw new Error("unreachable: one record in, one out");
    return written;
  }

  /**
   * Queues a record; the records queued in one turn of the event loop are written together (see
   * TurnBatcher), and the event loop never waits for the lock. `ts` is taken now; `durable`
   * records (denies) are synced with their batch; `close()` writes what is still queued.
   */
  enqueue(fields: AuditAppendInput, durable = false): void {
    this.add(fields, durable, undefined);
  }

  /** Writes what is queued and waits until it is written and synced, without blocking. */
  drain(): Promise<void> {
    return this.batcher.drain();
  }

  private add(
    fields: AuditAppendInput,
    durable: boolean,
    done: ((record: AuditRecord) => void) | undefined,
  ): void {
    if (this.closed) throw new VallignusError("ERR_AUDIT_CLOSED", "the audit log is closed");
    const ts = typeof fields.ts === "string" ? fields.ts : this.now().toISOString();
    this.batcher.add(done === undefined ? { fields, ts, durable } : { fields, ts, durable, done });
  }

  /** Under the lock: the batch's lines, linked to the file's last line, in one write(2). */
  private writeBatch(batch: readonly Stamped[]): BatchOutcome<AuditRecord[]> {
    if (this.file.reopenIfMoved()) this.knownSize = -1;
    const size = this.file.size();
    if (size !== this.knownSize) this.tail = readChainTail(this.fd(), size);
    const records: AuditRecord[] = [];
    const lines: string[] = [];
    let tail = this.tail;
    let durable = false;
    for (const stamped of batch) {
      const record = orderedRecord(stamped.fields, stamped.ts, tail.seq + 1, tail.hash);
      // What auditRecordHash(record) computes, from the text we write anyway.
      const text = JSON.stringify(record);
      const hash = sha256Hex(text);
      record["hash"] = hash;
      lines.push(`${text.slice(0, -1)},"hash":"${hash}"}\n`);
      records.push(record as AuditRecord);
      tail = { seq: tail.seq + 1, hash };
      durable ||= stamped.durable;
    }
    const data = Buffer.from(lines.join(""), "utf8");
    this.knownSize = -1;
    this.file.append(data, size);
    this.knownSize = size + data.length;
    this.tail = tail;
    return { result: records, durable };
  }

  private fd(): number {
    return this.file.descriptor("ERR_AUDIT_CLOSED");
  }

  /** Forces the written records to disk now. */
  flush(): void {
    this.batcher.syncPending();
  }

  /**
   * Writes what is queued, syncs and closes; appending afterwards is an error. A failure already
   * reported (thrown, or given to onFailure) is not thrown again here.
   */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    try {
      if (this.failure.failed === undefined) {
        this.batcher.flushNow();
        this.batcher.syncPending();
      }
    } finally {
      this.file.close();
      this.lock.close();
    }
  }
}
