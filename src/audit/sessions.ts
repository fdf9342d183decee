import { randomBytes } from "node:crypto";
import { mkdirSync, readdirSync } from "node:fs";
import { basename } from "node:path";

import { PUBLIC_FILE_MODE, writeFileAtomic } from "../storage/index.js";
import { readStateJson } from "../authority/home.js";
import { assertValidId, type Home } from "../authority/index.js";
import { isErrnoException, VallignusError } from "../errors.js";
import { isValidId } from "../policy/index.js";

/** `sessions/<session_id>/session.json`: one run, written at its start and again at its end. */
export interface SessionRecord {
  readonly session_id: string;
  readonly started_at: string;
  /** Null while the run is going (or when it died before it could write its end). */
  readonly ended_at: string | null;
  readonly agent_id: string;
  readonly owner: string;
  readonly policy_id: string;
  readonly policy_version: number;
  readonly jti: string;
  /**
   * The program's basename only. Arguments are left out because agents are often given API
   * keys or prompts on the command line; `arg_count` says how many there were.
   */
  readonly command: readonly string[];
  readonly arg_count?: number;
  readonly isolated: boolean;
  /** How `--isolate` isolated the run (bwrap, unshare-userns, unshare-root), or null. */
  readonly isolation_method?: string | null;
  readonly exit_status: number | null;
  readonly end_reason: string | null;
  /** Decisions of the run, written at its end. */
  readonly allowed?: number;
  readonly denied?: number;
}

/**
 * A session id that sorts by start time and is a valid id: `20261126t181500z-ab12cd34`.
 * 32 random bits keep runs started in the same second apart.
 */
export function newSessionId(
  now: Date,
  randomHex: () => string = () => randomBytes(4).toString("hex"),
): string {
  const stamp = now
    .toISOString()
    .replace(/\.\d+Z$/, "Z")
    .replace(/[-:]/g, "");
  return `${stamp}-${randomHex()}`.toLowerCase();
}

/** What a session keeps of argv: see `SessionRecord.command`. */
export function summarizeCommand(argv: readonly string[]): {
  command: string[];
  arg_count: number;
} {
  const [program, ...args] = argv;
  return { command: program === undefined ? [] : [basename(program)], arg_count: args.length };
}

function sessionPath(home: Home, sessionId: string): string {
  return home.path("sessions", sessionId, "session.json");
}

export function writeSessionRecord(home: Home, record: SessionRecord): void {
  assertValidId("session", record.session_id);
  mkdirSync(home.path("sessions", record.session_id), { recursive: true, mode: 0o700 });
  writeFileAtomic(
    sessionPath(home, record.session_id),
    `${JSON.stringify(record, null, 2)}\n`,
    PUBLIC_FILE_MODE,
  );
}

const isString = (v: unknown): v is string => typeof v === "string";
const isInteger = (v: unknown): v is number => Number.isSafeInteger(v);

function toSessionRecord(doc: Record<string, unknown>): SessionRecord | undefined {
  const ok =
    isString(doc["session_id"]) &&
    isString(doc["started_at"]) &&
    (doc["ended_at"] === null || isString(doc["ended_at"])) &&
    isString(doc["agent_id"]) &&
    isString(doc["owner"]) &&
    isString(doc["policy_id"]) &&
    isInteger(doc["policy_version"]) &&
    isString(doc["jti"]) &&
    Array.isArray(doc["command"]) &&
    doc["command"].every(isString) &&
    (doc["arg_count"] === undefined || isInteger(doc["arg_count"])) &&
    typeof doc["isolated"] === "boolean" &&
    (doc["exit_status"] === null || isInteger(doc["exit_status"])) &&
    (doc["end_reason"] === null || isString(doc["end_reason"])) &&
    (doc["allowed"] === undefined || isInteger(doc["allowed"])) &&
    (doc["denied"] === undefined || isInteger(doc["denied"]));
  return ok ? (doc as unknown as SessionRecord) : undefined;
}

/** The session's record; undefined when there is none (unknown id, or run with --no-session). */
export function readSessionRecord(home: Home, sessionId: string): SessionRecord | undefined {
  assertValidId("session", sessionId);
  const path = sessionPath(home, sessionId);
  const doc = readStateJson(path);
  if (doc === undefined) return undefined;
  const record = toSessionRecord(doc);
  if (record?.session_id !== sessionId)
    throw new VallignusError("ERR_HOME_CORRUPT", `${path} is not a valid session record`);
  return record;
}

/** Every readable session, oldest first. A folder without a valid record is left out. */
export function listSessionRecords(home: Home): SessionRecord[] {
  let names: string[];
  try {
    names = readdirSync(home.dir("sessions"));
  } catch (err) {
    if (isErrnoException(err) && err.code === "ENOENT") return [];
    throw err;
  }
  const records: SessionRecord[] = [];
  for (const name of names.filter((n) => isValidId(n))) {
    try {
      const record = readSessionRecord(home, name);
      if (record !== undefined) records.push(record);
    } catch (err) {
      if (!(err instanceof VallignusError)) throw err;
    }
  }
  const byText = (a: string, b: string) => (a < b ? -1 : a > b ? 1 : 0);
  return records.sort(
    (a, b) => byText(a.started_at, b.started_at) || byText(a.session_id, b.session_id),
  );
}
