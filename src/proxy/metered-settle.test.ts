import assert from "node:assert/strict";
import { test } from "node:test";

import type { Usage } from "../metering/index.js";
import { MemoryAudit, MemoryLedger, PRICING } from "../../test/helpers/metered-fakes.js";
import type { AdmittedCall, Billing } from "./metered-admit.js";
import {
  cancelReservation,
  chargeFor,
  settle,
  type CallEnd,
  type SettlePorts,
} from "./metered-settle.js";

const IDENTITY = {
  session_id: "s1",
  agent_id: "bot",
  owner: "you@example.com",
  policy_id: "p",
  policy_version: 2,
  jti: "j1",
};
const LINE = {
  method: "POST",
  scheme: "https",
  host: "api.openai.com",
  port: 443,
  path: "/v1/chat/completions",
} as const;
const RESERVED = 1_000_000;

function usage(input: number, output: number, providerCost?: number): Usage {
  return {
    inputTokens: input,
    outputTokens: output,
    cacheReadTokens: 0,
    cacheWriteTokens: 0,
    reasoningTokens: 0,
    ...(providerCost === undefined ? {} : { providerCostNanoUsd: providerCost }),
  };
}

const ended = (over: Partial<CallEnd> = {}): CallEnd => ({
  sent: true,
  usage: usage(100, 50),
  complete: true,
  status: 200,
  bytesIn: 900,
  bytesOut: 300,
  durationMs: 12,
  ...over,
});

function setup(budgetNano = 10_000_000) {
  const ledger = new MemoryLedger(budgetNano);
  const audit = new MemoryAudit();
  const exhausted = { count: 0 };
  const ports: SettlePorts = {
    identity: IDENTITY,
    ledger,
    audit,
    budgetNano,
    onBudgetExhausted: () => exhausted.count++,
  };
  return { ledger, audit, exhausted, ports };
}

/** A billable call with RESERVED nano-USD reserved in `ledger`. */
async function admitted(ledger: MemoryLedger): Promise<AdmittedCall & { billing: Billing }> {
  const reserved = await ledger.reserve(RESERVED, { provider: "openai", model: "gpt-test" });
  assert.ok(reserved.ok);
  return {
    provider: "openai",
    request: {
      provider: "openai",
      api: "chat_completions",
      model: "gpt-test",
      maxOutputTokens: 10,
      n: 1,
      stream: false,
      inputBytes: 300,
      hasImages: false,
      imageCount: 0,
      externalInput: false,
    },
    forwardBody: Buffer.alloc(300),
    usageInjected: false,
    billing: {
      model: "gpt-test",
      pricing: PRICING,
      reservationId: reserved.id,
      reservedNano: RESERVED,
    },
  };
}

// 100 input tokens × 1,000 + 50 output × 2,000 nano-USD.
const PRICED = 200_000;

/** [name, end, charged, why it was charged in full] */
const charges: [string, CallEnd, number, string | undefined][] = [
  ["usage priced below the reservation", ended(), PRICED, undefined],
  [
    "a provider-reported cost wins over the table",
    ended({ usage: usage(100, 50, 123_456) }),
    123_456,
    undefined,
  ],
  [
    "a provider cost exactly the reservation",
    ended({ usage: usage(1, 1, RESERVED) }),
    RESERVED,
    undefined,
  ],
  [
    "a provider cost above the reservation is charged as reported",
    ended({ usage: usage(1, 1, RESERVED * 3) }),
    RESERVED * 3,
    undefined,
  ],
  [
    "a stream cut short, with running usage",
    ended({ complete: false }),
    RESERVED,
    "response cut short",
  ],
  ["an answer without usage", ended({ usage: undefined }), RESERVED, "no usage in the response"],
  [
    "a client that left after the call was sent",
    ended({ usage: undefined, complete: false, error: "client closed before the end" }),
    RESERVED,
    "no usage in the response",
  ],
  [
    "a client that left before the call was sent",
    ended({ sent: false, usage: undefined, complete: false }),
    0,
    undefined,
  ],
  [
    "a provider cost that is not a safe integer",
    ended({ usage: usage(1, 1, 2 ** 60) }),
    RESERVED,
    "response cut short",
  ],
  ["a negative provider cost", ended({ usage: usage(1, 1, -5) }), RESERVED, "response cut short"],
  [
    "a usage too large to price",
    ended({ usage: usage(Number.MAX_SAFE_INTEGER, Number.MAX_SAFE_INTEGER) }),
    RESERVED,
    "response cut short",
  ],
];

for (const [name, end, charged, fullReason] of charges) {
  test(`settle: ${name}`, async () => {
    const { ledger, audit, ports } = setup();
    const call = await admitted(ledger);
    assert.deepEqual(chargeFor(call.billing, end), {
      costNano: charged,
      ...(fullReason === undefined ? {} : { fullReason }),
    });
    await settle(ports, LINE, call, end);
    assert.equal(ledger.open.size, 0, "the reservation is settled");
    assert.equal(ledger.spentNano, charged);
    const [settled] = ledger.settles;
    assert.ok(settled !== undefined);
    assert.equal(settled.meta.charged_full, fullReason !== undefined);
    assert.equal(settled.meta.reason, fullReason);
    const [line] = audit.records;
    assert.ok(line !== undefined && line.decision === "allow");
    assert.equal(line.cost_usd, String(charged / 1e9));
    assert.equal(line.reserved_usd, "0.001");
    assert.equal(line.spent_usd, String(charged / 1e9));
    assert.equal(line.budget_usd, "0.01");
    assert.equal(line.charged_full, fullReason === undefined ? undefined : true);
    assert.equal(line.charge_reason, fullReason);
    assert.equal(line.error, end.error);
  });
}

test("settle writes the whole decision line: identity, request, outcome, usage", async () => {
  const { ledger, audit, ports } = setup();
  const call = await admitted(ledger);
  await settle(
    ports,
    LINE,
    call,
    ended({ usage: { ...usage(100, 50), cacheReadTokens: 7, cacheWriteTokens: 3 } }),
  );
  assert.deepEqual(audit.records, [
    {
      ...IDENTITY,
      decision: "allow",
      ...LINE,
      status: 200,
      bytes_in: 900,
      bytes_out: 300,
      duration_ms: 12,
      provider: "openai",
      model: "gpt-test",
      input_tokens: 110,
      output_tokens: 50,
      // 100 × 1,000 + 50 × 2,000 + 7 cache reads × 100 + 3 cache writes × 1,250 nano-USD.
      cost_usd: "0.00020445",
      reserved_usd: "0.001",
      spent_usd: "0.00020445",
      budget_usd: "0.01",
    },
  ]);
});

test("settle: the line goes out only once the ledger has the settlement", async () => {
  const { ledger, audit, ports } = setup();
  const call = await admitted(ledger);
  const settling = settle(ports, LINE, call, ended());
  assert.equal(audit.records.length, 0);
  await settling;
  assert.equal(audit.records.length, 1);
});

for (const failure of ["reject", "throw"] as const) {
  test(`settle: a ledger that fails (${failure}) leaves the reservation open and the line without spend`, async () => {
    const { ledger, audit, ports } = setup();
    const call = await admitted(ledger);
    ledger.failSettle = failure;
    await settle(ports, LINE, call, ended());
    assert.equal(ledger.open.size, 1, "left open: charged in full when recovered");
    const [line] = audit.records;
    assert.ok(line !== undefined);
    assert.equal(line.spent_usd, undefined);
    assert.equal(line.budget_usd, "0.01");
    assert.equal(line.cost_usd, "0.0002");
  });
}

test("settle: when what is left cannot pay for the cheapest next call, the run is told", async () => {
  // 10 nano-USD past this call's 1,000,000: less than one input and one output token (3,002).
  const { ledger, exhausted, ports } = setup(RESERVED + 10);
  const call = await admitted(ledger);
  await settle(ports, LINE, call, ended({ usage: usage(1, 1, RESERVED) }));
  assert.equal(exhausted.count, 1);
  const roomy = setup();
  await settle(roomy.ports, LINE, await admitted(roomy.ledger), ended());
  assert.equal(roomy.exhausted.count, 0);
});

test("settle: an audit log already closed does not make settling fail", async () => {
  const { ledger, audit, ports } = setup();
  const call = await admitted(ledger);
  audit.failing = true;
  await settle(ports, LINE, call, ended());
  assert.equal(ledger.spentNano, PRICED);
});

test("settle: a free call is recorded at once, with no spend fields", async () => {
  const { ledger, audit, ports } = setup();
  const call: AdmittedCall = {
    ...(await admitted(ledger)),
    request: { ...(await admitted(ledger)).request, api: "other", model: undefined },
  };
  const { billing: _billing, ...free } = call;
  void settle(
    ports,
    { ...LINE, method: "GET", path: "/v1/models" },
    free,
    ended({ usage: undefined }),
  );
  assert.equal(audit.records.length, 1, "written before settle returns");
  assert.deepEqual(
    Object.keys(audit.records[0] ?? {}).filter((k) => k.endsWith("_usd")),
    [],
  );
  assert.equal(audit.records[0]?.provider, "openai");
  assert.equal(ledger.settles.length, 0);
});

test("cancelReservation gives the reservation back at no cost; a failure leaves it open", async () => {
  const { ledger } = setup();
  const call = await admitted(ledger);
  cancelReservation(ledger, call.billing, "upstream certificate not trusted");
  await ledger.drain();
  assert.deepEqual(ledger.settles[0], {
    id: call.billing.reservationId,
    costNano: 0,
    meta: { reason: "upstream certificate not trusted" },
  });
  assert.equal(ledger.spentNano, 0);
  const other = await admitted(ledger);
  ledger.failSettle = "throw";
  assert.doesNotThrow(() => cancelReservation(ledger, other.billing, "x"));
  assert.equal(ledger.open.size, 1);
});
