import { createPrivateKey, createPublicKey, type KeyObject, randomBytes } from "node:crypto";
import { readdirSync } from "node:fs";

import { VallignusError } from "../errors.js";
import { isValidId } from "../policy/index.js";
import {
  createFileExclusive,
  SECRET_FILE_MODE,
  withFileLock,
  writeFileAtomic,
} from "../storage/index.js";
import { assertNotReadableByOthers, type Home, parseStateJson, readTextIfExists } from "./home.js";

/** One Ed25519 signing key, `keys/<kid>.json` (mode 0600). */
export interface SigningKey {
  readonly kid: string;
  readonly created_at: string;
  readonly revoked_at: string | null;
  readonly publicKey: KeyObject;
  /** Loaded only for the active key, when signing. */
  readonly privateKey?: KeyObject;
}

interface KeyFile {
  kid: string;
  alg: "EdDSA";
  created_at: string;
  revoked_at: string | null;
  public_jwk: Record<string, unknown>;
  private_jwk: Record<string, unknown>;
}

function keyPath(home: Home, kid: string): string {
  return home.path("keys", `${kid}.json`);
}

function newKid(now: Date): string {
  return `${now.toISOString().slice(0, 10)}-${randomBytes(6).toString("hex")}`;
}

/** The DER prefix of a PKCS#8 Ed25519 private key; the 32-byte seed follows it (RFC 8410). */
const PKCS8_ED25519_PREFIX = Buffer.from("302e020100300506032b657004220420", "hex");

/**
 * A new Ed25519 key pair from a 32-byte seed of the CSPRNG (an Ed25519 private key is exactly
 * that seed). Not generateKeyPairSync: on Node 20, exporting its keys as JWK can deadlock when a
 * garbage collection finalizes the key-generation job during the export (the job and the key
 * share a mutex the export holds); `auth init` hung that way. A key made from its DER shares
 * nothing with a job.
 */
export function newEd25519KeyPair(): { publicKey: KeyObject; privateKey: KeyObject } {
  const der = Buffer.concat([PKCS8_ED25519_PREFIX, randomBytes(32)]);
  const privateKey = createPrivateKey({ key: der, format: "der", type: "pkcs8" });
  der.fill(0);
  return { privateKey, publicKey: createPublicKey(privateKey) };
}

function writeNewKey(home: Home, now: Date): string {
  const { publicKey, privateKey } = newEd25519KeyPair();
  const kid = newKid(now);
  const file: KeyFile = {
    kid,
    alg: "EdDSA",
    created_at: now.toISOString(),
    revoked_at: null,
    public_jwk: publicKey.export({ format: "jwk" }),
    private_jwk: privateKey.export({ format: "jwk" }),
  };
  if (
    !createFileExclusive(keyPath(home, kid), `${JSON.stringify(file, null, 2)}\n`, SECRET_FILE_MODE)
  ) {
    throw new VallignusError("ERR_KEY_EXISTS", `key ${kid} already exists`);
  }
  return kid;
}

function readKeyFile(home: Home, kid: string): KeyFile | undefined {
  if (!isValidId(kid)) return undefined;
  const path = keyPath(home, kid);
  const text = readTextIfExists(path);
  if (text === undefined) return undefined;
  assertNotReadableByOthers(path, "key file");
  const doc = parseStateJson(path, text);
  const pub = doc["public_jwk"];
  const priv = doc["private_jwk"];
  if (
    doc["kid"] !== kid ||
    doc["alg"] !== "EdDSA" ||
    typeof doc["created_at"] !== "string" ||
    !(doc["revoked_at"] === null || typeof doc["revoked_at"] === "string") ||
    typeof pub !== "object" ||
    pub === null ||
    typeof priv !== "object" ||
    priv === null
  ) {
    throw new VallignusError("ERR_HOME_CORRUPT", `${path} is not a valid signing key file`);
  }
  return doc as unknown as KeyFile;
}

function toSigningKey(path: string, file: KeyFile, withPrivate: boolean): SigningKey {
  try {
    const publicKey = createPublicKey({ key: file.public_jwk as never, format: "jwk" });
    if (publicKey.asymmetricKeyType !== "ed25519") throw new Error("not Ed25519");
    const base = {
      kid: file.kid,
      created_at: file.created_at,
      revoked_at: file.revoked_at,
      publicKey,
    };
    return withPrivate
      ? { ...base, privateKey: createPrivateKey({ key: file.private_jwk as never, format: "jwk" }) }
      : base;
  } catch {
    throw new VallignusError("ERR_HOME_CORRUPT", `${path} does not hold a valid Ed25519 key`);
  }
}

/** The key named by a token's `kid`, or undefined when this home never had it. */
export function findSigningKey(home: Home, kid: string): SigningKey | undefined {
  const file = readKeyFile(home, kid);
  return file === undefined ? undefined : toSigningKey(keyPath(home, kid), file, false);
}

export function activeKid(home: Home): string {
  const path = home.path("keys", "active");
  const raw = readTextIfExists(path);
  if (raw !== undefined) assertNotReadableByOthers(path, "key file");
  const text = raw?.trim();
  if (text === undefined || !isValidId(text)) {
    throw new VallignusError(
      "ERR_HOME_CORRUPT",
      `${home.path("keys", "active")} does not name a key`,
    );
  }
  return text;
}

export function activeSigningKey(home: Home): SigningKey {
  const kid = activeKid(home);
  const file = readKeyFile(home, kid);
  if (file === undefined) {
    throw new VallignusError(
      "ERR_HOME_CORRUPT",
      `the active key ${kid} is missing from ${home.dir("keys")}`,
    );
  }
  return toSigningKey(keyPath(home, kid), file, true);
}

export function listSigningKeys(home: Home): SigningKey[] {
  return readdirSync(home.dir("keys"))
    .filter((name) => name.endsWith(".json") && !name.startsWith("."))
    .map((name) => name.slice(0, -".json".length))
    .sort()
    .map((kid) => findSigningKey(home, kid))
    .filter((key): key is SigningKey => key !== undefined);
}

function markRevoked(home: Home, kid: string, now: Date): void {
  const file = readKeyFile(home, kid);
  if (file === undefined || file.revoked_at !== null) return;
  const next: KeyFile = { ...file, revoked_at: now.toISOString() };
  writeFileAtomic(keyPath(home, kid), `${JSON.stringify(next, null, 2)}\n`, SECRET_FILE_MODE);
}

/**
 * Makes a new active key. Old keys keep verifying the tokens they signed, unless
 * `revokePrevious`, which revokes every older key (their tokens are refused from then on).
 */
export function rotateSigningKey(
  home: Home,
  now: Date,
  revokePrevious: boolean,
): { kid: string; previous: string | undefined; revoked: string[] } {
  return withFileLock(home.path("keys", ".lock"), () => {
    const previous = readTextIfExists(home.path("keys", "active"))?.trim();
    // Read (and so check) every old key before writing anything: a failure leaves no half-rotation.
    const older = listSigningKeys(home);
    const kid = writeNewKey(home, now);
    writeFileAtomic(home.path("keys", "active"), `${kid}\n`, SECRET_FILE_MODE);
    const revoked: string[] = [];
    if (revokePrevious) {
      for (const key of older) {
        if (key.revoked_at === null) {
          markRevoked(home, key.kid, now);
          revoked.push(key.kid);
        }
      }
    }
    return { kid, previous, revoked };
  });
}
