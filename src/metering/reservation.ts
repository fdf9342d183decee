/**
 * The worst-case cost of a request, reserved before it is sent. A reservation must be an upper
 * bound of what the provider can bill for the request, or concurrent calls could overrun the
 * budget: every bound here says why it bounds, and where it rests on an assumption, says so.
 */
import { componentNanoUsd, type ModelPricing } from "./prices.js";

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
}

/**
 * The nano-USD to reserve for a request: its input bound priced at the highest input-side price
 * (input, cache read or cache write: we cannot know before the call which tokens the cache will
 * serve or store) plus its output limit × n at the output price. Without an output limit in the
 * request, the model's (`pricing.maxOutputTokens`), else DEFAULT_MAX_OUTPUT_TOKENS.
 *
 * It is ≥ `costNanoUsd` of every usage within the bounds (input + cache read + cache write ≤
 * inputTokens, output ≤ limit × n): the actual cost rounds up each of its three input-side parts
 * while the reservation rounds their sum up once, and Σ⌈xᵢ⌉ < Σxᵢ + 3 ≤ ⌈Σxᵢ⌉ + 3, so, all being
 * integers, at most ⌈Σxᵢ⌉ + 2: the 2 nano-USD added below. A reservation beyond
 * Number.MAX_SAFE_INTEGER is returned as Number.MAX_SAFE_INTEGER, more than any budget can hold.
 */
export function reservationNanoUsd(pricing: ModelPricing, request: ReservationRequest): number {
  const inputTokens = BigInt(count("inputTokens", request.inputTokens));
  const limit = request.maxOutputTokens ?? pricing.maxOutputTokens ?? DEFAULT_MAX_OUTPUT_TOKENS;
  const outputTokens =
    BigInt(count("maxOutputTokens", limit)) * BigInt(count("n", request.n ?? 1, 1));
  const inputPrice = Math.max(
    pricing.inputNanoPerMTok,
    pricing.cacheReadNanoPerMTok,
    pricing.cacheWriteNanoPerMTok,
  );
  const input = componentNanoUsd(inputTokens, inputPrice);
  const roundingSlack = input > 0n ? 2n : 0n;
  const total = input + roundingSlack + componentNanoUsd(outputTokens, pricing.outputNanoPerMTok);
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
  return reservationNanoUsd(pricing, {
    inputTokens: minInputTokens,
    maxOutputTokens: minOutputTokens,
    n: 1,
  });
}
