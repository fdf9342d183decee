import { webcrypto } from "node:crypto";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import { createServer as createTlsServer, type Server as HttpsServer } from "node:https";
import type { AddressInfo } from "node:net";

import "reflect-metadata";
import * as x509 from "@peculiar/x509";

x509.cryptoProvider.set(webcrypto as unknown as Parameters<typeof x509.cryptoProvider.set>[0]);

/**
 * A throwaway CA and a leaf for the given names, made fresh for a test run. Two CAs trusted
 * together need names of their own: a verifier finds the issuer by its name.
 */
export async function makeTestCertificates(
  names: string[],
  caName = "CN=Vallignus test CA",
): Promise<{ caPem: string; certPem: string; keyPem: string }> {
  const alg = { name: "ECDSA", namedCurve: "P-256", hash: "SHA-256" } as const;
  const caKeys = await webcrypto.subtle.generateKey(alg, true, ["sign", "verify"]);
  const now = Date.now();
  const ca = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: "01",
    name: caName,
    notBefore: new Date(now - 60_000),
    notAfter: new Date(now + 86_400_000),
    signingAlgorithm: alg,
    keys: caKeys,
    extensions: [
      new x509.BasicConstraintsExtension(true, 0, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign, true),
    ],
  });
  const leafKeys = await webcrypto.subtle.generateKey(alg, true, ["sign", "verify"]);
  const leaf = await x509.X509CertificateGenerator.create({
    serialNumber: "02",
    subject: `CN=${names[0] ?? "localhost"}`,
    issuer: ca.subject,
    notBefore: new Date(now - 60_000),
    notAfter: new Date(now + 86_400_000),
    signingAlgorithm: alg,
    publicKey: leafKeys.publicKey,
    signingKey: caKeys.privateKey,
    extensions: [
      new x509.SubjectAlternativeNameExtension(
        names.map((value) => ({ type: "dns" as const, value })),
      ),
      new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth]),
    ],
  });
  const pkcs8 = Buffer.from(
    await webcrypto.subtle.exportKey("pkcs8", leafKeys.privateKey),
  ).toString("base64");
  const keyPem = `-----BEGIN PRIVATE KEY-----\n${pkcs8.replace(/(.{64})/g, "$1\n")}\n-----END PRIVATE KEY-----\n`;
  return { caPem: ca.toString("pem"), certPem: leaf.toString("pem"), keyPem };
}

export interface Origin {
  readonly httpPort: number;
  readonly httpsPort: number;
  readonly caPem: string;
  /** Requests that reached the origin, as "METHOD host path". */
  readonly hits: string[];
  close(): Promise<void>;
}

function respond(hits: string[]) {
  return (req: IncomingMessage, res: ServerResponse) => {
    hits.push(`${req.method ?? ""} ${req.headers.host ?? ""} ${req.url ?? ""}`);
    const body = JSON.stringify({ origin: "ok", path: req.url, host: req.headers.host });
    res.writeHead(200, {
      "content-type": "application/json",
      "content-length": Buffer.byteLength(body),
    });
    res.end(body);
  };
}

/** A fake origin on 127.0.0.1 speaking HTTP and HTTPS (certificate for the given names). */
export async function startOrigin(names: string[]): Promise<Origin> {
  const hits: string[] = [];
  const certs = await makeTestCertificates(names);
  const http: Server = createServer(respond(hits));
  const https: HttpsServer = createTlsServer(
    { cert: certs.certPem, key: certs.keyPem },
    respond(hits),
  );
  await new Promise<void>((r) => http.listen(0, "127.0.0.1", r));
  await new Promise<void>((r) => https.listen(0, "127.0.0.1", r));
  return {
    httpPort: (http.address() as AddressInfo).port,
    httpsPort: (https.address() as AddressInfo).port,
    caPem: certs.caPem,
    hits,
    close: async () => {
      http.closeAllConnections();
      https.closeAllConnections();
      await Promise.all([new Promise((r) => http.close(r)), new Promise((r) => https.close(r))]);
    },
  };
}
