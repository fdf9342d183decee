// The benchmark's load client: plain JavaScript on raw sockets, so it starts fast and costs as
// little CPU as possible per request (the cost being measured is the proxy's, not the client's).
//
//   node bench/load-client.mjs http --via direct|proxy --host bench.test --port P
//        [--address 127.0.0.1] [--path /small] [--connections 50] [--duration-ms 3000]
//        [--warmup-ms 500] [--max-requests 1000000]
//   node bench/load-client.mjs download --via direct|proxy --host bench.test --port P --ca CA.pem
//        [--connect-host H] [--address 127.0.0.1] [--mib 256] [--timeout-ms 60000]
//   node bench/load-client.mjs chat --via direct|proxy --host api.openai.com --port P --ca CA.pem
//        [--connect-host H] [--stream] [--connections 20] [--duration-ms 3000] [--warmup-ms 500]
//   node bench/load-client.mjs tunnels --via proxy --host bench.test --port P [--connect-host H]
//        [--count 1000] [--timeout-ms 60000]
//
// --via proxy takes the proxy from HTTP_PROXY (http: absolute-form requests) or HTTPS_PROXY
// (download, chat, tunnels: CONNECT, then TLS over the tunnel); --via direct dials --address
// itself. The CONNECT target is --connect-host (default --host) and --port; TLS names --host
// (SNI and certificate check). `chat` sends OpenAI-style chat completions (JSON, or SSE with
// --stream) back to back on --connections keep-alive TLS connections. `tunnels` prints
// {"phase":"idle"}, opens --count CONNECT tunnels when a line "open" arrives on stdin, prints
// {"phase":"open",…}, holds them idle until a line "close" (or the end of stdin), then closes them.
// Prints one JSON line; exits 1 (with {"error":…}) on any failure. Every loop is bounded by time
// and by a request cap, and a watchdog ends the process if anything hangs.
import { Buffer } from "node:buffer";
import { readFileSync } from "node:fs";
import { connect as netConnect } from "node:net";
import { performance } from "node:perf_hooks";
import { clearTimeout, setTimeout } from "node:timers";
import { connect as tlsConnect } from "node:tls";
import { URL } from "node:url";
import { parseArgs } from "node:util";

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    via: { type: "string", default: "direct" },
    host: { type: "string", default: "bench.test" },
    port: { type: "string" },
    address: { type: "string", default: "127.0.0.1" },
    path: { type: "string", default: "/small" },
    connections: { type: "string", default: "50" },
    "duration-ms": { type: "string", default: "3000" },
    "warmup-ms": { type: "string", default: "500" },
    "max-requests": { type: "string", default: "1000000" },
    ca: { type: "string" },
    mib: { type: "string", default: "256" },
    "connect-host": { type: "string" },
    stream: { type: "boolean", default: false },
    model: { type: "string", default: "bench-model" },
    count: { type: "string", default: "1000" },
    "timeout-ms": { type: "string", default: "60000" },
  },
});

function fail(message) {
  process.stdout.write(`${JSON.stringify({ error: message })}\n`);
  process.exit(1);
}

function positiveInt(name) {
  const n = Number(values[name]);
  if (!Number.isInteger(n) || n < 0) fail(`--${name} must be a whole number`);
  return n;
}

function proxyFrom(variable) {
  const text = process.env[variable] ?? process.env[variable.toLowerCase()];
  if (text === undefined || text === "") fail(`--via proxy but ${variable} is not set`);
  const url = new URL(text);
  if (url.protocol !== "http:") fail(`${variable} must be an http:// proxy, got ${text}`);
  return {
    host: url.hostname.replace(/^\[(.*)\]$/, "$1"),
    port: Number(url.port || 80),
    url: text,
  };
}

const mode = positionals[0];
const via = values.via;
if (via !== "direct" && via !== "proxy") fail("--via must be direct or proxy");
const host = values.host;
const port = positiveInt("port");
const authority = `${host}:${port}`;
const connectAuthority = `${values["connect-host"] ?? host}:${port}`;

/** Splits one HTTP/1.1 response head off `buf`: status, content-length, close, body offset. */
function parseHead(buf) {
  const end = buf.indexOf("\r\n\r\n");
  if (end === -1) return undefined;
  const head = buf.toString("latin1", 0, end);
  const status = Number(head.slice(9, 12));
  const length = /\r\ncontent-length:[ \t]*(\d+)/i.exec(head);
  const close = /\r\nconnection:[ \t]*close/i.test(head);
  return { status, length: length === null ? -1 : Number(length[1]), close, bodyStart: end + 4 };
}

function percentile(sorted, p) {
  if (sorted.length === 0) return 0;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(p * sorted.length) - 1))];
}

function runHttp() {
  const connections = positiveInt("connections");
  const durationMs = positiveInt("duration-ms");
  const warmupMs = positiveInt("warmup-ms");
  const maxRequests = positiveInt("max-requests");
  const path = values.path;
  const proxy = via === "proxy" ? proxyFrom("HTTP_PROXY") : undefined;
  const dial = proxy ?? { host: values.address, port };
  const target = proxy === undefined ? path : `http://${authority}${path}`;
  const request = Buffer.from(
    `GET ${target} HTTP/1.1\r\nHost: ${authority}\r\nUser-Agent: vallignus-bench\r\nAccept: */*\r\n\r\n`,
    "latin1",
  );

  const watchdog = setTimeout(
    () => fail("http: watchdog fired (a connection hung)"),
    warmupMs + durationMs + 15_000,
  );
  watchdog.unref();

  const latencies = new Float64Array(Math.max(1, maxRequests));
  let samples = 0;
  let sent = 0;
  let inWindow = 0;
  let non200 = 0;
  let socketErrors = 0;
  let reconnects = 0;
  const started = performance.now();
  const warmEnd = started + warmupMs;
  let windowEnd = warmEnd + durationMs;
  let active = connections;

  return new Promise((resolve) => {
    const finishOne = () => {
      active--;
      if (active > 0) return;
      clearTimeout(watchdog);
      const seconds = (windowEnd - warmEnd) / 1000;
      const sorted = latencies.subarray(0, samples).sort();
      let sum = 0;
      for (const v of sorted) sum += v;
      resolve({
        mode: "http",
        via,
        proxy: proxy?.url ?? null,
        connections,
        requests: inWindow,
        seconds,
        rps: seconds > 0 ? inWindow / seconds : 0,
        p50_ms: percentile(sorted, 0.5),
        p99_ms: percentile(sorted, 0.99),
        mean_ms: samples === 0 ? 0 : sum / samples,
        samples,
        sent,
        non200,
        socket_errors: socketErrors,
        reconnects,
      });
    };

    const open = () => {
      const socket = netConnect({ host: dial.host, port: dial.port });
      socket.setNoDelay(true);
      let buf = null;
      let sentAt = 0;
      let head;
      let done = false;
      const send = () => {
        sent++;
        sentAt = performance.now();
        socket.write(request);
      };
      // Ends this connection's loop; reopens when the server closed it while time remains.
      const stop = (reopen) => {
        if (done) return;
        done = true;
        socket.destroy();
        if (reopen && performance.now() < windowEnd && sent < maxRequests) {
          if (socketErrors > 100) fail(`http: too many socket errors (${socketErrors})`);
          reconnects++;
          open();
        } else {
          finishOne();
        }
      };
      socket.on("connect", send);
      socket.on("error", () => {
        socketErrors++;
        stop(true);
      });
      socket.on("close", () => stop(true));
      socket.on("data", (chunk) => {
        buf = buf === null ? chunk : Buffer.concat([buf, chunk]);
        if (head === undefined) {
          head = parseHead(buf);
          if (head === undefined) return;
          if (head.length < 0) fail("http: a response without Content-Length");
        }
        const total = head.bodyStart + head.length;
        if (buf.length < total) return;
        if (buf.length > total) fail("http: more bytes than one response (unexpected)");
        const now = performance.now();
        if (head.status !== 200) non200++;
        if (now >= warmEnd && now < windowEnd) inWindow++;
        if (sentAt >= warmEnd && samples < latencies.length) latencies[samples++] = now - sentAt;
        const close = head.close;
        buf = null;
        head = undefined;
        if (sent >= maxRequests && now < windowEnd) windowEnd = Math.max(now, warmEnd);
        if (now >= windowEnd || sent >= maxRequests) stop(false);
        else if (close) stop(true);
        else send();
      });
    };
    for (let i = 0; i < connections; i++) open();
  });
}

/** Waits for `socket` to connect; rejects on error or after `ms`. */
function connected(socket, event, ms) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${event} timed out`)), ms);
    socket.once(event, () => {
      clearTimeout(timer);
      resolve();
    });
    socket.once("error", (err) => {
      clearTimeout(timer);
      reject(err);
    });
  });
}

/** Sends CONNECT on a raw socket to the proxy and reads its answer head. */
function tunnel(socket, ms) {
  return new Promise((resolve, reject) => {
    let buf = Buffer.alloc(0);
    const timer = setTimeout(() => reject(new Error("CONNECT answer timed out")), ms);
    const onData = (chunk) => {
      buf = Buffer.concat([buf, chunk]);
      const end = buf.indexOf("\r\n\r\n");
      if (end === -1) {
        if (buf.length > 16 * 1024) reject(new Error("CONNECT answer head too large"));
        return;
      }
      clearTimeout(timer);
      socket.off("data", onData);
      socket.pause();
      const head = buf.toString("latin1", 0, end);
      if (!/^HTTP\/1\.[01] 200/.test(head)) {
        reject(new Error(`CONNECT refused: ${head.split("\r\n")[0]}`));
        return;
      }
      if (buf.length > end + 4) socket.unshift(buf.subarray(end + 4));
      resolve();
    };
    socket.on("data", onData);
    socket.write(`CONNECT ${connectAuthority} HTTP/1.1\r\nHost: ${connectAuthority}\r\n\r\n`);
  });
}

async function runDownload() {
  const mib = positiveInt("mib");
  const timeoutMs = positiveInt("timeout-ms");
  if (values.ca === undefined) fail("download: --ca is required");
  const ca = readFileSync(values.ca);
  const proxy = via === "proxy" ? proxyFrom("HTTPS_PROXY") : undefined;
  const dial = proxy ?? { host: values.address, port };
  const watchdog = setTimeout(() => fail("download: watchdog fired"), timeoutMs + 5_000);
  watchdog.unref();

  const t0 = performance.now();
  const raw = netConnect({ host: dial.host, port: dial.port });
  raw.setNoDelay(true);
  await connected(raw, "connect", timeoutMs);
  if (proxy !== undefined) await tunnel(raw, timeoutMs);
  const tunnelMs = performance.now() - t0;
  const socket = tlsConnect({ socket: raw, ca, servername: host });
  await connected(socket, "secureConnect", timeoutMs);
  const handshakeMs = performance.now() - t0;
  const tls = { protocol: socket.getProtocol(), cipher: socket.getCipher().name };
  const expected = mib * 1024 * 1024;

  const result = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error("download timed out"));
    }, timeoutMs);
    let buf = null;
    let head;
    let bytes = 0;
    let firstByteMs = 0;
    const done = (err) => {
      clearTimeout(timer);
      socket.destroy();
      if (err !== undefined) reject(err);
    };
    socket.on("error", done);
    socket.on("close", () => {
      if (bytes < expected)
        done(new Error(`connection closed after ${bytes} of ${expected} bytes`));
    });
    socket.on("data", (chunk) => {
      if (head === undefined) {
        if (firstByteMs === 0) firstByteMs = performance.now() - t0;
        buf = buf === null ? chunk : Buffer.concat([buf, chunk]);
        head = parseHead(buf);
        if (head === undefined) return;
        if (head.status !== 200 || head.length !== expected) {
          done(new Error(`bad answer: status ${head.status}, length ${head.length}`));
          return;
        }
        bytes = buf.length - head.bodyStart;
        buf = null;
      } else {
        bytes += chunk.length;
      }
      if (bytes >= expected) {
        const seconds = (performance.now() - t0) / 1000;
        done();
        if (bytes !== expected) reject(new Error(`got ${bytes} bytes, expected ${expected}`));
        else resolve({ seconds, firstByteMs });
      }
    });
    socket.write(
      `GET /big?mib=${mib} HTTP/1.1\r\nHost: ${authority}\r\nUser-Agent: vallignus-bench\r\nConnection: close\r\n\r\n`,
    );
  });
  clearTimeout(watchdog);
  return {
    mode: "download",
    via,
    proxy: proxy?.url ?? null,
    bytes: expected,
    seconds: result.seconds,
    mb_per_s: expected / 1e6 / result.seconds,
    tunnel_ms: tunnelMs,
    handshake_ms: handshakeMs,
    first_byte_ms: result.firstByteMs,
    tls: tls.protocol,
    cipher: tls.cipher,
  };
}

/**
 * Where a chunked body ends in `buf` (from `start`), or -1 while incomplete. Trailers are not
 * expected (our origin sends none) but are skipped.
 */
function chunkedEnd(buf, start) {
  let pos = start;
  for (;;) {
    const eol = buf.indexOf("\r\n", pos);
    if (eol === -1) return -1;
    const size = Number.parseInt(buf.toString("latin1", pos, eol).split(";")[0], 16);
    if (!Number.isInteger(size) || size < 0) throw new Error("bad chunk size");
    if (size === 0) {
      const end = buf.indexOf("\r\n\r\n", eol);
      return end === -1 ? -1 : end + 4;
    }
    pos = eol + 2 + size + 2;
    if (pos > buf.length) return -1;
  }
}

/** A TCP connection to the target, through a CONNECT tunnel when --via proxy, then TLS. */
async function openTls(proxy, ca, timeoutMs) {
  const dial = proxy ?? { host: values.address, port };
  const raw = netConnect({ host: dial.host, port: dial.port });
  raw.setNoDelay(true);
  await connected(raw, "connect", timeoutMs);
  if (proxy !== undefined) await tunnel(raw, timeoutMs);
  const socket = tlsConnect({ socket: raw, ca, servername: host, ALPNProtocols: ["http/1.1"] });
  await connected(socket, "secureConnect", timeoutMs);
  return socket;
}

async function runChat() {
  const connections = positiveInt("connections");
  const durationMs = positiveInt("duration-ms");
  const warmupMs = positiveInt("warmup-ms");
  const maxRequests = positiveInt("max-requests");
  const stream = values.stream;
  if (values.ca === undefined) fail("chat: --ca is required");
  const ca = readFileSync(values.ca);
  const proxy = via === "proxy" ? proxyFrom("HTTPS_PROXY") : undefined;
  const body = Buffer.from(
    JSON.stringify({
      model: values.model,
      messages: [
        { role: "system", content: "You are a benchmark." },
        { role: "user", content: "Say hello in eight tokens." },
      ],
      max_tokens: 32,
      ...(stream ? { stream: true } : {}),
    }),
  );
  const request = Buffer.concat([
    Buffer.from(
      `POST /v1/chat/completions HTTP/1.1\r\nHost: ${authority}\r\nUser-Agent: vallignus-bench\r\n` +
        `Authorization: Bearer sk-bench\r\nContent-Type: application/json\r\n` +
        `Accept: ${stream ? "text/event-stream" : "application/json"}\r\n` +
        `Content-Length: ${body.length}\r\n\r\n`,
      "latin1",
    ),
    body,
  ]);
  const watchdog = setTimeout(
    () => fail("chat: watchdog fired (a connection hung)"),
    warmupMs + durationMs + 20_000,
  );
  watchdog.unref();

  const sockets = await Promise.all(
    Array.from({ length: connections }, () => openTls(proxy, ca, 10_000)),
  );
  const latencies = new Float64Array(Math.max(1, maxRequests));
  let samples = 0;
  let sent = 0;
  let inWindow = 0;
  let non200 = 0;
  let incomplete = 0;
  const started = performance.now();
  const warmEnd = started + warmupMs;
  const windowEnd = warmEnd + durationMs;

  await Promise.all(
    sockets.map(
      (socket) =>
        new Promise((resolve, reject) => {
          let buf = null;
          let head;
          let sentAt = 0;
          const send = () => {
            sent++;
            sentAt = performance.now();
            socket.write(request);
          };
          socket.on("error", reject);
          socket.on("close", () => reject(new Error("chat: connection closed mid-run")));
          socket.on("data", (chunk) => {
            buf = buf === null ? chunk : Buffer.concat([buf, chunk]);
            if (head === undefined) {
              head = parseHead(buf);
              if (head === undefined) return;
            }
            let end;
            try {
              end =
                head.length >= 0 ? head.bodyStart + head.length : chunkedEnd(buf, head.bodyStart);
            } catch (err) {
              reject(err);
              return;
            }
            if (end === -1 || buf.length < end) return;
            if (buf.length > end) {
              reject(new Error("chat: more bytes than one response"));
              return;
            }
            const now = performance.now();
            if (head.status !== 200) non200++;
            else if (!buf.includes(stream ? "[DONE]" : '"usage"', head.bodyStart)) incomplete++;
            if (now >= warmEnd && now < windowEnd) inWindow++;
            if (sentAt >= warmEnd && now < windowEnd && samples < latencies.length)
              latencies[samples++] = now - sentAt;
            const close = head.close;
            buf = null;
            head = undefined;
            if (now >= windowEnd || sent >= maxRequests || close) {
              socket.removeAllListeners("close");
              socket.destroy();
              resolve();
            } else send();
          });
          send();
        }),
    ),
  );
  clearTimeout(watchdog);
  const seconds = durationMs / 1000;
  const sorted = latencies.subarray(0, samples).sort();
  return {
    mode: "chat",
    via,
    proxy: proxy?.url ?? null,
    stream,
    connections,
    requests: inWindow,
    seconds,
    rps: inWindow / seconds,
    p50_ms: percentile(sorted, 0.5),
    p99_ms: percentile(sorted, 0.99),
    sent,
    non200,
    incomplete,
    socket_errors: 0,
  };
}

/** Resolves with the next stdin line (trimmed), or "close" when stdin ends. */
function stdinLines() {
  let pending = "";
  const waiting = [];
  const queued = [];
  const deliver = (line) => {
    const next = waiting.shift();
    if (next === undefined) queued.push(line);
    else next(line);
  };
  process.stdin.setEncoding("utf8");
  process.stdin.on("data", (d) => {
    pending += d;
    let cut;
    while ((cut = pending.indexOf("\n")) !== -1) {
      deliver(pending.slice(0, cut).trim());
      pending = pending.slice(cut + 1);
    }
  });
  process.stdin.on("end", () => {
    for (let i = 0; i < 4; i++) deliver("close");
  });
  return () =>
    new Promise((resolve) => {
      const line = queued.shift();
      if (line === undefined) waiting.push(resolve);
      else resolve(line);
    });
}

async function runTunnels() {
  const count = positiveInt("count");
  const timeoutMs = positiveInt("timeout-ms");
  const proxy = proxyFrom("HTTPS_PROXY");
  const watchdog = setTimeout(() => fail("tunnels: watchdog fired"), timeoutMs);
  watchdog.unref();
  const nextLine = stdinLines();
  process.stdout.write(`${JSON.stringify({ phase: "idle" })}\n`);
  if ((await nextLine()) !== "open") fail("tunnels: expected a line 'open' on stdin");
  const t0 = performance.now();
  const sockets = [];
  let next = 0;
  // A bounded number of handshakes in flight, so no listen backlog overflows.
  const worker = async () => {
    while (next < count) {
      next++;
      const raw = netConnect({ host: proxy.host, port: proxy.port });
      sockets.push(raw);
      raw.on("error", () => {});
      await connected(raw, "connect", timeoutMs);
      await tunnel(raw, timeoutMs);
    }
  };
  await Promise.all(Array.from({ length: Math.min(50, count) }, worker));
  const openMs = performance.now() - t0;
  let closedEarly = 0;
  for (const s of sockets) s.once("close", () => closedEarly++);
  process.stdout.write(
    `${JSON.stringify({ phase: "open", tunnels: sockets.length, open_ms: openMs })}\n`,
  );
  while ((await nextLine()) !== "close");
  for (const s of sockets) s.destroy();
  clearTimeout(watchdog);
  process.stdin.destroy();
  return {
    mode: "tunnels",
    via,
    proxy: proxy.url,
    tunnels: sockets.length,
    open_ms: openMs,
    closed_early: closedEarly,
  };
}

try {
  let result;
  if (mode === "http") result = await runHttp();
  else if (mode === "download") result = await runDownload();
  else if (mode === "chat") result = await runChat();
  else if (mode === "tunnels") result = await runTunnels();
  else fail(`unknown mode ${String(mode)}; use http, download, chat or tunnels`);
  process.stdout.write(`${JSON.stringify(result)}\n`);
  if (result.non200 > 0 || result.socket_errors > 0) process.exitCode = 1;
} catch (err) {
  fail(err instanceof Error ? err.message : String(err));
}
