import { existsSync, mkdirSync, readdirSync } from "node:fs";

import type { Home } from "../authority/home.js";
import { isErrnoException, VallignusError } from "../errors.js";
import { isValidId } from "../policy/index.js";
import { createFileExclusive, withFileLock } from "../storage/index.js";
import { encodeLine, FORMAT_VERSION } from "./ledger-codec.js";
import {
  JOURNAL_MODE,
  JOURNAL_SUFFIX,
  LedgerJournal,
  ledgerCheckpointPath,
  ledgerJournalPath,
  ledgerLockPath,
  recoverInJournal,
} from "./ledger-journal.js";
import { stampOwner } from "./ledger-owner.js";
import type {
  Ledger,
  LedgerStore,
  LedgerSummary,
  OpenLedgerOptions,
  RecoveredReservation,
} from "./ledger-types.js";
import { OpenLedger } from "./open-ledger.js";

export { ledgerJournalPath } from "./ledger-journal.js";
export type {
  Ledger,
  LedgerOwner,
  LedgerStore,
  LedgerState,
  LedgerSummary,
  OpenLedgerOptions,
  RecoveredReservation,
  ReserveMeta,
  ReserveResult,
  SettleMeta,
} from "./ledger-types.js";

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
 * Split by job: ledger-codec.ts (a line and its checksum), ledger-fold.ts (the state the lines
 * describe), ledger-owner.ts (who holds a reservation, is it alive), ledger-journal.ts (the files),
 * open-ledger.ts (reserve and settle, batched through storage's TurnBatcher), and here: open,
 * recover and summarise.
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

const DIR_MODE = 0o700;

function inputError(message: string): VallignusError {
  return new VallignusError("ERR_LEDGER_INPUT", message);
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
    const journal = LedgerJournal.open(path, true);
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
      const ledger = new OpenLedger({
        jti: opts.jti,
        journal,
        lockPath,
        checkpointPath,
        owner,
        now,
        onFailure: opts.onFailure,
      });
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
      const journal = LedgerJournal.open(path, true);
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

function summarize(journal: LedgerJournal): LedgerSummary {
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
  const journal = LedgerJournal.open(path, false);
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

/** The default ledger store: one journal per token under `ledger/` in the home. */
export function fileLedgerStore(home: Home): LedgerStore {
  return {
    open: (opts) => openLedger(home, opts),
    readSummary: (jti) => readLedgerSummary(home, jti),
    list: () => listLedgers(home),
    recoverDead: (jti, now) => recoverDeadReservations(home, jti, now),
  };
}
