import assert from "node:assert/strict";
import { mkdirSync, mkdtempSync, readdirSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, test } from "node:test";

import { Home } from "../authority/index.js";
import { isValidId } from "../policy/index.js";
import {
  listSessionRecords,
  newSessionId,
  readSessionRecord,
  summarizeCommand,
  writeSessionRecord,
  type SessionRecord,
} from "./index.js";

const roots: string[] = [];
after(() => {
  for (const root of roots) rmSync(root, { recursive: true, force: true });
});

function tempHome(): Home {
  const root = mkdtempSync(join(tmpdir(), "vallignus-sessions-"));
  roots.push(root);
  const home = new Home(join(root, "home"));
  home.ensureLayout();
  return home;
}

function session(id: string, startedAt: string): SessionRecord {
  return {
    session_id: id,
    started_at: startedAt,
    ended_at: null,
    agent_id: "support-bot",
    owner: "you@example.com",
    policy_id: "support",
    policy_version: 2,
    jti: "jti-1",
    command: ["python3"],
    arg_count: 2,
    isolated: false,
    exit_status: null,
    end_reason: null,
  };
}

test("newSessionId: sortable UTC stamp and 8 hex digits, a valid id", () => {
  const id = newSessionId(new Date("2026-11-26T18:15:00.789Z"), () => "AB12CD34");
  assert.equal(id, "20261126t181500z-ab12cd34");
  const random = newSessionId(new Date());
  assert.match(random, /^\d{8}t\d{6}z-[0-9a-f]{8}$/);
  assert.ok(isValidId(random));
  assert.notEqual(newSessionId(new Date(0)), newSessionId(new Date(0)));
});

test("summarizeCommand: keeps the program's basename and counts the arguments", () => {
  assert.deepEqual(summarizeCommand(["/usr/bin/python3", "agent.py", "--api-key=sk-secret"]), {
    command: ["python3"],
    arg_count: 2,
  });
  assert.deepEqual(summarizeCommand([]), { command: [], arg_count: 0 });
});

test("writeSessionRecord then readSessionRecord round-trips; the file is 0644 and replaced whole", () => {
  const home = tempHome();
  const started = session("20261126t181500z-ab12cd34", "2026-11-26T18:15:00.000Z");
  writeSessionRecord(home, started);
  const ended = {
    ...started,
    ended_at: "2026-11-26T18:16:00.000Z",
    exit_status: 4,
    end_reason: "token_revoked",
  };
  writeSessionRecord(home, ended);
  assert.deepEqual(readSessionRecord(home, started.session_id), ended);
  const dir = home.path("sessions", started.session_id);
  assert.equal(statSync(join(dir, "session.json")).mode & 0o777, 0o644);
  assert.deepEqual(readdirSync(dir), ["session.json"]);
});

test("readSessionRecord: unknown is undefined, an invalid id is refused, a corrupt file is reported", () => {
  const home = tempHome();
  assert.equal(readSessionRecord(home, "nope"), undefined);
  assert.throws(() => readSessionRecord(home, "../keys"), { code: "ERR_ID_INVALID" });
  mkdirSync(home.path("sessions", "bad"));
  writeFileSync(home.path("sessions", "bad", "session.json"), '{"session_id":"bad"}');
  assert.throws(() => readSessionRecord(home, "bad"), { code: "ERR_HOME_CORRUPT" });
});

test("listSessionRecords: oldest first, leaving out folders without a valid record", () => {
  const home = tempHome();
  writeSessionRecord(home, session("later", "2026-11-26T19:00:00.000Z"));
  writeSessionRecord(home, session("earlier", "2026-11-26T18:00:00.000Z"));
  mkdirSync(home.path("sessions", "empty"));
  mkdirSync(home.path("sessions", "broken"));
  writeFileSync(home.path("sessions", "broken", "session.json"), "{");
  assert.deepEqual(
    listSessionRecords(home).map((s) => s.session_id),
    ["earlier", "later"],
  );
});
