// The plain-HTTP path of `vallignus run` (absolute-form http:// requests, forwarded upstream
// through undici pools), driven by real curl: request bodies of every framing, HEAD, streamed and
// large responses, an unreachable upstream, a client that leaves early, hop-by-hop headers,
// upstream keep-alive, and what the audit log says about each.
import assert from "node:assert/strict";
import { createHash, randomBytes } from "node:crypto";
import { readFileSync, writeFileSync } from "node:fs";
import {
  createServer,
  type IncomingHttpHeaders,
  type IncomingMessage,
  type Server,
  type ServerResponse,
} from "node:http";
import { createServer as createTcpServer, type AddressInfo } from "node:net";
import { join } from "node:path";
import type { Duplex } from "node:stream";
import { after, before, test } from "node:test";

import { makeQuickstartHome, type CliResult, type TempHome } from "./helpers/cli.js";

/** What the origin saw of one request. */
interface Seen {
  readonly method: string;
  readonly url: string;
  readonly headers: IncomingHttpHeaders;
  readonly remotePort: number;
  readonly at: number;
  readonly body: { sha256: string; length: number };
  closedAt?: number;
}

const sha256 = (data: Buffer) => createHash("sha256").update(data).digest("hex");

const SIZED_LENGTH = 12_345;
const STREAM_CHUNKS = ["alpha\n", "bravo\n", "charlie\n", "delta\n", "echo\n"];
const BIG_BLOCK = randomBytes(1024 * 1024);
const BIG_BLOCKS = 32;
const BIG_SHA256 = sha256(Buffer.concat(Array<Buffer>(BIG_BLOCKS).fill(BIG_BLOCK)));

let home: TempHome & { token: string };
let origin: Server;
let originPort: number;
/** An allowed port with nothing listening on it. */
let deadPort: number;
/** An allowed port whose server answers every request with a status line Node will not write. */
let rawPort: number;
let raw: ReturnType<typeof createTcpServer>;
let connections = 0;
const seen: Seen[] = [];

/** The origin's answers, by the first path segment. */
const routes: Record<string, (res: ServerResponse, request: Seen) => void> = {
  echo: (res, request) => {
    res.setHeader("content-type", "application/json");
    res.end(JSON.stringify(request.body));
  },
  sized: (res) => {
    res.writeHead(200, { "content-length": SIZED_LENGTH });
    res.end("x".repeat(SIZED_LENGTH));
  },
  stream: (res) => {
    const next = (i: number) => {
      if (i === STREAM_CHUNKS.length) return void res.end();
      res.write(STREAM_CHUNKS[i]);
      setTimeout(() => next(i + 1), 30);
    };
    next(0);
  },
  big: (res) => {
    res.writeHead(200, { "content-length": BIG_BLOCK.length * BIG_BLOCKS });
    let left = BIG_BLOCKS;
    const pump = () => {
      while (left > 0) {
        left--;
        if (!res.write(BIG_BLOCK) && left > 0) return void res.once("drain", pump);
      }
      res.end();
    };
    pump();
  },
  endless: (res) => {
    const timer = setInterval(() => res.write("tick\n"), 50);
    res.once("close", () => clearInterval(timer));
  },
  cut: (res) => {
    // A status line and half the promised body, then the connection goes.
    res.writeHead(200, { "content-length": 100 });
    res.write("x".repeat(50), () => setTimeout(() => res.socket?.destroy(), 50));
  },
  hop: (res) => {
    res.writeHead(200, { connection: "x-resp-hop", "x-resp-hop": "1", "x-resp-keep": "1" });
    res.end("hop");
  },
};

function answer(req: IncomingMessage, res: ServerResponse): void {
  const chunks: Buffer[] = [];
  req.on("data", (chunk: Buffer) => chunks.push(chunk));
  req.on("end", () => {
    const body = Buffer.concat(chunks);
    const request: Seen = {
      method: req.method ?? "",
      url: req.url ?? "",
      headers: req.headers,
      remotePort: req.socket.remotePort ?? 0,
      at: Date.now(),
      body: { sha256: sha256(body), length: body.length },
    };
    seen.push(request);
    res.once("close", () => (request.closedAt = Date.now()));
    const route = routes[(req.url ?? "").split(/[/?]/)[1] ?? ""];
    if (route === undefined) res.writeHead(404).end();
    else route(res, request);
  });
}

/** What the origin's WebSocket endpoint received after the upgrade request, by path. */
const upgraded = new Map<string, string>();

/** Answers 101, then reads what the client sends (bytes sent ahead of the 101 included). */
function acceptUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void {
  let got = head.toString("latin1");
  upgraded.set(req.url ?? "", got);
  socket.on("error", () => socket.destroy());
  socket.on("data", (d: Buffer) => upgraded.set(req.url ?? "", (got += d.toString("latin1"))));
  socket.write(
    "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
  );
  setTimeout(() => socket.end(), 300);
}

before(async () => {
  origin = createServer(answer);
  origin.on("upgrade", acceptUpgrade);
  origin.on("connection", () => connections++);
  await new Promise<void>((r) => origin.listen(0, "127.0.0.1", r));
  originPort = (origin.address() as AddressInfo).port;
  const dead = createServer();
  await new Promise<void>((r) => dead.listen(0, "127.0.0.1", r));
  deadPort = (dead.address() as AddressInfo).port;
  await new Promise((r) => dead.close(r));
  raw = createTcpServer((socket) => {
    socket.on("error", () => socket.destroy());
    socket.once("data", () => socket.write("HTTP/1.1 200 O\x01K\r\nContent-Length: 2\r\n\r\nhi"));
  });
  await new Promise<void>((r) => raw.listen(0, "127.0.0.1", r));
  rawPort = (raw.address() as AddressInfo).port;
  home = makeQuickstartHome(
    `plain.test:${originPort},plain.test:${deadPort},plain.test:${rawPort}`,
  );
  // `runAsync` spawns the CLI with this env.
  home.env["VALLIGNUS_TOKEN"] = home.token;
});

after(async () => {
  origin.closeAllConnections();
  await new Promise((r) => origin.close(r));
  await new Promise((r) => raw.close(r));
  home.cleanup();
});

const url = (path: string, port = originPort) => `http://plain.test:${port}${path}`;

/** Runs a command under `vallignus run`, with plain.test resolving to loopback. */
function run(command: string[]): Promise<CliResult> {
  const resolves = [originPort, deadPort, rawPort].flatMap((p) => [
    "--resolve",
    `plain.test:${p}:127.0.0.1`,
  ]);
  return home.runAsync(["run", ...resolves, "--", ...command]);
}

/** Runs curl (errors shown, progress hidden, never hanging) and asserts that the run exited 0. */
async function curl(...args: string[]): Promise<CliResult> {
  const r = await run(["curl", "-sS", "--max-time", "10", ...args]);
  assert.equal(r.status, 0, r.stderr);
  return r;
}

/** A file of random bytes in the test home, for curl's `--data-binary @file`. */
function bodyFile(name: string, length: number): { arg: string; sha256: string; length: number } {
  const data = randomBytes(length);
  const file = join(home.root, name);
  writeFileSync(file, data);
  return { arg: `@${file}`, sha256: sha256(data), length };
}

function seenAt(path: string): Seen {
  const request = seen.find((s) => s.url === path);
  assert.ok(request, `the origin saw ${path}`);
  return request;
}

/** The audit log's decision line for this (already redacted) path. */
function auditLine(path: string): Record<string, unknown> {
  const lines = readFileSync(join(home.home, "audit", "audit.jsonl"), "utf8")
    .trim()
    .split("\n")
    .map((line) => JSON.parse(line) as Record<string, unknown>);
  const line = lines.find((l) => "decision" in l && l["path"] === path);
  assert.ok(line, `an audit line for ${path}`);
  return line;
}

test("a 1 MB Content-Length body reaches the origin unchanged and counts in bytes_out", async () => {
  const body = bodyFile("length.bin", 1_000_000);
  const r = await curl("-H", "Expect:", "--data-binary", body.arg, url("/echo/length"));
  assert.deepEqual(JSON.parse(r.stdout), { sha256: body.sha256, length: body.length });
  assert.equal(seenAt("/echo/length").headers["content-length"], String(body.length));
  const line = auditLine("/echo/length");
  assert.equal(line["decision"], "allow");
  assert.equal(line["status"], 200);
  assert.equal(line["bytes_out"], body.length);
});

test("a chunked request body reaches the origin whole", async () => {
  const body = bodyFile("chunked.bin", 300_000);
  const r = await curl(
    ...["-H", "Transfer-Encoding: chunked", "--data-binary", body.arg, url("/echo/chunked")],
  );
  assert.deepEqual(JSON.parse(r.stdout), { sha256: body.sha256, length: body.length });
  assert.equal(auditLine("/echo/chunked")["bytes_out"], body.length);
});

test("Expect: 100-continue gets its 100 and the body reaches the origin", async () => {
  const body = bodyFile("expect.bin", 64 * 1024);
  const r = await curl(
    ...["-v", "-H", "Expect: 100-continue", "--data-binary", body.arg, url("/echo/expect")],
  );
  assert.match(r.stderr, /< HTTP\/1\.1 100 Continue/);
  assert.deepEqual(JSON.parse(r.stdout), { sha256: body.sha256, length: body.length });
  assert.equal(seenAt("/echo/expect").headers.expect, undefined, "the proxy answered Expect");
});

test("HEAD forwards the status and Content-Length, and no body: a GET can follow on the connection", async () => {
  const r = await curl(
    "-v",
    "-i",
    "-I",
    url("/sized/head"),
    "--next",
    ...["-sS", "--max-time", "10"],
    "-i",
    url("/sized/get"),
  );
  assert.match(r.stderr, /Re-using existing connection/);
  const end = r.stdout.indexOf("\r\n\r\n") + 4;
  const [head, rest] = [r.stdout.slice(0, end), r.stdout.slice(end)];
  assert.match(head, /^HTTP\/1\.1 200 /);
  assert.match(head, new RegExp(`\r\ncontent-length: ${SIZED_LENGTH}\r\n`, "i"));
  assert.match(rest, /^HTTP\/1\.1 200 /, "nothing came between the HEAD answer and the next one");
  assert.ok(rest.endsWith(`\r\n\r\n${"x".repeat(SIZED_LENGTH)}`));
  assert.equal(seenAt("/sized/head").method, "HEAD");
});

test("a chunked, streamed response arrives whole and in order; bytes_in is its size", async () => {
  const r = await curl(url("/stream/s"));
  const expected = STREAM_CHUNKS.join("");
  assert.equal(r.stdout, expected);
  assert.equal(auditLine("/stream/s")["bytes_in"], Buffer.byteLength(expected));
});

test("a 32 MiB response arrives byte for byte", async () => {
  const file = join(home.root, "big.out");
  await curl("-o", file, url("/big/b"));
  const got = readFileSync(file);
  assert.equal(got.length, BIG_BLOCK.length * BIG_BLOCKS);
  assert.equal(sha256(got), BIG_SHA256);
  assert.equal(auditLine("/big/b")["bytes_in"], got.length);
});

test("an allowed name with nothing listening gets a 502 marked allow, audited as 502", async () => {
  const r = await curl("-i", url("/dead", deadPort));
  assert.match(r.stdout, /^HTTP\/1\.1 502 /);
  assert.match(r.stdout, /\r\nx-vallignus-decision: allow\r\n/i);
  const line = auditLine("/dead");
  assert.equal(line["decision"], "allow");
  assert.equal(line["status"], 502);
  assert.equal(line["port"], deadPort);
});

test("an upstream answer Node cannot pass on (a control byte in its status line) is a 502", async () => {
  const started = Date.now();
  const r = await curl("-i", url("/raw", rawPort));
  assert.match(r.stdout, /^HTTP\/1\.1 502 Bad Gateway\r\n/);
  assert.ok(Date.now() - started < 8000, "answered, not left to time out");
  const line = auditLine("/raw");
  assert.equal(line["status"], 502);
  assert.match(String(line["error"]), /invalid response from upstream/);
});

test("a client hanging up in the middle of its body leaves one audit line, not two", async () => {
  // Headers promise 1,000 bytes; 10 come, then the client closes its side.
  const script = `
    const net = require("node:net");
    const proxy = new URL(process.env.HTTP_PROXY);
    const s = net.connect(Number(proxy.port), proxy.hostname, () => {
      s.end("POST ${url("/echo/partial")} HTTP/1.1\\r\\nHost: plain.test:${originPort}\\r\\n" +
        "Content-Length: 1000\\r\\n\\r\\n0123456789");
    });
    s.on("error", () => {});
    s.resume();
    s.on("close", () => setTimeout(() => process.exit(0), 300));
  `;
  const r = await run([process.execPath, "-e", script]);
  assert.equal(r.status, 0, r.stderr);
  const lines = readFileSync(join(home.home, "audit", "audit.jsonl"), "utf8")
    .trim()
    .split("\n")
    .map((line) => JSON.parse(line) as Record<string, unknown>);
  const session = lines.at(-1)?.["session_id"];
  const decisions = lines.filter((l) => l["session_id"] === session && "decision" in l);
  assert.equal(decisions.length, 1, JSON.stringify(decisions));
  assert.equal(decisions[0]?.["path"], "/echo/partial");
});

test("an upstream cut off mid-body: the client sees the cut; the audit keeps its 200 and says why", async () => {
  const r = await run(["curl", "-sS", "--max-time", "10", "-o", "/dev/null", url("/cut/body")]);
  // curl: transfer closed with outstanding read data remaining.
  assert.equal(r.status, 18, r.stderr);
  const line = auditLine("/cut/body");
  assert.equal(line["status"], 200);
  assert.ok(typeof line["error"] === "string" && line["error"] !== "", JSON.stringify(line));
});

test("a client leaving an endless response closes the upstream request", async () => {
  // The run outlives curl by 2 s, so only the proxy's abort, not the run's end, closes it early.
  const r = await run(["sh", "-c", `curl -sS --max-time 1 ${url("/endless/e")}; sleep 2`]);
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /^(tick\n)+/);
  const request = seenAt("/endless/e");
  assert.ok(request.closedAt !== undefined, "the origin saw its response closed");
  const after = request.closedAt - request.at;
  assert.ok(after < 2000, `the origin's response closed ${after} ms after the request`);
  // The status the client got, not a 502 it never saw.
  const line = auditLine("/endless/e");
  assert.equal(line["status"], 200);
  assert.match(String(line["error"]), /client closed/);
});

test("hop-by-hop headers and those named by Connection stop at the proxy, both ways", async () => {
  const r = await curl(
    ...["-i", "-H", "Connection: x-drop-me", "-H", "X-Drop-Me: 1"],
    ...["-H", "Proxy-Authorization: Basic abc", "-H", "X-Keep: 1", url("/hop/h")],
  );
  const { headers } = seenAt("/hop/h");
  assert.equal(headers["x-keep"], "1");
  assert.equal(headers["x-drop-me"], undefined);
  assert.equal(headers["proxy-authorization"], undefined);
  assert.match(r.stdout, /\r\nx-resp-keep: 1\r\n/i);
  assert.doesNotMatch(r.stdout, /x-resp-hop:/i);
});

test("sequential requests on one client connection share one upstream connection", async () => {
  const before = connections;
  const paths = ["/echo/ka1", "/echo/ka2", "/echo/ka3"];
  const r = await curl("-v", ...paths.map((p) => url(p)));
  assert.match(r.stderr, /Re-using existing connection/);
  assert.equal(connections - before, 1, "upstream connections opened");
  assert.equal(new Set(paths.map((p) => seenAt(p).remotePort)).size, 1);
});

test("a query string reaches the origin unchanged; the audit log keeps only its keys", async () => {
  const path = "/echo/q?key=s3cret&empty=&sk-bare-s3cret&a=1%202";
  await curl(url(path));
  assert.equal(seenAt(path).url, path);
  // A bare item (no "=") could be a secret on its own: it is redacted whole.
  auditLine("/echo/q?key=REDACTED&empty=REDACTED&REDACTED&a=REDACTED");
  const log = readFileSync(join(home.home, "audit", "audit.jsonl"), "utf8");
  assert.ok(!log.includes("s3cret"), "no query value or bare item is in the audit log");
});

/** Sends raw requests through HTTP_PROXY, one connection each; prints what came back. */
const RAW_AGENT = `
const net = require("node:net");
const proxy = new URL(process.env.HTTP_PROXY);
(async () => {
  const out = [];
  for (const raw of JSON.parse(process.argv[1])) {
    out.push(await new Promise((done) => {
      const s = net.connect(Number(proxy.port), proxy.hostname, () => s.write(raw));
      let text = "";
      s.setEncoding("latin1");
      s.on("data", (d) => (text += d));
      s.on("error", () => {});
      const timer = setTimeout(() => s.destroy(), 5000);
      s.on("close", () => { clearTimeout(timer); done(text); });
    }));
  }
  console.log(JSON.stringify(out));
})();`;

async function sendRaw(requests: string[]): Promise<string[]> {
  const r = await run([process.execPath, "-e", RAW_AGENT, JSON.stringify(requests)]);
  assert.equal(r.status, 0, r.stderr);
  return JSON.parse(r.stdout) as string[];
}

const upgradeRequest = (path: string, connection: string) =>
  `GET ${url(path)} HTTP/1.1\r\nHost: plain.test:${originPort}\r\nConnection: ${connection}\r\n` +
  "Upgrade: websocket\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";

test("a Connection header naming Host is refused, never obeyed by dropping Host", async () => {
  const r = await run(
    ["curl", "-sS", "--max-time", "10", "-w", "\\n%{http_code}"].concat([
      "-H",
      "Connection: close, Host",
      url("/echo/connection-host"),
    ]),
  );
  assert.equal(r.status, 0, r.stderr);
  const [body, status] = r.stdout.split("\n");
  assert.equal(status, "403");
  assert.equal(
    (JSON.parse(body ?? "") as Record<string, unknown>)["deny_reason"],
    "malformed_request",
  );
  const [upgrade] = await sendRaw([upgradeRequest("/ws/connection-host", "Upgrade, Host")]);
  assert.match(upgrade ?? "", /^HTTP\/1\.1 403 /);
  assert.match(upgrade ?? "", /"deny_reason":"malformed_request"/);
  assert.equal(
    seen.find((s) => s.url === "/echo/connection-host"),
    undefined,
  );
  assert.equal(upgraded.has("/ws/connection-host"), false);
  assert.equal(auditLine("/echo/connection-host")["deny_reason"], "malformed_request");
  assert.equal(auditLine("/ws/connection-host")["deny_reason"], "malformed_request");
});

test("bytes sent ahead of the 101 reach the origin and count in bytes_out", async () => {
  const [answer] = await sendRaw([upgradeRequest("/ws/ahead", "Upgrade") + "AHEAD"]);
  assert.match(answer ?? "", /^HTTP\/1\.1 101 /);
  assert.equal(upgraded.get("/ws/ahead"), "AHEAD");
  const line = auditLine("/ws/ahead");
  assert.equal(line["decision"], "allow");
  assert.equal(line["status"], 101);
  assert.equal(line["bytes_out"], 5);
});
