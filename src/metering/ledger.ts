import { hash } from "node:crypto";
import {
  closeSync,
  constants as fsConstants,
  existsSync,
  fdatasync,
  fdatasyncSync,
  fstatSync,
  ftruncateSync,
  mkdirSync,
  openSync,
  readdirSync,
  readFileSync,
  readSync,
  renameSync,
  statSync,
  writeFileSync,
  writeSync,
} from "node:fs";

// Reached directly, as audit-log.ts does: the lock and the atomic create are not part of
// authority's public face, and the ledger needs exactly their cross-process guarantees.
import { createFileExclusive } from "../authority/atomic-file.js";
import { LinkedFileLock, withFileLock } from "../authority/file-lock.js";
import { readProcStat } from "../authority/proc-stat.js";
import type { Home } from "../authority/home.js";
import { isErrnoException, VallignusError } from "../errors.js";
import { isValidId } from "../policy/index.js";

/*
 * The spend ledger of one token (jti): an append-only journal `ledger/<jti>.jsonl`, guarded by
 * the lock file `ledger/<jti>.lock`.
 *
 * Line 0 is the header (jti, agent, policy version, budget, created_at); every later line is one
 * `reserve`, `settle` or `recover` event, numbered by `seq`, and ends in a checksum of the rest.
 * The state is the fold of the lines. Why a journal rather than a state file rewritten per
 * operation: an append costs one fdatasync, where temp + fsync + rename + directory fsync costs
 * two fsyncs and three metadata operations, and the journal is also the history of every charge.
 *
 * Cost on the hot path (one batch of the reservations and settlements asked for in one turn of
 * the event loop): take the lock (link + unlink of a stamp file, no fsync: a lock left by a crash
 * is recognised by its dead pid), fstat + stat, read only the bytes other processes appended
 * since our last look, one write(2), and one fdatasync off the event loop if the batch reserves.
 * Opening folds the journal from its checkpoint (`<jti>.fold`, written when a run closes a ledger
 * that grew by 1,000 lines), or from line 1 without one; after that each operation is O(new lines).
 *
 * A line whose write was cut short by a crash has no newline. Such a tail is ignored (and cut off
 * by the next writer): its write never finished, so it was never acknowledged. Anything else that
 * does not check out - a bad checksum, a wrong seq, a settle of an unknown reservation - is
 * ERR_LEDGER_CORRUPT, and the ledger refuses to work (fail closed) rather than guess at spend.
 */

const FORMAT_VERSION = 1;
const JOURNAL_SUFFIX = ".jsonl";
const JOURNAL_MODE = 0o600;
const DIR_MODE = 0o700;
const READ_CHUNK_BYTES = 64 * 1024;
const CHECKSUM_HEX_CHARS = 16;
/** Provider, model and reason are labels for people; a longer one is cut, not refused. */
const MAX_LABEL_CHARS = 256;
/** `s`: JSON.stringify leaves U+2028/U+2029 raw, and `.` would not match them without it. */
const CHECKED_LINE = /^(\{.*),"ck":"([0-9a-f]{16})"\}$/s;

/** Budget, spent and reserved of one token, in integer nano-USD. */
export interface LedgerState {
  readonly budgetNano: number;
  /** Settled (and recovered) cost; may exceed the budget when a provider reported more than the bound. */
  readonly spentNano: number;
  readonly reservedNano: number;
  /** budget - spent - reserved, never below 0. */
  readonly leftNano: number;
  /** Settled reservations, including those charged by recovery. */
  readonly calls: number;
  readonly openReservations: number;
}

/** Who holds a reservation: the run (session) and the process that will settle it. */
export interface LedgerOwner {
  readonly sessionId: string;
  readonly pid: number;
}

export interface OpenLedgerOptions {
  readonly jti: string;
  readonly agentId: string;
  readonly policyId: string;
  readonly policyVersion: number;
  /** The max spend of the token's policy version; must equal what an existing ledger holds. */
  readonly budgetNano: number;
  readonly owner: LedgerOwner;
  /** Timestamps of journal lines only; no decision depends on it. */
  readonly now?: () => Date;
  /** Called once when a batched write or sync done in the background fails. */
  readonly onFailure?: (err: VallignusError) => void;
}

export type ReserveResult =
  | { readonly ok: true; readonly id: string; readonly state: LedgerState }
  | { readonly ok: false; readonly state: LedgerState };

export interface ReserveMeta {
  readonly provider: string;
  readonly model: string;
}

export interface SettleMeta {
  readonly inputTokens?: number;
  readonly outputTokens?: number;
  /** The caller charged the whole reservation (a stream cut short, usage missing). */
  readonly charged_full?: boolean;
  readonly reason?: string;
}

/** A reservation of a process that died before settling it, charged in full. */
export interface RecoveredReservation {
  readonly jti: string;
  readonly id: string;
  readonly amountNano: number;
  readonly sessionId: string;
  readonly pid: number;
}

export interface LedgerSummary {
  readonly jti: string;
  readonly agent_id: string;
  readonly policy_id: string;
  readonly policy_version: number;
  readonly created_at: string;
  readonly budgetNano: number;
  readonly spentNano: number;
  readonly reservedNano: number;
  readonly leftNano: number;
  readonly calls: number;
  readonly openReservations: number;
}

/** One token's ledger, open in this process. Every method is synchronous and cross-process safe. */
export interface Ledger {
  readonly jti: string;
  /** What `openLedger` charged for dead processes' reservations when it opened this ledger. */
  readonly recovered: readonly RecoveredReservation[];
  /**
   * Reserves `amountNano` if spent + reserved + amount <= budget. The reservation is on disk
   * (fdatasync) before `ok: true` is returned; a refusal writes nothing.
   */
  reserve(amountNano: number, meta: ReserveMeta): ReserveResult;
  /**
   * Replaces reservation `id` by its actual cost (which is recorded even when it exceeds the
   * reservation: spent is spent). Settling an id again, or one recovery already charged, changes
   * nothing and returns the current state.
   */
  settle(id: string, actualNano: number, meta?: SettleMeta): LedgerState;
  /**
   * `reserve`, queued: the reservations and settlements asked for in one turn of the event loop
   * are written together under one lock with one write(2), settlements first (what they free is
   * there for the reservations), and the batch's fdatasync runs off the event loop. Resolves once
   * the reservation is on disk (or refused).
   */
  reserveSoon(amountNano: number, meta: ReserveMeta): Promise<ReserveResult>;
  /** `settle`, queued with `reserveSoon`'s batch; resolves once written (on disk if above its reservation). */
  settleSoon(id: string, actualNano: number, meta?: SettleMeta): Promise<LedgerState>;
  /** Writes what is queued now and waits for every pending sync. */
  drain(): Promise<void>;
  /** The current state, including what other processes have written. */
  state(): LedgerState;
  /** Closes the file; open reservations stay reserved until settled or recovered. */
  close(): void;
}

function inputError(message: string): VallignusError {
  return new VallignusError("ERR_LEDGER_INPUT", message);
}

interface PendingSettle {
  readonly id: string;
  readonly actualNano: number;
  readonly meta: SettleMeta;
  readonly done: (state: LedgerState) => void;
  readonly fail: (err: unknown) => void;
}

interface PendingReserve {
  readonly amountNano: number;
  readonly meta: ReserveMeta;
  readonly done: (result: ReserveResult) => void;
  readonly fail: (err: unknown) => void;
}

function assertAmount(what: string, amount: number): void {
  if (!Number.isSafeInteger(amount) || amount < 0)
    throw new VallignusError(
      "ERR_LEDGER_AMOUNT",
      `${what}: ${String(amount)} is not a non-negative integer number of nano-USD`,
    );
}

function label(text: string): string {
  return text.length > MAX_LABEL_CHARS ? text.slice(0, MAX_LABEL_CHARS) : text;
}

function describeError(err: unknown): string {
  return err instanceof Error ? err.message : "unknown error";
}

export function ledgerJournalPath(home: Home, jti: string): string {
  return home.path("ledger", `${jti}${JOURNAL_SUFFIX}`);
}

function ledgerLockPath(home: Home, jti: string): string {
  return home.path("ledger", `${jti}.lock`);
}

/**
 * A checkpoint of the fold, `ledger/<jti>.fold`: the state after the first `size` bytes and the
 * text of the line that ends there, so that opening a long-used token's ledger reads only what
 * came after. Written when a run closes the ledger, once CHECKPOINT_EVERY_LINES lines were added;
 * it is a cache: a missing or stale one costs a full fold, never a wrong state.
 */
function ledgerCheckpointPath(home: Home, jti: string): string {
  return home.path("ledger", `${jti}.fold`);
}

const CHECKPOINT_EVERY_LINES = 1000;

// ---------------------------------------------------------------------------------------------
// Owners: is the process that holds a reservation still there to settle it?

interface OwnerStamp {
  readonly session_id: string;
  readonly pid: number;
  /** Start time in clock ticks since boot (/proc/<pid>/stat field 22); null off Linux. */
  readonly pid_start: string | null;
  /** The kernel's boot id; a reservation from an earlier boot has no live owner. */
  readonly boot_id: string | null;
}

let bootIdCache: string | null | undefined;
function currentBootId(): string | null {
  if (bootIdCache === undefined) {
    try {
      bootIdCache = readFileSync("/proc/sys/kernel/random/boot_id", "utf8").trim() || null;
    } catch {
      bootIdCache = null;
    }
  }
  return bootIdCache;
}

let procCache: boolean | undefined;
function hasProcfs(): boolean {
  procCache ??= existsSync("/proc/self/stat");
  return procCache;
}

function stampOwner(owner: LedgerOwner): OwnerStamp {
  return {
    session_id: owner.sessionId,
    pid: owner.pid,
    pid_start: readProcStat(owner.pid)?.start ?? null,
    boot_id: currentBootId(),
  };
}

/**
 * False only when the owner is certainly gone: no such pid (ESRCH), another boot, a zombie, or a
 * pid now worn by a process that started at another time (pid reuse, Linux only). When in doubt
 * (EPERM, no /proc) the owner counts as alive: charging a live run's reservation would be wrong,
 * and leaving it reserved only holds budget back.
 */
function isOwnerAlive(owner: OwnerStamp): boolean {
  const boot = currentBootId();
  if (owner.boot_id !== null && boot !== null && owner.boot_id !== boot) return false;
  let ours = true;
  try {
    process.kill(owner.pid, 0);
  } catch (err) {
    if (isErrnoException(err) && err.code === "ESRCH") return false;
    ours = false;
  }
  if (!hasProcfs()) return true;
  const proc = readProcStat(owner.pid);
  // Ours and gone from /proc: it exited just now. Another user's may be hidden (hidepid): doubt.
  if (proc === null) return !ours;
  if (proc.state === "Z" || proc.state === "X") return false;
  return owner.pid_start === null || proc.start === owner.pid_start;
}

// ---------------------------------------------------------------------------------------------
// Lines: one JSON object per line, its last member a checksum of everything before it.

function checksum(body: string): string {
  return hash("sha256", body, "hex").slice(0, CHECKSUM_HEX_CHARS);
}

function encodeLine(fields: Readonly<Record<string, unknown>>): string {
  const body = JSON.stringify(fields);
  return `${body.slice(0, -1)},"ck":"${checksum(body)}"}\n`;
}

function decodeLine(text: string): Record<string, unknown> | undefined {
  const match = CHECKED_LINE.exec(text);
  if (match === null) return undefined;
  const body = `${match[1] ?? ""}}`;
  if (checksum(body) !== match[2]) return undefined;
  try {
    const value: unknown = JSON.parse(body);
    if (typeof value === "object" && value !== null && !Array.isArray(value))
      return value as Record<string, unknown>;
  } catch {
    // Reported below as corruption.
  }
  return undefined;
}

// ---------------------------------------------------------------------------------------------
// The fold: the state the lines describe, checked line by line.

interface Header {
  readonly jti: string;
  readonly agent_id: string;
  readonly policy_id: string;
  readonly policy_version: number;
  readonly budget_nano: number;
  readonly created_at: string;
}

interface OpenReservation {
  readonly amount: number;
  readonly owner: OwnerStamp;
}

class Fold {
  header: Header | undefined;
  nextSeq = 0;
  spent = 0;
  reserved = 0;
  calls = 0;
  readonly open = new Map<string, OpenReservation>();
  /** Settled ids, so a repeated settle is recognised as such rather than as a bug. */
  readonly closed = new Set<string>();

  /** Lines before this seq were folded by a checkpoint: their settled ids are not listed. */
  checkpointSeq = 0;

  constructor(private readonly path: string) {}

  /** Whether reservation `id` was settled or recovered (and so a repeat settle changes nothing). */
  isClosed(id: string): boolean {
    if (this.closed.has(id)) return true;
    // Ids are `r<seq of their reserve line>`; one from before the checkpoint that is not open
    // anymore was settled.
    const seq = /^r([0-9]{1,15})$/.exec(id)?.[1];
    return seq !== undefined && Number(seq) < this.checkpointSeq && !this.open.has(id);
  }

  snapshot(): Record<string, unknown> {
    return {
      seq: this.nextSeq,
      spent: this.spent,
      reserved: this.reserved,
      calls: this.calls,
      open: [...this.open].map(([id, r]) => ({ id, amount: r.amount, owner: r.owner })),
    };
  }

  /**
   * Takes the state of a checkpoint taken at line `seq`, after line 0 (the header) was folded
   * here. Checked as strictly as lines are; false (and nothing changed) if it does not check out.
   */
  restore(cp: Readonly<Record<string, unknown>>): boolean {
    if (this.nextSeq !== 1 || this.header === undefined) return false;
    const { seq, spent, reserved, calls, open } = cp;
    const count = (v: unknown): v is number =>
      typeof v === "number" && Number.isSafeInteger(v) && v >= 0;
    if (!count(seq) || seq < 1 || !count(spent) || !count(reserved) || !count(calls)) return false;
    if (!Array.isArray(open)) return false;
    const restored = new Map<string, OpenReservation>();
    let sum = 0;
    for (const item of open as unknown[]) {
      if (typeof item !== "object" || item === null) return false;
      const { id, amount, owner } = item as Record<string, unknown>;
      if (typeof id !== "string" || !/^r[0-9]{1,15}$/.test(id) || Number(id.slice(1)) >= seq)
        return false;
      if (!count(amount) || typeof owner !== "object" || owner === null) return false;
      const o = owner as Record<string, unknown>;
      const nullableText = (v: unknown) => v === null || typeof v === "string";
      if (typeof o["session_id"] !== "string" || !count(o["pid"]) || o["pid"] < 1) return false;
      if (!nullableText(o["pid_start"]) || !nullableText(o["boot_id"])) return false;
      restored.set(id, {
        amount,
        owner: {
          session_id: o["session_id"],
          pid: o["pid"],
          pid_start: o["pid_start"],
          boot_id: o["boot_id"],
        },
      });
      sum += amount;
    }
    if (sum !== reserved || restored.size !== open.length) return false;
    this.nextSeq = seq;
    this.spent = spent;
    this.reserved = reserved;
    this.calls = calls;
    for (const [id, r] of restored) this.open.set(id, r);
    this.checkpointSeq = seq;
    return true;
  }

  corrupt(why: string): VallignusError {
    return new VallignusError(
      "ERR_LEDGER_CORRUPT",
      `${this.path} line ${this.nextSeq + 1}: ${why}; the ledger cannot be trusted, so spend on this token is refused until it is restored`,
    );
  }

  applyLine(text: string): void {
    const entry = decodeLine(text);
    if (entry === undefined) throw this.corrupt("not a complete line with a matching checksum");
    this.apply(entry);
  }

  apply(entry: Readonly<Record<string, unknown>>): void {
    if (entry["seq"] !== this.nextSeq) throw this.corrupt(`expected seq ${this.nextSeq}`);
    const type = entry["type"];
    if (this.nextSeq === 0) {
      if (type !== "open") throw this.corrupt("the first line is not the ledger header");
      this.header = this.parseHeader(entry);
    } else if (type === "reserve") {
      this.reserve(entry);
    } else if (type === "settle" || type === "recover") {
      this.settle(entry, type);
    } else {
      throw this.corrupt(`unknown line type ${JSON.stringify(type)}`);
    }
    this.nextSeq++;
  }

  state(): LedgerState {
    const budget = this.header?.budget_nano ?? 0;
    return {
      budgetNano: budget,
      spentNano: this.spent,
      reservedNano: this.reserved,
      leftNano: Math.max(0, budget - this.spent - this.reserved),
      calls: this.calls,
      openReservations: this.open.size,
    };
  }

  private amount(entry: Readonly<Record<string, unknown>>, key: string): number {
    const value = entry[key];
    if (typeof value !== "number" || !Number.isSafeInteger(value) || value < 0)
      throw this.corrupt(`${key} is not a non-negative integer`);
    return value;
  }

  private text(entry: Readonly<Record<string, unknown>>, key: string): string {
    const value = entry[key];
    if (typeof value !== "string") throw this.corrupt(`${key} is not a string`);
    return value;
  }

  private id(entry: Readonly<Record<string, unknown>>, key: string): string {
    const value = this.text(entry, key);
    if (!isValidId(value)) throw this.corrupt(`${key} is not a valid id`);
    return value;
  }

  private textOrNull(entry: Readonly<Record<string, unknown>>, key: string): string | null {
    const value = entry[key];
    if (value === null) return null;
    if (typeof value !== "string") throw this.corrupt(`${key} is not a string or null`);
    return value;
  }

  private parseHeader(entry: Readonly<Record<string, unknown>>): Header {
    if (entry["v"] !== FORMAT_VERSION)
      throw this.corrupt(`unsupported ledger format ${JSON.stringify(entry["v"])}`);
    const version = this.amount(entry, "policy_version");
    if (version < 1) throw this.corrupt("policy_version is not a version number");
    return {
      jti: this.id(entry, "jti"),
      agent_id: this.id(entry, "agent_id"),
      policy_id: this.id(entry, "policy_id"),
      policy_version: version,
      budget_nano: this.amount(entry, "budget_nano"),
      created_at: this.text(entry, "created_at"),
    };
  }

  private reserve(entry: Readonly<Record<string, unknown>>): void {
    const id = this.text(entry, "id");
    // Ids are the seq of their reserve line, so they are unique without any coordination.
    if (id !== `r${this.nextSeq}`) throw this.corrupt(`reservation id ${JSON.stringify(id)}`);
    const amount = this.amount(entry, "amount_nano");
    const pid = this.amount(entry, "pid");
    if (pid < 1) throw this.corrupt("pid is not a process id");
    const owner: OwnerStamp = {
      session_id: this.text(entry, "session_id"),
      pid,
      pid_start: this.textOrNull(entry, "pid_start"),
      boot_id: this.textOrNull(entry, "boot_id"),
    };
    const reserved = this.reserved + amount;
    if (!Number.isSafeInteger(reserved)) throw this.corrupt("reserved total overflows");
    this.reserved = reserved;
    this.open.set(id, { amount, owner });
  }

  private settle(entry: Readonly<Record<string, unknown>>, type: "settle" | "recover"): void {
    const id = this.text(entry, "id");
    const open = this.open.get(id);
    if (open === undefined) throw this.corrupt(`${type} of unknown or settled reservation ${id}`);
    const charged = this.amount(entry, type === "settle" ? "actual_nano" : "charged_nano");
    if (type === "recover" && charged !== open.amount)
      throw this.corrupt(`recovery of ${id} does not charge its full reservation`);
    const spent = this.spent + charged;
    if (!Number.isSafeInteger(spent)) throw this.corrupt("spent total overflows");
    this.spent = spent;
    this.reserved -= open.amount;
    this.calls++;
    this.open.delete(id);
    this.closed.add(id);
  }
}

// ---------------------------------------------------------------------------------------------
// The journal file: an fd, the fold of its complete lines, and appends.

/**
 * Folds the complete lines in [from, to) and returns the offset just past the last of them.
 * Bytes after the last newline are a write that never finished; they are left for the caller.
 */
function foldRange(
  fd: number,
  from: number,
  to: number,
  fold: Fold,
  maxLines = Number.POSITIVE_INFINITY,
): number {
  let lines = 0;
  const chunk = Buffer.allocUnsafe(READ_CHUNK_BYTES);
  let carry = Buffer.alloc(0);
  let pos = from;
  let end = from;
  while (pos < to && lines < maxLines) {
    const n = readSync(fd, chunk, 0, Math.min(READ_CHUNK_BYTES, to - pos), pos);
    if (n === 0) break;
    pos += n;
    const data = carry.length > 0 ? Buffer.concat([carry, chunk.subarray(0, n)]) : chunk;
    const dataEnd = carry.length > 0 ? data.length : n;
    let start = 0;
    for (
      let nl = data.indexOf(10, start);
      nl !== -1 && nl < dataEnd && lines < maxLines;
      nl = data.indexOf(10, start)
    ) {
      fold.applyLine(data.toString("utf8", start, nl));
      end += nl + 1 - start;
      start = nl + 1;
      lines++;
    }
    // Copied, because `chunk` is reused by the next read.
    carry = Buffer.from(data.subarray(start, dataEnd));
  }
  return end;
}

class Journal {
  readonly fold: Fold;
  /** Offset just past the last complete line folded. */
  private knownSize = 0;
  private fd: number | undefined;
  private readonly ino: number;
  private readonly dev: number;

  private constructor(
    readonly path: string,
    fd: number,
  ) {
    this.fd = fd;
    this.fold = new Fold(path);
    const st = fstatSync(fd);
    this.ino = st.ino;
    this.dev = st.dev;
  }

  /** Opens an existing journal; undefined when there is none. Never creates one. */
  static open(path: string, writable: boolean): Journal | undefined {
    let fd: number;
    try {
      // O_APPEND: every write lands at the end; no O_CREAT: a journal appears only whole.
      fd = openSync(
        path,
        writable ? fsConstants.O_RDWR | fsConstants.O_APPEND : fsConstants.O_RDONLY,
      );
    } catch (err) {
      if (isErrnoException(err) && err.code === "ENOENT") return undefined;
      throw new VallignusError("ERR_LEDGER_READ", `cannot open ${path}: ${describeError(err)}`);
    }
    return new Journal(path, fd);
  }

  /**
   * Starts from a checkpoint (see `writeCheckpoint`) instead of folding every line, when it
   * matches this file: folds line 0 (the header) itself, checks that the checkpoint's last line
   * is in the file where it says, takes its state and goes on from there. A checkpoint that is
   * missing, torn or does not match is ignored, and refresh() folds every line as before.
   */
  resumeFrom(checkpointPath: string): void {
    if (this.knownSize !== 0) return;
    let cp: Record<string, unknown> | undefined;
    try {
      cp = decodeLine(readFileSync(checkpointPath, "utf8").replace(/\n$/, ""));
    } catch {
      return;
    }
    const fd = this.requireFd();
    const { size: cpSize, last } = cp ?? {};
    if (cp?.["v"] !== FORMAT_VERSION || typeof last !== "string") return;
    if (typeof cpSize !== "number" || !Number.isSafeInteger(cpSize)) return;
    const tail = Buffer.from(`${last}\n`, "utf8");
    const tailStart = cpSize - tail.length;
    if (tailStart <= 0 || cpSize > fstatSync(fd).size) return;
    const onDisk = Buffer.alloc(tail.length + 1);
    if (readSync(fd, onDisk, 0, onDisk.length, tailStart - 1) !== onDisk.length) return;
    // The line must start right after a newline, and be byte for byte the checkpoint's.
    if (onDisk[0] !== 0x0a || !onDisk.subarray(1).equals(tail)) return;
    const headerEnd = foldRange(fd, 0, Math.min(tailStart, READ_CHUNK_BYTES), this.fold, 1);
    this.knownSize = headerEnd;
    if (this.fold.restore(cp)) this.knownSize = cpSize;
  }

  /** Bytes folded: the offset just past the last complete line. */
  get size(): number {
    return this.knownSize;
  }

  /** The last complete line folded, without its newline; "" when none. */
  lastLine(): string {
    const fd = this.requireFd();
    const start = Math.max(0, this.knownSize - READ_CHUNK_BYTES);
    const buf = Buffer.alloc(this.knownSize - start);
    const n = readSync(fd, buf, 0, buf.length, start);
    if (n !== buf.length || buf[n - 1] !== 0x0a) return "";
    const from = buf.lastIndexOf(0x0a, n - 2) + 1;
    if (from === 0 && start !== 0) return "";
    return buf.toString("utf8", from, n - 1);
  }

  get header(): Header {
    const header = this.fold.header;
    if (header === undefined) throw this.fold.corrupt("the ledger has no header line");
    return header;
  }

  /**
   * Folds what was appended since the last look. With `repair` (only under the lock, where no
   * write is in progress) an unfinished last line is cut off so the next append starts clean.
   */
  refresh(repair: boolean): void {
    const fd = this.requireFd();
    const size = fstatSync(fd).size;
    if (this.knownSize > 0) this.assertStillAtPath();
    if (size < this.knownSize) throw this.fold.corrupt("the file shrank below lines already read");
    if (size > this.knownSize) this.knownSize = foldRange(fd, this.knownSize, size, this.fold);
    if (repair && size > this.knownSize) ftruncateSync(fd, this.knownSize);
    if (this.fold.header === undefined) throw this.fold.corrupt("the ledger has no header line");
  }

  /**
   * Appends lines with one write(2) and makes them durable with one fdatasync before folding
   * them in. Call only under the lock, after `refresh(true)`.
   */
  append(entries: readonly Readonly<Record<string, unknown>>[], durable = true): void {
    const fd = this.requireFd();
    let seq = this.fold.nextSeq;
    const lines = entries.map((e) => ({ seq: seq++, ...e }));
    const bytes = Buffer.from(lines.map(encodeLine).join(""), "utf8");
    let written = 0;
    let failure: unknown;
    try {
      written = writeSync(fd, bytes);
    } catch (err) {
      failure = err;
    }
    if (written !== bytes.length) {
      try {
        // We hold the lock, so nobody wrote after us: take the partial line back.
        ftruncateSync(fd, this.knownSize);
      } catch {
        // The next writer cuts the unfinished line off anyway.
      }
      throw new VallignusError(
        "ERR_LEDGER_WRITE",
        `cannot append to ${this.path}: ${failure === undefined ? "short write" : describeError(failure)}`,
      );
    }
    if (durable) this.sync();
    for (const line of lines) this.fold.apply(line);
    this.knownSize += bytes.length;
  }

  sync(): void {
    try {
      fdatasyncSync(this.requireFd());
    } catch (err) {
      throw new VallignusError(
        "ERR_LEDGER_WRITE",
        `cannot sync ${this.path}: ${describeError(err)}`,
      );
    }
  }

  /** fdatasync on the thread pool: the event loop goes on serving while the disk works. */
  syncAsync(): Promise<void> {
    const fd = this.requireFd();
    return new Promise((done, fail) => {
      fdatasync(fd, (err) => {
        if (err === null) done();
        else
          fail(
            new VallignusError(
              "ERR_LEDGER_WRITE",
              `cannot sync ${this.path}: ${describeError(err)}`,
            ),
          );
      });
    });
  }

  get closed(): boolean {
    return this.fd === undefined;
  }

  close(): void {
    if (this.fd === undefined) return;
    closeSync(this.fd);
    this.fd = undefined;
  }

  private requireFd(): number {
    if (this.fd === undefined)
      throw new VallignusError("ERR_LEDGER_CLOSED", `the ledger ${this.path} is closed`);
    return this.fd;
  }

  /**
   * Nothing of ours ever replaces or removes a journal. If it happened, someone else did it, and
   * carrying on with either file could lose spend, so we stop.
   */
  private assertStillAtPath(): void {
    let st;
    try {
      st = statSync(this.path);
    } catch (err) {
      if (isErrnoException(err) && err.code === "ENOENT")
        throw this.fold.corrupt("the file was removed while in use");
      throw err;
    }
    if (st.ino !== this.ino || st.dev !== this.dev)
      throw this.fold.corrupt("the file was replaced while in use");
  }
}

/** Charges every open reservation whose owner is gone, in full, with one write and one sync. */
function recoverInJournal(journal: Journal, now: () => Date): RecoveredReservation[] {
  const dead = [...journal.fold.open].filter(([, r]) => !isOwnerAlive(r.owner));
  if (dead.length === 0) return [];
  const ts = now().toISOString();
  journal.append(
    dead.map(([id, r]) => ({
      type: "recover",
      id,
      charged_nano: r.amount,
      reason: `owner gone: session ${r.owner.session_id} pid ${r.owner.pid}`,
      ts,
    })),
  );
  const jti = journal.header.jti;
  return dead.map(([id, r]) => ({
    jti,
    id,
    amountNano: r.amount,
    sessionId: r.owner.session_id,
    pid: r.owner.pid,
  }));
}

// ---------------------------------------------------------------------------------------------
// The ledger of one token, open in this process.

class OpenLedger implements Ledger {
  recovered: readonly RecoveredReservation[] = [];
  /** Set when the journal could not be read or extended; every later call fails closed. */
  private broken: VallignusError | undefined;

  constructor(
    readonly jti: string,
    private readonly journal: Journal,
    lockPath: string,
    private readonly checkpointPath: string,
    private readonly owner: OwnerStamp,
    private readonly now: () => Date,
    private readonly onFailure?: (err: VallignusError) => void,
  ) {
    this.lock = new LinkedFileLock(lockPath);
  }

  private failureReported = false;

  /** A background write failed: the waiting calls are refused, and the owner is told once. */
  private reportFailure(err: unknown): void {
    if (this.failureReported || this.onFailure === undefined) return;
    this.failureReported = true;
    this.onFailure(
      err instanceof VallignusError
        ? err
        : new VallignusError("ERR_LEDGER_WRITE", `ledger ${this.jti}: ${describeError(err)}`),
    );
  }

  /** See ledgerCheckpointPath. Best effort: a checkpoint that cannot be written is skipped. */
  private writeCheckpoint(): void {
    try {
      this.lock.run(() => {
        this.journal.refresh(true);
        const last = this.journal.lastLine();
        if (last === "") return;
        const text = encodeLine({
          v: FORMAT_VERSION,
          size: this.journal.size,
          last,
          ...this.journal.fold.snapshot(),
        });
        const temp = `${this.checkpointPath}.tmp-${process.pid}`;
        writeFileSync(temp, text, { mode: JOURNAL_MODE });
        renameSync(temp, this.checkpointPath);
      });
    } catch {
      // The next open folds from the previous checkpoint, or from the start.
    }
  }

  private readonly lock: LinkedFileLock;

  reserve(amountNano: number, meta: ReserveMeta): ReserveResult {
    assertAmount("reserve", amountNano);
    return this.locked(() => {
      const fold = this.journal.fold;
      if (fold.spent + fold.reserved + amountNano > this.journal.header.budget_nano)
        return { ok: false, state: fold.state() };
      const id = `r${fold.nextSeq}`;
      this.write(this.reserveLine(id, amountNano, meta));
      return { ok: true, id, state: fold.state() };
    });
  }

  private reserveLine(id: string, amountNano: number, meta: ReserveMeta): Record<string, unknown> {
    return {
      type: "reserve",
      id,
      amount_nano: amountNano,
      provider: label(meta.provider),
      model: label(meta.model),
      ...this.owner,
      ts: this.now().toISOString(),
    };
  }

  settle(id: string, actualNano: number, meta: SettleMeta = {}): LedgerState {
    assertAmount("settle", actualNano);
    return this.locked(() => {
      const fold = this.journal.fold;
      if (fold.isClosed(id)) return fold.state();
      const line = this.settleLine(id, actualNano, meta, fold.spent);
      this.write(line.entry, line.durable);
      return fold.state();
    });
  }

  /**
   * The journal line settling open reservation `id`. A settle at or below its reservation need
   * not wait for the disk: if a crash loses it, recovery charges the whole reservation instead —
   * more, never less. A settle above it (the provider reported more than our bound) is made
   * durable at once. The next fsync of this file (any reservation) makes earlier settles durable.
   */
  private settleLine(
    id: string,
    actualNano: number,
    meta: SettleMeta,
    spentBefore: number,
  ): { entry: Record<string, unknown>; reservedNano: number; durable: boolean } {
    const reservedNano = this.journal.fold.open.get(id)?.amount;
    if (reservedNano === undefined)
      throw new VallignusError(
        "ERR_LEDGER_UNKNOWN_RESERVATION",
        `ledger ${this.jti} has no reservation ${JSON.stringify(id)}`,
      );
    if (!Number.isSafeInteger(spentBefore + actualNano))
      throw new VallignusError("ERR_LEDGER_AMOUNT", `settle: spent would overflow`);
    const count = (n: number | undefined) =>
      n !== undefined && Number.isSafeInteger(n) && n >= 0 ? n : undefined;
    const entry = {
      type: "settle",
      id,
      actual_nano: actualNano,
      // Token counts are for people reading the journal; a bad one is dropped, not fatal.
      input_tokens: count(meta.inputTokens),
      output_tokens: count(meta.outputTokens),
      charged_full: meta.charged_full,
      reason: meta.reason === undefined ? undefined : label(meta.reason),
      ts: this.now().toISOString(),
    };
    return { entry, reservedNano, durable: actualNano > reservedNano };
  }

  private pendingSettles: PendingSettle[] = [];
  private pendingReserves: PendingReserve[] = [];
  private flushScheduled: NodeJS.Immediate | undefined;
  private readonly syncing = new Set<Promise<void>>();

  reserveSoon(amountNano: number, meta: ReserveMeta): Promise<ReserveResult> {
    assertAmount("reserve", amountNano);
    return new Promise((done, fail) => {
      this.pendingReserves.push({ amountNano, meta, done, fail });
      this.scheduleFlush();
    });
  }

  settleSoon(id: string, actualNano: number, meta: SettleMeta = {}): Promise<LedgerState> {
    assertAmount("settle", actualNano);
    return new Promise((done, fail) => {
      this.pendingSettles.push({ id, actualNano, meta, done, fail });
      this.scheduleFlush();
    });
  }

  async drain(): Promise<void> {
    this.flushPending(false);
    await Promise.allSettled([...this.syncing]);
  }

  private scheduleFlush(): void {
    this.flushScheduled ??= setImmediate(() => {
      this.flushScheduled = undefined;
      this.flushPending(false, true);
    });
  }

  /** Writes the queued settlements and reservations as one batch; see `reserveSoon`. */
  private flushPending(syncNow: boolean, background = false): void {
    if (this.flushScheduled !== undefined) clearImmediate(this.flushScheduled);
    this.flushScheduled = undefined;
    const settles = this.pendingSettles;
    const reserves = this.pendingReserves;
    if (settles.length === 0 && reserves.length === 0) return;
    this.pendingSettles = [];
    this.pendingReserves = [];
    const failAll = (err: unknown) => {
      for (const p of [...settles, ...reserves]) p.fail(err);
    };
    let batch: ReturnType<OpenLedger["writeBatch"]>;
    try {
      batch = this.locked(() => this.writeBatch(settles, reserves));
    } catch (err) {
      failAll(err);
      if (background && this.broken !== undefined) this.reportFailure(err);
      return;
    }
    const deliver = () => {
      settles.forEach((p, i) => {
        const result = batch.settled[i];
        if (result === undefined || result instanceof Error) p.fail(result);
        else p.done(result);
      });
      reserves.forEach((p, i) => {
        const result = batch.reserved[i];
        if (result === undefined) p.fail(new Error("no result for a reservation"));
        else p.done(result);
      });
    };
    if (!batch.durable) {
      deliver();
    } else if (syncNow) {
      try {
        this.guard(() => {
          this.journal.sync();
        });
      } catch (err) {
        failAll(err);
        return;
      }
      deliver();
    } else {
      const sync = this.journal.syncAsync().then(deliver, (err: unknown) => {
        this.broken ??=
          err instanceof VallignusError
            ? err
            : new VallignusError("ERR_LEDGER_WRITE", `ledger ${this.jti}: ${describeError(err)}`);
        failAll(this.broken);
        this.reportFailure(this.broken);
      });
      this.syncing.add(sync);
      void sync.finally(() => this.syncing.delete(sync));
    }
  }

  /** Under the lock: the batch's lines, written with one write(2) and not yet synced. */
  private writeBatch(
    settles: readonly PendingSettle[],
    reserves: readonly PendingReserve[],
  ): { settled: (LedgerState | Error)[]; reserved: ReserveResult[]; durable: boolean } {
    const fold = this.journal.fold;
    const entries: Record<string, unknown>[] = [];
    let durable = false;
    let spent = fold.spent;
    let reserved = fold.reserved;
    const settledIds = new Set<string>();
    const settleOutcome = settles.map((p): Error | "state" => {
      if (fold.isClosed(p.id) || settledIds.has(p.id)) return "state";
      try {
        const line = this.settleLine(p.id, p.actualNano, p.meta, spent);
        entries.push(line.entry);
        settledIds.add(p.id);
        spent += p.actualNano;
        reserved -= line.reservedNano;
        durable ||= line.durable;
        return "state";
      } catch (err) {
        return err instanceof Error ? err : new Error(String(err));
      }
    });
    const budget = this.journal.header.budget_nano;
    const ids = reserves.map((r) => {
      if (spent + reserved + r.amountNano > budget) return undefined;
      reserved += r.amountNano;
      // append() numbers the lines from nextSeq in order, so the id is known now.
      const id = `r${fold.nextSeq + entries.length}`;
      entries.push(this.reserveLine(id, r.amountNano, r.meta));
      durable = true;
      return id;
    });
    if (entries.length > 0) {
      this.guard(() => {
        this.journal.append(entries, false);
      });
    }
    const state = fold.state();
    return {
      settled: settleOutcome.map((o) => (o === "state" ? state : o)),
      reserved: ids.map((id) =>
        id === undefined ? { ok: false, state } : { ok: true, id, state },
      ),
      durable,
    };
  }

  state(): LedgerState {
    return this.locked(() => this.journal.fold.state());
  }

  close(): void {
    // What is still queued is written (and synced) before the file goes.
    if (!this.journal.closed && this.broken === undefined) {
      this.flushPending(true);
      // Syncs still running on the thread pool (call drain() first to wait for them instead).
      if (this.syncing.size > 0) this.journal.sync();
      const fold = this.journal.fold;
      if (fold.nextSeq - fold.checkpointSeq >= CHECKPOINT_EVERY_LINES) this.writeCheckpoint();
    }
    this.journal.close();
    this.lock.close();
  }

  /** Runs `fn` under the lock on a fold brought up to date with every other process's lines. */
  private locked<T>(fn: () => T): T {
    if (this.journal.closed)
      throw new VallignusError("ERR_LEDGER_CLOSED", `the ledger of ${this.jti} is closed`);
    if (this.broken !== undefined) throw this.broken;
    return this.lock.run(() => {
      this.guard(() => {
        this.journal.refresh(true);
      });
      return fn();
    });
  }

  private write(entry: Readonly<Record<string, unknown>>, durable = true): void {
    this.guard(() => {
      this.journal.append([entry], durable);
    });
  }

  /** A failed read or write leaves our view of the file in doubt: fail closed from then on. */
  private guard(fn: () => void): void {
    try {
      fn();
    } catch (err) {
      this.broken =
        err instanceof VallignusError
          ? err
          : new VallignusError(
              "ERR_LEDGER_READ",
              `ledger ${this.jti}: ${describeError(err)}; spend on this token is refused`,
            );
      throw this.broken;
    }
  }
}

function validateOptions(opts: OpenLedgerOptions): void {
  for (const [name, id] of [
    ["jti", opts.jti],
    ["agent", opts.agentId],
    ["policy", opts.policyId],
    ["session", opts.owner.sessionId],
  ] as const) {
    if (!isValidId(id)) throw inputError(`openLedger: invalid ${name} id ${JSON.stringify(id)}`);
  }
  if (!Number.isSafeInteger(opts.policyVersion) || opts.policyVersion < 1)
    throw inputError(`openLedger: invalid policy version ${String(opts.policyVersion)}`);
  if (!Number.isSafeInteger(opts.owner.pid) || opts.owner.pid < 1)
    throw inputError(`openLedger: invalid owner pid ${String(opts.owner.pid)}`);
  if (!Number.isSafeInteger(opts.budgetNano) || opts.budgetNano < 0)
    throw inputError(`openLedger: invalid budget ${String(opts.budgetNano)} nano-USD`);
}

/**
 * Opens the ledger of token `opts.jti`, creating it with the given budget on first use. Every
 * later open - a second `run` with the same token, at once or afterwards - continues the same
 * state. Before returning, it charges in full the open reservations of processes that are gone.
 *
 * A ledger whose header names another agent, policy version or budget is refused
 * (ERR_LEDGER_MISMATCH): a token's policy version is immutable, so a difference means the file
 * or the caller is wrong, and either way keeping one of the two budgets would be a guess.
 */
export function openLedger(home: Home, opts: OpenLedgerOptions): Ledger {
  validateOptions(opts);
  const now = opts.now ?? (() => new Date());
  mkdirSync(home.dir("ledger"), { recursive: true, mode: DIR_MODE });
  const path = ledgerJournalPath(home, opts.jti);
  const lockPath = ledgerLockPath(home, opts.jti);
  const checkpointPath = ledgerCheckpointPath(home, opts.jti);
  const owner = stampOwner(opts.owner);
  return withFileLock(lockPath, () => {
    // Under the lock nobody else creates it; the create is still atomic (temp + fsync + link +
    // directory fsync) so that a crash never leaves a journal without its whole header.
    if (!existsSync(path)) {
      const header = {
        seq: 0,
        type: "open",
        v: FORMAT_VERSION,
        jti: opts.jti,
        agent_id: opts.agentId,
        policy_id: opts.policyId,
        policy_version: opts.policyVersion,
        budget_nano: opts.budgetNano,
        created_at: now().toISOString(),
      };
      createFileExclusive(path, encodeLine(header), JOURNAL_MODE);
    }
    const journal = Journal.open(path, true);
    if (journal === undefined)
      throw new VallignusError("ERR_LEDGER_WRITE", `cannot create ${path}`);
    try {
      journal.resumeFrom(checkpointPath);
      journal.refresh(true);
      const h = journal.header;
      const mismatch = (
        [
          ["jti", h.jti, opts.jti],
          ["agent", h.agent_id, opts.agentId],
          ["policy", h.policy_id, opts.policyId],
          ["policy version", h.policy_version, opts.policyVersion],
          ["budget (nano-USD)", h.budget_nano, opts.budgetNano],
        ] as const
      ).find(([, inFile, given]) => inFile !== given);
      if (mismatch !== undefined)
        throw new VallignusError(
          "ERR_LEDGER_MISMATCH",
          `ledger ${opts.jti} records ${mismatch[0]} ${String(mismatch[1])}, the token names ${String(mismatch[2])}; refusing to guess which is right`,
        );
      const ledger = new OpenLedger(
        opts.jti,
        journal,
        lockPath,
        checkpointPath,
        owner,
        now,
        opts.onFailure,
      );
      ledger.recovered = recoverInJournal(journal, now);
      return ledger;
    } catch (err) {
      journal.close();
      throw err;
    }
  });
}

/** The jtis that have a ledger, sorted. */
function listJtis(home: Home): string[] {
  let names: string[];
  try {
    names = readdirSync(home.dir("ledger"));
  } catch (err) {
    if (isErrnoException(err) && err.code === "ENOENT") return [];
    throw err;
  }
  return names
    .filter((n) => n.endsWith(JOURNAL_SUFFIX))
    .map((n) => n.slice(0, -JOURNAL_SUFFIX.length))
    .filter((jti) => isValidId(jti))
    .sort();
}

/**
 * Charges in full every open reservation whose owner process is gone, in one token's ledger or
 * in all of them; reservations of live processes are left alone. `openLedger` does this itself.
 */
export function recoverDeadReservations(
  home: Home,
  jti?: string,
  now: () => Date = () => new Date(),
): RecoveredReservation[] {
  if (jti !== undefined && !isValidId(jti))
    throw inputError(`recoverDeadReservations: invalid jti ${JSON.stringify(jti)}`);
  const recovered: RecoveredReservation[] = [];
  for (const one of jti === undefined ? listJtis(home) : [jti]) {
    const path = ledgerJournalPath(home, one);
    if (!existsSync(path)) continue;
    withFileLock(ledgerLockPath(home, one), () => {
      const journal = Journal.open(path, true);
      if (journal === undefined) return;
      try {
        journal.refresh(true);
        recovered.push(...recoverInJournal(journal, now));
      } finally {
        journal.close();
      }
    });
  }
  return recovered;
}

function summarize(journal: Journal): LedgerSummary {
  const h = journal.header;
  const s = journal.fold.state();
  return {
    jti: h.jti,
    agent_id: h.agent_id,
    policy_id: h.policy_id,
    policy_version: h.policy_version,
    created_at: h.created_at,
    budgetNano: s.budgetNano,
    spentNano: s.spentNano,
    reservedNano: s.reservedNano,
    leftNano: s.leftNano,
    calls: s.calls,
    openReservations: s.openReservations,
  };
}

function readSummary(path: string, checkpointPath: string): LedgerSummary | undefined {
  const journal = Journal.open(path, false);
  if (journal === undefined) return undefined;
  try {
    journal.resumeFrom(checkpointPath);
    journal.refresh(false);
    return summarize(journal);
  } finally {
    journal.close();
  }
}

/**
 * One token's ledger as it is on disk, or undefined when the token has none. Read without the
 * lock (a line being written is unfinished and ignored); only if what it reads does not check out
 * does it read again under the lock, so a reader never slows the runs down but never reports
 * corruption that was just a write in progress.
 */
export function readLedgerSummary(home: Home, jti: string): LedgerSummary | undefined {
  if (!isValidId(jti)) throw inputError(`invalid jti ${JSON.stringify(jti)}`);
  const path = ledgerJournalPath(home, jti);
  const checkpoint = ledgerCheckpointPath(home, jti);
  try {
    return readSummary(path, checkpoint);
  } catch (err) {
    if (!(err instanceof VallignusError && err.code === "ERR_LEDGER_CORRUPT")) throw err;
    return withFileLock(ledgerLockPath(home, jti), () => readSummary(path, checkpoint));
  }
}

/** Every token's ledger, oldest first. */
export function listLedgers(home: Home): LedgerSummary[] {
  return listJtis(home)
    .map((jti) => readLedgerSummary(home, jti))
    .filter((s): s is LedgerSummary => s !== undefined)
    .sort((a, b) =>
      a.created_at === b.created_at
        ? a.jti.localeCompare(b.jti)
        : a.created_at.localeCompare(b.created_at),
    );
}
