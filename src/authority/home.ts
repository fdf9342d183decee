import { chmodSync, existsSync, mkdirSync, readFileSync, statSync } from "node:fs";
import { homedir } from "node:os";
import { join, resolve } from "node:path";

import { VallignusError, isErrnoException } from "../errors.js";

export const DIR_MODE = 0o700;

/** The folders of `$VALLIGNUS_HOME`, as the contract lays them out. */
export const HOME_SUBDIRS = [
  "agents",
  "policies",
  "keys",
  "revoked",
  "ca",
  "ledger",
  "audit",
  "sessions",
  "secrets",
] as const;

export type HomeSubdir = (typeof HOME_SUBDIRS)[number];

/** Where the state lives: `$VALLIGNUS_HOME`, else `~/.vallignus`. */
export function resolveHomeDir(env: NodeJS.ProcessEnv = process.env): string {
  const fromEnv = env["VALLIGNUS_HOME"];
  if (fromEnv !== undefined && fromEnv !== "") return resolve(fromEnv);
  return join(homedir(), ".vallignus");
}

export class Home {
  constructor(readonly root: string) {}

  dir(sub: HomeSubdir): string {
    return join(this.root, sub);
  }

  path(sub: HomeSubdir, ...rest: string[]): string {
    return join(this.root, sub, ...rest);
  }

  /** True when `auth init` has completed here (an active signing key exists). */
  isInitialized(): boolean {
    return existsSync(this.path("keys", "active"));
  }

  /** Every command but `auth init` starts here. */
  requireInitialized(): void {
    if (!this.isInitialized()) {
      throw new VallignusError(
        "ERR_HOME_NOT_INITIALIZED",
        `${this.root} is not initialized; run \`vallignus auth init\` first`,
      );
    }
    assertNotReadableByOthers(this.root, "directory");
  }

  /** Creates any missing folder with mode 0700; existing folders are tightened, never loosened. */
  ensureLayout(): void {
    mkdirSync(this.root, { recursive: true, mode: DIR_MODE });
    chmodSync(this.root, DIR_MODE);
    for (const sub of HOME_SUBDIRS) {
      mkdirSync(this.dir(sub), { recursive: true, mode: DIR_MODE });
      chmodSync(this.dir(sub), DIR_MODE);
    }
  }
}

/** A secret must not be readable or writable by group or others; we refuse to use it if it is. */
export function assertNotReadableByOthers(path: string, what: string): void {
  const mode = statSync(path).mode & 0o777;
  if ((mode & 0o077) !== 0) {
    throw new VallignusError(
      "ERR_HOME_INSECURE_PERMISSIONS",
      `${what} ${path} has mode ${mode.toString(8).padStart(4, "0")}; it must not be accessible to group or others (chmod ${what === "directory" ? "700" : "600"} it)`,
    );
  }
}

/** Reads a UTF-8 file; undefined when it does not exist. */
export function readTextIfExists(path: string): string | undefined {
  try {
    return readFileSync(path, "utf8");
  } catch (err) {
    if (isErrnoException(err) && err.code === "ENOENT") return undefined;
    throw new VallignusError("ERR_HOME_READ", `cannot read ${path}: ${String(err)}`);
  }
}

/** Parses a state file; a file that is not a JSON object is reported, never guessed at. */
export function parseStateJson(path: string, text: string): Record<string, unknown> {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    throw new VallignusError(
      "ERR_HOME_CORRUPT",
      `${path} is not valid JSON; restore it or remove it`,
    );
  }
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw new VallignusError("ERR_HOME_CORRUPT", `${path} does not hold a JSON object`);
  }
  return value as Record<string, unknown>;
}

export function readStateJson(path: string): Record<string, unknown> | undefined {
  const text = readTextIfExists(path);
  return text === undefined ? undefined : parseStateJson(path, text);
}
