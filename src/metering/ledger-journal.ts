import { readFileSync, readSync } from "node:fs";

import type { Home } from "../authority/home.js";
import { JournalFile } from "../storage/index.js";
import { decodeLine, encodeLine, FORMAT_VERSION } from "./ledger-codec.js";
import { Fold, foldRange, READ_CHUNK_BYTES, type Header } from "./ledger-fold.js";
import { isOwnerAlive } from "./ledger-owner.js";
import type { RecoveredReservation } from "./ledger-types.js";

/*
 * The files of one token's ledger: the journal `ledger/<jti>.jsonl`, its lock `<jti>.lock`, and
 * its checkpoint `<jti>.fold`. A line whose write was cut short by a crash has no newline. Such a
 * tail is ignored (and cut off by the next writer): its write never finished, so it was never
 * acknowledged.
 */

export const JOURNAL_SUFFIX = ".jsonl";
/** Journals and checkpoints hold spend: the owner's alone. */
export const JOURNAL_MODE = 0o600;

export function ledgerJournalPath(home: Home, jti: string): string {
  return home.path("ledger", `${jti}${JOURNAL_SUFFIX}`);
}

export function ledgerLockPath(home: Home, jti: string): string {
  return home.path("ledger", `${jti}.lock`);
}

/**
 * A checkpoint of the fold, `ledger/<jti>.fold`: the state after the first `size` bytes and the
 * text of the line that ends there, so that opening a long-used token's ledger reads only what
 * came after. Written when a run closes the ledger, once CHECKPOINT_EVERY_LINES lines were added;
 * it is a cache: a missing or stale one costs a full fold, never a wrong state.
 */
export function ledgerCheckpointPath(home: Home, jti: string): string {
  return home.path("ledger", `${jti}.fold`);
}

/** A ledger's journal file and the fold of its complete lines. */
export class LedgerJournal {
  readonly fold: Fold;
  /** Offset just past the last complete line folded. */
  private knownSize = 0;

  private constructor(readonly file: JournalFile) {
    this.fold = new Fold(file.path);
  }

  /** Opens an existing journal; undefined when there is none. Never creates one. */
  static open(path: string, writable: boolean): LedgerJournal | undefined {
    const file = JournalFile.open(path, writable ? "existing" : "read", "ERR_LEDGER_WRITE");
    return file === undefined ? undefined : new LedgerJournal(file);
  }

  get path(): string {
    return this.file.path;
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
    const fd = this.fd();
    const { size: cpSize, last } = cp ?? {};
    if (cp?.["v"] !== FORMAT_VERSION || typeof last !== "string") return;
    if (typeof cpSize !== "number" || !Number.isSafeInteger(cpSize)) return;
    const tail = Buffer.from(`${last}\n`, "utf8");
    const tailStart = cpSize - tail.length;
    if (tailStart <= 0 || cpSize > this.file.size()) return;
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
    const fd = this.fd();
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
    const fd = this.fd();
    const size = this.file.size();
    // Nothing of ours ever replaces or removes a journal. If it happened, someone else did it,
    // and carrying on with either file could lose spend, so we stop.
    if (this.knownSize > 0 && !this.file.isStillAtPath())
      throw this.fold.corrupt("the file was removed or replaced while in use");
    if (size < this.knownSize) throw this.fold.corrupt("the file shrank below lines already read");
    if (size > this.knownSize) this.knownSize = foldRange(fd, this.knownSize, size, this.fold);
    if (repair && size > this.knownSize) this.file.truncate(this.knownSize);
    if (this.fold.header === undefined) throw this.fold.corrupt("the ledger has no header line");
  }

  /**
   * Appends lines with one write(2) (made durable with one fdatasync if `durable`) before
   * folding them in. Call only under the lock, after `refresh(true)`.
   */
  append(entries: readonly Readonly<Record<string, unknown>>[], durable = true): void {
    let seq = this.fold.nextSeq;
    const lines = entries.map((e) => ({ seq: seq++, ...e }));
    const bytes = Buffer.from(lines.map(encodeLine).join(""), "utf8");
    this.file.append(bytes, this.knownSize);
    if (durable) this.file.sync();
    for (const line of lines) this.fold.apply(line);
    this.knownSize += bytes.length;
  }

  get closed(): boolean {
    return this.file.closed;
  }

  close(): void {
    this.file.close();
  }

  private fd(): number {
    return this.file.descriptor("ERR_LEDGER_CLOSED");
  }
}

/** Charges every open reservation whose owner is gone, in full, with one write and one sync. */
export function recoverInJournal(journal: LedgerJournal, now: () => Date): RecoveredReservation[] {
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
