import assert from "node:assert/strict";
import { appendFileSync, mkdtempSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, test } from "node:test";

import { Home } from "../authority/index.js";
import {
  AuditLog,
  auditLogPath,
  followAuditLog,
  readAuditRecords,
  verifyAuditLog,
  type AuditAppendInput,
  type AuditFilter,
  type AuditRecord,
} from "./index.js";

const roots: string[] = [];
after(() => {
  for (const root of roots) rmSync(root, { recursive: true, force: true });
});

function tempHome(): Home {
  const root = mkdtempSync(join(tmpdir(), "vallignus-read-"));
  roots.push(root);
  const home = new Home(join(root, "home"));
  home.ensureLayout();
  return home;
}

function identity(session: string, agent: string) {
  return {
    session_id: session,
    agent_id: agent,
    owner: "you@example.com",
    policy_id: "support",
    policy_version: 1,
    jti: `jti-${session}`,
  };
}

function request(
  session: string,
  agent: string,
  host: string,
  denyReason?: "domain_not_allowed" | "private_address",
): AuditAppendInput {
  const base = {
    ...identity(session, agent),
    method: "GET",
    scheme: "https" as const,
    host,
    port: 443,
    path: "/",
    bytes_in: 0,
    bytes_out: 0,
    duration_ms: 1,
  };
  return denyReason === undefined
    ? { ...base, decision: "allow", status: 200 }
    : { ...base, decision: "deny", deny_reason: denyReason, status: 403 };
}

/** s1 (agent a) and s2 (agent b), an hour apart; seq 1..8. */
function populatedHome(): Home {
  const home = tempHome();
  let clock = new Date("2026-11-26T10:00:00.000Z");
  const log = AuditLog.open(home, () => clock);
  log.append({ event: "run_start", ...identity("s1", "a") });
  log.append(request("s1", "a", "api.example.com"));
  log.append(request("s1", "a", "evil.test", "domain_not_allowed"));
  log.append({ event: "run_end", ...identity("s1", "a"), exit_status: 0, reason: "exited" });
  clock = new Date("2026-11-26T11:00:00.000Z");
  log.append({ event: "run_start", ...identity("s2", "b") });
  log.append(request("s2", "b", "API.Example.com."));
  log.append(request("s2", "b", "10.0.0.1", "private_address"));
  log.append({ event: "token_revoked_live", ...identity("s2", "b"), reason: "token_revoked" });
  log.close();
  return home;
}

const filterCases: [string, AuditFilter, number[]][] = [
  ["no filter", {}, [1, 2, 3, 4, 5, 6, 7, 8]],
  ["session", { session_id: "s2" }, [5, 6, 7, 8]],
  ["agent", { agent_id: "a" }, [1, 2, 3, 4]],
  ["decision allow (events excluded)", { decision: "allow" }, [2, 6]],
  ["decision deny", { decision: "deny" }, [3, 7]],
  ["host, case and trailing dot ignored", { host: "api.example.com" }, [2, 6]],
  ["deny reason", { reason: "private_address" }, [7]],
  ["event reason", { reason: "token_revoked" }, [8]],
  ["since", { since: new Date("2026-11-26T10:30:00Z") }, [5, 6, 7, 8]],
  ["since, exactly at a record's ts", { since: new Date("2026-11-26T11:00:00Z") }, [5, 6, 7, 8]],
  ["several fields together", { agent_id: "b", decision: "deny" }, [7]],
  ["nothing matches", { session_id: "s3" }, []],
];

for (const [name, filter, seqs] of filterCases) {
  test(`readAuditRecords: ${name}`, () => {
    const home = populatedHome();
    assert.deepEqual(
      readAuditRecords(home, filter).map((r) => r.seq),
      seqs,
    );
  });
}

test("readAuditRecords: no log yet is no records", () => {
  const home = tempHome();
  assert.deepEqual(readAuditRecords(home), []);
});

test("readAuditRecords: a malformed line and an unfinished last line are skipped", () => {
  const home = populatedHome();
  appendFileSync(auditLogPath(home), 'not json\n{"seq":10}\n{"ts":"2026');
  assert.equal(readAuditRecords(home).length, 8);
});

test("readAuditRecords and verify: a log larger than one read chunk, with multi-byte text", () => {
  const home = tempHome();
  const log = AuditLog.open(home);
  for (let i = 0; i < 400; i++) {
    log.append({ ...request("s1", "a", "api.example.com"), owner: `Zoë 😀 ${"é".repeat(i % 97)}` });
  }
  log.close();
  assert.ok(statSync(auditLogPath(home)).size > 3 * 64 * 1024);
  const records = readAuditRecords(home);
  assert.equal(records.length, 400);
  assert.equal(records[96]?.owner, `Zoë 😀 ${"é".repeat(96)}`);
  assert.deepEqual(verifyAuditLog(home), { ok: true, records: 400 });
});

test("followAuditLog: the last N records first, then each new one, until aborted", async () => {
  const home = populatedHome();
  const seen: AuditRecord[] = [];
  const controller = new AbortController();
  let wakeUp = (): void => undefined;
  const followed = followAuditLog(
    home,
    { last: 2, signal: controller.signal, intervalMs: 10, filter: { session_id: "s2" } },
    (r) => {
      seen.push(r);
      wakeUp();
    },
  );
  assert.deepEqual(
    seen.map((r) => r.seq),
    [7, 8],
  );
  const log = AuditLog.open(home);
  log.append(request("s1", "a", "other.test"));
  log.append(request("s2", "b", "late.test"));
  log.close();
  await new Promise<void>((resolve) => {
    wakeUp = resolve;
  });
  controller.abort();
  await followed;
  assert.deepEqual(
    seen.map((r) => r.seq),
    [7, 8, 10],
  );
});

test("followAuditLog: a log that appears only later is followed from its start", async () => {
  const home = tempHome();
  const controller = new AbortController();
  const seen: number[] = [];
  let wakeUp = (): void => undefined;
  const followed = followAuditLog(
    home,
    { last: 20, signal: controller.signal, intervalMs: 10 },
    (r) => {
      seen.push(r.seq);
      wakeUp();
    },
  );
  const log = AuditLog.open(home);
  log.append(request("s1", "a", "first.test"));
  log.close();
  await new Promise<void>((resolve) => {
    wakeUp = resolve;
  });
  controller.abort();
  await followed;
  assert.deepEqual(seen, [1]);
});
