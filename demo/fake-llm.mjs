// The demo's local fake LLM API: OpenAI's chat-completions wire format over HTTPS, with a
// throwaway CA of its own (Vallignus is told to trust it with --upstream-ca, as it trusts the
// real providers' public CAs). It checks that every call carries the real key, which only the
// authority holds: the agent sends a stand-in, the proxy swaps it on the way.
import { createHash, webcrypto } from "node:crypto";
import { createServer } from "node:https";

import "reflect-metadata";
import * as x509 from "@peculiar/x509";

x509.cryptoProvider.set(webcrypto);

const ALG = { name: "ECDSA", namedCurve: "P-256", hash: "SHA-256" };

/** A CA and a leaf for `names`, made fresh for this demo and thrown away with it. */
async function certificates(names) {
  const now = Date.now();
  const caKeys = await webcrypto.subtle.generateKey(ALG, true, ["sign", "verify"]);
  const ca = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: "01",
    name: "CN=Vallignus demo fake-API CA",
    notBefore: new Date(now - 60_000),
    notAfter: new Date(now + 3_600_000),
    signingAlgorithm: ALG,
    keys: caKeys,
    extensions: [
      new x509.BasicConstraintsExtension(true, 0, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign, true),
    ],
  });
  const leafKeys = await webcrypto.subtle.generateKey(ALG, true, ["sign", "verify"]);
  const leaf = await x509.X509CertificateGenerator.create({
    serialNumber: "02",
    subject: `CN=${names[0]}`,
    issuer: ca.subject,
    notBefore: new Date(now - 60_000),
    notAfter: new Date(now + 3_600_000),
    signingAlgorithm: ALG,
    publicKey: leafKeys.publicKey,
    signingKey: caKeys.privateKey,
    extensions: [
      new x509.SubjectAlternativeNameExtension(names.map((value) => ({ type: "dns", value }))),
      new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth]),
    ],
  });
  const pkcs8 = Buffer.from(
    await webcrypto.subtle.exportKey("pkcs8", leafKeys.privateKey),
  ).toString("base64");
  const keyPem = `-----BEGIN PRIVATE KEY-----\n${pkcs8.replace(/(.{64})/g, "$1\n")}\n-----END PRIVATE KEY-----\n`;
  return { caPem: ca.toString("pem"), certPem: leaf.toString("pem"), keyPem };
}

export const fingerprint = (value) => createHash("sha256").update(value).digest("hex").slice(0, 8);

/**
 * Starts the fake API for `host`, expecting `realKey` on every call. `calls` counts the calls
 * that carried it, `wrongKeys` those that did not (a stand-in that was not swapped).
 */
export async function startFakeLlm(host, realKey) {
  const { caPem, certPem, keyPem } = await certificates([host]);
  const seen = { calls: 0, wrongKeys: 0 };
  const server = createServer({ cert: certPem, key: keyPem }, (req, res) => {
    const chunks = [];
    req.on("data", (chunk) => chunks.push(chunk));
    req.on("end", () => {
      const sent = (req.headers.authorization ?? "").replace(/^Bearer /, "");
      const real = sent === realKey;
      if (real) seen.calls++;
      else seen.wrongKeys++;
      console.log(
        `  fake API: call ${seen.calls + seen.wrongKeys}, key ${fingerprint(sent)}: ` +
          (real ? "the real key (the agent never had it)" : "NOT the real key"),
      );
      if (!real) {
        res.writeHead(401, { "content-type": "application/json" });
        res.end('{"error":{"message":"invalid api key","type":"invalid_request_error"}}');
        return;
      }
      const body = JSON.parse(Buffer.concat(chunks).toString("utf8"));
      const answer = JSON.stringify({
        id: "chatcmpl-demo",
        object: "chat.completion",
        created: Math.floor(Date.now() / 1000),
        model: body.model,
        choices: [
          {
            index: 0,
            message: { role: "assistant", content: "hello from the fake API" },
            finish_reason: "stop",
          },
        ],
        usage: { prompt_tokens: 12, completion_tokens: 30, total_tokens: 42 },
      });
      res.writeHead(200, { "content-type": "application/json" });
      res.end(answer);
    });
  });
  await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
  return {
    port: server.address().port,
    caPem,
    seen,
    close: () => {
      server.closeAllConnections();
      server.close();
    },
  };
}
