/**
 * What a request body says about the size of its input beyond its own bytes. The reservation
 * bounds input tokens by the body's UTF-8 bytes (a byte-level tokenizer never makes more tokens
 * than bytes); these facts tell the caller when that bound does not hold.
 */
import type { LlmApi } from "./llm-api-path.js";
import type { ProviderId } from "./providers.js";

export interface InputFacts {
  /**
   * The body has media parts (image, audio, video, document/PDF, file). Their token cost follows
   * their pixels, pages or seconds, not their bytes: a tiny PNG or an image URL can cost more
   * tokens than the body has bytes.
   */
  readonly hasImages: boolean;
  /** How many image parts: each costs at most a per-model number of tokens, whatever its size. */
  readonly imageCount: number;
  /**
   * The provider will read input the body does not carry, or whose size no per-part allowance
   * bounds: server-side conversation state (`previous_response_id`, `conversation`), stored
   * prompts, cached content, files named by id or URL, server-side tools (web search, file search,
   * code execution, MCP) whose results are billed as input, and audio, video and documents (an
   * hour of silent video compresses to a few KB). The body's bytes do not bound such input.
   */
  readonly externalInput: boolean;
}

type JsonObject = Record<string, unknown>;

function isObject(value: unknown): value is JsonObject {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/** Absent, null, `[]` and `{}` all mean "not used" in these APIs. */
function isSet(value: unknown): boolean {
  if (value === undefined || value === null || value === false) return false;
  if (Array.isArray(value)) return value.length > 0;
  if (isObject(value)) return Object.keys(value).length > 0;
  return value !== "";
}

// Content-part `type`s across OpenAI chat and Responses, Anthropic and Mistral.
const IMAGE_PART_TYPES = new Set(["image_url", "image", "input_image", "image_file"]);
const OTHER_MEDIA_PART_TYPES = new Set([
  "input_audio",
  "audio",
  "input_file",
  "file",
  "document",
  "document_url",
  "video",
  "video_url",
]);

// Keys whose string value names content stored elsewhere.
const STORED_CONTENT_KEYS = ["file_id", "fileUri", "file_uri", "file_url", "document_url"] as const;

/** Top-level fields that make the provider read input from its own state, per API. */
const STATEFUL_FIELDS: Readonly<Partial<Record<LlmApi, readonly string[]>>> = {
  responses: ["previous_response_id", "conversation", "prompt"],
  // `web_search_options` (OpenAI), `data_sources` (Azure "on your data"), `plugins` (OpenRouter).
  chat_completions: ["web_search_options", "data_sources", "plugins"],
  completions: ["plugins"],
  anthropic_messages: ["container", "mcp_servers"],
  gemini_generate: ["cachedContent", "cached_content"],
  gemini_stream: ["cachedContent", "cached_content"],
};

// Anthropic tools the client executes itself: their results arrive in a later request's body.
const ANTHROPIC_CLIENT_TOOL = /^(?:custom$|bash_|text_editor_|computer_|memory_)/;

type MediaKind = "image" | "other" | undefined;

/** Whether a node is a media part, and whether that part is an image. */
function mediaKind(node: JsonObject): MediaKind {
  if (typeof node.type === "string") {
    if (IMAGE_PART_TYPES.has(node.type)) return "image";
    if (OTHER_MEDIA_PART_TYPES.has(node.type)) return "other";
  }
  // Gemini parts: inline data is an image only by its MIME type; file data may be anything.
  for (const key of ["inlineData", "inline_data"]) {
    const inline = node[key];
    if (!isObject(inline)) continue;
    const mime = inline.mimeType ?? inline.mime_type;
    return typeof mime === "string" && mime.toLowerCase().startsWith("image/") ? "image" : "other";
  }
  return isObject(node.fileData) || isObject(node.file_data) ? "other" : undefined;
}

function refersToStoredContent(node: JsonObject): boolean {
  if (STORED_CONTENT_KEYS.some((key) => typeof node[key] === "string")) return true;
  // Anthropic documents fetched by the provider from a URL or its Files API.
  const source = node.source;
  return (
    node.type === "document" &&
    isObject(source) &&
    (source.type === "url" || source.type === "file")
  );
}

/** True when one tool entry runs on the provider's side and feeds its output back as input. */
function isServerTool(api: LlmApi, tool: unknown): boolean {
  if (!isObject(tool)) return false;
  switch (api) {
    case "anthropic_messages":
      return typeof tool.type === "string" && !ANTHROPIC_CLIENT_TOOL.test(tool.type);
    case "gemini_generate":
    case "gemini_stream":
      // Only function declarations run on the client; googleSearch, codeExecution, urlContext… do not.
      return Object.keys(tool).some(
        (key) => key !== "functionDeclarations" && key !== "function_declarations",
      );
    default:
      return tool.type !== undefined && tool.type !== "function" && tool.type !== "custom";
  }
}

function hasStatefulInput(api: LlmApi, provider: ProviderId, body: JsonObject): boolean {
  if ((STATEFUL_FIELDS[api] ?? []).some((field) => isSet(body[field]))) return true;
  // OpenRouter's `:online` model variants add web search results to the input.
  if (
    provider === "openrouter" &&
    typeof body.model === "string" &&
    body.model.endsWith(":online")
  ) {
    return true;
  }
  const tools = body.tools;
  return Array.isArray(tools) && tools.some((tool) => isServerTool(api, tool));
}

/**
 * Reads the input facts of a parsed request body. The walk is iterative (a deeply nested body
 * cannot overflow the stack) and visits every node once; a false positive only makes the
 * reservation larger, so any part that looks like media counts as media.
 */
export function scanRequestInputs(api: LlmApi, provider: ProviderId, body: JsonObject): InputFacts {
  let imageCount = 0;
  let otherMedia = false;
  let externalInput = hasStatefulInput(api, provider, body);
  const pending: unknown[] = [body];
  while (pending.length > 0) {
    const node = pending.pop();
    const children = Array.isArray(node) ? node : isObject(node) ? Object.values(node) : [];
    if (isObject(node)) {
      const kind = mediaKind(node);
      if (kind === "image") imageCount += 1;
      if (kind === "other") otherMedia = true;
      externalInput ||= refersToStoredContent(node);
    }
    for (const child of children) {
      if (typeof child === "object" && child !== null) pending.push(child);
    }
  }
  return {
    hasImages: imageCount > 0 || otherMedia,
    imageCount,
    externalInput: externalInput || otherMedia,
  };
}
