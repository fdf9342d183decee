import assert from "node:assert/strict";
import { test } from "node:test";

import { costNanoUsd, loadPriceTable, type ModelPricing } from "./prices.js";
import {
  cheapestNextRequestNanoUsd,
  DEFAULT_MAX_OUTPUT_TOKENS,
  IMAGE_INPUT_TOKEN_ALLOWANCE,
  inputTokenBound,
  REQUEST_INPUT_TOKEN_ALLOWANCE,
  reservationNanoUsd,
} from "./reservation.js";

await loadPriceTable();

const gpt4oMini: ModelPricing = {
  source: "table",
  inputNanoPerMTok: 150_000_000,
  outputNanoPerMTok: 600_000_000,
  cacheReadNanoPerMTok: 75_000_000,
  cacheWriteNanoPerMTok: 150_000_000,
  maxOutputTokens: 16_384,
};

/** Anthropic-shaped: cache writes cost more than input. */
const claudeHaiku: ModelPricing = {
  source: "table",
  inputNanoPerMTok: 800_000_000,
  outputNanoPerMTok: 4_000_000_000,
  cacheReadNanoPerMTok: 80_000_000,
  cacheWriteNanoPerMTok: 1_600_000_000,
  maxOutputTokens: 8_192,
};

const unlimited: ModelPricing = { ...gpt4oMini, source: "policy", maxOutputTokens: undefined };

const reservations: [string, ModelPricing, Parameters<typeof reservationNanoUsd>[1], number][] = [
  [
    "input bound at the input price, the request's max at the output price, 2 nano of slack",
    gpt4oMini,
    { inputTokens: 1_000, maxOutputTokens: 100 },
    150_000 + 2 + 60_000,
  ],
  [
    "n completions reserve n × max output, input once",
    gpt4oMini,
    { inputTokens: 1_000, maxOutputTokens: 100, n: 3 },
    150_000 + 2 + 180_000,
  ],
  [
    "without a max in the request, the model's output limit",
    gpt4oMini,
    { inputTokens: 1_000 },
    150_000 + 2 + 16_384 * 600,
  ],
  [
    "the request's max wins even above the model's limit (beta headers raise it)",
    claudeHaiku,
    { inputTokens: 0, maxOutputTokens: 20_000 },
    20_000 * 4_000,
  ],
  [
    "without any limit, DEFAULT_MAX_OUTPUT_TOKENS",
    unlimited,
    { inputTokens: 0 },
    DEFAULT_MAX_OUTPUT_TOKENS * 600,
  ],
  [
    "input is priced at the dearest input-side price (here the cache write)",
    claudeHaiku,
    { inputTokens: 1_000, maxOutputTokens: 0 },
    1_600_000 + 2,
  ],
  [
    "a free model reserves nothing",
    {
      ...unlimited,
      inputNanoPerMTok: 0,
      outputNanoPerMTok: 0,
      cacheReadNanoPerMTok: 0,
      cacheWriteNanoPerMTok: 0,
    },
    { inputTokens: 50_000, maxOutputTokens: 1_000 },
    0,
  ],
  [
    "extra output tokens (a prediction's) add to the limit of each of n completions",
    gpt4oMini,
    { inputTokens: 1_000, maxOutputTokens: 1, n: 2, extraOutputTokens: 40_000 },
    150_000 + 2 + 2 * 40_001 * 600,
  ],
  [
    "extra output tokens add to the model's limit when the request sets none",
    gpt4oMini,
    { inputTokens: 0, extraOutputTokens: 100 },
    (16_384 + 100) * 600,
  ],
  [
    "output turns multiply the output limit (a server-tool loop), input is the caller's",
    gpt4oMini,
    { inputTokens: 1_000, maxOutputTokens: 100, n: 1, outputTurns: 21 },
    150_000 + 2 + 21 * 100 * 600,
  ],
  [
    "a worst case beyond 2^53 nano saturates, above any budget",
    gpt4oMini,
    { inputTokens: 1, maxOutputTokens: 1_000_000, n: 1e12 },
    Number.MAX_SAFE_INTEGER,
  ],
];

for (const [why, pricing, request, nano] of reservations) {
  test(`reservationNanoUsd: ${why}`, () => {
    assert.equal(reservationNanoUsd(pricing, request), nano);
  });
}

test("reservationNanoUsd: the 2-nano slack covers three input parts rounding up separately", () => {
  // 1 token each of input, cache read and cache write at 1, 2 and 3 nano/MTok costs 3 nano
  // (each distinct price rounds up); the same 3 tokens rounded once would be 1.
  const tiny: ModelPricing = {
    ...unlimited,
    inputNanoPerMTok: 1,
    cacheReadNanoPerMTok: 2,
    cacheWriteNanoPerMTok: 3,
  };
  const cost = costNanoUsd(tiny, {
    inputTokens: 1,
    outputTokens: 0,
    cacheReadTokens: 1,
    cacheWriteTokens: 1,
  });
  assert.equal(cost, 3);
  assert.equal(reservationNanoUsd(tiny, { inputTokens: 3, maxOutputTokens: 0 }), 3);
});

const badRequests: [string, Parameters<typeof reservationNanoUsd>[1]][] = [
  ["negative input", { inputTokens: -1 }],
  ["fractional max output", { inputTokens: 1, maxOutputTokens: 0.5 }],
  ["zero completions", { inputTokens: 1, n: 0 }],
  ["NaN completions", { inputTokens: 1, n: Number.NaN }],
];

for (const [why, request] of badRequests) {
  test(`reservationNanoUsd: ${why} is a RangeError`, () => {
    assert.throws(() => reservationNanoUsd(gpt4oMini, request), RangeError);
  });
}

/** mulberry32: a seeded generator, so a failure names the case that failed and repeats. */
function seeded(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

test("reservationNanoUsd: ≥ the cost of every usage within its bounds (10,000 random cases)", () => {
  const random = seeded(20250501);
  const upTo = (max: number) => Math.floor(random() * (max + 1));
  // Prices with awkward remainders (1 nano/MTok, 333,333…) as well as real ones.
  const prices = [
    0, 1, 7, 333_333, 999_999, 75_000_000, 150_000_000, 3_750_000_000, 75e9, 999_999_999_999,
  ];
  const pick = () => prices[upTo(prices.length - 1)] ?? 0;
  for (let i = 0; i < 10_000; i++) {
    const pricing: ModelPricing = {
      source: "table",
      inputNanoPerMTok: pick(),
      outputNanoPerMTok: pick(),
      cacheReadNanoPerMTok: pick(),
      cacheWriteNanoPerMTok: pick(),
      maxOutputTokens: random() < 0.5 ? undefined : 1 + upTo(200_000),
    };
    const inputBound = inputTokenBound(upTo(2_000_000), upTo(3));
    const requestMax = random() < 0.5 ? undefined : upTo(100_000);
    const n = 1 + upTo(4);
    const outputLimit = (requestMax ?? pricing.maxOutputTokens ?? DEFAULT_MAX_OUTPUT_TOKENS) * n;
    // Any split of at most the input bound into the three input-side parts.
    const inputTokens = upTo(inputBound);
    const cacheReadTokens = upTo(inputBound - inputTokens);
    const cacheWriteTokens = upTo(inputBound - inputTokens - cacheReadTokens);
    const actual = {
      inputTokens,
      outputTokens: upTo(outputLimit),
      cacheReadTokens,
      cacheWriteTokens,
    };
    const reserved = reservationNanoUsd(pricing, {
      inputTokens: inputBound,
      maxOutputTokens: requestMax,
      n,
    });
    const cost = costNanoUsd(pricing, actual);
    assert.ok(cost <= reserved, `case ${i}: cost ${cost} > reserved ${reserved}`);
    // At the bounds themselves, all input at the dearest price, the reservation is nearly exact.
    const dearest = Math.max(
      pricing.inputNanoPerMTok,
      pricing.cacheReadNanoPerMTok,
      pricing.cacheWriteNanoPerMTok,
    );
    const worst = costNanoUsd(
      { ...pricing, inputNanoPerMTok: dearest },
      {
        inputTokens: inputBound,
        outputTokens: outputLimit,
        cacheReadTokens: 0,
        cacheWriteTokens: 0,
      },
    );
    assert.ok(reserved - worst <= 2, `case ${i}: reserved ${reserved} is not tight (${worst})`);
  }
});

test("cheapestNextRequestNanoUsd: the reservation of one token in and one out", () => {
  assert.equal(cheapestNextRequestNanoUsd(gpt4oMini), 150 + 2 + 600);
  assert.equal(cheapestNextRequestNanoUsd(gpt4oMini, 1_000, 10), 150_000 + 2 + 6_000);
  assert.equal(
    cheapestNextRequestNanoUsd(gpt4oMini),
    reservationNanoUsd(gpt4oMini, { inputTokens: 1, maxOutputTokens: 1 }),
  );
  assert.equal(
    cheapestNextRequestNanoUsd({
      ...gpt4oMini,
      inputNanoPerMTok: 0,
      cacheReadNanoPerMTok: 0,
      cacheWriteNanoPerMTok: 0,
      outputNanoPerMTok: 0,
    }),
    0,
  );
});

test("inputTokenBound: bytes, plus an allowance per image, plus one per request", () => {
  assert.equal(inputTokenBound(0, 0), REQUEST_INPUT_TOKEN_ALLOWANCE);
  assert.equal(inputTokenBound(10_000, 0), 10_000 + REQUEST_INPUT_TOKEN_ALLOWANCE);
  assert.equal(
    inputTokenBound(300, 2),
    300 + 2 * IMAGE_INPUT_TOKEN_ALLOWANCE + REQUEST_INPUT_TOKEN_ALLOWANCE,
  );
  assert.equal(IMAGE_INPUT_TOKEN_ALLOWANCE, 2_833 + 8 * 5_667);
  assert.equal(inputTokenBound(Number.MAX_SAFE_INTEGER, 1), Number.MAX_SAFE_INTEGER);
  assert.throws(() => inputTokenBound(-1, 0), RangeError);
  assert.throws(() => inputTokenBound(1, 0.5), RangeError);
});

/** Deterministic text over the first 12K code points above space, as a tokenizer's worst case. */
const scattered = Array.from({ length: 400 }, (_, i) =>
  String.fromCodePoint(0x20 + ((i * 7919) % 0x2fff)),
).join("");

/**
 * Token counts measured with the gpt-tokenizer package (3.4.0) for OpenAI's o200k_base,
 * cl100k_base and p50k_base encodings: the highest of the three. CJK and emoji show why
 * characters do not bound tokens (a byte-level BPE splits an unfamiliar character into up to one
 * token per byte) while bytes do.
 */
const measured: [string, string, number][] = [
  [
    "English",
    "The quick brown fox jumps over the lazy dog. Please summarise the attached report in three bullet points, focusing on revenue, churn and hiring.",
    29,
  ],
  [
    "JSON",
    JSON.stringify({
      tool: "search",
      args: { query: "weather in Paris", limit: 5, filters: [{ k: "lang", v: "fr" }] },
    }),
    30,
  ],
  ["CJK", "今日は良い天気ですね。我们明天去北京看长城。한국어 문장도 포함합니다。", 69],
  ["emoji", "🙂🚀👩‍👩‍👧‍👦🏳️‍🌈✨", 34],
  ["code", "for (let i = 0; i < n; i++) { sum += a[i] * b[i]; }\n", 27],
  ["whitespace", " ".repeat(200) + "\n".repeat(50) + "\t".repeat(30), 67],
  ["scattered Unicode", scattered, 1_066],
];

for (const [kind, text, tokens] of measured) {
  test(`inputTokenBound: bounds the measured tokens of ${kind} text in a chat request`, () => {
    const textBytes = Buffer.byteLength(text, "utf8");
    // The argument itself: a tokenizer emits at most one token per byte of UTF-8.
    assert.ok(tokens <= textBytes, `${tokens} tokens > ${textBytes} bytes`);
    const body = JSON.stringify({
      model: "gpt-4o-mini",
      messages: [{ role: "user", content: text }],
    });
    const bound = inputTokenBound(Buffer.byteLength(body, "utf8"), 0);
    assert.ok(bound >= tokens, `bound ${bound} < ${tokens} tokens`);
    assert.ok(bound - REQUEST_INPUT_TOKEN_ALLOWANCE >= textBytes, "JSON only adds bytes");
  });
}

test("inputTokenBound: characters would not bound CJK tokens, bytes do", () => {
  const cjk = measured.find(([kind]) => kind === "CJK");
  assert.ok(cjk !== undefined);
  const [, text, tokens] = cjk;
  const codePoints = Array.from(text).length;
  assert.ok(codePoints < tokens, `${codePoints} code points, ${tokens} tokens`);
  assert.ok(Buffer.byteLength(text, "utf8") >= tokens);
});

test("cheapestNextRequestNanoUsd: a tool fee of the last request is not the next one's", () => {
  const searched: ModelPricing = {
    ...unlimited,
    toolFixedNano: 50_000_000,
    toolNanoPerCall: { web_search: 10_000_000 },
  };
  assert.equal(cheapestNextRequestNanoUsd(searched), cheapestNextRequestNanoUsd(unlimited));
  assert.equal(
    reservationNanoUsd(searched, {
      inputTokens: 0,
      maxOutputTokens: 0,
      toolCalls: { web_search: 2 },
    }),
    50_000_000 + 20_000_000,
  );
});
