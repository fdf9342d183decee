import { closeSync, fstatSync, openSync } from "node:fs";

import { withFileLock } from "../storage/index.js";
import type { Home } from "../authority/index.js";
import { isErrnoException } from "../errors.js";
import { auditLockPath, auditLogPath } from "./audit-log.js";
import { readLines } from "./lines.js";
import { GENESIS_HASH, isHashHex, recordHashMatches } from "./records.js";

export type AuditVerifyResult =
  | { readonly ok: true; readonly records: number }
  | { readonly ok: false; readonly line: number; readonly why: string };

/** Opens the log; undefined when there is none yet (an empty log is intact). */
export function openAuditLogForReading(home: Home): number | undefined {
  try {
    return openSync(auditLogPath(home), "r");
  } catch (err) {
    if (isErrnoException(err) && err.code === "ENOENT") return undefined;
    throw err;
  }
}

/**
 * The size to verify up to, taken under the audit lock: every writer holds that lock for its
 * whole write(2), so the size is at a line boundary and a line being written right now is not
 * mistaken for a cut-short one.
 */
function settledSize(home: Home, fd: number): number {
  try {
    return withFileLock(auditLockPath(home), () => fstatSync(fd).size);
  } catch (err) {
    // A log we may read but not lock (a read-only copy) has no writers to wait for.
    if (isErrnoException(err) && (err.code === "EACCES" || err.code === "EROFS"))
      return fstatSync(fd).size;
    throw err;
  }
}

/** Why one line breaks the chain, or its hash when it extends the chain properly. */
function checkLine(
  text: string,
  expectedSeq: number,
  prevHash: string,
): { why: string } | { hash: string } {
  const broken = (why: string) => ({ why });
  if (text === "") return broken("empty line");
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    return broken("not valid JSON");
  }
  if (typeof value !== "object" || value === null || Array.isArray(value))
    return broken("not a JSON object");
  const record = value as Record<string, unknown>;
  const { seq, prev_hash, hash } = record;
  if (seq !== expectedSeq) {
    const found = seq === undefined ? "missing" : JSON.stringify(seq);
    return broken(`seq is ${found}, expected ${expectedSeq} (a line was removed, added or moved)`);
  }
  if (prev_hash !== prevHash) {
    return broken(
      expectedSeq === 1
        ? "prev_hash of the first record is not the genesis hash"
        : "prev_hash does not match the hash of the line before (a line was edited or replaced)",
    );
  }
  if (!isHashHex(hash) || !recordHashMatches(record, hash))
    return broken("hash does not match the record's content (the line was edited)");
  return { hash };
}

/**
 * Checks the whole chain: each line parses, `seq` counts 1, 2, 3… with no gap, each
 * `prev_hash` is the hash of the line before, and each `hash` recomputes. The first problem is
 * reported by its 1-based line number.
 *
 * What a chain without a secret key cannot show: someone able to rewrite the file may recompute
 * every hash after an edit, or cut records off the end. It proves the log was not damaged or
 * edited by hand, not that it was never forged.
 */
export function verifyAuditLog(home: Home): AuditVerifyResult {
  const fd = openAuditLogForReading(home);
  if (fd === undefined) return { ok: true, records: 0 };
  try {
    let line = 0;
    let prevHash = GENESIS_HASH;
    for (const raw of readLines(fd, 0, settledSize(home, fd))) {
      line++;
      if (!raw.terminated) {
        return { ok: false, line, why: "incomplete line: the file ends without a newline" };
      }
      const checked = checkLine(raw.text, line, prevHash);
      if ("why" in checked) return { ok: false, line, why: checked.why };
      prevHash = checked.hash;
    }
    return { ok: true, records: line };
  } finally {
    closeSync(fd);
  }
}
