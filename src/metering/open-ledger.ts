import { renameSync, writeFileSync } from "node:fs";

import { VallignusError } from "../errors.js";
import {
  describeError,
  FailureLatch,
  LinkedFileLock,
  TurnBatcher,
  type BatchOutcome,
} from "../storage/index.js";
import { encodeLine, FORMAT_VERSION } from "./ledger-codec.js";
import { JOURNAL_MODE, type LedgerJournal } from "./ledger-journal.js";
import type { OwnerStamp } from "./ledger-owner.js";
import type {
  Ledger,
  LedgerState,
  RecoveredReservation,
  ReserveMeta,
  ReserveResult,
  SettleMeta,
} from "./ledger-types.js";

/** Provider, model and reason are labels for people; a longer one is cut, not refused. */
const MAX_LABEL_CHARS = 256;
const CHECKPOINT_EVERY_LINES = 1000;

/** A settlement or reservation queued for this turn's batch, and who waits for it. */
type Pending =
  | {
      readonly kind: "settle";
      readonly id: string;
      readonly actualNano: number;
      readonly meta: SettleMeta;
      readonly done: (state: LedgerState) => void;
      readonly fail: (err: unknown) => void;
    }
  | {
      readonly kind: "reserve";
      readonly amountNano: number;
      readonly meta: ReserveMeta;
      readonly done: (result: ReserveResult) => void;
      readonly fail: (err: unknown) => void;
    };
type PendingSettle = Extract<Pending, { kind: "settle" }>;
type PendingReserve = Extract<Pending, { kind: "reserve" }>;

interface BatchResult {
  readonly settled: ReadonlyMap<PendingSettle, LedgerState | Error>;
  readonly reserved: ReadonlyMap<PendingReserve, ReserveResult>;
}

export function assertAmount(what: string, amount: number): void {
  if (!Number.isSafeInteger(amount) || amount < 0)
    throw new VallignusError(
      "ERR_LEDGER_AMOUNT",
      `${what}: ${String(amount)} is not a non-negative integer number of nano-USD`,
    );
}

function label(text: string): string {
  return text.length > MAX_LABEL_CHARS ? text.slice(0, MAX_LABEL_CHARS) : text;
}

export interface OpenLedgerParts {
  readonly jti: string;
  readonly journal: LedgerJournal;
  readonly lockPath: string;
  readonly checkpointPath: string;
  readonly owner: OwnerStamp;
  readonly now: () => Date;
  readonly onFailure: ((err: VallignusError) => void) | undefined;
}

/** The ledger of one token, open in this process. */
export class OpenLedger implements Ledger {
  readonly jti: string;
  recovered: readonly RecoveredReservation[] = [];
  private readonly journal: LedgerJournal;
  private readonly lock: LinkedFileLock;
  /** Set when the journal could not be read or extended; every later call fails closed. */
  private readonly failure: FailureLatch;
  private readonly batcher: TurnBatcher<Pending, BatchResult>;

  constructor(private readonly parts: OpenLedgerParts) {
    this.jti = parts.jti;
    this.journal = parts.journal;
    this.lock = new LinkedFileLock(parts.lockPath);
    this.failure = new FailureLatch(
      (err) =>
        new VallignusError(
          "ERR_LEDGER_READ",
          `ledger ${this.jti}: ${describeError(err)}; spend on this token is refused`,
        ),
      parts.onFailure,
    );
    this.batcher = new TurnBatcher({
      lock: this.lock,
      file: this.journal.file,
      failure: this.failure,
      target: {
        write: (items) => this.writeQueued(items),
        deliver: (items, result) => {
          deliverBatch(items, result);
        },
        reject: (items, err) => {
          for (const p of items) p.fail(err);
        },
      },
    });
  }

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

  reserveBatched(amountNano: number, meta: ReserveMeta): Promise<ReserveResult> {
    assertAmount("reserve", amountNano);
    return new Promise((done, fail) => {
      this.add({ kind: "reserve", amountNano, meta, done, fail });
    });
  }

  settleBatched(id: string, actualNano: number, meta: SettleMeta = {}): Promise<LedgerState> {
    assertAmount("settle", actualNano);
    return new Promise((done, fail) => {
      this.add({ kind: "settle", id, actualNano, meta, done, fail });
    });
  }

  drain(): Promise<void> {
    return this.batcher.drain();
  }

  state(): LedgerState {
    return this.locked(() => this.journal.fold.state());
  }

  close(): void {
    try {
      if (!this.journal.closed && this.failure.failed === undefined) this.finishWrites();
    } finally {
      this.journal.close();
      this.lock.close();
    }
  }

  /** What is still queued is written and synced before the file goes; then maybe a checkpoint. */
  private finishWrites(): void {
    try {
      this.batcher.flushNow();
    } catch {
      // The batch's callers got the error, and onFailure was told: nothing more to say.
      return;
    }
    this.batcher.syncPending();
    const fold = this.journal.fold;
    if (fold.nextSeq - fold.checkpointSeq >= CHECKPOINT_EVERY_LINES) this.writeCheckpoint();
  }

  private add(pending: Pending): void {
    if (this.journal.closed)
      throw new VallignusError("ERR_LEDGER_CLOSED", `the ledger of ${this.jti} is closed`);
    this.batcher.add(pending);
  }

  private reserveLine(id: string, amountNano: number, meta: ReserveMeta): Record<string, unknown> {
    return {
      type: "reserve",
      id,
      amount_nano: amountNano,
      provider: label(meta.provider),
      model: label(meta.model),
      ...this.parts.owner,
      ts: this.parts.now().toISOString(),
    };
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
      ts: this.parts.now().toISOString(),
    };
    return { entry, reservedNano, durable: actualNano > reservedNano };
  }

  /** Under the lock (taken by the batcher): the fold brought up to date, then the batch. */
  private writeQueued(items: readonly Pending[]): BatchOutcome<BatchResult> {
    if (this.journal.closed)
      throw new VallignusError("ERR_LEDGER_CLOSED", `the ledger of ${this.jti} is closed`);
    this.journal.refresh(true);
    const settles = items.filter((p): p is PendingSettle => p.kind === "settle");
    const reserves = items.filter((p): p is PendingReserve => p.kind === "reserve");
    return this.writeBatch(settles, reserves);
  }

  /**
   * The batch's lines, written with one write(2) and not yet synced: settlements first (what
   * they free is there for the reservations), then the reservations that fit, in order.
   */
  private writeBatch(
    settles: readonly PendingSettle[],
    reserves: readonly PendingReserve[],
  ): BatchOutcome<BatchResult> {
    const fold = this.journal.fold;
    const entries: Record<string, unknown>[] = [];
    let durable = false;
    let spent = fold.spent;
    let reserved = fold.reserved;
    const settledIds = new Set<string>();
    const settleErrors = new Map<PendingSettle, Error>();
    for (const p of settles) {
      if (fold.isClosed(p.id) || settledIds.has(p.id)) continue;
      try {
        const line = this.settleLine(p.id, p.actualNano, p.meta, spent);
        entries.push(line.entry);
        settledIds.add(p.id);
        spent += p.actualNano;
        reserved -= line.reservedNano;
        durable ||= line.durable;
      } catch (err) {
        settleErrors.set(p, err instanceof Error ? err : new Error(String(err)));
      }
    }
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
    if (entries.length > 0) this.journal.append(entries, false);
    const state = fold.state();
    const settled = new Map(settles.map((p) => [p, settleErrors.get(p) ?? state] as const));
    const reservations = new Map<PendingReserve, ReserveResult>();
    reserves.forEach((p, i) => {
      const id = ids[i];
      reservations.set(p, id === undefined ? { ok: false, state } : { ok: true, id, state });
    });
    return { result: { settled, reserved: reservations }, durable };
  }

  /** Runs `fn` under the lock on a fold brought up to date with every other process's lines. */
  private locked<T>(fn: () => T): T {
    if (this.journal.closed)
      throw new VallignusError("ERR_LEDGER_CLOSED", `the ledger of ${this.jti} is closed`);
    this.failure.throwIfFailed();
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
      throw this.failure.fail(err);
    }
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
        const temp = `${this.parts.checkpointPath}.tmp-${process.pid}`;
        writeFileSync(temp, text, { mode: JOURNAL_MODE });
        renameSync(temp, this.parts.checkpointPath);
      });
    } catch {
      // The next open folds from the previous checkpoint, or from the start.
    }
  }
}

function deliverBatch(items: readonly Pending[], result: BatchResult): void {
  for (const p of items) {
    if (p.kind === "settle") {
      const outcome = result.settled.get(p);
      if (outcome === undefined || outcome instanceof Error) p.fail(outcome);
      else p.done(outcome);
    } else {
      const outcome = result.reserved.get(p);
      if (outcome === undefined) p.fail(new Error("no result for a reservation"));
      else p.done(outcome);
    }
  }
}
