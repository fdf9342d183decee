// The benchmark's origin, in its own process so it does not share an event loop with the
// client or the proxy. HTTP: GET /small answers a ~100-byte JSON. HTTPS (certificate from the
// files given, for bench.test and api.openai.com): GET /big?mib=N streams N MiB of random bytes in
// 64 KiB chunks. A second HTTPS listener (the "chat" port, kept apart so a proxy can be told to
// tunnel one and intercept the other) answers POST /v1/chat/completions like OpenAI: a JSON
// chat.completion with `usage`, or with "stream": true an SSE stream of chunks (the usage chunk
// when stream_options.include_usage is set) and `data: [DONE]`, written event by event.
//
//   node bench/origin.mjs --cert CERT.pem --key KEY.pem
//
// Prints one JSON line {"httpPort":…,"httpsPort":…,"chatPort":…} once all listen on 127.0.0.1.
// Exits when its stdin closes (the parent went away) or after --max-lifetime-ms, whichever comes
// first.
import { Buffer } from "node:buffer";
import { randomFillSync } from "node:crypto";
import { readFileSync } from "node:fs";
import { createServer } from "node:http";
import { createServer as createTlsServer } from "node:https";
import { setTimeout } from "node:timers";
import { URL } from "node:url";
import { parseArgs } from "node:util";

const { values } = parseArgs({
  options: {
    cert: { type: "string" },
    key: { type: "string" },
    "max-lifetime-ms": { type: "string", default: "300000" },
  },
});
if (values.cert === undefined || values.key === undefined) {
  console.error("origin: --cert and --key are required");
  process.exit(2);
}

const CHUNK = randomFillSync(Buffer.alloc(64 * 1024));
const MIB = 1024 * 1024;
const MAX_MIB = 4096;

const SMALL = Buffer.from(
  JSON.stringify({
    ok: true,
    origin: "vallignus-bench",
    path: "/small",
    note: "a small JSON answer, about 100 bytes",
  }),
);

function notFound(res) {
  res.writeHead(404, { "content-type": "text/plain", "content-length": 10 });
  res.end("not found\n");
}

const http = createServer({ keepAliveTimeout: 60_000 }, (req, res) => {
  if (req.method !== "GET" || req.url !== "/small") {
    notFound(res);
    return;
  }
  res.writeHead(200, { "content-type": "application/json", "content-length": SMALL.length });
  res.end(SMALL);
});

const https = createTlsServer(
  { cert: readFileSync(values.cert), key: readFileSync(values.key), keepAliveTimeout: 60_000 },
  (req, res) => {
    const url = new URL(req.url ?? "/", "https://bench.test");
    const mib = Number(url.searchParams.get("mib") ?? "1");
    if (
      req.method !== "GET" ||
      url.pathname !== "/big" ||
      !Number.isInteger(mib) ||
      mib < 1 ||
      mib > MAX_MIB
    ) {
      notFound(res);
      return;
    }
    let left = mib * MIB;
    res.writeHead(200, { "content-type": "application/octet-stream", "content-length": left });
    const pump = () => {
      while (left > 0) {
        const n = Math.min(left, CHUNK.length);
        left -= n;
        if (!res.write(n === CHUNK.length ? CHUNK : CHUNK.subarray(0, n))) {
          res.once("drain", pump);
          return;
        }
      }
      res.end();
    };
    pump();
  },
);

// ---------------------------------------------------------------------------------------------
// OpenAI-style chat completions.

const CHAT_WORDS = ["Hello", " from", " the", " Vallignus", " bench", " origin", ".", " Done"];
const CHAT_USAGE = { prompt_tokens: 12, completion_tokens: CHAT_WORDS.length, total_tokens: 20 };
const MAX_CHAT_BODY = 1024 * 1024;

function chatJson(model) {
  return Buffer.from(
    JSON.stringify({
      id: "chatcmpl-bench",
      object: "chat.completion",
      created: 1_700_000_000,
      model,
      choices: [
        {
          index: 0,
          message: { role: "assistant", content: CHAT_WORDS.join("") },
          logprobs: null,
          finish_reason: "stop",
        },
      ],
      usage: CHAT_USAGE,
    }),
  );
}

function chatEvents(model, includeUsage) {
  const base = {
    id: "chatcmpl-bench",
    object: "chat.completion.chunk",
    created: 1_700_000_000,
    model,
  };
  const events = CHAT_WORDS.map((word, i) => ({
    ...base,
    choices: [
      {
        index: 0,
        delta: i === 0 ? { role: "assistant", content: word } : { content: word },
        logprobs: null,
        finish_reason: null,
      },
    ],
  }));
  events.push({
    ...base,
    choices: [{ index: 0, delta: {}, logprobs: null, finish_reason: "stop" }],
  });
  if (includeUsage) events.push({ ...base, choices: [], usage: CHAT_USAGE });
  return [...events.map((e) => `data: ${JSON.stringify(e)}\n\n`), "data: [DONE]\n\n"];
}

const chat = createTlsServer(
  { cert: readFileSync(values.cert), key: readFileSync(values.key), keepAliveTimeout: 60_000 },
  (req, res) => {
    if (req.method !== "POST" || req.url !== "/v1/chat/completions") {
      req.resume();
      notFound(res);
      return;
    }
    const parts = [];
    let size = 0;
    req.on("data", (chunk) => {
      size += chunk.length;
      if (size <= MAX_CHAT_BODY) parts.push(chunk);
    });
    req.on("end", () => {
      let body;
      try {
        body = JSON.parse(Buffer.concat(parts).toString("utf8"));
      } catch {
        res.writeHead(400, { "content-type": "application/json", "content-length": 2 });
        res.end("{}");
        return;
      }
      const model = typeof body.model === "string" ? body.model : "unknown";
      if (body.stream !== true) {
        const json = chatJson(model);
        res.writeHead(200, { "content-type": "application/json", "content-length": json.length });
        res.end(json);
        return;
      }
      const events = chatEvents(model, body.stream_options?.include_usage === true);
      res.writeHead(200, { "content-type": "text/event-stream; charset=utf-8" });
      for (const event of events) res.write(event);
      res.end();
    });
  },
);

const listen = (server) =>
  new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => resolve(server.address().port));
  });

const stop = (code) => {
  for (const server of [http, https, chat]) {
    server.closeAllConnections();
    server.close();
  }
  process.exit(code);
};

const lifetime = setTimeout(() => {
  console.error("origin: --max-lifetime-ms passed, exiting");
  stop(1);
}, Number(values["max-lifetime-ms"]));
lifetime.unref();

process.stdin.on("end", () => stop(0));
process.stdin.on("error", () => stop(0));
process.stdin.resume();
process.on("SIGTERM", () => stop(0));

const [httpPort, httpsPort, chatPort] = await Promise.all([
  listen(http),
  listen(https),
  listen(chat),
]);
process.stdout.write(`${JSON.stringify({ httpPort, httpsPort, chatPort })}\n`);
