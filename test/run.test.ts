import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { existsSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";

import {
  CLI,
  errorCode,
  makeQuickstartHome,
  makeTempHome,
  type CliResult,
  type TempHome,
} from "./helpers/cli.js";
import { isRunning, waitFor } from "./helpers/processes.js";
import { startOrigin, type Origin } from "./helpers/origin.js";

let origin: Origin;
let t: TempHome;
let token: string;
let resolveArgs: string[];

function run(
  args: string[],
  env: NodeJS.ProcessEnv = {},
  timeoutMs = 20_000,
): Promise<CliResult & { ms: number }> {
  return new Promise((done) => {
    const started = Date.now();
    const child = spawn(process.execPath, [CLI, "run", ...args], {
      env: { ...t.env, VALLIGNUS_TOKEN: token, ...env },
    });
    let stdout = "";
    let stderr = "";
    child.stdout.setEncoding("utf8").on("data", (d: string) => (stdout += d));
    child.stderr.setEncoding("utf8").on("data", (d: string) => (stderr += d));
    const timer = setTimeout(() => child.kill("SIGKILL"), timeoutMs);
    child.on("close", (status) => {
      clearTimeout(timer);
      done({ status, stdout, stderr, ms: Date.now() - started });
    });
  });
}

function auditLines(): Record<string, unknown>[] {
  const text = readFileSync(join(t.home, "audit", "audit.jsonl"), "utf8");
  return text
    .trim()
    .split("\n")
    .map((line) => JSON.parse(line) as Record<string, unknown>);
}

/** The audit log's lines from `home` (none yet if there is no log). */
function homeAudit(home: string): Record<string, unknown>[] {
  const path = join(home, "audit", "audit.jsonl");
  if (!existsSync(path)) return [];
  return readFileSync(path, "utf8")
    .trim()
    .split("\n")
    .filter((line) => line !== "")
    .map((line) => JSON.parse(line) as Record<string, unknown>);
}

/**
 * How long after `since` the run recorded `event`: measured by the supervisor's own clock in
 * the audit log, not by this process's, which a loaded machine delays.
 */
function msUntilEvent(home: string, event: string, since: string): number {
  const line = homeAudit(home).find((l) => l["event"] === event);
  assert.ok(line, `no ${event} in the audit log`);
  return Date.parse(String(line["ts"])) - Date.parse(since);
}

const DENY_FIELDS = ["decision", "agent_id", "owner", "policy_id", "policy_version", "deny_reason"];

function assertDeny(body: string, reason: string): void {
  const json = JSON.parse(body) as Record<string, unknown>;
  assert.deepEqual(Object.fromEntries(DENY_FIELDS.map((k) => [k, json[k]])), {
    decision: "deny",
    agent_id: "support-bot",
    owner: "you@example.com",
    policy_id: "support",
    policy_version: 1,
    deny_reason: reason,
  });
}

before(async () => {
  origin = await startOrigin(["allowed.test", "denied.test"]);
  const home = makeQuickstartHome(
    `allowed.test:${origin.httpPort},allowed.test:${origin.httpsPort}`,
  );
  t = home;
  token = home.token;
  resolveArgs = [origin.httpPort, origin.httpsPort].flatMap((p) => [
    "--resolve",
    `allowed.test:${p}:127.0.0.1`,
    "--resolve",
    `denied.test:${p}:127.0.0.1`,
  ]);
  writeFileSync(join(t.root, "test-ca.pem"), origin.caPem);
});

after(async () => {
  await origin.close();
  t.cleanup();
});

describe("vallignus run with real clients", () => {
  test("curl: an allowed http request reaches the origin", async () => {
    const r = await run([
      ...resolveArgs,
      "--",
      "curl",
      "-s",
      `http://allowed.test:${origin.httpPort}/hello?key=secret`,
    ]);
    assert.equal(r.status, 0, r.stderr);
    assert.equal((JSON.parse(r.stdout) as { origin: string }).origin, "ok");
    const line = auditLines().find(
      (l) => l["decision"] === "allow" && l["path"] === "/hello?key=REDACTED",
    );
    assert.ok(line, "the allow is audited with the query value redacted");
    assert.equal(line["host"], "allowed.test");
    assert.equal(line["status"], 200);
  });

  test("curl: a denied host gets the deny JSON and never reaches the origin", async () => {
    const before = origin.hits.length;
    const r = await run([
      ...resolveArgs,
      "--",
      "curl",
      "-s",
      "-i",
      `http://denied.test:${origin.httpPort}/x`,
    ]);
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, /^HTTP\/1\.1 403 /);
    assert.match(r.stdout, /x-vallignus-decision: deny/i);
    assertDeny(r.stdout.slice(r.stdout.indexOf("{")), "domain_not_allowed");
    assert.equal(origin.hits.length, before);
  });

  test("curl: https through CONNECT is allowed to the allowed host and denied elsewhere", async () => {
    const ca = join(t.root, "test-ca.pem");
    const ok = await run([
      ...resolveArgs,
      "--",
      "curl",
      "-s",
      "--cacert",
      ca,
      `https://allowed.test:${origin.httpsPort}/tls`,
    ]);
    assert.equal(ok.status, 0, ok.stderr);
    assert.equal((JSON.parse(ok.stdout) as { path: string }).path, "/tls");
    const before = origin.hits.length;
    const no = await run([
      ...resolveArgs,
      "--",
      "curl",
      "-s",
      "--cacert",
      ca,
      `https://denied.test:${origin.httpsPort}/tls`,
    ]);
    assert.equal(no.status, 56);
    assert.equal(origin.hits.length, before);
    assert.ok(
      auditLines().some(
        (l) =>
          l["method"] === "CONNECT" &&
          l["host"] === "denied.test" &&
          l["deny_reason"] === "domain_not_allowed",
      ),
    );
  });

  test("python3 urllib goes through the proxy", async () => {
    const script = `
import json, urllib.request, urllib.error
out = {}
out["ok"] = json.load(urllib.request.urlopen("http://allowed.test:${origin.httpPort}/py"))["path"]
try:
    urllib.request.urlopen("http://denied.test:${origin.httpPort}/py")
except urllib.error.HTTPError as e:
    out["status"] = e.code
    out["body"] = json.load(e)
print(json.dumps(out))`;
    const r = await run([...resolveArgs, "--", "python3", "-c", script]);
    assert.equal(r.status, 0, r.stderr);
    const out = JSON.parse(r.stdout) as {
      ok: string;
      status: number;
      body: Record<string, unknown>;
    };
    assert.equal(out.ok, "/py");
    assert.equal(out.status, 403);
    assertDeny(JSON.stringify(out.body), "domain_not_allowed");
  });

  test("Node fetch and http.get go through the proxy with no code change", async () => {
    const script = `
const http = require("node:http");
(async () => {
  const ok = await (await fetch("http://allowed.test:${origin.httpPort}/fetch")).json();
  const denied = await fetch("http://denied.test:${origin.httpPort}/fetch");
  const body = await denied.json();
  http.get("http://denied.test:${origin.httpPort}/get", (res) => {
    let text = "";
    res.on("data", (d) => (text += d));
    res.on("end", () => console.log(JSON.stringify({ ok: ok.path, fetchStatus: denied.status, fetchReason: body.deny_reason, getStatus: res.statusCode, getReason: JSON.parse(text).deny_reason })));
  });
})();`;
    const r = await run([...resolveArgs, "--", process.execPath, "-e", script]);
    assert.equal(r.status, 0, r.stderr);
    assert.deepEqual(JSON.parse(r.stdout), {
      ok: "/fetch",
      fetchStatus: 403,
      fetchReason: "domain_not_allowed",
      getStatus: 403,
      getReason: "domain_not_allowed",
    });
  });
});

describe("the supervisor", () => {
  test("refuses a bad token with exit 3 and never starts the child", async () => {
    const marker = join(t.root, "should-not-exist");
    const r = await run(["--", "touch", marker], { VALLIGNUS_TOKEN: `${token.slice(0, -4)}AAAA` });
    assert.equal(r.status, 3);
    assert.equal(errorCode(r.stderr), "ERR_TOKEN_SIGNATURE");
    assert.equal(existsSync(marker), false);
    assert.ok(!r.stderr.includes(token.slice(0, 40)), "the token text is not in the error");
  });

  test("passes the exit code and the signal through", async () => {
    assert.equal((await run(["--", "sh", "-c", "exit 7"])).status, 7);
    assert.equal((await run(["--", "sh", "-c", "kill -TERM $$"])).status, 143);
  });

  test("stdin and stdout pass through", async () => {
    const r = await new Promise<CliResult>((done) => {
      const child = spawn(process.execPath, [CLI, "run", "--", "cat"], {
        env: { ...t.env, VALLIGNUS_TOKEN: token },
      });
      let stdout = "";
      child.stdout.setEncoding("utf8").on("data", (d: string) => (stdout += d));
      child.on("close", (status) => done({ status, stdout, stderr: "" }));
      child.stdin.end("through the firewall\n");
    });
    assert.equal(r.status, 0);
    assert.equal(r.stdout, "through the firewall\n");
  });

  test("live revocation stops a polling child and its grandchild within 1.5 s, exit 4", async () => {
    const pidFile = join(t.root, "grandchild.pid");
    const local = makeTempHome();
    try {
      local.ok("auth", "init");
      local.ok("auth", "create-agent", "--agent-id", "a1", "--owner", "o");
      local.ok(
        "auth",
        "create-policy",
        "--policy-id",
        "p1",
        "--max-spend-usd",
        "1",
        "--allowed-domains",
        "allowed.test",
      );
      const own = local.ok("auth", "issue-token", "--agent-id", "a1", "--policy-id", "p1").trim();
      const jti = (
        JSON.parse(local.ok("auth", "inspect-token", "--json", own)) as { claims: { jti: string } }
      ).claims.jti;
      const child = spawn(
        process.execPath,
        [
          CLI,
          "run",
          "--",
          "sh",
          "-c",
          `sleep 300 & echo $! > ${pidFile}; while true; do sleep 0.1; done`,
        ],
        {
          env: { ...local.env, VALLIGNUS_TOKEN: own },
        },
      );
      let stderr = "";
      child.stderr.setEncoding("utf8").on("data", (d: string) => (stderr += d));
      const exited = new Promise<number | null>((done) => child.on("close", done));
      await waitFor("the grandchild's pid file", () => existsSync(pidFile));
      local.ok("auth", "revoke-token", "--jti", jti);
      const status = await exited;
      assert.equal(status, 4);
      const revokedAt = (
        JSON.parse(readFileSync(join(local.home, "revoked", `${jti}.json`), "utf8")) as {
          revoked_at: string;
        }
      ).revoked_at;
      const elapsed = msUntilEvent(local.home, "token_revoked_live", revokedAt);
      assert.ok(elapsed < 1500, `stopped ${elapsed} ms after the revocation was written`);
      assert.match(stderr, /token was revoked/);
      const grandchild = Number(readFileSync(pidFile, "utf8"));
      await waitFor(`grandchild ${grandchild} to end`, () => !isRunning(grandchild));
    } finally {
      local.cleanup();
    }
  });

  test("disable-agent stops the run within 1.5 s with exit 4", async () => {
    const local = makeTempHome();
    try {
      local.ok("auth", "init");
      local.ok("auth", "create-agent", "--agent-id", "a2", "--owner", "o");
      local.ok(
        "auth",
        "create-policy",
        "--policy-id",
        "p2",
        "--max-spend-usd",
        "1",
        "--allowed-domains",
        "allowed.test",
      );
      const own = local.ok("auth", "issue-token", "--agent-id", "a2", "--policy-id", "p2").trim();
      const child = spawn(
        process.execPath,
        [CLI, "run", "--", "sh", "-c", "while true; do sleep 0.1; done"],
        {
          env: { ...local.env, VALLIGNUS_TOKEN: own },
        },
      );
      let stderr = "";
      child.stderr.setEncoding("utf8").on("data", (d: string) => (stderr += d));
      const exited = new Promise<number | null>((done) => child.on("close", done));
      // Disabled once the run has started (its run_start is written), not before.
      await waitFor("the run to start", () =>
        homeAudit(local.home).some((l) => l["event"] === "run_start"),
      );
      const disabledAt = new Date().toISOString();
      local.ok("auth", "disable-agent", "--agent-id", "a2");
      const status = await exited;
      assert.equal(status, 4);
      const elapsed = msUntilEvent(local.home, "agent_disabled_live", disabledAt);
      assert.ok(elapsed < 1500, `stopped ${elapsed} ms after the agent was disabled`);
      assert.match(stderr, /agent was disabled/);
      const events = readFileSync(join(local.home, "audit", "audit.jsonl"), "utf8");
      assert.match(events, /"event":"agent_disabled_live"/);
      assert.match(events, /"event":"run_end".*"exit_status":4/);
    } finally {
      local.cleanup();
    }
  });

  test("a token that expires during the run ends it with exit 4", async () => {
    const local = makeTempHome();
    try {
      local.ok("auth", "init");
      local.ok("auth", "create-agent", "--agent-id", "a3", "--owner", "o");
      local.ok(
        "auth",
        "create-policy",
        "--policy-id",
        "p3",
        "--max-spend-usd",
        "1",
        "--allowed-domains",
        "allowed.test",
      );
      const own = local
        .ok("auth", "issue-token", "--agent-id", "a3", "--policy-id", "p3", "--ttl", "2s")
        .trim();
      const { exp } = (
        JSON.parse(local.ok("auth", "inspect-token", "--json", own)) as { claims: { exp: number } }
      ).claims;
      const r = await new Promise<CliResult>((done) => {
        const child = spawn(process.execPath, [CLI, "run", "--", "sleep", "30"], {
          env: { ...local.env, VALLIGNUS_TOKEN: own },
        });
        let stderr = "";
        child.stderr.setEncoding("utf8").on("data", (d: string) => (stderr += d));
        child.on("close", (status) => done({ status, stdout: "", stderr }));
      });
      assert.equal(r.status, 4);
      assert.match(r.stderr, /token expired/);
      // Stopped at the expiry, by the run's own clock: not early, and not long after.
      const late = msUntilEvent(
        local.home,
        "token_expired_live",
        new Date(exp * 1000).toISOString(),
      );
      assert.ok(late >= 0 && late < 1000, `stopped ${late} ms after the expiry`);
    } finally {
      local.cleanup();
    }
  });

  test("--max-requests denies the next request and ends the run with 4", async () => {
    const url = `http://allowed.test:${origin.httpPort}/n`;
    const r = await run([
      ...resolveArgs,
      "--max-requests",
      "2",
      "--",
      "sh",
      "-c",
      `curl -s ${url}; curl -s ${url}; curl -s ${url}; sleep 5`,
    ]);
    assert.equal(r.status, 4);
    assert.equal(origin.hits.filter((h) => h.endsWith(" /n")).length, 2);
    assert.ok(
      auditLines().some((l) => l["path"] === "/n" && l["deny_reason"] === "request_limit_exceeded"),
    );
    assert.match(r.stderr, /request limit/);
  });

  test("--max-runtime ends the run with 4", async () => {
    const r = await run(["--max-runtime", "1s", "--", "sleep", "30"]);
    assert.equal(r.status, 4);
    const lines = auditLines();
    const stop = lines.findLast(
      (l) => l["event"] === "limit_reached" && l["reason"] === "max_runtime",
    );
    assert.ok(stop, "the stop is audited");
    const start = lines.find(
      (l) => l["event"] === "run_start" && l["session_id"] === stop["session_id"],
    );
    assert.ok(start, "the run's start is audited");
    // By the run's own clock: one second after the start, give or take the timer's slack.
    const ms = Date.parse(String(stop["ts"])) - Date.parse(String(start["ts"]));
    assert.ok(ms >= 1000 && ms < 2000, `stopped ${ms} ms after the start`);
  });

  test("--max-output-lines ends the run with 4", async () => {
    const r = await run([
      "--max-output-lines",
      "3",
      "--",
      "sh",
      "-c",
      "for i in 1 2 3 4 5 6; do echo $i; sleep 0.05; done; sleep 5",
    ]);
    assert.equal(r.status, 4);
  });

  test("the token text appears in no file under the home", () => {
    const walk = (dir: string): string[] =>
      readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
        e.isDirectory() ? walk(join(dir, e.name)) : [join(dir, e.name)],
      );
    for (const file of walk(t.home)) {
      assert.ok(!readFileSync(file, "utf8").includes(token), `${file} holds the token`);
    }
  });
});
