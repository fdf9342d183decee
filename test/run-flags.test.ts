import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, test } from "node:test";

import { CLI, errorCode, makeQuickstartHome, type TempHome } from "./helpers/cli.js";
import { startOrigin, type Origin } from "./helpers/origin.js";

/** What `run`'s own flags change, as a user sees it: files in the home, the audit log, exits. */

let origin: Origin;
let t: TempHome & { token: string };

before(async () => {
  origin = await startOrigin(["allowed.test"]);
  t = makeQuickstartHome(`allowed.test:${origin.httpPort}`);
});

after(async () => {
  await origin.close();
  t.cleanup();
});

function auditRecords(): Record<string, unknown>[] {
  const path = join(t.home, "audit", "audit.jsonl");
  if (!existsSync(path)) return [];
  return readFileSync(path, "utf8")
    .trim()
    .split("\n")
    .filter((line) => line !== "")
    .map((line) => JSON.parse(line) as Record<string, unknown>);
}

function sessionFolders(): string[] {
  const dir = join(t.home, "sessions");
  return existsSync(dir) ? readdirSync(dir) : [];
}

test("run with no token refuses (exit 3, ERR_TOKEN_MISSING) and never starts the command", async () => {
  const marker = join(t.root, "started");
  const r = await t.runAsync(["run", "--", "touch", marker]);
  assert.equal(r.status, 3, r.stderr);
  assert.equal(errorCode(r.stderr), "ERR_TOKEN_MISSING", r.stderr);
  assert.match(r.stderr, /no token; set VALLIGNUS_TOKEN or pass --token/);
  assert.equal(r.stdout, "");
  assert.equal(existsSync(marker), false, "the command never ran");
  // An empty VALLIGNUS_TOKEN is no token either.
  const blank = spawnSync(process.execPath, [CLI, "run", "--", "touch", marker], {
    env: { ...t.env, VALLIGNUS_TOKEN: "  " },
    encoding: "utf8",
  });
  assert.equal(blank.status, 3, blank.stderr);
  assert.equal(errorCode(blank.stderr), "ERR_TOKEN_MISSING", blank.stderr);
  assert.equal(existsSync(marker), false, "the command never ran");
});

test("run --no-session writes no session folder, and the run is still audited", async () => {
  const before = auditRecords().length;
  assert.deepEqual(sessionFolders(), [], "no run has recorded a session yet");
  const url = `http://allowed.test:${origin.httpPort}/no-session`;
  const r = await t.runAsync([
    "run",
    "--token",
    t.token,
    "--no-session",
    "--resolve",
    `allowed.test:${origin.httpPort}:127.0.0.1`,
    "--",
    "curl",
    "-s",
    url,
  ]);
  assert.equal(r.status, 0, r.stderr);
  assert.equal((JSON.parse(r.stdout) as { origin: string }).origin, "ok");
  assert.deepEqual(sessionFolders(), [], "sessions/ is empty or absent");
  const records = auditRecords().slice(before);
  const events = records.map((rec) => rec["event"] ?? rec["decision"]);
  assert.deepEqual(events, ["run_start", "allow", "run_end"]);
  const sessionIds = new Set(records.map((rec) => rec["session_id"]));
  assert.equal(sessionIds.size, 1, "one session id across the run's records");
  const allow = records[1] ?? {};
  assert.equal(allow["host"], "allowed.test");
  assert.equal(allow["path"], "/no-session");
  // The same run without the flag does record its session: the test can tell the two apart.
  const recorded = await t.runAsync(["run", "--token", t.token, "--", "true"]);
  assert.equal(recorded.status, 0, recorded.stderr);
  const folders = sessionFolders();
  assert.equal(folders.length, 1);
  assert.ok(existsSync(join(t.home, "sessions", folders[0] ?? "", "session.json")));
});

test("run --isolate --port is refused (exit 2): an isolated run's proxy has no TCP port", () => {
  const marker = join(t.root, "started-port");
  const r = spawnSync(
    process.execPath,
    [CLI, "run", "--isolate", "--port", "18123", "--", "touch", marker],
    { env: { ...t.env, VALLIGNUS_TOKEN: t.token }, encoding: "utf8" },
  );
  assert.equal(r.status, 2, r.stderr);
  assert.equal(errorCode(r.stderr), "ERR_CLI_USAGE", r.stderr);
  assert.match(r.stderr, /--port has no use with --isolate/);
  assert.equal(existsSync(marker), false, "the command never ran");
});
