/**
 * Requests inside an intercepted (metered) tunnel, sent as raw bytes over real TLS through the
 * built `vallignus run`: each one the inner HTTP parser refuses, and each whose target is not
 * the tunnel's own host, gets the contract's 403 and its own audit line; an absolute-form
 * target naming the tunnel's host goes upstream in origin-form.
 */
import assert from "node:assert/strict";
import { after, before, test } from "node:test";

import { meteredHarness, type AuditLine, type MeteredHarness } from "./helpers/metered-harness.js";

const OPENAI = "api.openai.com";

let h: MeteredHarness;

/**
 * For each case (raw bytes), a CONNECT to api.openai.com, TLS inside it (the run's CA is
 * trusted through NODE_EXTRA_CA_CERTS), the bytes, and what came back until the proxy closed.
 */
const AGENT = `
import net from "node:net";
import tls from "node:tls";
const [port, casesJson] = process.argv.slice(2);
const proxy = new URL(process.env.HTTPS_PROXY);
function tunnel() {
  return new Promise((resolve, reject) => {
    const socket = net.connect(Number(proxy.port), proxy.hostname);
    socket.once("error", reject);
    socket.once("data", (d) => {
      if (!d.toString().startsWith("HTTP/1.1 200")) reject(new Error("CONNECT: " + d));
      else resolve(socket);
    });
    socket.write("CONNECT ${OPENAI}:" + port + " HTTP/1.1\\r\\nHost: ${OPENAI}:" + port + "\\r\\n\\r\\n");
  });
}
async function send(raw) {
  const socket = tls.connect({ socket: await tunnel(), servername: "${OPENAI}", ALPNProtocols: ["http/1.1"] });
  await new Promise((resolve, reject) => { socket.once("secureConnect", resolve); socket.once("error", reject); });
  return new Promise((resolve) => {
    let text = "";
    const timer = setTimeout(() => { socket.destroy(); resolve(text + "[timeout]"); }, 5000);
    socket.setEncoding("latin1");
    socket.on("data", (d) => (text += d));
    socket.on("error", () => {});
    socket.once("close", () => { clearTimeout(timer); resolve(text); });
    socket.write(raw);
  });
}
const out = {};
for (const [name, raw] of JSON.parse(casesJson)) {
  const text = await send(raw);
  const split = text.indexOf("\\r\\n\\r\\n");
  const head = text.slice(0, split).split("\\r\\n");
  let body = null;
  try { body = JSON.parse(text.slice(split + 4)); } catch {}
  out[name] = {
    status: Number(head[0]?.split(" ")[1]) || text.slice(0, 80),
    decision: head.find((h) => /^x-vallignus-decision:/i.test(h))?.split(":")[1]?.trim() ?? null,
    reason: body?.deny_reason ?? null,
  };
}
console.log(JSON.stringify(out));
`;

before(async () => {
  h = await meteredHarness("vallignus-inner-", AGENT, [OPENAI]);
});

after(() => h.close());

type Outcome = { status: number | string; decision: string | null; reason: string | null };

async function runCases(
  policyId: string,
  cases: [string, string][],
): Promise<{ out: Record<string, Outcome>; audit: AuditLine[] }> {
  const token = h.tokenFor(policyId, { spendUsd: "1", prices: ["fake-gpt=1/2"] });
  const r = await h.runAgent(token, [String(h.fake.port), JSON.stringify(cases)], {
    timeout: 60_000,
  });
  assert.equal(r.status, 0, r.stderr + r.stdout);
  const audit = h
    .auditLines()
    // The tunnels' own CONNECT lines (allowed) aside: one line per request inside them.
    .filter(
      (l) =>
        l["policy_id"] === policyId &&
        l["host"] !== undefined &&
        !(l["method"] === "CONNECT" && l["decision"] === "allow"),
    );
  return { out: JSON.parse(r.stdout) as Record<string, Outcome>, audit };
}

const chat = JSON.stringify({
  model: "fake-gpt",
  max_tokens: 10,
  messages: [{ role: "user", content: "hi" }],
});

function post(target: string, host: string, extra = ""): string {
  return (
    `POST ${target} HTTP/1.1\r\nHost: ${host}\r\ncontent-type: application/json\r\n` +
    `content-length: ${Buffer.byteLength(chat)}\r\n${extra}connection: close\r\n\r\n${chat}`
  );
}

test("requests the inner parser refuses get the 403 deny JSON and an audit line each", async () => {
  const host = `${OPENAI}:${h.fake.port}`;
  const cases: [string, string][] = [
    [
      "CL and TE together",
      `POST /v1/chat/completions HTTP/1.1\r\nHost: ${host}\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n`,
    ],
    ["obs-fold", `GET /v1/models HTTP/1.1\r\nHost: ${host}\r\nX-A: 1\r\n  folded\r\n\r\n`],
    [
      "headers over 16 KiB",
      `GET /v1/models HTTP/1.1\r\nHost: ${host}\r\nX-Big: ${"a".repeat(20_000)}\r\n\r\n`,
    ],
    [
      "bytes after an upgrade",
      `GET /v1/realtime HTTP/1.1\r\nHost: ${host}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n` +
        `Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\nAHEAD`,
    ],
    [
      "a CONNECT inside the tunnel",
      `CONNECT evil.test:443 HTTP/1.1\r\nHost: evil.test:443\r\n\r\n`,
    ],
    ["no Host header", `GET /v1/models HTTP/1.1\r\nConnection: close\r\n\r\n`],
  ];
  const seen = h.fake.received.length;
  const { out, audit } = await runCases("inner-parse", cases);
  for (const [name] of cases) {
    assert.deepEqual(
      out[name],
      { status: 403, decision: "deny", reason: "malformed_request" },
      `${name}: ${JSON.stringify(out[name])}`,
    );
  }
  assert.equal(h.fake.received.length, seen, "nothing reached the provider");
  const denied = audit.filter((l) => l["deny_reason"] === "malformed_request");
  assert.equal(denied.length, cases.length, JSON.stringify(audit));
  for (const line of denied) {
    assert.equal(line["host"], OPENAI);
    assert.equal(line["port"], h.fake.port);
    assert.equal(line["status"], 403);
  }
});

test("an absolute-form target inside a tunnel must name the tunnel's host; it goes on in origin-form", async () => {
  const host = `${OPENAI}:${h.fake.port}`;
  const cases: [string, string][] = [
    ["another authority", post("https://other.example/v1/chat/completions", host)],
    ["another port", post(`https://${OPENAI}:1/v1/chat/completions`, host)],
    ["http scheme", post(`http://${host}/v1/chat/completions`, host)],
    ["the tunnel's own authority", post(`https://${host}/v1/chat/completions`, host)],
  ];
  const seen = h.fake.received.length;
  const { out, audit } = await runCases("inner-absolute", cases);
  const refused = { status: 403, decision: "deny", reason: "malformed_request" };
  assert.deepEqual(out["another authority"], refused);
  assert.deepEqual(out["another port"], refused);
  assert.deepEqual(out["http scheme"], refused);
  assert.deepEqual(out["the tunnel's own authority"], {
    status: 200,
    decision: null,
    reason: null,
  });
  // Only the last reached the provider, and in origin-form.
  assert.deepEqual(
    h.fake.received.slice(seen).map((r) => r.path),
    ["/v1/chat/completions"],
  );
  assert.equal(audit.length, 4, JSON.stringify(audit));
  for (const line of audit)
    assert.equal(line["path"], "/v1/chat/completions", JSON.stringify(line));
  assert.equal(audit.filter((l) => l["decision"] === "allow").length, 1);
});

test("a Connection header naming Host inside a tunnel is refused", async () => {
  const host = `${OPENAI}:${h.fake.port}`;
  const seen = h.fake.received.length;
  const { out, audit } = await runCases("inner-connection", [
    ["Connection: Host", post("/v1/chat/completions", host, "Connection: keep-alive, Host\r\n")],
  ]);
  assert.deepEqual(out["Connection: Host"], {
    status: 403,
    decision: "deny",
    reason: "malformed_request",
  });
  assert.equal(h.fake.received.length, seen);
  assert.equal(audit.length, 1);
});
