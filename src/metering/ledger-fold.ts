import { readSync } from "node:fs";

import { VallignusError } from "../errors.js";
import { isValidId } from "../policy/index.js";
import { decodeLine, FORMAT_VERSION } from "./ledger-codec.js";
import type { OwnerStamp } from "./ledger-owner.js";
import type { LedgerState } from "./ledger-types.js";

/*
 * The fold: the state a ledger's lines describe, checked line by line. Line 0 is the header;
 * every later line is one `reserve`, `settle` or `recover` event, numbered by `seq`.
 */

export const READ_CHUNK_BYTES = 64 * 1024;

export interface Header {
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

export class Fold {
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

/**
 * Folds the complete lines in [from, to) and returns the offset just past the last of them.
 * Bytes after the last newline are a write that never finished; they are left for the caller.
 */
export function foldRange(
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
