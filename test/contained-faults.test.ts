/**
 * An error that nothing expected, inside the proxy, ends that one request and no more: it is
 * denied `malformed_request` (or, once its answer has begun, its connection is cut) and
 * recorded, and the proxy serves the next request. The faults are injected through the
 * proxy's ports (its gatekeeper, the metered handler's options), standing for a bug in any step;
 * everything else is real: sockets on 127.0.0.1, TLS with a throwaway CA, a fake provider that
 * speaks OpenAI's wire format.
 */
import assert from "node:assert/strict";
import { connect as netConnect } from "node:net";
import { after, before, test } from "node:test";
import { connect as tlsConnect, createSecureContext, type SecureContext } from "node:tls";

import type { RunIdentity } from "../src/audit/index.js";
import {
  createMeteredHandler,
  startProxy,
  type Gatekeeper,
  type Judgement,
  type MeterOptions,
  type Outcome,
} from "../src/proxy/index.js";
import { startFakeProviders, type FakeProviders } from "./helpers/fake-providers.js";
import { fixedPrices, MemoryAudit, MemoryLedger, PRICING } from "./helpers/metered-fakes.js";
import { makeTestCertificates, startOrigin, type Origin } from "./helpers/origin.js";
import { policyWith } from "./helpers/policy-rules.js";

const OPENAI = "api.openai.com";
const IDENTITY: RunIdentity = {
  session_id: "s-faults",
  agent_id: "bot",
  owner: "you@example.com",
  policy_id: "faults",
  policy_version: 1,
  jti: "jti-faults",
};

let origin: Origin;
let fake: FakeProviders;
/** The leaf the proxy intercepts api.openai.com with, and the CA the client trusts for it. */
let intercept: { context: SecureContext; caPem: string };

before(async () => {
  origin = await startOrigin(["allowed.test"]);
  fake = await startFakeProviders();
  const leaf = await makeTestCertificates([OPENAI]);
  intercept = {
    context: createSecureContext({ cert: leaf.certPem, key: leaf.keyPem }),
    caPem: leaf.caPem,
  };
});

after(async () => {
  await origin.close();
  await fake.close();
});

/** Sends raw bytes to the proxy and reads until it closes (or 5 s pass). */
function exchange(port: number, bytes: string): Promise<string> {
  return new Promise((resolve) => {
    const socket = netConnect(port, "127.0.0.1", () => socket.write(bytes));
    let text = "";
    const timer = setTimeout(() => socket.destroy(), 5000);
    socket.setEncoding("latin1");
    socket.on("data", (d: string) => (text += d));
    socket.on("error", () => undefined);
    socket.once("close", () => {
      clearTimeout(timer);
      resolve(text);
    });
  });
}

/** The status, the decision header and the deny reason of a raw answer. */
function answerOf(text: string): { status: number; decision: string | null; reason: unknown } {
  const split = text.indexOf("\r\n\r\n");
  const head = text.slice(0, Math.max(0, split)).split("\r\n");
  const decision = head.find((h) => h.toLowerCase().startsWith("x-vallignus-decision:"));
  let reason: unknown = null;
  try {
    reason = (JSON.parse(text.slice(split + 4)) as Record<string, unknown>)["deny_reason"];
  } catch {
    // Not a deny body.
  }
  return {
    status: Number(head[0]?.split(" ")[1]),
    decision: decision?.split(":")[1]?.trim() ?? null,
    reason,
  };
}

test("a fault in carrying out a plain, CONNECT or upgrade request denies that request alone", async () => {
  const outcomes: Outcome[] = [];
  let faulty = true;
  // A gatekeeper answer that cannot be read: reading it throws, as a bug would.
  const broken: Judgement = {
    get allow(): true {
      throw new Error("injected fault");
    },
    address: "127.0.0.1",
  };
  const gatekeeper: Gatekeeper = {
    judge: () => Promise.resolve(faulty ? broken : { allow: true, address: "127.0.0.1" }),
    denyBody: (reason) => JSON.stringify({ decision: "deny", deny_reason: reason }),
    record: (outcome) => outcomes.push(outcome),
  };
  const proxy = await startProxy({ gatekeeper });
  try {
    const p = origin.httpPort;
    const target = `allowed.test:${p}`;
    const requests = {
      plain: `GET http://${target}/x HTTP/1.1\r\nHost: ${target}\r\nConnection: close\r\n\r\n`,
      connect: `CONNECT ${target} HTTP/1.1\r\nHost: ${target}\r\n\r\n`,
      upgrade:
        `GET http://${target}/ws HTTP/1.1\r\nHost: ${target}\r\nConnection: Upgrade\r\n` +
        `Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZQ==\r\n\r\n`,
    };
    for (const [kind, bytes] of Object.entries(requests)) {
      const answer = answerOf(await exchange(proxy.port, bytes));
      assert.deepEqual(
        answer,
        { status: 403, decision: "deny", reason: "malformed_request" },
        `${kind}: the contract's 403`,
      );
    }
    assert.deepEqual(
      outcomes.map((o) => [o.method, o.judgement, o.status, o.error]),
      ["GET", "CONNECT", "GET"].map((method) => [
        method,
        { allow: false, reason: "malformed_request" },
        403,
        "internal error: injected fault",
      ]),
    );
    // The same proxy serves the next request.
    faulty = false;
    const next = await exchange(proxy.port, requests.plain);
    assert.equal(answerOf(next).status, 200, next);
    assert.equal(origin.hits.length, 1);
    assert.equal(outcomes.length, 4);
  } finally {
    await proxy.close();
  }
});

/** A proxy that intercepts api.openai.com and meters it, with the given faults in its ports. */
async function meteredProxy(over: Partial<MeterOptions>, budgetNano = 1_000_000_000) {
  const ledger = new MemoryLedger(budgetNano);
  const audit = new MemoryAudit();
  const options: MeterOptions = {
    identity: IDENTITY,
    policy: policyWith({ allowed_domains: [`${OPENAI}:${fake.port}`] }),
    ledger,
    budgetNano: ledger.budgetNano,
    audit,
    stopReason: () => undefined,
    takeRequestSlot: () => undefined,
    onBudgetExhausted: () => undefined,
    upstreamRoots: [fake.caPem],
    now: () => new Date(),
    prices: fixedPrices({ "fake-gpt": PRICING }),
    ...over,
  };
  const gatekeeper: Gatekeeper = {
    judge: () =>
      Promise.resolve({ allow: true, address: "127.0.0.1", intercept: intercept.context }),
    denyBody: (reason) => JSON.stringify({ decision: "deny", deny_reason: reason }),
    record: () => undefined,
  };
  const proxy = await startProxy({ gatekeeper, innerHandler: createMeteredHandler(options) });
  return { proxy, ledger, audit };
}

/** One chat call through a CONNECT tunnel and TLS, as raw HTTP; its answer. */
async function chat(proxyPort: number, maxTokens: number) {
  const port = fake.port;
  const socket = netConnect(proxyPort, "127.0.0.1");
  socket.write(`CONNECT ${OPENAI}:${port} HTTP/1.1\r\nHost: ${OPENAI}:${port}\r\n\r\n`);
  await new Promise<void>((resolve) => socket.once("data", () => resolve()));
  const secure = tlsConnect({ socket, servername: OPENAI, ca: intercept.caPem });
  await new Promise<void>((resolve, reject) => {
    secure.once("secureConnect", resolve);
    secure.once("error", reject);
  });
  const body = JSON.stringify({ model: "fake-gpt", max_tokens: maxTokens, messages: [] });
  let text = "";
  secure.setEncoding("utf8");
  secure.on("data", (d: string) => (text += d));
  secure.on("error", () => undefined);
  const closed = new Promise<void>((resolve) => secure.once("close", () => resolve()));
  const timer = setTimeout(() => secure.destroy(), 5000);
  secure.write(
    `POST /v1/chat/completions HTTP/1.1\r\nHost: ${OPENAI}:${port}\r\n` +
      `content-type: application/json\r\ncontent-length: ${body.length}\r\nconnection: close\r\n\r\n${body}`,
  );
  await closed;
  clearTimeout(timer);
  return answerOf(text);
}

test("a metered call whose forward step fails is denied alone, charged in full, and audited once", async () => {
  // The upstream roots cannot be read once (a bug in making the TLS agent, say).
  const roots = [fake.caPem];
  let faults = 1;
  Object.defineProperty(roots, Symbol.iterator, {
    value: function* () {
      if (faults-- > 0) throw new Error("injected fault");
      yield* Array.prototype.values.call(roots) as Iterable<string>;
    },
  });
  const { proxy, ledger, audit } = await meteredProxy({ upstreamRoots: roots });
  try {
    const seen = fake.received.length;
    assert.deepEqual(await chat(proxy.port, 10), {
      status: 403,
      decision: "deny",
      reason: "malformed_request",
    });
    assert.equal(fake.received.length, seen, "nothing went upstream");
    // What reached the provider is not known to the failed step: the reservation is charged.
    assert.equal(ledger.settles.length, 1);
    assert.equal(ledger.settles[0]?.costNano, ledger.reserves[0]?.amountNano);
    assert.deepEqual(
      audit.records.map((r) => [
        r.decision,
        "deny_reason" in r ? r.deny_reason : undefined,
        r.error,
      ]),
      [["deny", "malformed_request", "internal error: injected fault"]],
    );
    // The same proxy, the same tunnel handler: the next call goes through and is settled.
    assert.equal((await chat(proxy.port, 10)).status, 200);
    assert.equal(fake.received.length, seen + 1);
    assert.equal(audit.records.length, 2);
    assert.equal(audit.records[1]?.decision, "allow");
  } finally {
    await proxy.close();
  }
});

test("a fault after a metered call's audit line writes no second line; the proxy serves on", async () => {
  let calls = 0;
  // Input free, 30 output tokens at 2,000 nano-USD: the call reserves and costs 60,000; the
  // 1,000 left cannot pay for another, so settling it calls onBudgetExhausted, which fails.
  const prices = fixedPrices({
    "fake-gpt": {
      ...PRICING,
      inputNanoPerMTok: 0,
      cacheWriteNanoPerMTok: 0,
      cacheReadNanoPerMTok: 0,
    },
  });
  const onBudgetExhausted = () => {
    calls++;
    throw new Error("injected fault");
  };
  const { proxy, audit } = await meteredProxy({ prices, onBudgetExhausted }, 61_000);
  try {
    assert.equal((await chat(proxy.port, 30)).status, 200);
    assert.equal(calls, 1);
    // The same proxy answers the next call, with the denial it calls for.
    assert.deepEqual(await chat(proxy.port, 30), {
      status: 403,
      decision: "deny",
      reason: "budget_exceeded",
    });
    assert.equal(calls, 2);
    assert.deepEqual(
      audit.records.map((r) => [
        r.decision,
        "deny_reason" in r ? r.deny_reason : undefined,
        r.error,
      ]),
      [
        ["allow", undefined, undefined],
        ["deny", "budget_exceeded", undefined],
      ],
    );
  } finally {
    await proxy.close();
  }
});
