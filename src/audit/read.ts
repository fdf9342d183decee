import { closeSync, fstatSync, statSync } from "node:fs";

import type { Home } from "../authority/index.js";
import { auditLogPath } from "./audit-log.js";
import { readLines } from "./lines.js";
import { isDecisionRecord, toAuditRecord, type AuditRecord } from "./records.js";
import { openAuditLogForReading } from "./verify.js";

/** What `audit query` can ask for; every given field must match. */
export interface AuditFilter {
  readonly session_id?: string;
  readonly agent_id?: string;
  readonly policy_id?: string;
  /** Only decision records with this outcome (lifecycle events never match). */
  readonly decision?: "allow" | "deny";
  /** Case-insensitive, ignoring one trailing dot, as policies match hosts. */
  readonly host?: string;
  /** A decision's `deny_reason` or an event's `reason`. */
  readonly reason?: string;
  /** Records at or after this instant. */
  readonly since?: Date;
}

function normalizeHost(host: string): string {
  return host.toLowerCase().replace(/\.$/, "");
}

export function matchesAuditFilter(record: AuditRecord, filter: AuditFilter): boolean {
  if (filter.session_id !== undefined && record.session_id !== filter.session_id) return false;
  if (filter.agent_id !== undefined && record.agent_id !== filter.agent_id) return false;
  if (filter.policy_id !== undefined && record.policy_id !== filter.policy_id) return false;
  if (filter.since !== undefined && !(Date.parse(record.ts) >= filter.since.getTime()))
    return false;
  const decision = isDecisionRecord(record) ? record : undefined;
  if (filter.decision !== undefined && decision?.decision !== filter.decision) return false;
  if (
    filter.host !== undefined &&
    (decision?.host == null || normalizeHost(decision.host) !== normalizeHost(filter.host))
  )
    return false;
  if (filter.reason !== undefined) {
    const reason = !isDecisionRecord(record)
      ? record["reason"]
      : record.decision === "deny"
        ? record.deny_reason
        : undefined;
    if (reason !== filter.reason) return false;
  }
  return true;
}

/**
 * Reads complete lines from `from` to `to` and hands on each well-formed record. Returns the
 * offset after the last complete line, where the next read should start. A line of the wrong
 * shape is skipped: readers show what they can, `verifyAuditLog` reports what is wrong.
 */
function scanRecords(
  fd: number,
  from: number,
  to: number,
  onRecord: (record: AuditRecord) => void,
): number {
  let offset = from;
  for (const line of readLines(fd, from, to)) {
    // A line without its newline may still be being written; it is read next time.
    if (!line.terminated) break;
    offset = line.end;
    let value: unknown;
    try {
      value = JSON.parse(line.text);
    } catch {
      continue;
    }
    const record = toAuditRecord(value);
    if (record !== undefined) onRecord(record);
  }
  return offset;
}

/** Every record that matches `filter`, in log order. */
export function readAuditRecords(home: Home, filter: AuditFilter = {}): AuditRecord[] {
  const fd = openAuditLogForReading(home);
  if (fd === undefined) return [];
  const records: AuditRecord[] = [];
  try {
    scanRecords(fd, 0, fstatSync(fd).size, (r) => {
      if (matchesAuditFilter(r, filter)) records.push(r);
    });
  } finally {
    closeSync(fd);
  }
  return records;
}

export interface FollowOptions {
  /** How many existing records to hand on first (the most recent ones). */
  readonly last: number;
  readonly signal: AbortSignal;
  readonly filter?: AuditFilter;
  readonly intervalMs?: number;
}

/**
 * `audit tail -f`: hands on the last `last` records, then every new one as it is appended,
 * until `signal` aborts. Polls (200 ms by default) rather than fs.watch, which misses appends
 * on some file systems; a log that is replaced or shortened is followed from its start.
 */
export function followAuditLog(
  home: Home,
  options: FollowOptions,
  onRecord: (record: AuditRecord) => void,
): Promise<void> {
  const filter = options.filter ?? {};
  const path = auditLogPath(home);
  let fd = openAuditLogForReading(home);
  let offset = 0;
  if (fd !== undefined) {
    const backlog: AuditRecord[] = [];
    offset = scanRecords(fd, 0, fstatSync(fd).size, (r) => {
      if (!matchesAuditFilter(r, filter)) return;
      backlog.push(r);
      if (backlog.length > options.last) backlog.shift();
    });
    for (const r of options.last > 0 ? backlog : []) onRecord(r);
  }

  const poll = (): void => {
    if (fd !== undefined) {
      const ours = fstatSync(fd);
      let replaced = true;
      try {
        const onDisk = statSync(path);
        replaced = onDisk.ino !== ours.ino || onDisk.dev !== ours.dev;
      } catch {
        // Gone: treated as replaced, and reopened once it exists again.
      }
      if (!replaced && ours.size >= offset) {
        offset = scanRecords(fd, offset, ours.size, (r) => {
          if (matchesAuditFilter(r, filter)) onRecord(r);
        });
        return;
      }
      closeSync(fd);
      fd = undefined;
    }
    fd = openAuditLogForReading(home);
    offset = 0;
    if (fd !== undefined) poll();
  };

  return new Promise((resolve, reject) => {
    const finish = (err?: unknown): void => {
      clearInterval(timer);
      options.signal.removeEventListener("abort", onAbort);
      if (fd !== undefined) closeSync(fd);
      fd = undefined;
      if (err === undefined) resolve();
      else reject(err instanceof Error ? err : new Error("cannot follow the audit log"));
    };
    const onAbort = (): void => {
      finish();
    };
    const timer = setInterval(() => {
      try {
        poll();
      } catch (err) {
        finish(err);
      }
    }, options.intervalMs ?? 200);
    if (options.signal.aborted) finish();
    else options.signal.addEventListener("abort", onAbort);
  });
}
