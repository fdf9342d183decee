import assert from "node:assert/strict";
import { test } from "node:test";

import type { PolicyRules } from "../policy/index.js";
import {
  costNanoUsd,
  findContextWindow,
  findPricing,
  usdPerMTokToNano,
  type ModelPricing,
  type TokenUsage,
  loadPriceTable,
} from "./prices.js";
import type { ProviderId } from "./providers.js";

await loadPriceTable();

const AT = new Date("2025-10-01T12:00:00Z");
const NO_OVERRIDES: PolicyRules["prices"] = {};

/** USD per MTok as the package data writes it -> nano-USD per MTok, rounded up. */
const tableConversions: [number, number | undefined][] = [
  [0, 0],
  [0.15, 150_000_000],
  [0.6, 600_000_000],
  [2.5, 2_500_000_000],
  [0.0375, 37_500_000],
  [0.01875, 18_750_000],
  [0.003625, 3_625_000],
  [0.2288, 228_800_000],
  [600, 600_000_000_000],
  [1e-9, 1],
  [1e-7, 100],
  [1.5e-10, 1],
  [5e-324, 1],
  [1.0000000001, 1_000_000_001],
  [0.1 + 0.2, 300_000_001],
  [-1, undefined],
  [Number.NaN, undefined],
  [Number.POSITIVE_INFINITY, undefined],
  [1e21, undefined],
];

for (const [usd, nano] of tableConversions) {
  test(`usdPerMTokToNano: ${String(usd)} USD/MTok is ${String(nano)} nano-USD/MTok`, () => {
    assert.equal(usdPerMTokToNano(usd), nano);
  });
}

/** Policy overrides are exact decimal strings. */
const overrideConversions: [string, string, number, number][] = [
  ["0.15", "0.6", 150_000_000, 600_000_000],
  ["0", "0", 0, 0],
  ["3", "15", 3_000_000_000, 15_000_000_000],
  ["12.000000001", "0.000000001", 12_000_000_001, 1],
  ["1000000", "0.333333333", 1_000_000_000_000_000, 333_333_333],
];

for (const [input, output, inputNano, outputNano] of overrideConversions) {
  test(`findPricing: override ${input}/${output} is exactly ${inputNano}/${outputNano} nano/MTok`, () => {
    const prices = { "my-local-model": { input_usd_per_mtok: input, output_usd_per_mtok: output } };
    assert.deepEqual(findPricing("openai", "my-local-model", prices, AT), {
      source: "policy",
      inputNanoPerMTok: inputNano,
      outputNanoPerMTok: outputNano,
      cacheReadNanoPerMTok: inputNano,
      cacheWriteNanoPerMTok: inputNano,
      maxOutputTokens: undefined,
    });
  });
}

test("findPricing: a policy override wins over the table, and keeps the model's output limit", () => {
  const prices = { "gpt-4o-mini": { input_usd_per_mtok: "1", output_usd_per_mtok: "2" } };
  assert.deepEqual(findPricing("openai", "gpt-4o-mini", prices, AT), {
    source: "policy",
    inputNanoPerMTok: 1_000_000_000,
    outputNanoPerMTok: 2_000_000_000,
    cacheReadNanoPerMTok: 1_000_000_000,
    cacheWriteNanoPerMTok: 1_000_000_000,
    maxOutputTokens: 16_384,
  });
});

test("findPricing: an override for another model leaves the table price in force", () => {
  const prices = { "gpt-4o": { input_usd_per_mtok: "1", output_usd_per_mtok: "2" } };
  assert.equal(findPricing("openai", "gpt-4o-mini", prices, AT)?.source, "table");
});

test("findPricing: an unreadable override denies rather than falling back to the table", () => {
  const prices = { "gpt-4o-mini": { input_usd_per_mtok: "cheap", output_usd_per_mtok: "0.6" } };
  assert.equal(findPricing("openai", "gpt-4o-mini", prices, AT), undefined);
});

test("findPricing: an override names a Gemini model with or without its models/ prefix", () => {
  const prices = { "gemini-2.0-flash": { input_usd_per_mtok: "1", output_usd_per_mtok: "2" } };
  assert.equal(findPricing("gemini", "models/gemini-2.0-flash", prices, AT)?.source, "policy");
});

/** Prices found in @pydantic/genai-prices 0.1.8, in USD/MTok, written here as nano-USD/MTok. */
const tablePrices: [ProviderId, string, Omit<ModelPricing, "source">][] = [
  [
    "openai",
    "gpt-4o-mini",
    {
      inputNanoPerMTok: 150_000_000, // $0.15
      outputNanoPerMTok: 600_000_000, // $0.60
      cacheReadNanoPerMTok: 75_000_000, // $0.075
      cacheWriteNanoPerMTok: 150_000_000, // no cache-write price: billed as input
      maxOutputTokens: 16_384,
      // web_searches_kcount $10 and storage_searches_kcount $2.50 (file search), per call
      toolNanoPerCall: { web_search: 10_000_000, file_search: 2_500_000 },
    },
  ],
  [
    "anthropic",
    "claude-3-5-haiku-20241022",
    {
      inputNanoPerMTok: 800_000_000, // $0.80
      outputNanoPerMTok: 4_000_000_000, // $4
      cacheReadNanoPerMTok: 80_000_000, // $0.08
      cacheWriteNanoPerMTok: 1_600_000_000, // the 1-hour write, $1.60 (5-minute: $1)
      maxOutputTokens: 8_192,
      toolNanoPerCall: { web_search: 10_000_000 }, // web_searches_kcount $10: 1 cent a search
    },
  ],
  [
    "anthropic",
    "claude-sonnet-4-20250514",
    {
      inputNanoPerMTok: 3_000_000_000,
      outputNanoPerMTok: 15_000_000_000,
      cacheReadNanoPerMTok: 300_000_000,
      cacheWriteNanoPerMTok: 6_000_000_000,
      maxOutputTokens: 64_000,
      toolNanoPerCall: { web_search: 10_000_000 }, // web_searches_kcount $10: 1 cent a search
    },
  ],
  [
    "gemini",
    "gemini-2.0-flash",
    {
      inputNanoPerMTok: 100_000_000, // $0.10
      outputNanoPerMTok: 400_000_000, // $0.40
      cacheReadNanoPerMTok: 25_000_000, // $0.025
      cacheWriteNanoPerMTok: 100_000_000,
      maxOutputTokens: 8_192,
      // input_audio_mtok $0.70 and cache_audio_read_mtok $0.175; audio output is priced as text
      modalities: {
        audio: {
          inputNanoPerMTok: 700_000_000,
          cacheReadNanoPerMTok: 175_000_000,
          outputNanoPerMTok: 400_000_000,
        },
      },
    },
  ],
  [
    "gemini",
    "models/gemini-2.0-flash-001",
    {
      inputNanoPerMTok: 100_000_000,
      outputNanoPerMTok: 400_000_000,
      cacheReadNanoPerMTok: 25_000_000,
      cacheWriteNanoPerMTok: 100_000_000,
      maxOutputTokens: 8_192,
      // input_audio_mtok $0.70 and cache_audio_read_mtok $0.175; audio output is priced as text
      modalities: {
        audio: {
          inputNanoPerMTok: 700_000_000,
          cacheReadNanoPerMTok: 175_000_000,
          outputNanoPerMTok: 400_000_000,
        },
      },
    },
  ],
  [
    // Tiered by context length ($3 up to 200K input tokens, $6 above): the highest tier.
    "anthropic",
    "claude-sonnet-4-5",
    {
      inputNanoPerMTok: 6_000_000_000,
      outputNanoPerMTok: 22_500_000_000,
      cacheReadNanoPerMTok: 600_000_000,
      cacheWriteNanoPerMTok: 12_000_000_000,
      maxOutputTokens: 64_000,
      toolNanoPerCall: { web_search: 10_000_000 }, // web_searches_kcount $10: 1 cent a search
    },
  ],
];

for (const [provider, model, expected] of tablePrices) {
  test(`findPricing: ${provider} ${model} has the table's price`, () => {
    const pricing = findPricing(provider, model, NO_OVERRIDES, AT);
    assert.deepEqual(pricing, { source: "table", ...expected });
    assert.ok(pricing.inputNanoPerMTok > 0 && pricing.outputNanoPerMTok > 0);
  });
}

/** One model each provider serves, priced through our provider id -> the package's. */
const everyProvider: [ProviderId, string][] = [
  ["openai", "gpt-4o-mini"],
  ["anthropic", "claude-3-5-haiku-latest"],
  ["gemini", "gemini-2.0-flash"],
  ["groq", "llama-3.3-70b-versatile"],
  ["mistral", "mistral-large-latest"],
  ["deepseek", "deepseek-chat"],
  ["openrouter", "openai/gpt-4o"],
  ["xai", "grok-3"],
  ["together", "meta-llama/Llama-3.3-70B-Instruct-Turbo"],
  ["fireworks", "accounts/fireworks/models/gpt-oss-120b"],
  ["azure", "gpt-4o"],
];

for (const [provider, model] of everyProvider) {
  test(`findPricing: the ${provider} provider prices ${model} from the table, non-zero`, () => {
    const pricing = findPricing(provider, model, NO_OVERRIDES, AT);
    assert.equal(pricing?.source, "table");
    assert.ok(pricing.inputNanoPerMTok > 0, "input price");
    assert.ok(pricing.outputNanoPerMTok > 0, "output price");
    assert.ok(Number.isSafeInteger(pricing.cacheReadNanoPerMTok));
    assert.ok(Number.isSafeInteger(pricing.cacheWriteNanoPerMTok));
  });
}

test("findPricing: Azure deployments named after OpenAI models get OpenAI's prices", () => {
  const azure = findPricing("azure", "gpt-4o-mini", NO_OVERRIDES, AT);
  const openai = findPricing("openai", "gpt-4o-mini", NO_OVERRIDES, AT);
  assert.deepEqual(azure, openai);
});

test("findPricing: an OpenRouter model its table lacks is priced as the vendor's model", () => {
  const viaOpenRouter = findPricing("openrouter", "x-ai/grok-3", NO_OVERRIDES, AT);
  assert.deepEqual(viaOpenRouter, findPricing("xai", "grok-3", NO_OVERRIDES, AT));
  assert.equal(viaOpenRouter?.inputNanoPerMTok, 3_000_000_000);
});

const unpriced: [ProviderId, string, string][] = [
  ["openai", "gpt-no-such-model", "unknown model"],
  ["openai", "", "empty name"],
  ["anthropic", "gpt-4o-mini", "another provider's model"],
  ["azure", "my-team-deployment", "an Azure deployment not named after a model"],
  ["openrouter", "openai/gpt-4.1:online", "an OpenRouter variant that adds fees"],
  ["openrouter", "meta-llama/llama-99-imaginary", "an OpenRouter model of a multi-host vendor"],
  ["openrouter", "mistralai/mistral-nemo:free", "a model the table lists without any price"],
  ["openai", "whisper-1", "a model priced per audio hour, not per token"],
  ["openai", "moderation-latest", "a model with an empty price entry"],
];

for (const [provider, model, why] of unpriced) {
  test(`findPricing: ${provider} ${JSON.stringify(model)} is unpriced (${why})`, () => {
    assert.equal(findPricing(provider, model, NO_OVERRIDES, AT), undefined);
  });
}

test("findPricing: embedding models are priced by input alone", () => {
  const pricing = findPricing("openai", "text-embedding-3-small", NO_OVERRIDES, AT);
  assert.equal(pricing?.inputNanoPerMTok, 20_000_000);
  assert.equal(pricing.outputNanoPerMTok, 0);
});

test("findPricing: a dated price change applies from its start date", () => {
  // o3 was $10/$40 until 2025-06-10, then $2/$8.
  const before = findPricing("openai", "o3", NO_OVERRIDES, new Date("2025-06-01T00:00:00Z"));
  const after = findPricing("openai", "o3", NO_OVERRIDES, new Date("2025-06-11T00:00:00Z"));
  assert.deepEqual([before?.inputNanoPerMTok, before?.outputNanoPerMTok], [10e9, 40e9]);
  assert.deepEqual([after?.inputNanoPerMTok, after?.outputNanoPerMTok], [2e9, 8e9]);
});

test("findPricing: time-of-day windows price every hour at the highest window", () => {
  // deepseek-chat: $0.27/$1.10 from 00:30 to 16:30 UTC, $0.135/$0.55 off-peak. A call reserved
  // off-peak may finish at peak, so off-peak is priced at peak too.
  const peak = findPricing(
    "deepseek",
    "deepseek-chat",
    NO_OVERRIDES,
    new Date("2025-10-01T08:00Z"),
  );
  const offPeak = findPricing(
    "deepseek",
    "deepseek-chat",
    NO_OVERRIDES,
    new Date("2025-10-01T20:00Z"),
  );
  assert.equal(peak?.inputNanoPerMTok, 270_000_000);
  assert.equal(peak.outputNanoPerMTok, 1_100_000_000);
  assert.deepEqual(offPeak, peak);
});

const outputLimits: [ProviderId, string, number | undefined, string][] = [
  ["openai", "gpt-4o-2024-08-06", 16_384, "documented limit, dated snapshot"],
  ["openai", "gpt-4-0613", 8_192, "documented limit, four-digit snapshot"],
  ["openai", "o1-mini-2024-09-12", 65_536, "o1-mini, not o1"],
  ["anthropic", "claude-3-7-sonnet-latest", 128_000, "the 128K beta limit"],
  ["gemini", "models/gemini-2.5-flash", 65_536, "documented limit, models/ prefix"],
  ["openrouter", "openai/gpt-4o-mini", 16_384, "vendor prefix"],
  ["openai", "gpt-4o-audio-preview", 128_000, "no loose prefix match: its context window"],
  ["xai", "grok-4", 256_000, "context window from the table"],
  ["groq", "llama-3.3-70b-versatile", undefined, "neither known"],
];

for (const [provider, model, limit, why] of outputLimits) {
  test(`findPricing: ${model} may output ${String(limit)} tokens (${why})`, () => {
    assert.equal(findPricing(provider, model, NO_OVERRIDES, AT)?.maxOutputTokens, limit);
  });
}

test("findContextWindow: the table's context window, or undefined", () => {
  assert.equal(findContextWindow("openai", "gpt-4o-mini", AT), 128_000);
  assert.equal(findContextWindow("anthropic", "claude-3-5-haiku-20241022", AT), 200_000);
  assert.equal(findContextWindow("openai", "gpt-no-such-model", AT), undefined);
});

test("findPricing: looks prices up offline, never through fetch", () => {
  const realFetch = globalThis.fetch;
  let calls = 0;
  globalThis.fetch = () => {
    calls += 1;
    return Promise.reject(new Error("no network in this test"));
  };
  try {
    for (const [provider, model] of everyProvider) {
      assert.notEqual(findPricing(provider, model, NO_OVERRIDES, AT), undefined);
    }
  } finally {
    globalThis.fetch = realFetch;
  }
  assert.equal(calls, 0);
});

const flat = (nano: number): ModelPricing => ({
  source: "policy",
  inputNanoPerMTok: nano,
  outputNanoPerMTok: nano,
  cacheReadNanoPerMTok: nano,
  cacheWriteNanoPerMTok: nano,
  maxOutputTokens: undefined,
});

const gpt4oMini: ModelPricing = {
  source: "table",
  inputNanoPerMTok: 150_000_000,
  outputNanoPerMTok: 600_000_000,
  cacheReadNanoPerMTok: 75_000_000,
  cacheWriteNanoPerMTok: 150_000_000,
  maxOutputTokens: 16_384,
};

const usage = (inputTokens: number, outputTokens: number, cacheRead = 0, cacheWrite = 0) => ({
  inputTokens,
  outputTokens,
  cacheReadTokens: cacheRead,
  cacheWriteTokens: cacheWrite,
});

const costs: [string, ModelPricing, ReturnType<typeof usage>, number][] = [
  ["nothing costs nothing", gpt4oMini, usage(0, 0), 0],
  ["a million input tokens cost the MTok price", gpt4oMini, usage(1_000_000, 0), 150_000_000],
  ["one input token of gpt-4o-mini is 150 nano", gpt4oMini, usage(1, 0), 150],
  ["each part at its price", gpt4oMini, usage(1_000, 200, 3_000, 0), 150_000 + 120_000 + 225_000],
  ["a millionth of a nano rounds up to 1", flat(1), usage(1, 0), 1],
  // One rounding per distinct price and side: 3 input-side tokens at 1 nano/MTok, 1 output.
  ["each side rounds up once per price", flat(1), usage(1, 1, 1, 1), 2],
  ["999,999 millionths round up to 1", flat(333_333), usage(3, 0), 1],
  ["an exact nano does not round", flat(1_000_000), usage(7, 0), 7],
  ["a free model costs nothing", flat(0), usage(5_000, 5_000, 5_000, 5_000), 0],
];

for (const [why, pricing, tokens, nano] of costs) {
  test(`costNanoUsd: ${why}`, () => {
    assert.equal(costNanoUsd(pricing, tokens), nano);
  });
}

test("costNanoUsd: exact where float arithmetic would round the wrong way", () => {
  // (1e13 + 1) tokens × 1,000,001 nano/MTok = 10,000,010,000,001.000001 nano: the ceiling is
  // ...002. In floats the product loses its last digits and the ceiling comes out ...001.
  const tokens = 10_000_000_000_001;
  const price = 1_000_001;
  assert.equal(Math.ceil((tokens * price) / 1e6), 10_000_010_000_001);
  assert.equal(costNanoUsd(flat(price), usage(tokens, 0)), 10_000_010_000_002);
});

test("costNanoUsd: products beyond 2^53 stay exact, and a total beyond it throws", () => {
  // 9M tokens at $1,000,000/MTok = $9M: a product of 9e21, a total of 9e15 nano ≤ 2^53 - 1.
  assert.equal(costNanoUsd(flat(1e15), usage(9_000_000, 0)), 9e15);
  assert.throws(() => costNanoUsd(flat(1e15), usage(9_100_000, 0)), RangeError);
  assert.throws(
    () => costNanoUsd(flat(1e15), usage(Number.MAX_SAFE_INTEGER, Number.MAX_SAFE_INTEGER)),
    RangeError,
  );
});

const badCounts: [string, ReturnType<typeof usage>][] = [
  ["a negative", usage(-1, 0)],
  ["a fractional", usage(0, 1.5)],
  ["a NaN", usage(0, 0, Number.NaN)],
  ["an unsafe (2^53)", usage(0, 0, 0, 2 ** 53)],
];

for (const [why, tokens] of badCounts) {
  test(`costNanoUsd: ${why} token count is a RangeError, not a price`, () => {
    assert.throws(() => costNanoUsd(gpt4oMini, tokens), RangeError);
  });
}

// ------------------------------------------------ usage components beyond text (issue 12)

/** genai-prices' own usage → price function, the reference our integer arithmetic must meet. */
const { calcPrice } = await import("@pydantic/genai-prices");

/** A usage in genai-prices' keys (totals that include their parts), as our disjoint fields. */
function fromLibraryUsage(lib: Record<string, number>): TokenUsage {
  const cacheRead = lib["cache_read_tokens"] ?? 0;
  const cacheWrite = lib["cache_write_tokens"] ?? 0;
  const prompt = (m: string) => lib[`input_${m}_tokens`] ?? 0;
  return {
    inputTokens: (lib["input_tokens"] ?? 0) - cacheRead - cacheWrite,
    outputTokens: lib["output_tokens"] ?? 0,
    cacheReadTokens: cacheRead,
    cacheWriteTokens: cacheWrite,
    promptByModality: { audio: prompt("audio"), image: prompt("image") },
    cachedByModality: {
      audio: lib["cache_audio_read_tokens"] ?? 0,
      image: lib["cache_image_read_tokens"] ?? 0,
    },
    outputByModality: {
      audio: lib["output_audio_tokens"] ?? 0,
      image: lib["output_image_tokens"] ?? 0,
    },
    toolCalls: { web_search: lib["web_searches"] ?? 0 },
  };
}

const libraryCases: [ProviderId, string, Record<string, number>][] = [
  // The call: 3,990 audio output tokens, $0.040 as text, $0.256 as audio.
  ["openai", "gpt-audio", { input_tokens: 100, output_tokens: 3_990, output_audio_tokens: 3_990 }],
  [
    "openai",
    "gpt-audio",
    {
      input_tokens: 5_000,
      input_audio_tokens: 4_000,
      output_tokens: 800,
      output_audio_tokens: 700,
    },
  ],
  [
    "openai",
    "gpt-realtime",
    {
      input_tokens: 10_000,
      input_audio_tokens: 6_000,
      cache_read_tokens: 3_000,
      cache_audio_read_tokens: 2_000,
      input_image_tokens: 1_000,
      cache_image_read_tokens: 0,
      output_tokens: 2_000,
      output_audio_tokens: 1_500,
    },
  ],
  [
    "gemini",
    "gemini-2.5-flash",
    {
      input_tokens: 9_000,
      input_audio_tokens: 5_000,
      cache_read_tokens: 4_000,
      cache_audio_read_tokens: 1_000,
      output_tokens: 700,
    },
  ],
  [
    "gemini",
    "gemini-2.5-flash-image",
    { input_tokens: 50, output_tokens: 1_300, output_image_tokens: 1_290 },
  ],
  // The search call: 50 searches at $10 per 1,000.
  ["anthropic", "claude-sonnet-4-0", { input_tokens: 105, output_tokens: 18, web_searches: 50 }],
  [
    "openai",
    "gpt-4o-mini",
    { input_tokens: 2_000, cache_read_tokens: 1_024, output_tokens: 300, web_searches: 3 },
  ],
];

for (const [provider, model, lib] of libraryCases) {
  test(`costNanoUsd: ${model} ${JSON.stringify(lib)} agrees with genai-prices' calcPrice`, () => {
    const pricing = findPricing(provider, model, NO_OVERRIDES, AT);
    assert.ok(pricing !== undefined);
    const reference = calcPrice(lib, model, {
      providerId: provider === "gemini" ? "google" : provider,
      timestamp: AT,
    });
    assert.ok(reference !== null);
    const ours = costNanoUsd(pricing, fromLibraryUsage(lib));
    const theirs = reference.total_price * 1e9;
    // Ours rounds each price's tokens up to the nano; theirs is a float. Never below it.
    assert.ok(ours >= theirs - 1e-3 && ours <= theirs + 8, `ours ${ours}, genai-prices ${theirs}`);
  });
}

test("costNanoUsd: the issue's gpt-audio call costs $0.25561, not the $0.04015 of text", () => {
  const pricing = findPricing("openai", "gpt-audio", NO_OVERRIDES, AT);
  assert.ok(pricing !== undefined);
  const usage = { inputTokens: 100, outputTokens: 3_990, cacheReadTokens: 0, cacheWriteTokens: 0 };
  assert.equal(costNanoUsd(pricing, usage), 40_150_000);
  assert.equal(costNanoUsd(pricing, { ...usage, outputByModality: { audio: 3_990 } }), 255_610_000);
});

const mediaPricing: ModelPricing = {
  source: "table",
  inputNanoPerMTok: 1_000_000, // 1 nano a token
  outputNanoPerMTok: 2_000_000,
  cacheReadNanoPerMTok: 500_000,
  cacheWriteNanoPerMTok: 1_000_000,
  maxOutputTokens: 1000,
  modalities: {
    audio: {
      inputNanoPerMTok: 10_000_000,
      cacheReadNanoPerMTok: 3_000_000,
      outputNanoPerMTok: 20_000_000,
    },
  },
  toolNanoPerCall: { web_search: 10_000_000 },
};

const base = { inputTokens: 0, outputTokens: 0, cacheReadTokens: 0, cacheWriteTokens: 0 };

const mediaCosts: [string, TokenUsage, number | "throws"][] = [
  ["text only", { ...base, inputTokens: 1_000, outputTokens: 100 }, 1_000 + 200],
  [
    "audio input split known: 300 uncached audio, 100 cached audio, 600 text",
    {
      ...base,
      inputTokens: 900,
      cacheReadTokens: 100,
      promptByModality: { audio: 400 },
      cachedByModality: { audio: 100 },
    },
    600 + 300 * 10 + 100 * 3,
  ],
  [
    // OpenAI: 400 audio and 100 cached, split unknown: audio at its dearer price, text as
    // uncached as the counts allow, at the dearer of its prices.
    "audio input split unknown: priced at the dearer reading",
    { ...base, inputTokens: 900, cacheReadTokens: 100, promptByModality: { audio: 400 } },
    400 * 10 + 600,
  ],
  [
    "audio output at the audio price",
    { ...base, outputTokens: 100, outputByModality: { audio: 60 } },
    40 * 2 + 60 * 20,
  ],
  ["tool calls at their price", { ...base, toolCalls: { web_search: 50 } }, 500_000_000],
  ["a tool without a price throws", { ...base, toolCalls: { file_search: 1 } }, "throws"],
  [
    "parts above their total throw",
    { ...base, outputTokens: 5, outputByModality: { audio: 6 } },
    "throws",
  ],
  [
    "cached parts above the cached total throw",
    {
      ...base,
      inputTokens: 10,
      cacheReadTokens: 1,
      promptByModality: { audio: 5 },
      cachedByModality: { audio: 2 },
    },
    "throws",
  ],
];

for (const [why, usage, expected] of mediaCosts) {
  test(`costNanoUsd with media: ${why}`, () => {
    if (expected === "throws") assert.throws(() => costNanoUsd(mediaPricing, usage), RangeError);
    else assert.equal(costNanoUsd(mediaPricing, usage), expected);
  });
}

test("findPricing: a model the table prices by a key we do not read is unpriced", () => {
  // whisper-1 is priced per audio hour; we count tokens, so we would charge it nothing.
  assert.equal(findPricing("openai", "whisper-1", NO_OVERRIDES, AT), undefined);
});
