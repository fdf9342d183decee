import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, test } from "node:test";

import { canonicalJson } from "../authority/canonical-json.js";
import { Home } from "../authority/index.js";
import { AuditLog, auditLogPath, auditRecordHash, verifyAuditLog } from "./index.js";

const roots: string[] = [];
after(() => {
  for (const root of roots) rmSync(root, { recursive: true, force: true });
});

const identity = {
  agent_id: "support-bot",
  owner: "you@example.com",
  policy_id: "support",
  policy_version: 1,
  jti: "jti-1",
  session_id: "s-1",
};

/** A home whose log holds run_start, three decisions and run_end: five lines. */
function homeWithFiveRecords(): Home {
  const root = mkdtempSync(join(tmpdir(), "vallignus-verify-"));
  roots.push(root);
  const home = new Home(join(root, "home"));
  home.ensureLayout();
  const log = AuditLog.open(home, () => new Date("2026-11-26T18:15:00.000Z"));
  log.append({ event: "run_start", ...identity });
  for (const [i, host] of ["a.test", "b.test", "c.test"].entries()) {
    const request = {
      ...identity,
      method: "GET",
      scheme: "https" as const,
      host,
      port: 443,
      path: "/",
      bytes_in: 0,
      bytes_out: 0,
      duration_ms: 1,
    };
    log.append(
      i === 1
        ? { ...request, decision: "deny", deny_reason: "domain_not_allowed", status: 403 }
        : { ...request, decision: "allow", status: 200 },
    );
  }
  log.append({ event: "run_end", ...identity, exit_status: 0, reason: "exited" });
  log.close();
  return home;
}

type Lines = string[];

function edit(line: string, change: (r: Record<string, unknown>) => void, rehash: boolean) {
  const record = JSON.parse(line) as Record<string, unknown>;
  change(record);
  if (rehash) record["hash"] = auditRecordHash(record);
  return JSON.stringify(record);
}

const tamperCases: [string, (lines: Lines) => string, number, RegExp][] = [
  [
    "a field edited",
    (l) =>
      `${l.map((x, i) => (i === 2 ? edit(x, (r) => (r["host"] = "evil.test"), false) : x)).join("\n")}\n`,
    3,
    /hash does not match/,
  ],
  [
    "a field edited and the line's hash recomputed",
    (l) =>
      `${l.map((x, i) => (i === 2 ? edit(x, (r) => (r["status"] = 500), true) : x)).join("\n")}\n`,
    4,
    /prev_hash does not match/,
  ],
  [
    "a line deleted",
    (l) => `${l.filter((_, i) => i !== 2).join("\n")}\n`,
    3,
    /seq is 4, expected 3/,
  ],
  ["the first line deleted", (l) => `${l.slice(1).join("\n")}\n`, 1, /seq is 2, expected 1/],
  ["the last line truncated", (l) => `${l.join("\n")}\n`.slice(0, -20), 5, /incomplete line/],
  [
    "the last line cut and given a newline",
    (l) => `${`${l.join("\n")}\n`.slice(0, -20)}\n`,
    5,
    /not valid JSON/,
  ],
  [
    "two lines swapped",
    (l) => `${[l[0], l[2], l[1], l[3], l[4]].join("\n")}\n`,
    2,
    /seq is 3, expected 2/,
  ],
  [
    "a line duplicated",
    (l) => `${[l[0], l[1], l[1], l[2], l[3], l[4]].join("\n")}\n`,
    3,
    /seq is 2, expected 3/,
  ],
  [
    "a blank line inserted",
    (l) => `${[l[0], l[1], "", l[2], l[3], l[4]].join("\n")}\n`,
    3,
    /empty line/,
  ],
  [
    "the first line re-linked to a made-up predecessor",
    (l) =>
      `${[edit(l[0] ?? "", (r) => (r["prev_hash"] = "1".repeat(64)), true), ...l.slice(1)].join("\n")}\n`,
    1,
    /genesis/,
  ],
  [
    "a line that is not an object",
    (l) => `${[l[0], "[1]", ...l.slice(2)].join("\n")}\n`,
    2,
    /not a JSON object/,
  ],
];

for (const [name, tamper, line, why] of tamperCases) {
  test(`verifyAuditLog: ${name} is found at line ${line}`, () => {
    const home = homeWithFiveRecords();
    const path = auditLogPath(home);
    const lines = readFileSync(path, "utf8").split("\n").slice(0, -1);
    assert.equal(lines.length, 5);
    writeFileSync(path, tamper(lines));
    const result = verifyAuditLog(home);
    if (result.ok) assert.fail(`the log verified with ${result.records} records`);
    assert.equal(result.line, line);
    assert.match(result.why, why);
  });
}

test("verifyAuditLog: an intact log reports its record count", () => {
  assert.deepEqual(verifyAuditLog(homeWithFiveRecords()), { ok: true, records: 5 });
});

test("verifyAuditLog: a missing or empty log is intact with no records", () => {
  const home = homeWithFiveRecords();
  rmSync(auditLogPath(home));
  assert.deepEqual(verifyAuditLog(home), { ok: true, records: 0 });
  writeFileSync(auditLogPath(home), "");
  assert.deepEqual(verifyAuditLog(home), { ok: true, records: 0 });
});

test("verifyAuditLog: lines written before 2026-11-26 (hash over canonical JSON) still verify", () => {
  const home = homeWithFiveRecords();
  const path = auditLogPath(home);
  // Rewrite the chain as the older writer did: keys reversed, hash over sorted keys.
  let prev = "0".repeat(64);
  const old = readFileSync(path, "utf8")
    .trim()
    .split("\n")
    .map((l) => {
      const { hash: _h, ...rest } = JSON.parse(l) as Record<string, unknown>;
      const record = Object.fromEntries(
        Object.entries({ ...rest, prev_hash: prev }).reverse(),
      ) as Record<string, unknown>;
      prev = createHash("sha256").update(canonicalJson(record)).digest("hex");
      return JSON.stringify({ ...record, hash: prev });
    });
  writeFileSync(path, `${old.join("\n")}\n`);
  assert.deepEqual(verifyAuditLog(home), { ok: true, records: 5 });
  // And an edit in such a line still shows.
  writeFileSync(
    path,
    `${old.map((l, i) => (i === 2 ? l.replace('"GET"', '"PUT"') : l)).join("\n")}\n`,
  );
  const result = verifyAuditLog(home);
  assert.equal(result.ok, false);
});
