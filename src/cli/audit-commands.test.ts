import assert from "node:assert/strict";
import { appendFileSync, readFileSync, writeFileSync } from "node:fs";
import { test } from "node:test";

import {
  AuditLog,
  auditLogPath,
  writeSessionRecord,
  type AuditAppendInput,
} from "../audit/index.js";
import { Home } from "../authority/index.js";
import { runAuditCommand, runReplayCommand, runSessionsCommand } from "./audit-commands.js";
import { captureContext, tempCommandHome } from "../../test/helpers/command-context.js";

const context = captureContext;
const tempHome = (initialized = true) => tempCommandHome("vallignus-audit-cli-", initialized);

const SESSION = "20261126t181500z-ab12cd34";
const identity = {
  session_id: SESSION,
  agent_id: "support-bot",
  owner: "you@example.com",
  policy_id: "support",
  policy_version: 3,
  jti: "jti-1",
};

function request(host: string, path: string, deny?: "domain_not_allowed"): AuditAppendInput {
  const base = {
    ...identity,
    method: "GET",
    scheme: "https" as const,
    host,
    port: 443,
    path,
    bytes_in: 10,
    bytes_out: 20,
    duration_ms: 3,
  };
  return deny === undefined
    ? { ...base, decision: "allow", status: 200 }
    : { ...base, decision: "deny", deny_reason: deny, status: 403 };
}

/** One run: start at 18:15:00, allow at +1.5 s, deny at +2 s, end at +3 s. */
function homeWithOneRun(withSessionFile = true): Home {
  const home = tempHome();
  let ms = Date.parse("2026-11-26T18:15:00.000Z");
  const log = AuditLog.open(home, () => new Date(ms));
  log.append({ event: "run_start", ...identity });
  ms += 1500;
  log.append(request("api.example.com", "/v1/x?key=REDACTED"));
  ms += 500;
  log.append(request("evil.test", "/", "domain_not_allowed"));
  ms += 1000;
  log.append({ event: "run_end", ...identity, exit_status: 0, reason: "exited" });
  log.close();
  if (withSessionFile) {
    writeSessionRecord(home, {
      ...identity,
      started_at: "2026-11-26T18:15:00.000Z",
      ended_at: "2026-11-26T18:15:03.000Z",
      command: ["python3"],
      arg_count: 1,
      isolated: false,
      exit_status: 0,
      end_reason: "exited",
    });
  }
  return home;
}

test("audit verify: an intact log", async () => {
  const ctx = context(homeWithOneRun());
  assert.equal(await runAuditCommand(ctx, ["verify"]), 0);
  assert.equal(ctx.text(), "ok: 4 records, chain intact\n");
});

test("audit verify: a broken log names the line, with ERR_AUDIT_CHAIN_BROKEN and exit 1", async () => {
  const home = homeWithOneRun();
  const path = auditLogPath(home);
  writeFileSync(path, readFileSync(path, "utf8").replace("evil.test", "good.test"));
  await assert.rejects(runAuditCommand(context(home), ["verify"]), {
    code: "ERR_AUDIT_CHAIN_BROKEN",
    exitStatus: 1,
    message: /^audit log broken at line 3: hash does not match/,
  });
});

test("audit tail: the last records, one readable line each", async () => {
  const ctx = context(homeWithOneRun());
  assert.equal(await runAuditCommand(ctx, ["tail", "-n", "3"]), 0);
  assert.deepEqual(ctx.text().split("\n").slice(0, -1), [
    "2026-11-26T18:15:01.500Z allow GET https://api.example.com:443/v1/x?key=REDACTED -> 200",
    "2026-11-26T18:15:02.000Z deny  GET https://evil.test:443/ -> 403 (domain_not_allowed)",
    `2026-11-26T18:15:03.000Z run_end session ${SESSION} exit 0 (exited)`,
  ]);
});

test("audit tail: 20 by default, and --json is an array of records", async () => {
  const home = tempHome();
  const log = AuditLog.open(home);
  for (let i = 0; i < 25; i++) log.append(request("api.example.com", `/${i}`));
  log.close();
  const ctx = context(home);
  await runAuditCommand(ctx, ["tail"]);
  assert.equal(ctx.text().split("\n").length - 1, 20);
  assert.match(ctx.text(), /\/24 -> 200\n$/);
  const json = context(home);
  await runAuditCommand(json, ["tail", "--json", "-n", "2"]);
  assert.deepEqual(
    (JSON.parse(json.text()) as { seq: number }[]).map((r) => r.seq),
    [24, 25],
  );
});

test("audit tail -f: prints new records as they come, until SIGINT", async () => {
  const home = homeWithOneRun();
  const ctx = context(home);
  const before = process.listeners("SIGINT");
  const following = runAuditCommand(ctx, ["tail", "-f", "-n", "1"]);
  const log = AuditLog.open(home);
  log.append(request("late.test", "/"));
  log.close();
  for (let i = 0; i < 100 && !ctx.text().includes("late.test"); i++) {
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  // Only our own handler: the test runner's must not see a SIGINT.
  const ours = process.listeners("SIGINT").filter((l) => !before.includes(l));
  assert.equal(ours.length, 1);
  ours[0]?.("SIGINT");
  assert.equal(await following, 0);
  const lines = ctx.text().split("\n").slice(0, -1);
  assert.equal(lines.length, 2);
  assert.match(lines[0] ?? "", /run_end/);
  assert.match(lines[1] ?? "", /allow GET https:\/\/late\.test:443\/ -> 200$/);
  assert.deepEqual(process.listeners("SIGINT"), before);
});

test("audit query: filters combine; bad filter values are usage errors", async () => {
  const home = homeWithOneRun();
  const deny = context(home);
  await runAuditCommand(deny, ["query", "--decision", "deny", "--json"]);
  assert.deepEqual(
    (JSON.parse(deny.text()) as { host: string }[]).map((r) => r.host),
    ["evil.test"],
  );
  const late = context(home);
  await runAuditCommand(late, [
    "query",
    "--since",
    "2026-11-26T18:15:02Z",
    "--agent",
    "support-bot",
  ]);
  assert.equal(late.text().split("\n").length - 1, 2);
  const none = context(home);
  await runAuditCommand(none, ["query", "--host", "nowhere.test"]);
  assert.equal(none.text(), "");
  for (const bad of [
    ["--decision", "maybe"],
    ["--since", "yesterday"],
    ["--session", "../x"],
  ]) {
    await assert.rejects(runAuditCommand(context(home), ["query", ...bad]), { exitStatus: 2 });
  }
});

test("sessions list: each run with its policy version, counts and exit", async () => {
  const home = homeWithOneRun();
  const ctx = context(home);
  assert.equal(await runSessionsCommand(ctx, ["list"]), 0);
  const [header, row] = ctx.text().split("\n");
  assert.match(header ?? "", /^SESSION\s+STARTED\s+ENDED\s+AGENT\s+POLICY\s+ALLOW\s+DENY\s+EXIT$/);
  assert.match(row ?? "", new RegExp(`^${SESSION}\\s.*support-bot\\s+support v3\\s+1\\s+1\\s+0$`));
  const json = context(home);
  await runSessionsCommand(json, ["list", "--json"]);
  const [listed] = JSON.parse(json.text()) as { session_id: string; decisions: object }[];
  assert.equal(listed?.session_id, SESSION);
  assert.deepEqual(listed.decisions, { allow: 1, deny: 1 });
});

test("sessions show: the record, its counts and its records; unknown is ERR_SESSION_NOT_FOUND", async () => {
  const home = homeWithOneRun();
  const ctx = context(home);
  await runSessionsCommand(ctx, ["show", SESSION]);
  assert.match(ctx.text(), /policy\s+support v3\n/);
  assert.match(ctx.text(), /command\s+python3 \(1 args, not recorded\)\n/);
  assert.match(ctx.text(), /decisions\s+1 allowed, 1 denied\n/);
  assert.match(ctx.text(), /deny {2}GET https:\/\/evil\.test:443\/ -> 403 \(domain_not_allowed\)/);
  const json = context(home);
  await runSessionsCommand(json, ["show", SESSION, "--json"]);
  const shown = JSON.parse(json.text()) as { session: { jti: string }; records: unknown[] };
  assert.equal(shown.session.jti, "jti-1");
  assert.equal(shown.records.length, 4);
  await assert.rejects(runSessionsCommand(context(home), ["show", "nope"]), {
    code: "ERR_SESSION_NOT_FOUND",
    exitStatus: 1,
  });
});

test("sessions show: a run without a session file is shown from its records", async () => {
  const ctx = context(homeWithOneRun(false));
  await runSessionsCommand(ctx, ["show", SESSION]);
  assert.match(ctx.text(), /record\s+none \(run with --no-session\)/);
  assert.match(ctx.text(), /decisions\s+1 allowed, 1 denied/);
});

test("replay: the run as a timeline from run_start", async () => {
  const home = homeWithOneRun();
  const ctx = context(home);
  assert.equal(await runReplayCommand(ctx, [SESSION]), 0);
  assert.deepEqual(ctx.text().split("\n").slice(0, -1), [
    `+0.000s  run_start session ${SESSION} agent support-bot policy support v3 jti jti-1`,
    "+1.500s  allow GET https://api.example.com:443/v1/x?key=REDACTED -> 200",
    "+2.000s  deny  GET https://evil.test:443/ -> 403 (domain_not_allowed)",
    `+3.000s  run_end session ${SESSION} exit 0 (exited)`,
  ]);
  const json = context(home);
  await runReplayCommand(json, [SESSION, "--json"]);
  assert.deepEqual(
    (JSON.parse(json.text()) as { offset_ms: number }[]).map((r) => r.offset_ms),
    [0, 1500, 2000, 3000],
  );
  await assert.rejects(runReplayCommand(context(home), ["nope"]), {
    code: "ERR_SESSION_NOT_FOUND",
  });
  await assert.rejects(runReplayCommand(context(home), []), { exitStatus: 2 });
});

test("control characters from a record are shown escaped, never sent to the terminal", async () => {
  const home = tempHome();
  const log = AuditLog.open(home);
  log.append(request("evil.test", "/\u001b[2Jx"));
  log.close();
  const ctx = context(home);
  await runAuditCommand(ctx, ["tail"]);
  assert.ok(!ctx.text().includes("\u001b"));
  assert.match(ctx.text(), /\/\\u001b\[2Jx -> 200/);
});

test("every command needs an initialized home", async () => {
  const home = tempHome(false);
  for (const run of [
    () => runAuditCommand(context(home), ["verify"]),
    () => runAuditCommand(context(home), ["tail"]),
    () => runAuditCommand(context(home), ["query"]),
    () => runSessionsCommand(context(home), ["list"]),
    () => runSessionsCommand(context(home), ["show", SESSION]),
    () => runReplayCommand(context(home), [SESSION]),
  ]) {
    await assert.rejects(run(), { code: "ERR_HOME_NOT_INITIALIZED" });
  }
});

test("unknown subcommands are usage errors", async () => {
  const home = tempHome();
  await assert.rejects(runAuditCommand(context(home), ["rewrite"]), {
    code: "ERR_CLI_UNKNOWN_COMMAND",
    exitStatus: 2,
  });
  await assert.rejects(runSessionsCommand(context(home), []), { exitStatus: 2 });
});

test("a log with an unreadable line still lists what it can", async () => {
  const home = homeWithOneRun();
  appendFileSync(auditLogPath(home), "garbage\n");
  const ctx = context(home);
  await runAuditCommand(ctx, ["tail"]);
  assert.equal(ctx.text().split("\n").length - 1, 4);
});
