// CONNECT tunnels under `vallignus run`: bytes cross both ways unchanged, half-closes pass through,
// and a reader that stops reading holds the tunnel back instead of filling the proxy's memory.
// An opaque tunnel opens only for a TLS ClientHello whose SNI names the CONNECT host: the byte
// tests send a real one first; fronting, non-TLS bytes and broken hellos are refused.
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { readFileSync, writeFileSync } from "node:fs";
import { createServer, type AddressInfo, type Server, type Socket } from "node:net";
import { join } from "node:path";
import { after, before, test } from "node:test";

import { captureClientHello } from "./helpers/client-hello.js";
import { CLI, makeQuickstartHome, type TempHome } from "./helpers/cli.js";
import { startOrigin, type Origin } from "./helpers/origin.js";

let home: TempHome & { token: string };
let echo: Server;
let flood: Server;
let burst: Server;
/** A TLS origin with a certificate for allowed.test and other.test: two names, one address. */
let origin: Origin;
let caFile: string;
/** Bytes the echo server has received, over all its connections. */
let echoReceived = 0;
/** A real ClientHello for tunnel.test, sent first on every byte tunnel (hex). */
let hello: string;
const BURST_BYTES = 16 * 1024 * 1024;
/** Bytes the flood server managed to hand to the kernel before the tunnel stopped taking more. */
let floodWritten = 0;
const FLOOD_CAP = 256 * 1024 * 1024;

const portOf = (server: Server) => (server.address() as AddressInfo).port;

function listen(handler: (socket: Socket) => void): Promise<Server> {
  const server = createServer({ allowHalfOpen: true }, handler);
  return new Promise((done) => server.listen(0, "127.0.0.1", () => done(server)));
}

before(async () => {
  hello = (await captureClientHello("tunnel.test")).toString("hex");
  // Echoes everything, and ends its side when the client has ended its own.
  echo = await listen((socket) => {
    socket.on("data", (d: Buffer) => (echoReceived += d.length));
    socket.pipe(socket);
  });
  // Writes as fast as the tunnel takes it, up to FLOOD_CAP.
  flood = await listen((socket) => {
    const chunk = Buffer.alloc(1024 * 1024, 7);
    const pump = () => {
      while (floodWritten < FLOOD_CAP) {
        floodWritten += chunk.length;
        if (!socket.write(chunk)) return void socket.once("drain", pump);
      }
      socket.end();
    };
    socket.on("error", () => socket.destroy());
    pump();
  });
  // Writes BURST_BYTES and closes at once: whatever the proxy still holds for the client must
  // reach it all the same.
  burst = await listen((socket) => {
    socket.on("error", () => socket.destroy());
    socket.end(Buffer.alloc(BURST_BYTES, 9));
  });
  origin = await startOrigin(["allowed.test", "other.test"]);
  home = makeQuickstartHome(
    [
      ...[echo, flood, burst].map((server) => `tunnel.test:${portOf(server)}`),
      `allowed.test:${origin.httpsPort}`,
    ].join(","),
  );
  caFile = join(home.root, "origin-ca.pem");
  writeFileSync(caFile, origin.caPem);
});

after(async () => {
  await origin.close();
  echo.close();
  flood.close();
  burst.close();
  home.cleanup();
});

/** Runs a command under `vallignus run`; resolves with its output and the run's exit status. */
function runUnder(command: string[]): Promise<{ status: number | null; out: string }> {
  const resolves = [portOf(echo), portOf(flood), portOf(burst)].flatMap((p) => [
    "--resolve",
    `tunnel.test:${p}:127.0.0.1`,
  ]);
  resolves.push("--resolve", `allowed.test:${origin.httpsPort}:127.0.0.1`);
  return new Promise((done) => {
    const child = spawn(process.execPath, [CLI, "run", ...resolves, "--", ...command], {
      env: { ...home.env, VALLIGNUS_TOKEN: home.token },
    });
    let out = "";
    child.stdout.setEncoding("utf8").on("data", (d: string) => (out += d));
    child.stderr.setEncoding("utf8").on("data", (d: string) => (out += d));
    const timer = setTimeout(() => child.kill("SIGKILL"), 30_000);
    child.on("close", (status) => {
      clearTimeout(timer);
      done({ status, out });
    });
  });
}

/** Runs a Node script under `vallignus run`; resolves with its stdout and the run's exit status. */
function runScript(
  script: string,
  args: string[],
): Promise<{ status: number | null; out: string }> {
  return runUnder([process.execPath, "--input-type=module", "-e", script, ...args]);
}

function auditLines(): Record<string, unknown>[] {
  return readFileSync(join(home.home, "audit", "audit.jsonl"), "utf8")
    .trim()
    .split("\n")
    .map((l) => JSON.parse(l) as Record<string, unknown>);
}

/** Opens a CONNECT tunnel through $HTTPS_PROXY; the script continues with `tunnel` open. */
const OPEN_TUNNEL = `
import { connect } from "node:net";
const proxy = new URL(process.env.HTTPS_PROXY);
const [port, helloHex] = process.argv.slice(1);
const hello = Buffer.from(helloHex, "hex");
const tunnel = connect(Number(proxy.port), proxy.hostname);
tunnel.write("CONNECT tunnel.test:" + port + " HTTP/1.1\\r\\nHost: tunnel.test:" + port + "\\r\\n\\r\\n");
const head = await new Promise((done) => {
  let text = "";
  const onData = (d) => {
    text += d.toString("latin1");
    const end = text.indexOf("\\r\\n\\r\\n");
    if (end === -1) return;
    tunnel.off("data", onData);
    tunnel.pause();
    const extra = Buffer.from(text.slice(end + 4), "latin1");
    if (extra.length > 0) tunnel.unshift(extra);
    done(text.slice(0, end));
  };
  tunnel.on("data", onData);
});
if (!head.startsWith("HTTP/1.1 200")) { console.log("refused " + head); process.exit(1); }
tunnel.write(hello);
`;

test("8 MiB cross a tunnel both ways unchanged, and a half-close reaches the other side", async () => {
  const script = `${OPEN_TUNNEL}
const { createHash, randomBytes } = await import("node:crypto");
const sent = randomBytes(8 * 1024 * 1024);
const got = [];
tunnel.on("data", (d) => got.push(d));
tunnel.on("end", () => {
  const hash = (b) => createHash("sha256").update(b).digest("hex");
  console.log(JSON.stringify({ sent: hash(Buffer.concat([hello, sent])), got: hash(Buffer.concat(got)) }));
  tunnel.end();
});
tunnel.resume();
tunnel.end(sent);
`;
  const { status, out } = await runScript(script, [String(portOf(echo)), hello]);
  assert.equal(status, 0, out);
  const { sent, got } = JSON.parse(out) as { sent: string; got: string };
  assert.equal(got, sent);
  const line = auditLines().find((r) => r["method"] === "CONNECT" && r["port"] === portOf(echo));
  assert.equal(line?.["decision"], "allow");
  assert.equal(line["bytes_out"], 8 * 1024 * 1024 + hello.length / 2);
  assert.equal(line["bytes_in"], 8 * 1024 * 1024 + hello.length / 2);
});

test("a client that stops reading stops the upstream too: the proxy buffers a bounded amount", async () => {
  floodWritten = 0;
  const script = `${OPEN_TUNNEL}
// Read nothing for a second, then report; the flood server has written what fit.
setTimeout(() => { console.log("waited"); process.exit(0); }, 1000);
`;
  const { status, out } = await runScript(script, [String(portOf(flood)), hello]);
  assert.equal(status, 0, out);
  assert.match(out, /waited/);
  // Kernel socket buffers on both legs plus the proxy's relay buffer: tens of MiB at most,
  // never the whole 256 MiB.
  assert.ok(floodWritten > 0, "the flood server wrote nothing");
  assert.ok(floodWritten < 64 * 1024 * 1024, `${floodWritten} bytes left the flood server`);
});

test("an upstream that closes while the proxy still holds its last bytes: the client gets them all", async () => {
  const script = `${OPEN_TUNNEL}
// A slow reader: the proxy still holds the end of the burst when the upstream has sent it all
// and closed.
let got = 0;
tunnel.on("data", (d) => {
  got += d.length;
  tunnel.pause();
  setTimeout(() => tunnel.resume(), 5);
});
tunnel.on("close", () => console.log(JSON.stringify({ got })));
tunnel.resume();
`;
  const { status, out } = await runScript(script, [String(portOf(burst)), hello]);
  assert.equal(status, 0, out);
  assert.deepEqual(JSON.parse(out), { got: BURST_BYTES });
});

test("fronting: curl --connect-to another name through an allowed host's tunnel is refused", async () => {
  const p = origin.httpsPort;
  const curl = ["curl", "-sS", "--max-time", "10", "--cacert", caFile];
  // The allowed name itself: its ClientHello names the CONNECT host, so the tunnel opens.
  const ok = await runUnder([...curl, `https://allowed.test:${p}/ok`]);
  assert.equal(ok.status, 0, ok.out);
  assert.match(ok.out, /"origin":"ok"/);
  // other.test is not allowed, but shares allowed.test's address (a CDN): curl asks the proxy
  // for allowed.test and speaks TLS for other.test inside.
  const hits = origin.hits.length;
  const front = await runUnder([
    ...curl,
    "--connect-to",
    `other.test:${p}:allowed.test:${p}`,
    `https://other.test:${p}/front`,
  ]);
  assert.equal(front.status, 35, front.out);
  assert.match(front.out, /alert access denied/);
  assert.deepEqual(origin.hits.slice(hits), [], "nothing reached the origin");
  const line = auditLines().find(
    (l) => l["method"] === "CONNECT" && l["host"] === "allowed.test" && l["decision"] === "deny",
  );
  assert.equal(line?.["deny_reason"], "malformed_request");
  assert.match(String(line["error"]), /SNI other\.test is not the CONNECT host/);
  assert.equal(line["bytes_out"], 0);
});

test("a ClientHello cut into several records and TCP segments still opens the tunnel", async () => {
  // A TLS client under a Duplex that re-cuts its first record into 40-byte records and sends
  // them in 25-byte writes a few milliseconds apart.
  const script = `
import { connect } from "node:net";
import { Duplex } from "node:stream";
import tls from "node:tls";
import { readFileSync } from "node:fs";
const proxy = new URL(process.env.HTTPS_PROXY);
const [port, ca] = process.argv.slice(1);
const raw = connect(Number(proxy.port), proxy.hostname);
raw.setNoDelay(true);
raw.write("CONNECT allowed.test:" + port + " HTTP/1.1\\r\\nHost: allowed.test:" + port + "\\r\\n\\r\\n");
await new Promise((done) => raw.once("data", done));
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
let first = true;
const wrapper = new Duplex({
  async write(chunk, _enc, callback) {
    if (!first) return raw.write(chunk, callback);
    first = false;
    const message = chunk.subarray(5, 5 + chunk.readUInt16BE(3));
    const records = [];
    for (let at = 0; at < message.length; at += 40) {
      const part = message.subarray(at, at + 40);
      records.push(Buffer.from([0x16, 3, 1, part.length >> 8, part.length & 0xff]), part);
    }
    const bytes = Buffer.concat([...records, chunk.subarray(5 + message.length)]);
    for (let at = 0; at < bytes.length; at += 25) {
      raw.write(bytes.subarray(at, at + 25));
      await sleep(3);
    }
    callback();
  },
  read() {},
});
raw.on("data", (d) => wrapper.push(d));
raw.on("end", () => wrapper.push(null));
const socket = tls.connect({ socket: wrapper, servername: "allowed.test", ca: readFileSync(ca) });
socket.write("GET /split HTTP/1.1\\r\\nHost: allowed.test\\r\\nConnection: close\\r\\n\\r\\n");
let text = "";
socket.setEncoding("utf8").on("data", (d) => (text += d));
socket.on("error", (e) => console.log("error " + e.message));
socket.on("end", () => { console.log(text.split("\\r\\n")[0]); process.exit(0); });
`;
  const { status, out } = await runScript(script, [String(origin.httpsPort), caFile]);
  assert.equal(status, 0, out);
  assert.match(out, /^HTTP\/1\.1 200 OK$/m);
  assert.ok(origin.hits.includes(`GET allowed.test /split`), origin.hits.join(" | "));
});

test("bytes that are not a ClientHello for the CONNECT host never reach the upstream", async () => {
  const script = `
import { connect } from "node:net";
import tls from "node:tls";
const proxy = new URL(process.env.HTTPS_PROXY);
const [port] = process.argv.slice(1);
function open() {
  const socket = connect(Number(proxy.port), proxy.hostname);
  socket.write("CONNECT tunnel.test:" + port + " HTTP/1.1\\r\\nHost: tunnel.test:" + port + "\\r\\n\\r\\n");
  return new Promise((done) => socket.once("data", (d) => done(socket)));
}
function collect(socket) {
  return new Promise((done) => {
    const got = [];
    const timer = setTimeout(() => socket.destroy(), 5000);
    socket.on("data", (d) => got.push(d));
    socket.on("error", () => {});
    socket.on("close", () => { clearTimeout(timer); done(Buffer.concat(got)); });
  });
}
function handshake(socket, servername) {
  return new Promise((done) => {
    const t = tls.connect({ socket, servername, rejectUnauthorized: false });
    t.on("secureConnect", () => { t.destroy(); done("connected"); });
    t.on("error", (e) => done(e.message));
  });
}
const out = {};
let s = await open();
let got = collect(s);
s.write("GET / HTTP/1.1\\r\\nHost: tunnel.test\\r\\n\\r\\n");
out.http = (await got).toString("latin1");
s = await open();
got = collect(s);
s.write(Buffer.from([0x16, 3, 1, 0, 6, 1, 0, 0, 2, 0xff, 0xff]));
out.garbage = (await got).toString("hex");
out.noSni = await handshake(await open(), "");
out.otherSni = await handshake(await open(), "evil.test");
console.log(JSON.stringify(out));
`;
  const before = echoReceived;
  const { status, out } = await runScript(script, [String(portOf(echo))]);
  assert.equal(status, 0, out);
  const got = JSON.parse(out) as Record<string, string>;
  // Plain HTTP over CONNECT gets the contract's 403, which an HTTP client can read.
  assert.match(got["http"] ?? "", /^HTTP\/1\.1 403 Forbidden/);
  const body = JSON.parse((got["http"] ?? "").split("\r\n\r\n")[1] ?? "") as Record<
    string,
    unknown
  >;
  assert.equal(body["deny_reason"], "malformed_request");
  // A broken hello, a hello without SNI, a hello for another name: a fatal access_denied alert.
  assert.equal(got["garbage"], "15030300020231");
  assert.match(got["noSni"] ?? "", /alert access denied/);
  assert.match(got["otherSni"] ?? "", /alert access denied/);
  assert.equal(echoReceived, before, "the upstream received nothing");
  const denied = auditLines().filter(
    (l) => l["method"] === "CONNECT" && l["port"] === portOf(echo) && l["decision"] === "deny",
  );
  assert.equal(denied.length, 4, JSON.stringify(denied));
  for (const l of denied) {
    assert.equal(l["deny_reason"], "malformed_request");
    assert.equal(l["bytes_out"], 0);
  }
});
