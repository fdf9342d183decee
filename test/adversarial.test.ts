import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, test } from "node:test";

import { CLI, makeQuickstartHome, type TempHome } from "./helpers/cli.js";
import { startOrigin, type Origin } from "./helpers/origin.js";

let origin: Origin;
let t: TempHome;
let token: string;

/**
 * The agent: raw sockets to the proxy named by HTTP_PROXY, so clients cannot normalise the
 * inputs away. Prints, per case, the status and deny_reason it got back.
 */
const AGENT = `
const net = require("node:net");
const proxy = new URL(process.env.HTTP_PROXY);
const cases = JSON.parse(process.argv[2]);
function send(raw) {
  return new Promise((done) => {
    const s = net.connect(Number(proxy.port), proxy.hostname, () => s.write(raw));
    let data = "";
    s.setEncoding("latin1");
    s.on("data", (d) => { data += d; if (/^HTTP\\/1\\.1 200 Connection/.test(data)) s.destroy(); });
    s.on("error", () => {});
    const timer = setTimeout(() => s.destroy(), 3000);
    s.on("close", () => { clearTimeout(timer); done(data); });
  });
}
(async () => {
  const out = {};
  for (const [name, raw] of cases) {
    const text = await send(raw);
    const status = Number(text.split(" ")[1]);
    const body = text.slice(text.indexOf("\\r\\n\\r\\n") + 4);
    let reason = null;
    try { reason = JSON.parse(body).deny_reason ?? null; } catch {}
    out[name] = status === 403 ? reason : status;
  }
  console.log(JSON.stringify(out));
})();`;

before(async () => {
  origin = await startOrigin(["allowed.test"]);
  const p = origin.httpPort;
  const home = makeQuickstartHome(`allowed.test:${p},localhost:${p}`);
  t = home;
  token = home.token;
  writeFileSync(join(t.root, "agent.js"), AGENT);
});

after(async () => {
  await origin.close();
  t.cleanup();
});

test("the adversarial host table over raw sockets", async () => {
  const p = origin.httpPort;
  const get = (target: string, host: string, extra = "") =>
    `GET ${target} HTTP/1.1\r\nHost: ${host}\r\nConnection: close\r\n${extra}\r\n`;
  const table: [string, string, string | number][] = [
    ["baseline", get(`http://allowed.test:${p}/`, `allowed.test:${p}`), 200],
    ["upper case", get(`http://ALLOWED.TEST:${p}/`, `ALLOWED.TEST:${p}`), 200],
    ["trailing dot", get(`http://allowed.test.:${p}/`, `allowed.test.:${p}`), 200],
    [
      "allowed name as prefix",
      get(`http://allowed.test.evil.test:${p}/`, `allowed.test.evil.test:${p}`),
      "domain_not_allowed",
    ],
    [
      "suffix without boundary",
      get(`http://evilallowed.test:${p}/`, `evilallowed.test:${p}`),
      "domain_not_allowed",
    ],
    [
      "subdomain without wildcard",
      get(`http://sub.allowed.test:${p}/`, `sub.allowed.test:${p}`),
      "domain_not_allowed",
    ],
    [
      "userinfo trick",
      get(`http://allowed.test:${p}@evil.test:${p}/`, `evil.test:${p}`),
      "malformed_request",
    ],
    ["other port", get(`http://allowed.test:1/`, `allowed.test:1`), "port_not_allowed"],
    ["dotted loopback", get(`http://127.0.0.1:${p}/`, `127.0.0.1:${p}`), "ip_literal_not_allowed"],
    [
      "decimal loopback",
      get(`http://2130706433:${p}/`, `2130706433:${p}`),
      "ip_literal_not_allowed",
    ],
    ["hex short loopback", get(`http://0x7f.1:${p}/`, `0x7f.1:${p}`), "ip_literal_not_allowed"],
    ["IPv6 loopback", get(`http://[::1]:${p}/`, `[::1]:${p}`), "ip_literal_not_allowed"],
    [
      "mapped loopback",
      get(`http://[::ffff:127.0.0.1]:${p}/`, `[::ffff:127.0.0.1]:${p}`),
      "ip_literal_not_allowed",
    ],
    [
      "localhost resolves to loopback",
      get(`http://localhost:${p}/`, `localhost:${p}`),
      "private_address",
    ],
    [
      "Host disagrees with target",
      get(`http://allowed.test:${p}/`, "evil.test"),
      "malformed_request",
    ],
    [
      "two Host headers",
      get(`http://allowed.test:${p}/`, `allowed.test:${p}`, `Host: evil.test\r\n`),
      "malformed_request",
    ],
    [
      "CL+TE smuggling",
      get(
        `http://allowed.test:${p}/`,
        `allowed.test:${p}`,
        "Content-Length: 4\r\nTransfer-Encoding: chunked\r\n",
      ) + "0\r\n\r\n",
      "malformed_request",
    ],
    [
      "obs-fold header",
      get(`http://allowed.test:${p}/`, `allowed.test:${p}`, "X-A: 1\r\n  folded\r\n"),
      "malformed_request",
    ],
    ["origin-form request", get("/", `allowed.test:${p}`), "malformed_request"],
    [
      "https URL sent in the clear",
      get(`https://allowed.test:${p}/`, `allowed.test:${p}`),
      "malformed_request",
    ],
    [
      "CONNECT to a denied host",
      `CONNECT evil.test:443 HTTP/1.1\r\nHost: evil.test:443\r\n\r\n`,
      "domain_not_allowed",
    ],
    [
      "CONNECT without port",
      `CONNECT allowed.test HTTP/1.1\r\nHost: allowed.test\r\n\r\n`,
      "malformed_request",
    ],
    [
      "CONNECT to the allowed host",
      `CONNECT allowed.test:${p} HTTP/1.1\r\nHost: allowed.test:${p}\r\n\r\n`,
      200,
    ],
    [
      "h2c upgrade",
      `GET http://allowed.test:${p}/ HTTP/1.1\r\nHost: allowed.test:${p}\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQAAP__\r\n\r\n`,
      "malformed_request",
    ],
    [
      "WebSocket to a denied host",
      `GET http://evil.test:${p}/ws HTTP/1.1\r\nHost: evil.test:${p}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n`,
      "domain_not_allowed",
    ],
  ];
  const hitsBefore = origin.hits.length;
  const result = await new Promise<{ status: number | null; stdout: string; stderr: string }>(
    (done) => {
      const child = spawn(
        process.execPath,
        [
          CLI,
          "run",
          "--resolve",
          `allowed.test:${p}:127.0.0.1`,
          "--",
          process.execPath,
          join(t.root, "agent.js"),
          JSON.stringify(table.map(([n, r]) => [n, r])),
        ],
        { env: { ...t.env, VALLIGNUS_TOKEN: token } },
      );
      let stdout = "";
      let stderr = "";
      child.stdout.setEncoding("utf8").on("data", (d: string) => (stdout += d));
      child.stderr.setEncoding("utf8").on("data", (d: string) => (stderr += d));
      child.on("close", (status) => done({ status, stdout, stderr }));
    },
  );
  assert.equal(result.status, 0, result.stderr);
  const got = JSON.parse(result.stdout) as Record<string, string | number>;
  for (const [name, , expected] of table) assert.equal(got[name], expected, name);
  const reached = origin.hits.slice(hitsBefore);
  assert.equal(
    reached.length,
    3,
    `only the three allowed GETs reach the origin: ${reached.join(" | ")}`,
  );
});
