/**
 * The worst-case cost of a request, reserved before it is sent. A reservation must be an upper
 * bound of what the provider can bill for the request, or concurrent calls could overrun the
 * budget: every bound here says why it bounds, and where it rests on an assumption, says so.
 */
import {
  componentNanoUsd,
  distinctPrices,
  MODALITIES,
  modalityPricing,
  type ModelPricing,
  type ToolFee,
} from "./prices.js";

/**
 * Output tokens reserved when neither the request nor our knowledge of the model limits them:
 * 131,072 (a 128K window). It is at least the largest documented per-completion output limit of
 * the flagship models of the metered providers (gpt-5: 128,000; claude-3-7-sonnet with the 128K
 * beta: 128,000; o3: 100,000; gemini-2.5: 65,536), and it is the whole context window of the
 * common 128K open-weight models served by Groq, Together and Fireworks, whose output cannot
 * exceed their window. It is an assumption, not a bound, only for a model we know nothing about
 * whose host accepts more than 128K output tokens when the request names no limit.
 */
export const DEFAULT_MAX_OUTPUT_TOKENS = 131_072;

/**
 * Input tokens allowed for each image part on top of its bytes. The largest documented count for
 * one image among the metered chat models is OpenAI's gpt-4o-mini at high detail: the image is
 * scaled to fit 2048×2048 and then to 768 px on its short side, at most 2×4 = 8 tiles of 512 px,
 * each 5,667 tokens, plus 2,833 base tokens: 2,833 + 8 × 5,667 = 48,169. (gpt-4o: 85 + 8 × 170 =
 * 1,445; Claude: about w×h/750 ≈ 1,600 after its resize; Gemini: 258 per 768 px tile.) An
 * assumption: it holds for the documented resizing rules of today's models, and a provider that
 * changes them could bill a small image URL above it.
 */
export const IMAGE_INPUT_TOKEN_ALLOWANCE = 48_169;

/**
 * Input tokens allowed per request for prompt text that providers add and the body does not
 * carry: Anthropic's tool-use system prompt (up to 530 tokens, Claude 3 Opus), its client tools'
 * definitions (computer 735, text editor 700, bash 245) and computer-use system prompt (≤ 499),
 * 2,709 in all; chat-template role markers (OpenAI: 3 per message and 3 for the reply) are fewer
 * than the JSON bytes of the messages they wrap. 4,096 leaves room above the documented sum.
 */
export const REQUEST_INPUT_TOKEN_ALLOWANCE = 4_096;

function count(name: string, value: number, min = 0): number {
  if (!Number.isSafeInteger(value) || value < min) {
    throw new RangeError(`${name} must be a safe integer ≥ ${min}, got ${value}`);
  }
  return value;
}

/**
 * An UPPER BOUND on the input tokens of a request whose (decoded, uncompressed) JSON body is
 * `inputBytes` long and holds `imageCount` image parts.
 *
 * Why bytes bound tokens: the tokenizers of these models (byte-level BPE for GPT, Llama, Mistral,
 * DeepSeek…; SentencePiece with byte fallback for Gemini) split the prompt text into tokens that
 * each cover at least one byte of its UTF-8 encoding, so a text of B bytes is at most B tokens
 * (English averages about 4 bytes a token, CJK about 1.5-3, and only a single-byte token per byte
 * reaches the bound). The body is a superset of the prompt text: JSON keys, quotes, escapes and
 * base64 only add bytes, so the bound gets looser, never wrong. Two things are not in the body and
 * get allowances: prompt text the provider adds (REQUEST_INPUT_TOKEN_ALLOWANCE) and the pixels
 * behind an image part (IMAGE_INPUT_TOKEN_ALLOWANCE each; its base64 or URL bytes still count).
 *
 * Not bounded here, so the caller must bound them otherwise (the model's context window, from
 * `findContextWindow`, bounds any input): prompts that live on the provider and are only named in
 * the body (`previous_response_id`, conversations, cached content, file ids, PDFs and audio by
 * URL) and server-side tools that pull content in (web search or fetch, file search).
 */
export function inputTokenBound(inputBytes: number, imageCount: number): number {
  const bound =
    count("inputBytes", inputBytes) +
    count("imageCount", imageCount) * IMAGE_INPUT_TOKEN_ALLOWANCE +
    REQUEST_INPUT_TOKEN_ALLOWANCE;
  // Saturate: such a bound prices beyond any budget, which is the right answer for it.
  return Math.min(bound, Number.MAX_SAFE_INTEGER);
}

/** What a request may cost at most, from the facts read before it is sent. */
export interface ReservationRequest {
  /** An upper bound on input tokens, e.g. `inputTokenBound(...)`. */
  readonly inputTokens: number;
  /** The request's own output limit (`max_tokens`, `max_output_tokens`…), if it sets one. */
  readonly maxOutputTokens?: number | undefined;
  /** How many completions it asks for (`n`, `candidateCount`); input is billed once. */
  readonly n?: number | undefined;
  /**
   * The body carries media or names input it does not carry (InputFacts): the prompt may then
   * hold audio, image or video tokens, so input is priced at the dearest of those too.
   */
  readonly mediaInput?: boolean | undefined;
  /** The most calls of each fee-charging server tool the request allows (server-tools.ts). */
  readonly toolCalls?: Readonly<Partial<Record<ToolFee, number>>> | undefined;
  /**
   * Output tokens per completion on top of the output limit: a predicted output (OpenAI
   * `prediction`) whose rejected tokens are billed at the output price and are not counted by
   * `max_completion_tokens`.
   */
  readonly extraOutputTokens?: number | undefined;
  /**
   * How many model turns the output limit applies to each (server-tool loops where each turn
   * may emit up to the limit); 1 when the limit bounds the whole response.
   */
  readonly outputTurns?: number | undefined;
}

/**
 * Nano-USD that rounding may add to a cost over the reservation. The cost rounds each side's
 * tokens up once per distinct price, k roundings (costNanoUsd), while the reservation rounds
 * each side once: Σ⌈xᵢ⌉ < Σxᵢ + k ≤ ⌈Σxᵢ⌉ + k, so, all being integers, at most ⌈Σxᵢ⌉ + k - 1.
 * The input side keeps at least the 2 it always had (input, cache read, cache write).
 */
function roundingSlackNano(pricing: ModelPricing, input: bigint, output: bigint): bigint {
  const distinct = distinctPrices(pricing);
  const inputSlack = input > 0n ? Math.max(2, distinct.input - 1) : 0;
  const outputSlack = output > 0n ? distinct.output - 1 : 0;
  return BigInt(inputSlack + outputSlack);
}

/** The dearest price a prompt token of this request can be billed at. */
function dearestInputPrice(pricing: ModelPricing, mediaInput: boolean): number {
  const prices = [
    pricing.inputNanoPerMTok,
    pricing.cacheReadNanoPerMTok,
    pricing.cacheWriteNanoPerMTok,
  ];
  if (mediaInput) {
    for (const modality of MODALITIES) {
      const media = modalityPricing(pricing, modality);
      prices.push(media.inputNanoPerMTok, media.cacheReadNanoPerMTok);
    }
  }
  return Math.max(...prices);
}

/**
 * The dearest price an output token can be billed at. Whether a model answers in audio or images
 * is not always the request's to say (Gemini image models, `modalities`, audio-only models), so
 * every output modality the table prices counts, whatever the request asks for.
 */
function dearestOutputPrice(pricing: ModelPricing): number {
  const prices = [pricing.outputNanoPerMTok, pricing.outputReasoningNanoPerMTok ?? 0];
  for (const modality of MODALITIES)
    prices.push(modalityPricing(pricing, modality).outputNanoPerMTok);
  return Math.max(...prices);
}

/** The most the request's server tools can cost; throws when one has no price (a bug upstream). */
function toolReservation(pricing: ModelPricing, request: ReservationRequest): bigint {
  let total = 0n;
  for (const [tool, calls] of Object.entries(request.toolCalls ?? {})) {
    const limit = BigInt(count(`${tool} calls`, calls));
    if (limit === 0n) continue;
    const price = pricing.toolNanoPerCall?.[tool as ToolFee];
    if (price === undefined) throw new RangeError(`no price for ${tool} calls`);
    total += limit * BigInt(count("tool price", price));
  }
  return total;
}

/**
 * The nano-USD to reserve for a request: its input bound priced at the dearest input-side price
 * (input, cache read or cache write, and with media every modality's: we cannot know before the
 * call which tokens the cache will serve or store, or which are audio), plus its output limit × n
 * at the dearest output price (text, reasoning, audio, image, video; the limit grows by
 * `extraOutputTokens` and is multiplied by `outputTurns`), plus the table's
 * per-request fee and each server tool's call limit × its price. Without an output limit in the
 * request, the model's (`pricing.maxOutputTokens`), else DEFAULT_MAX_OUTPUT_TOKENS.
 *
 * It is ≥ `costNanoUsd` of every usage within the bounds (all prompt parts ≤ inputTokens, output
 * ≤ (limit + extra) × n × turns, tool calls ≤ their limits): every token is priced at most at the
 * dearest price of its side, and the rounding of separate components is covered by
 * roundingSlackNano. A reservation beyond Number.MAX_SAFE_INTEGER is returned as Number.MAX_SAFE_INTEGER, more than
 * any budget can hold.
 */
export function reservationNanoUsd(pricing: ModelPricing, request: ReservationRequest): number {
  const inputTokens = BigInt(count("inputTokens", request.inputTokens));
  const limit = request.maxOutputTokens ?? pricing.maxOutputTokens ?? DEFAULT_MAX_OUTPUT_TOKENS;
  const perChoice =
    BigInt(count("maxOutputTokens", limit)) +
    BigInt(count("extraOutputTokens", request.extraOutputTokens ?? 0));
  const outputTokens =
    perChoice *
    BigInt(count("n", request.n ?? 1, 1)) *
    BigInt(count("outputTurns", request.outputTurns ?? 1, 1));
  const input = componentNanoUsd(
    inputTokens,
    dearestInputPrice(pricing, request.mediaInput === true),
  );
  const output = componentNanoUsd(outputTokens, dearestOutputPrice(pricing));
  const roundingSlack = roundingSlackNano(pricing, input, output);
  const fees =
    BigInt(count("requestNano", pricing.requestNano ?? 0)) +
    BigInt(count("toolFixedNano", pricing.toolFixedNano ?? 0)) +
    toolReservation(pricing, request);
  const total = input + output + roundingSlack + fees;
  return total > BigInt(Number.MAX_SAFE_INTEGER) ? Number.MAX_SAFE_INTEGER : Number(total);
}

/**
 * The smallest reservation any request to this model can need: `minInputTokens` in,
 * `minOutputTokens` out, one completion. When the budget left is below it, no further request
 * can pass the reservation check, so the run ends (`budget_exceeded`).
 */
export function cheapestNextRequestNanoUsd(
  pricing: ModelPricing,
  minInputTokens = 1,
  minOutputTokens = 1,
): number {
  // The model's own price: a tool fee of the last request is not one the next must pay.
  const model: ModelPricing = { ...pricing, toolFixedNano: 0, toolNanoPerCall: {} };
  return reservationNanoUsd(model, {
    inputTokens: minInputTokens,
    maxOutputTokens: minOutputTokens,
    n: 1,
  });
}
