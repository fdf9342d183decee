import assert from "node:assert/strict";
import { test } from "node:test";

import type { DenyReason, PolicyRules } from "../policy/index.js";
import { policyWith } from "../../test/helpers/policy-rules.js";
import { fixedPrices, MemoryLedger, PRICING } from "../../test/helpers/metered-fakes.js";
import {
  admit,
  MAX_METERED_BODY_BYTES,
  type AdmitPorts,
  type MeteredRequest,
} from "./metered-admit.js";

const RULES: Partial<PolicyRules> = {
  allowed_domains: ["api.openai.com"],
};
const TUNNEL = { host: "api.openai.com", port: 443, address: "127.0.0.1" };
const CHAT = "/v1/chat/completions";

interface Setup {
  ledger: MemoryLedger;
  ports: AdmitPorts;
  slots: number;
  stop: DenyReason | undefined;
  slotRefusal: DenyReason | undefined;
}

function setup(
  over: { rules?: Partial<PolicyRules>; budgetNano?: number; contextWindow?: number } = {},
): Setup {
  const ledger = new MemoryLedger(over.budgetNano ?? 1_000_000_000);
  const s: Setup = {
    ledger,
    slots: 0,
    stop: undefined,
    slotRefusal: undefined,
    ports: undefined as unknown as AdmitPorts,
  };
  s.ports = {
    policy: policyWith({ ...RULES, ...over.rules }),
    ledger,
    prices: fixedPrices({ "gpt-test": PRICING }, over.contextWindow),
    now: () => new Date("2026-12-01T00:00:00Z"),
    budgetNano: ledger.budgetNano,
    stopReason: () => s.stop,
    takeRequestSlot: () => {
      if (s.slotRefusal !== undefined) return s.slotRefusal;
      s.slots++;
      return undefined;
    },
  };
  return s;
}

function request(
  body: unknown,
  over: { method?: string; path?: string; host?: string | undefined } = {},
): MeteredRequest & { reads: number } {
  const bytes =
    body === undefined
      ? undefined
      : Buffer.from(typeof body === "string" ? body : JSON.stringify(body));
  const req = {
    method: over.method ?? "POST",
    path: over.path ?? CHAT,
    host: "host" in over ? over.host : "api.openai.com",
    tunnel: TUNNEL,
    reads: 0,
    readBody: (limit: number) => {
      req.reads++;
      assert.equal(limit, MAX_METERED_BODY_BYTES);
      return Promise.resolve(bytes);
    },
  };
  return req;
}

const chat = (extra: Record<string, unknown> = {}) => ({
  model: "gpt-test",
  messages: [{ role: "user", content: "hi" }],
  max_tokens: 10,
  ...extra,
});

/** [name, setup, request, reason, what the audit line adds] */
const denials: [string, () => Setup, () => MeteredRequest, DenyReason, Record<string, unknown>][] =
  [
    [
      "a Host other than the tunnel's (fronting)",
      setup,
      () => request(chat(), { host: "evil.test" }),
      "malformed_request",
      { error: "Host differs from the tunnel's host" },
    ],
    [
      "no Host at all",
      setup,
      () => request(chat(), { host: undefined }),
      "malformed_request",
      { error: "Host differs from the tunnel's host" },
    ],
    [
      "a body too large or cut",
      setup,
      () => request(undefined),
      "malformed_request",
      { error: "request body too large or unreadable" },
    ],
    ["a body that is not JSON", setup, () => request("{not json"), "malformed_request", {}],
    [
      "a POST to a path we cannot price",
      setup,
      () => request(chat(), { path: "/v1/unknown" }),
      "model_price_unknown",
      { error: "unrecognised API path" },
    ],
    [
      "a call that names no model",
      setup,
      () => request({ messages: [] }),
      "malformed_request",
      { error: "no model in the request" },
    ],
    [
      "a model the policy does not list",
      () => setup({ rules: { allowed_models: ["gpt-other"] } }),
      () => request(chat()),
      "model_not_allowed",
      { metered: { model: "gpt-test" } },
    ],
    [
      "a model without a price",
      setup,
      () => request(chat({ model: "gpt-unpriced" })),
      "model_price_unknown",
      { metered: { model: "gpt-unpriced" } },
    ],
    [
      "input stored elsewhere, no context window known",
      setup,
      () =>
        request(
          { model: "gpt-test", input: "hi", previous_response_id: "resp_1" },
          { path: "/v1/responses" },
        ),
      "model_price_unknown",
      { error: "input cannot be bounded", metered: { model: "gpt-test" } },
    ],
  ];

for (const [name, make, req, reason, adds] of denials) {
  test(`admit denies ${name}: ${reason}`, async () => {
    const s = make();
    const admission = await admit(s.ports, req());
    assert.ok(!admission.admitted);
    assert.equal(admission.refusal.reason, reason);
    assert.equal(admission.refusal.provider, "openai");
    if ("error" in adds) assert.equal(admission.refusal.error, adds["error"]);
    else if (reason !== "malformed_request") assert.equal(admission.refusal.error, undefined);
    else assert.ok((admission.refusal.error ?? "").length > 0, "a malformed request says why");
    assert.deepEqual(admission.refusal.metered, adds["metered"]);
    assert.equal(s.ledger.open.size, 0, "nothing is reserved for a denied call");
    assert.equal(admission.refusal.budgetExhausted, undefined);
  });
}

test("admit: a tunnel to a host that is not metered is refused", async () => {
  const s = setup();
  const req = {
    ...request(chat(), { host: "example.com" }),
    tunnel: { ...TUNNEL, host: "example.com" },
  };
  const admission = await admit(s.ports, req);
  assert.ok(!admission.admitted);
  assert.equal(admission.refusal.reason, "malformed_request");
  assert.equal(admission.refusal.provider, undefined);
});

test("admit: a port other than 443 must be named in Host", async () => {
  const s = setup();
  const tunnel = { ...TUNNEL, port: 8443 };
  const plain = await admit(s.ports, { ...request(chat()), tunnel });
  assert.ok(!plain.admitted);
  const named = await admit(s.ports, {
    ...request(chat(), { host: "API.openai.com:8443" }),
    tunnel,
  });
  assert.ok(named.admitted, "Host is compared case-insensitively");
});

test("admit: a stopping run denies with the stop's reason, before reading the body", async () => {
  const s = setup();
  s.stop = "token_revoked";
  const req = request(chat());
  const admission = await admit(s.ports, req);
  assert.ok(!admission.admitted);
  assert.equal(admission.refusal.reason, "token_revoked");
  assert.equal(req.reads, 0);
  assert.equal(s.slots, 0);
});

test("admit: the request limit is checked after the body is read, before the model", async () => {
  const s = setup({ rules: { allowed_models: ["gpt-other"] } });
  s.slotRefusal = "request_limit_exceeded";
  const admission = await admit(s.ports, request(chat()));
  assert.ok(!admission.admitted);
  assert.equal(admission.refusal.reason, "request_limit_exceeded");
  assert.equal(s.ledger.reserves.length, 0);
});

test("admit: a malformed body takes no request slot; a denied model does", async () => {
  const s = setup({ rules: { allowed_models: ["gpt-other"] } });
  await admit(s.ports, request("{"));
  assert.equal(s.slots, 0);
  await admit(s.ports, request(chat()));
  assert.equal(s.slots, 1);
});

test("admit: a GET on a path we cannot price is free: admitted with nothing reserved", async () => {
  const s = setup();
  const get = await admit(s.ports, request("", { method: "GET", path: "/v1/models" }));
  assert.ok(get.admitted);
  assert.equal(get.call.billing, undefined);
  assert.equal(s.ledger.reserves.length, 0);
  assert.equal(s.slots, 1);
});

test("admit reserves the worst case: input bound by the body's bytes, output by max_tokens × n", async () => {
  const s = setup();
  const body = chat({ max_tokens: 10, n: 3 });
  const bytes = Buffer.byteLength(JSON.stringify(body));
  const admission = await admit(s.ports, request(body));
  assert.ok(admission.admitted);
  // Input: one token per byte plus the 4,096-token request allowance, at the highest input-side
  // price ($1.25/MTok cache writes: 1,250 nano-USD a token), +2 nano-USD of rounding slack;
  // output: 10 × 3 tokens at 2,000 nano-USD.
  const expected = (bytes + 4096) * 1250 + 2 + 30 * 2000;
  const { billing } = admission.call;
  assert.ok(billing !== undefined);
  assert.equal(billing.reservedNano, expected);
  assert.deepEqual(s.ledger.reserves, [
    { amountNano: expected, meta: { provider: "openai", model: "gpt-test" } },
  ]);
  assert.equal(s.ledger.open.get(billing.reservationId), expected);
  // The model's price, with a price for no server tool: the request enabled none.
  assert.deepEqual(billing.pricing, { ...PRICING, toolNanoPerCall: {} });
});

test("admit reserves the model's own output limit when the request sets none", async () => {
  const s = setup();
  const body = chat({ max_tokens: undefined });
  const bytes = Buffer.byteLength(JSON.stringify(body));
  const admission = await admit(s.ports, request(body));
  assert.ok(admission.admitted);
  assert.equal(admission.call.billing?.reservedNano, (bytes + 4096) * 1250 + 2 + 1000 * 2000);
});

test("admit bounds input stored elsewhere by the model's context window", async () => {
  const s = setup({ contextWindow: 200_000 });
  const body = {
    model: "gpt-test",
    input: "hi",
    previous_response_id: "resp_1",
    max_output_tokens: 5,
  };
  const admission = await admit(s.ports, request(body, { path: "/v1/responses" }));
  assert.ok(admission.admitted);
  assert.equal(admission.call.billing?.reservedNano, 200_000 * 1250 + 2 + 5 * 2000);
});

test("admit: a reservation the budget cannot hold is budget_exceeded, and the run is told", async () => {
  const s = setup({ budgetNano: 1_000_000 });
  s.ledger.spentNano = 250_000;
  const admission = await admit(s.ports, request(chat()));
  assert.ok(!admission.admitted);
  assert.deepEqual(admission.refusal, {
    reason: "budget_exceeded",
    provider: "openai",
    budgetExhausted: true,
    metered: { model: "gpt-test", cost_usd: "0", spent_usd: "0.00025", budget_usd: "0.001" },
  });
  assert.equal(s.ledger.open.size, 0);
});

test("admit: a ledger that cannot be written denies the call (fail closed)", async () => {
  const s = setup();
  s.ledger.failReserve = "reject";
  const admission = await admit(s.ports, request(chat()));
  assert.ok(!admission.admitted);
  assert.equal(admission.refusal.reason, "malformed_request");
  assert.equal(admission.refusal.error, "ledger: disk full");
  assert.deepEqual(admission.refusal.metered, { model: "gpt-test" });
});

test("admit: a price table that cannot load denies the call (fail closed)", async () => {
  const s = setup();
  const admission = await admit(
    {
      ...s.ports,
      prices: { ...s.ports.prices, ready: () => Promise.reject(new Error("no table")) },
    },
    request(chat()),
  );
  assert.ok(!admission.admitted);
  assert.equal(admission.refusal.reason, "malformed_request");
  assert.equal(admission.refusal.error, "cannot admit: no table");
  assert.equal(s.ledger.reserves.length, 0);
});

test("admit reserves a server tool's worst case: Anthropic web search, max_uses × $10 per 1,000", async () => {
  const s = setup({ rules: { allowed_domains: ["api.anthropic.com"] }, contextWindow: 1000 });
  const body = {
    model: "gpt-test",
    max_tokens: 10,
    messages: [{ role: "user", content: "news?" }],
    tools: [{ type: "web_search_20250305", name: "web_search", max_uses: 50 }],
  };
  const req = { ...request(body, { host: "api.anthropic.com", path: "/v1/messages" }) };
  const admission = await admit(s.ports, {
    ...req,
    tunnel: { ...TUNNEL, host: "api.anthropic.com" },
  });
  assert.ok(admission.admitted);
  const { billing } = admission.call;
  assert.ok(billing !== undefined);
  // 50 searches at 10,000,000 nano-USD each on top of the tokens; up to 51 model turns, each
  // billed for the whole context window (search results come in as input) at the dearest input
  // price, and each emitting up to max_tokens (10) of output.
  assert.deepEqual(billing.pricing.toolNanoPerCall, { web_search: 10_000_000 });
  assert.equal(billing.reservedNano, 51 * 1000 * 1250 + 2 + 51 * 10 * 2000 + 50 * 10_000_000);
});

test("admit bounds a server-tool loop's input by the window × (max_tool_calls + 1) (review F2)", async () => {
  // The review's call: o4-mini-deep-research, web_search_preview, max_tool_calls 20,
  // max_output_tokens 10,000; the provider reported 1,500,000 input tokens on a 200K window.
  const s = setup({ contextWindow: 200_000, budgetNano: 100_000_000_000 });
  const body = {
    model: "gpt-test",
    input: "research",
    tools: [{ type: "web_search_preview" }],
    max_tool_calls: 20,
    max_output_tokens: 10_000,
  };
  const admission = await admit(s.ports, request(body, { path: "/v1/responses" }));
  assert.ok(admission.admitted);
  const reserved = admission.call.billing?.reservedNano ?? 0;
  // 21 turns × 200,000 tokens at 1,250 nano; max_output_tokens bounds the whole response, once;
  // 20 searches at 25,000,000 nano.
  assert.equal(reserved, 21 * 200_000 * 1250 + 2 + 10_000 * 2000 + 20 * 25_000_000);
  // What the provider billed in the review, at these prices, fits under it.
  assert.ok(reserved >= 1_500_000 * 1250 + 10_000 * 2000 + 20 * 25_000_000);
});

test("admit: MCP in Responses is a server-tool loop too: one turn per call, plus one", async () => {
  const s = setup({ contextWindow: 1000 });
  const body = {
    model: "gpt-test",
    input: "hi",
    tools: [{ type: "mcp", server_url: "https://mcp.example", server_label: "x" }],
    max_tool_calls: 3,
  };
  const admission = await admit(s.ports, request(body, { path: "/v1/responses" }));
  assert.ok(admission.admitted);
  // No max_output_tokens: the model's own limit (1,000) may be spent in each of the 4 turns.
  assert.equal(admission.call.billing?.reservedNano, 4 * 1000 * 1250 + 2 + 4 * 1000 * 2000);
});

test("admit reserves a predicted output's rejected tokens at the output price (review F1)", async () => {
  const s = setup();
  const prediction = { type: "content", content: " a".repeat(20_000) };
  const body = chat({ max_tokens: undefined, max_completion_tokens: 1, prediction });
  const bytes = Buffer.byteLength(JSON.stringify(body));
  const admission = await admit(s.ports, request(body));
  assert.ok(admission.admitted);
  // The provider reported completion_tokens 20,001 (20,000 rejected prediction tokens): the
  // output bound is max_completion_tokens + the prediction's strings: 40,000 bytes of content
  // and 7 of its type, "content".
  const reserved = admission.call.billing?.reservedNano ?? 0;
  assert.equal(reserved, (bytes + 4096) * 1250 + 2 + (1 + 40_007) * 2000);
  assert.ok(reserved >= 20 * 1000 + 20_001 * 2000);
});

test("admit: a prediction given as text parts, with n choices, counts per choice", async () => {
  const s = setup();
  const prediction = { type: "content", content: [{ type: "text", text: "héllo" }] };
  const body = chat({ max_tokens: 2, n: 3, prediction });
  const bytes = Buffer.byteLength(JSON.stringify(body));
  const admission = await admit(s.ports, request(body));
  assert.ok(admission.admitted);
  // "héllo" is 6 bytes, "text" and "content" 4 and 7: every string counts, as a superset.
  assert.equal(
    admission.call.billing?.reservedNano,
    (bytes + 4096) * 1250 + 2 + 3 * (2 + 17) * 2000,
  );
});

const tiers: [unknown, boolean][] = [
  [undefined, true],
  [null, true],
  ["auto", true],
  ["default", true],
  ["flex", true],
  ["priority", false],
  ["scale", false],
  [1, false],
];

for (const [tier, admitted] of tiers) {
  test(`admit: service_tier ${JSON.stringify(tier)} is ${admitted ? "admitted" : "refused: its price is unknown"} (review F4)`, async () => {
    const s = setup();
    const admission = await admit(s.ports, request(chat({ service_tier: tier })));
    assert.equal(admission.admitted, admitted);
    if (admission.admitted) return;
    assert.equal(admission.refusal.reason, "model_price_unknown");
    assert.match(
      admission.refusal.error ?? "",
      /^service_tier .* is billed above the standard prices$/,
    );
    assert.deepEqual(admission.refusal.metered, { model: "gpt-test" });
    assert.equal(s.ledger.reserves.length, 0);
  });
}

test("admit refuses a server tool it cannot bound: model_price_unknown, nothing reserved", async () => {
  const s = setup();
  const body = { model: "gpt-test", input: "news?", tools: [{ type: "web_search" }] };
  const admission = await admit(s.ports, request(body, { path: "/v1/responses" }));
  assert.ok(!admission.admitted);
  assert.equal(admission.refusal.reason, "model_price_unknown");
  assert.match(admission.refusal.error ?? "", /max_tool_calls/);
  assert.equal(s.ledger.reserves.length, 0);
});

test("admit prices audio output at its own price in the reservation", async () => {
  const s = setup();
  const audio = {
    ...PRICING,
    modalities: {
      audio: { inputNanoPerMTok: 1, cacheReadNanoPerMTok: 1, outputNanoPerMTok: 64_000_000_000 },
    },
  };
  s.ports = { ...s.ports, prices: fixedPrices({ "gpt-test": audio }) };
  const body = chat({ max_tokens: 10 });
  const bytes = Buffer.byteLength(JSON.stringify(body));
  const admission = await admit(s.ports, request(body));
  assert.ok(admission.admitted);
  // Output at the dearest output price ($64/MTok audio: 64,000 nano a token); input as before
  // (no media in the body); slack: 3 for the four distinct input-side prices, 1 for the two
  // output prices.
  assert.equal(admission.call.billing?.reservedNano, (bytes + 4096) * 1250 + 3 + 10 * 64_000 + 1);
});
