import { readdirSync } from "node:fs";

import { VallignusError } from "../errors.js";
import { isValidId } from "../policy/index.js";
import { createFileExclusive, PUBLIC_FILE_MODE } from "../storage/index.js";
import { type Home, readStateJson } from "./home.js";

export interface Revocation {
  readonly jti: string;
  readonly revoked_at: string;
  readonly reason: string;
}

export function findRevocation(home: Home, jti: string): Revocation | undefined {
  if (!isValidId(jti)) return undefined;
  const path = home.path("revoked", `${jti}.json`);
  const doc = readStateJson(path);
  if (doc === undefined) return undefined;
  if (
    doc["jti"] !== jti ||
    typeof doc["revoked_at"] !== "string" ||
    typeof doc["reason"] !== "string"
  ) {
    throw new VallignusError("ERR_HOME_CORRUPT", `${path} is not a valid revocation record`);
  }
  return doc as unknown as Revocation;
}

/** Revokes a jti. Revoking twice keeps the first record and reports it. */
export function revokeJti(
  home: Home,
  jti: string,
  reason: string,
  now: Date,
): { revocation: Revocation; already: boolean } {
  if (!isValidId(jti)) {
    throw new VallignusError(
      "ERR_ID_INVALID",
      "invalid jti: a jti is 32 hex characters (the value is not shown: it may be a token)",
    );
  }
  const revocation: Revocation = { jti, revoked_at: now.toISOString(), reason };
  const path = home.path("revoked", `${jti}.json`);
  if (createFileExclusive(path, `${JSON.stringify(revocation, null, 2)}\n`, PUBLIC_FILE_MODE)) {
    return { revocation, already: false };
  }
  const existing = findRevocation(home, jti);
  if (existing === undefined)
    throw new VallignusError("ERR_HOME_WRITE", `cannot record revocation at ${path}`);
  return { revocation: existing, already: true };
}

export function listRevocations(home: Home): Revocation[] {
  return readdirSync(home.dir("revoked"))
    .filter((name) => name.endsWith(".json") && !name.startsWith("."))
    .map((name) => findRevocation(home, name.slice(0, -".json".length)))
    .filter((r): r is Revocation => r !== undefined);
}
