/**
 * Reads token usage from an LLM API response while forwarding it to the client. JSON bodies pass
 * through as they come and are parsed at the end; event streams pass through event by event, and
 * the one usage chunk that Vallignus injected (llm-request.ts) is taken out again so the client
 * sees exactly what it asked for. Pure: bytes in, bytes out, no I/O.
 */
import { createParser, type EventSourceMessage } from "eventsource-parser";
import type { LlmRequest } from "./llm-request.js";
import { createSseSplitter } from "./sse-splitter.js";
import { usageFormatFor, type Usage, type UsageFormat } from "./usage-formats.js";

export type { Usage } from "./usage-formats.js";

/** Feeds one response through; the caller writes what `push` and `end` return to the client. */
export interface UsageReader {
  /** Takes bytes from upstream; returns the bytes to forward to the client now. */
  push(chunk: Buffer): Buffer;
  /** Upstream ended (or was cut); returns the bytes still to forward. Call once. */
  end(): Buffer;
  /** The usage the response reported, or undefined (then the caller charges the reservation). */
  usage(): Usage | undefined;
  /**
   * The response reached its documented end: `[DONE]`, `message_stop`, `response.completed`
   * (or `.incomplete`/`.failed`), the Gemini chunk with a finish reason, or a whole JSON body.
   * False for a stream cut short, which the caller charges its full reservation.
   */
  complete(): boolean;
}

/**
 * The most a JSON body, or one stream event, may take in memory. Past it, reading stops (usage
 * undefined, so the reservation is charged) while the bytes keep flowing to the client.
 */
export const MAX_BUFFERED_RESPONSE_BYTES = 32 * 1024 * 1024;

const EMPTY = Buffer.alloc(0);

type Framing = "sse" | "json" | "none";

/**
 * How the body is framed, from its content type. Without a usable one, the request's `stream`
 * flag decides; a wrong guess only finds no usage, which fails closed.
 */
function framingOf(request: LlmRequest, contentType: string | undefined): Framing {
  if (request.api === "other") return "none";
  const media = (contentType ?? "").split(";")[0]?.trim().toLowerCase() ?? "";
  if (media === "text/event-stream") return "sse";
  if (media === "application/json" || media.endsWith("+json")) return "json";
  return request.stream ? "sse" : "json";
}

/** A response that is not a known API's: forwarded untouched, nothing read. */
function createPassThroughReader(): UsageReader {
  return {
    push: (chunk) => chunk,
    end: () => EMPTY,
    usage: () => undefined,
    complete: () => false,
  };
}

/** A JSON body: forwarded as it comes, kept (bounded) and parsed once it has all arrived. */
function createJsonReader(format: UsageFormat, limit: number): UsageReader {
  let kept: Buffer[] = [];
  let keptBytes = 0;
  let overflowed = false;
  let parsed = false;
  let ended = false;

  return {
    push(chunk) {
      if (!overflowed && !ended) {
        keptBytes += chunk.length;
        overflowed = keptBytes > limit;
        if (overflowed) kept = [];
        else kept.push(chunk);
      }
      return chunk;
    },
    end() {
      if (ended) return EMPTY;
      ended = true;
      if (!overflowed) {
        try {
          format.read(JSON.parse(Buffer.concat(kept).toString("utf8")));
          parsed = true;
        } catch {
          // Not JSON after all (a proxy's HTML error page, a truncated body): no usage.
        }
      }
      kept = [];
      return EMPTY;
    },
    usage: () => (parsed ? format.usage() : undefined),
    complete: () => parsed,
  };
}

/** One event's data: the `[DONE]` sentinel or JSON. Returns true when the event is to be hidden. */
function readEventData(format: UsageFormat, event: EventSourceMessage): boolean {
  if (event.data === "[DONE]") {
    format.done();
    return false;
  }
  let value: unknown;
  try {
    value = JSON.parse(event.data);
  } catch {
    return false; // a keep-alive or a format we do not know: forwarded, not read
  }
  return format.read(value);
}

/**
 * An event stream: cut into whole events (sse-splitter.ts), each parsed by eventsource-parser and
 * then forwarded byte for byte, or withheld when it is the injected usage chunk. An event that
 * outgrows `limit` stops all reading: from there on bytes pass through and usage is undefined.
 */
function createSseReader(format: UsageFormat, limit: number): UsageReader {
  const splitter = createSseSplitter();
  let hideCurrent = false;
  let overflowed = false;
  const parser = createParser({
    onEvent: (event) => {
      hideCurrent = readEventData(format, event) || hideCurrent;
    },
  });

  /** Parses one whole event; true when it is to be withheld from the client. */
  function isHidden(raw: Buffer): boolean {
    hideCurrent = false;
    // Line ends become LF before parsing: the same lines by the SSE spec, and a lone CR at the
    // end of an event would otherwise leave the parser waiting for a possible LF.
    parser.feed(raw.toString("utf8").replace(/\r\n?/g, "\n"));
    return hideCurrent;
  }

  return {
    push(chunk) {
      if (overflowed) return chunk;
      const forward = splitter.push(chunk).filter((raw) => !isHidden(raw));
      if (splitter.pendingBytes() > limit) {
        overflowed = true;
        forward.push(splitter.rest());
      }
      return forward.length === 0 ? EMPTY : Buffer.concat(forward);
    },
    end() {
      if (overflowed) return EMPTY;
      const forward = splitter.finish().filter((raw) => !isHidden(raw));
      // An event without its closing blank line is forwarded but, as the SSE spec says, not read.
      forward.push(splitter.rest());
      return Buffer.concat(forward);
    },
    usage: () => (overflowed ? undefined : format.usage()),
    complete: () => !overflowed && format.complete(),
  };
}

/**
 * A reader for the response to `request`. `usageInjected` is what readLlmRequest reported: when
 * true, the usage-only chunk the client did not ask for is removed from the stream. The content
 * type is the response's; the body must arrive without content encoding.
 */
export function createUsageReader(
  request: LlmRequest,
  usageInjected: boolean,
  contentType: string | undefined,
  limit: number = MAX_BUFFERED_RESPONSE_BYTES,
): UsageReader {
  const format = usageFormatFor(request, usageInjected);
  switch (framingOf(request, contentType)) {
    case "sse":
      return createSseReader(format, limit);
    case "json":
      return createJsonReader(format, limit);
    case "none":
      return createPassThroughReader();
  }
}
