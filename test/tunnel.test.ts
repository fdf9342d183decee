// CONNECT tunnels under `vallignus run`: bytes cross both ways unchanged, half-closes pass through,
// and a reader that stops reading holds the tunnel back instead of filling the proxy's memory.
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { readFileSync } from "node:fs";
import { createServer, type AddressInfo, type Server, type Socket } from "node:net";
import { join } from "node:path";
import { after, before, test } from "node:test";

import { CLI, makeQuickstartHome, type TempHome } from "./helpers/cli.js";

let home: TempHome & { token: string };
let echo: Server;
let flood: Server;
let burst: Server;
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
  // Echoes everything, and ends its side when the client has ended its own.
  echo = await listen((socket) => socket.pipe(socket));
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
  home = makeQuickstartHome(
    [echo, flood, burst].map((server) => `tunnel.test:${portOf(server)}`).join(","),
  );
});

after(() => {
  echo.close();
  flood.close();
  burst.close();
  home.cleanup();
});

/** Runs a Node script under `vallignus run`; resolves with its stdout and the run's exit status. */
function runScript(
  script: string,
  args: string[],
): Promise<{ status: number | null; out: string }> {
  const resolves = [portOf(echo), portOf(flood), portOf(burst)].flatMap((p) => [
    "--resolve",
    `tunnel.test:${p}:127.0.0.1`,
  ]);
  return new Promise((done) => {
    const child = spawn(
      process.execPath,
      [
        CLI,
        "run",
        ...resolves,
        "--",
        process.execPath,
        "--input-type=module",
        "-e",
        script,
        ...args,
      ],
      { env: { ...home.env, VALLIGNUS_TOKEN: home.token } },
    );
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

/** Opens a CONNECT tunnel through $HTTPS_PROXY; the script continues with `tunnel` open. */
const OPEN_TUNNEL = `
import { connect } from "node:net";
const proxy = new URL(process.env.HTTPS_PROXY);
const [port, ...rest] = process.argv.slice(1);
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
`;

test("8 MiB cross a tunnel both ways unchanged, and a half-close reaches the other side", async () => {
  const script = `${OPEN_TUNNEL}
const { createHash, randomBytes } = await import("node:crypto");
const sent = randomBytes(8 * 1024 * 1024);
const got = [];
tunnel.on("data", (d) => got.push(d));
tunnel.on("end", () => {
  const hash = (b) => createHash("sha256").update(b).digest("hex");
  console.log(JSON.stringify({ sent: hash(sent), got: hash(Buffer.concat(got)) }));
  tunnel.end();
});
tunnel.resume();
tunnel.end(sent);
`;
  const { status, out } = await runScript(script, [String(portOf(echo))]);
  assert.equal(status, 0, out);
  const { sent, got } = JSON.parse(out) as { sent: string; got: string };
  assert.equal(got, sent);
  const audit = readFileSync(join(home.home, "audit", "audit.jsonl"), "utf8");
  const line = audit
    .trim()
    .split("\n")
    .map((l) => JSON.parse(l) as Record<string, unknown>)
    .find((r) => r["method"] === "CONNECT" && r["port"] === portOf(echo));
  assert.equal(line?.["decision"], "allow");
  assert.equal(line["bytes_out"], 8 * 1024 * 1024);
  assert.equal(line["bytes_in"], 8 * 1024 * 1024);
});

test("a client that stops reading stops the upstream too: the proxy buffers a bounded amount", async () => {
  floodWritten = 0;
  const script = `${OPEN_TUNNEL}
// Read nothing for a second, then report; the flood server has written what fit.
setTimeout(() => { console.log("waited"); process.exit(0); }, 1000);
`;
  const { status, out } = await runScript(script, [String(portOf(flood))]);
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
  const { status, out } = await runScript(script, [String(portOf(burst))]);
  assert.equal(status, 0, out);
  assert.deepEqual(JSON.parse(out), { got: BURST_BYTES });
});
