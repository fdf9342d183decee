import type { VallignusError } from "../errors.js";

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
  /**
   * Called once, the first time a batched write or sync of the ledger fails (disk full, EIO, a
   * lock that never came free, damage found in the file); every later call is refused with the
   * same error. A run stops on it: spend it cannot record is spend it must not allow.
   */
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

/** One token's ledger as stored: its header, and its state. */
export interface LedgerSummary extends LedgerState {
  readonly jti: string;
  readonly agent_id: string;
  readonly policy_id: string;
  readonly policy_version: number;
  readonly created_at: string;
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
  reserveBatched(amountNano: number, meta: ReserveMeta): Promise<ReserveResult>;
  /** `settle`, queued with `reserveBatched`'s batch; resolves once written (on disk if above its reservation). */
  settleBatched(id: string, actualNano: number, meta?: SettleMeta): Promise<LedgerState>;
  /** Writes what is queued now and waits for every pending sync. */
  drain(): Promise<void>;
  /** The current state, including what other processes have written. */
  state(): LedgerState;
  /** Closes the file; open reservations stay reserved until settled or recovered. */
  close(): void;
}

/**
 * Where the ledgers of every token live. The run and `spend` reach them only through this, so
 * that a second backend (a shared database) can stand where `ledger/` under $VALLIGNUS_HOME
 * stands now. What an implementation must keep: a reservation is durable before it is granted;
 * spent + reserved never exceeds the budget through a reservation, whatever number of processes
 * or machines reserve at once; a reservation whose owner is gone is charged in full, never
 * dropped; anything that does not check out is an error, never a guess (fail closed).
 */
export interface LedgerStore {
  /** Opens (creating on first use) the ledger of `opts.jti`; see openLedger. */
  open(opts: OpenLedgerOptions): Ledger;
  /** One token's ledger as stored, or undefined when the token has none. */
  readSummary(jti: string): LedgerSummary | undefined;
  /** Every token's ledger, oldest first. */
  list(): LedgerSummary[];
  /** Charges in full the open reservations of owners that are gone (one token, or all). */
  recoverDead(jti?: string, now?: () => Date): RecoveredReservation[];
}
