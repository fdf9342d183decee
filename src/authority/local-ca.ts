import { createPrivateKey, KeyObject, randomBytes, webcrypto, X509Certificate } from "node:crypto";
import { mkdirSync } from "node:fs";
import { hostname } from "node:os";

import { VallignusError } from "../errors.js";
import { PUBLIC_FILE_MODE, SECRET_FILE_MODE, writeFileAtomic } from "../storage/index.js";
import { assertNotReadableByOthers, type Home, readTextIfExists } from "./home.js";

const SIGNING = { name: "ECDSA", namedCurve: "P-256", hash: "SHA-256" } as const;
const CA_VALID_DAYS = 825;

/** Loaded on demand: the X.509 builder is large and only `init` and TLS interception need it. */
async function loadX509(): Promise<typeof import("@peculiar/x509")> {
  await import("reflect-metadata");
  const x509 = await import("@peculiar/x509");
  x509.cryptoProvider.set(webcrypto as unknown as Parameters<typeof x509.cryptoProvider.set>[0]);
  return x509;
}

export interface LocalCa {
  readonly certPem: string;
  readonly keyPem: string;
  readonly certPath: string;
}

export function caPaths(home: Home): { cert: string; key: string } {
  return { cert: home.path("ca", "ca-cert.pem"), key: home.path("ca", "ca-key.pem") };
}

/**
 * Creates the local CA that later signs leaf certificates for metered LLM hosts. It is a
 * P-256 CA limited to path length 0 (it can sign leaves, not other CAs).
 */
export async function createLocalCa(home: Home, now: Date): Promise<LocalCa> {
  const x509 = await loadX509();
  const keys = await webcrypto.subtle.generateKey(SIGNING, true, ["sign", "verify"]);
  const notAfter = new Date(now.getTime() + CA_VALID_DAYS * 86_400_000);
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: `01${randomBytes(15).toString("hex")}`,
    name: `CN=Vallignus local CA (${hostname().replace(/[,=+<>#;"\\]/g, "_")}), O=Vallignus`,
    notBefore: new Date(now.getTime() - 60_000),
    notAfter,
    signingAlgorithm: SIGNING,
    keys,
    extensions: [
      new x509.BasicConstraintsExtension(true, 0, true),
      new x509.KeyUsagesExtension(
        x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign,
        true,
      ),
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
    ],
  });
  const keyPem = KeyObject.from(keys.privateKey)
    .export({ type: "pkcs8", format: "pem" })
    .toString();
  const certPem = cert.toString("pem");
  const paths = caPaths(home);
  writeFileAtomic(paths.key, keyPem, SECRET_FILE_MODE);
  writeFileAtomic(paths.cert, `${certPem}\n`, PUBLIC_FILE_MODE);
  return { certPem, keyPem, certPath: paths.cert };
}

export function hasLocalCa(home: Home): boolean {
  const paths = caPaths(home);
  return readTextIfExists(paths.cert) !== undefined && readTextIfExists(paths.key) !== undefined;
}

/** Loads the CA, refusing a key file that others can read. */
export function loadLocalCa(home: Home): LocalCa {
  const paths = caPaths(home);
  const certPem = readTextIfExists(paths.cert);
  const keyPem = readTextIfExists(paths.key);
  if (certPem === undefined || keyPem === undefined) {
    throw new VallignusError(
      "ERR_CA_MISSING",
      `the local CA is missing in ${home.dir("ca")}; run \`vallignus auth init\``,
    );
  }
  assertNotReadableByOthers(paths.key, "CA key file");
  try {
    new X509Certificate(certPem);
  } catch {
    throw new VallignusError("ERR_HOME_CORRUPT", `${paths.cert} is not a valid certificate`);
  }
  return { certPem, keyPem, certPath: paths.cert };
}

/** A leaf certificate for one metered host, with its private key (PEM). */
export interface LeafCertificate {
  readonly certPem: string;
  readonly keyPem: string;
  readonly notAfter: Date;
}

const LEAF_VALID_DAYS = 30;
const leafMemory = new Map<string, LeafCertificate>();

function leafPath(home: Home, host: string): string {
  return home.path("ca", "leaves", `${host}.pem`);
}

function readLeafFromDisk(home: Home, host: string): LeafCertificate | undefined {
  const path = leafPath(home, host);
  const text = readTextIfExists(path);
  if (text === undefined) return undefined;
  assertNotReadableByOthers(path, "leaf key file");
  const certPem = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/.exec(text)?.[0];
  const keyPem = /-----BEGIN PRIVATE KEY-----[\s\S]+?-----END PRIVATE KEY-----/.exec(text)?.[0];
  if (certPem === undefined || keyPem === undefined) return undefined;
  try {
    return { certPem, keyPem, notAfter: new Date(new X509Certificate(certPem).validTo) };
  } catch {
    return undefined;
  }
}

/**
 * The leaf for `host`, signed by the local CA: from memory, else from `ca/leaves/` (0600), else
 * made now (and stored). A leaf within a day of expiry, or not signed by the current CA, is
 * replaced.
 */
export async function leafCertificateFor(
  home: Home,
  ca: LocalCa,
  host: string,
  now: Date,
): Promise<LeafCertificate> {
  const fresh = (leaf: LeafCertificate | undefined): leaf is LeafCertificate => {
    if (leaf === undefined || leaf.notAfter.getTime() - now.getTime() < 86_400_000) return false;
    try {
      return new X509Certificate(leaf.certPem).checkIssued(new X509Certificate(ca.certPem));
    } catch {
      return false;
    }
  };
  const cached = leafMemory.get(host);
  if (fresh(cached)) return cached;
  const stored = readLeafFromDisk(home, host);
  if (fresh(stored)) {
    leafMemory.set(host, stored);
    return stored;
  }
  const x509 = await loadX509();
  const caCert = new x509.X509Certificate(ca.certPem);
  const caKey = await webcrypto.subtle.importKey(
    "pkcs8",
    createPrivateKey(ca.keyPem).export({ type: "pkcs8", format: "der" }),
    SIGNING,
    false,
    ["sign"],
  );
  const keys = await webcrypto.subtle.generateKey(SIGNING, true, ["sign", "verify"]);
  const notAfter = new Date(now.getTime() + LEAF_VALID_DAYS * 86_400_000);
  const cert = await x509.X509CertificateGenerator.create({
    serialNumber: `02${randomBytes(15).toString("hex")}`,
    subject: `CN=${host}`,
    issuer: caCert.subject,
    notBefore: new Date(now.getTime() - 60_000),
    notAfter,
    signingAlgorithm: SIGNING,
    publicKey: keys.publicKey,
    signingKey: caKey,
    extensions: [
      new x509.BasicConstraintsExtension(false, undefined, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
      new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth]),
      new x509.SubjectAlternativeNameExtension([{ type: "dns", value: host }]),
      await x509.AuthorityKeyIdentifierExtension.create(caCert),
    ],
  });
  const leaf: LeafCertificate = {
    certPem: cert.toString("pem"),
    keyPem: KeyObject.from(keys.privateKey).export({ type: "pkcs8", format: "pem" }).toString(),
    notAfter,
  };
  mkdirSync(home.path("ca", "leaves"), { recursive: true, mode: 0o700 });
  writeFileAtomic(
    leafPath(home, host),
    `${leaf.keyPem.trim()}\n${leaf.certPem.trim()}\n`,
    SECRET_FILE_MODE,
  );
  leafMemory.set(host, leaf);
  return leaf;
}
