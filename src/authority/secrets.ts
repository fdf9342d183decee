import {
  mkdirSync,
  readdirSync,
  readFileSync,
  statSync,
  unlinkSync,
  type BigIntStats,
} from "node:fs";

import { isErrnoException, VallignusError } from "../errors.js";
import { isValidSecretName, parseDomainPattern } from "../policy/index.js";
import type { SecretMeta, SecretPlacement, StoredSecret } from "../secrets/index.js";
import { SECRET_FILE_MODE, withFileLock, writeFileAtomic } from "../storage/index.js";
import { DIR_MODE, type Home, parseStateJson } from "./home.js";
import {
  assertSecretName,
  assertSecretValue,
  placementProblem,
  secretFingerprint,
  secretValueProblem,
} from "./secret-spec.js";

/*
 * Secrets live as plain files, `secrets/<NAME>.json` (0600) in a 0700 folder, like SSH keys: no
 * encryption at rest, because its key would have to sit beside the files. What that does and does
 * not defend against is in the README ("Protection at rest").
 */

/** What `set-secret` stores besides the value: canonical hosts and checked placements. */
export interface SecretSpec {
  readonly name: string;
  readonly hosts: readonly string[];
  readonly placements: readonly SecretPlacement[];
}

/** Reads the secrets as they are on disk now, re-reading only the files that changed. */
export interface SecretReader {
  read(name: string): StoredSecret | undefined;
  /** Every secret, sorted by name. */
  all(): StoredSecret[];
}

const FILE_NAME = /^([A-Z][A-Z0-9_]{0,63})\.json$/;
const FILE_KEYS = ["created_at", "hosts", "name", "placements", "rotated_at", "value"].join(",");

function secretsDir(home: Home): string {
  return home.dir("secrets");
}

function secretPath(home: Home, name: string): string {
  return home.path("secrets", `${name}.json`);
}

/** Homes made before secrets existed lack the folder: it is made on first write. */
function ensureSecretsDir(home: Home): void {
  mkdirSync(secretsDir(home), { recursive: true, mode: DIR_MODE });
  assertPrivate(secretsDir(home), statSync(secretsDir(home), { bigint: true }), "directory");
}

function assertPrivate(path: string, stats: BigIntStats, what: "directory" | "file"): void {
  const mode = Number(stats.mode & 0o777n);
  if ((mode & 0o077) !== 0) {
    throw new VallignusError(
      "ERR_HOME_INSECURE_PERMISSIONS",
      `${what} ${path} has mode ${mode.toString(8).padStart(4, "0")}; a secret's ${what} must not be accessible to group or others (chmod ${what === "directory" ? "700" : "600"} it)`,
    );
  }
}

function isPlacement(value: unknown): value is SecretPlacement {
  if (typeof value !== "object" || value === null) return false;
  const p = value as Record<string, unknown>;
  const keys = Object.keys(p).sort().join(",");
  const shaped =
    (p["kind"] === "query" && keys === "kind,name" && typeof p["name"] === "string") ||
    (p["kind"] === "header" &&
      keys === "kind,name,template" &&
      typeof p["name"] === "string" &&
      (p["template"] === null || typeof p["template"] === "string"));
  return shaped && placementProblem(value as SecretPlacement) === undefined;
}

function isCanonicalHostList(value: unknown): value is string[] {
  return (
    Array.isArray(value) &&
    value.length > 0 &&
    value.every((host) => {
      if (typeof host !== "string") return false;
      const parsed = parseDomainPattern(host, { storedPattern: true });
      return parsed.ok && parsed.pattern.text === host;
    })
  );
}

/** Why a parsed file is not a secret as we write it, or undefined (never naming the value). */
function secretFileProblem(doc: Record<string, unknown>, name: string): string | undefined {
  if (Object.keys(doc).sort().join(",") !== FILE_KEYS) return "unexpected or missing fields";
  if (doc["name"] !== name) return "it names another secret";
  if (!isCanonicalHostList(doc["hosts"])) return "bad hosts";
  const placements = doc["placements"];
  if (!Array.isArray(placements) || placements.length === 0 || !placements.every(isPlacement)) {
    return "bad placements";
  }
  if (typeof doc["created_at"] !== "string") return "bad created_at";
  if (doc["rotated_at"] !== null && typeof doc["rotated_at"] !== "string") return "bad rotated_at";
  const value = doc["value"];
  if (typeof value !== "string") return "bad value";
  return secretValueProblem(value) === undefined ? undefined : "bad value";
}

/** Parses one file's text; anything but the exact shape we write is refused (fail closed). */
function parseSecretFile(path: string, name: string, text: string): StoredSecret {
  const doc = parseStateJson(path, text);
  const problem = secretFileProblem(doc, name);
  if (problem !== undefined) {
    throw new VallignusError("ERR_HOME_CORRUPT", `${path} is not a valid secret: ${problem}`);
  }
  const value = doc["value"] as string;
  return {
    name,
    hosts: doc["hosts"] as string[],
    placements: doc["placements"] as SecretPlacement[],
    created_at: doc["created_at"] as string,
    rotated_at: doc["rotated_at"] as string | null,
    fingerprint: secretFingerprint(value),
    value,
  };
}

/** The file's text, written as the design fixes it; the fingerprint is computed, never stored. */
function serialize(secret: StoredSecret): string {
  const { name, hosts, placements, created_at, rotated_at, value } = secret;
  return `${JSON.stringify({ name, hosts, placements, created_at, rotated_at, value }, null, 2)}\n`;
}

function statOrUndefined(path: string): BigIntStats | undefined {
  try {
    // The proxy asks for every request it checks: a home without secrets must not cost an
    // exception each time, so a missing file is an answer, not an error.
    return statSync(path, { bigint: true, throwIfNoEntry: false });
  } catch (err) {
    throw new VallignusError("ERR_HOME_READ", `cannot read ${path}: ${String(err)}`);
  }
}

function readText(path: string): string | undefined {
  try {
    return readFileSync(path, "utf8");
  } catch (err) {
    if (isErrnoException(err) && err.code === "ENOENT") return undefined;
    throw new VallignusError("ERR_HOME_READ", `cannot read ${path}: ${String(err)}`);
  }
}

/** Reads one secret, refusing a folder or file that group or others may read. */
export function findSecret(home: Home, name: string): StoredSecret | undefined {
  if (!isValidSecretName(name)) return undefined;
  const dir = statOrUndefined(secretsDir(home));
  if (dir === undefined) return undefined;
  assertPrivate(secretsDir(home), dir, "directory");
  const path = secretPath(home, name);
  const stats = statOrUndefined(path);
  if (stats === undefined) return undefined;
  assertPrivate(path, stats, "file");
  const text = readText(path);
  return text === undefined ? undefined : parseSecretFile(path, name, text);
}

function getSecret(home: Home, name: string): StoredSecret {
  assertSecretName(name);
  const found = findSecret(home, name);
  if (found === undefined) {
    throw new VallignusError("ERR_SECRET_NOT_FOUND", `no secret ${name}`);
  }
  return found;
}

function withoutValue(secret: StoredSecret): SecretMeta {
  const { name, hosts, placements, created_at, rotated_at, fingerprint } = secret;
  return { name, hosts, placements, created_at, rotated_at, fingerprint };
}

/** Writes the whole file anew (temp + rename); a failed write leaves the old file as it was. */
function writeSecret(home: Home, secret: StoredSecret): void {
  try {
    writeFileAtomic(secretPath(home, secret.name), serialize(secret), SECRET_FILE_MODE);
  } catch (err) {
    // An fs error names the path and the errno, never the bytes written.
    const why = isErrnoException(err) && err.code !== undefined ? err.code : String(err);
    throw new VallignusError("ERR_HOME_WRITE", `cannot write secret ${secret.name}: ${why}`);
  }
}

function underLock<T>(home: Home, fn: () => T): T {
  ensureSecretsDir(home);
  return withFileLock(home.path("secrets", ".lock"), fn);
}

/** Stores a new secret; a name already held is refused (a value changes by rotation only). */
export function setSecret(home: Home, spec: SecretSpec, value: string, now: Date): SecretMeta {
  assertSecretName(spec.name);
  assertSecretValue(value);
  // What the CLI checked, checked again: a file written here must read back.
  if (!isCanonicalHostList(spec.hosts)) {
    throw new VallignusError("ERR_POLICY_DOMAIN_INVALID", "a secret needs canonical host patterns");
  }
  if (spec.placements.length === 0 || !spec.placements.every(isPlacement)) {
    throw new VallignusError("ERR_SECRET_PLACEMENT", "a secret needs valid placements");
  }
  return underLock(home, () => {
    if (findSecret(home, spec.name) !== undefined) {
      throw new VallignusError(
        "ERR_SECRET_EXISTS",
        `secret ${spec.name} already exists; use rotate-secret to change its value`,
      );
    }
    const secret: StoredSecret = {
      name: spec.name,
      hosts: [...spec.hosts],
      placements: [...spec.placements],
      created_at: now.toISOString(),
      rotated_at: null,
      fingerprint: secretFingerprint(value),
      value,
    };
    writeSecret(home, secret);
    return withoutValue(secret);
  });
}

/** A new value for a secret; its hosts and placements stay. Runs see it on their next request. */
export function rotateSecret(home: Home, name: string, value: string, now: Date): SecretMeta {
  assertSecretName(name);
  assertSecretValue(value);
  return underLock(home, () => {
    const current = getSecret(home, name);
    const next: StoredSecret = {
      ...current,
      rotated_at: now.toISOString(),
      fingerprint: secretFingerprint(value),
      value,
    };
    writeSecret(home, next);
    return withoutValue(next);
  });
}

export function removeSecret(home: Home, name: string): void {
  assertSecretName(name);
  underLock(home, () => {
    getSecret(home, name);
    unlinkSync(secretPath(home, name));
  });
}

function secretNames(home: Home): string[] {
  try {
    return readdirSync(secretsDir(home))
      .map((file) => FILE_NAME.exec(file)?.[1])
      .filter((name): name is string => name !== undefined)
      .sort();
  } catch (err) {
    if (isErrnoException(err) && err.code === "ENOENT") return [];
    throw new VallignusError("ERR_HOME_READ", `cannot read ${secretsDir(home)}: ${String(err)}`);
  }
}

/** Every secret without its value, sorted by name. */
export function listSecrets(home: Home): SecretMeta[] {
  return secretNames(home)
    .map((name) => findSecret(home, name))
    .filter((secret): secret is StoredSecret => secret !== undefined)
    .map(withoutValue);
}

/** What tells one version of a file from another without reading it. */
interface FileStamp {
  readonly ino: bigint;
  readonly size: bigint;
  readonly mtimeNs: bigint;
  readonly ctimeNs: bigint;
  /** When we looked: a stamp is trusted only once its mtime is older than RACY_NS then. */
  readonly seenNs: bigint;
}

/**
 * A file changed twice within one tick of the file system's clock can come back with the same
 * size and times, and with the inode the first write freed: the stamp would match a file we never
 * read. As git does for its index ("racily clean"), a stamp taken less than this after the file's
 * mtime is not trusted; such a file is read again on the next call, until it has aged.
 */
const RACY_NS = 2_000_000_000n;

function stampOf(stats: BigIntStats, seenNs: bigint): FileStamp {
  return {
    ino: stats.ino,
    size: stats.size,
    mtimeNs: stats.mtimeNs,
    ctimeNs: stats.ctimeNs,
    seenNs,
  };
}

function isSameFile(stamp: FileStamp | undefined, stats: BigIntStats): boolean {
  return (
    stamp !== undefined &&
    stamp.seenNs - stamp.mtimeNs > RACY_NS &&
    stamp.ino === stats.ino &&
    stamp.size === stats.size &&
    stamp.mtimeNs === stats.mtimeNs &&
    stamp.ctimeNs === stats.ctimeNs
  );
}

const wallClockNs = (): bigint => BigInt(Date.now()) * 1_000_000n;

/**
 * A reader for a process that serves requests (the proxy): every call sees the files as they are
 * now — a rotation (a rename, so a new inode) is seen by the very next call — yet costs one stat
 * per file and one of the folder; a file is parsed again only when its stamp changed. Anything it
 * cannot trust (a corrupt or mis-shaped file, a folder or file that others may read) throws, so
 * the caller denies.
 */
export function secretReader(home: Home, clockNs: () => bigint = wallClockNs): SecretReader {
  const dir = secretsDir(home);
  const files = new Map<string, { stamp: FileStamp; secret: StoredSecret }>();
  let listing: { stamp: FileStamp; names: string[] } | undefined;

  /** False when the folder does not exist (a home with no secret yet). */
  const checkDir = (): BigIntStats | undefined => {
    const stats = statOrUndefined(dir);
    if (stats === undefined) {
      files.clear();
      listing = undefined;
    } else assertPrivate(dir, stats, "directory");
    return stats;
  };

  const readOne = (name: string): StoredSecret | undefined => {
    const path = secretPath(home, name);
    const stats = statOrUndefined(path);
    if (stats === undefined) {
      files.delete(name);
      return undefined;
    }
    assertPrivate(path, stats, "file");
    const cached = files.get(name);
    if (cached !== undefined && isSameFile(cached.stamp, stats)) return cached.secret;
    const seenNs = clockNs();
    const read = readText(path);
    if (read === undefined) {
      files.delete(name);
      return undefined;
    }
    const secret = parseSecretFile(path, name, read);
    files.set(name, { stamp: stampOf(stats, seenNs), secret });
    return secret;
  };

  return {
    read: (name) =>
      isValidSecretName(name) && checkDir() !== undefined ? readOne(name) : undefined,
    all: () => {
      const stats = checkDir();
      if (stats === undefined) return [];
      if (listing === undefined || !isSameFile(listing.stamp, stats)) {
        const seenNs = clockNs();
        listing = { stamp: stampOf(stats, seenNs), names: secretNames(home) };
        for (const name of files.keys()) if (!listing.names.includes(name)) files.delete(name);
      }
      return listing.names
        .map(readOne)
        .filter((secret): secret is StoredSecret => secret !== undefined);
    },
  };
}
