import assert from "node:assert/strict";
import { test } from "node:test";

import { RunStop, STOP_GRACE_MS, type StopEffects, type StopReason } from "./run-stop.js";

/** Effects that record what a stop did, in order; `later` runs only when the test says so. */
function fakeEffects(overrides: Partial<StopEffects> = {}) {
  const log: string[] = [];
  const pending: { fn: () => void; ms: number }[] = [];
  const effects: StopEffects = {
    report: (line) => log.push(`report ${line}`),
    record: (event, reason) => log.push(`record ${event} ${reason}`),
    dropConnections: () => log.push("drop"),
    signalGroup: (signal) => log.push(`signal ${signal}`),
    later: (fn, ms) => pending.push({ fn, ms }),
    ...overrides,
  };
  return { effects, log, pending };
}

const CASES: [StopReason, string, string | undefined, string][] = [
  ["token_revoked", "ERR_RUN_STOPPED_TOKEN_REVOKED", "token_revoked_live", "token_revoked"],
  ["token_expired", "ERR_RUN_STOPPED_TOKEN_EXPIRED", "token_expired_live", "token_expired"],
  ["agent_disabled", "ERR_RUN_STOPPED_AGENT_DISABLED", "agent_disabled_live", "agent_disabled"],
  ["max_runtime", "ERR_RUN_STOPPED_MAX_RUNTIME", "limit_reached", "request_limit_exceeded"],
  ["budget_exceeded", "ERR_RUN_STOPPED_BUDGET_EXCEEDED", "budget_exhausted", "budget_exceeded"],
  ["audit_unwritable", "ERR_RUN_STOPPED_AUDIT_WRITE", undefined, "store_unavailable"],
  ["ledger_unwritable", "ERR_RUN_STOPPED_LEDGER_WRITE", undefined, "store_unavailable"],
];

for (const [reason, code, event, deny] of CASES) {
  test(`a ${reason} stop: one line, ${event ?? "no event"}, TERM now, KILL after the grace`, () => {
    const { effects, log, pending } = fakeEffects();
    const stop = new RunStop(effects);
    assert.equal(stop.denyReason(), undefined);
    stop.stop(reason);
    assert.equal(stop.reason, reason);
    assert.equal(stop.denyReason(), deny);
    const reports = log.filter((l) => l.startsWith("report "));
    assert.equal(reports.length, 1);
    assert.match(
      reports[0] ?? "",
      new RegExp(`^report vallignus: run stopped: .+ \\[${code}\\]\\n$`),
    );
    assert.deepEqual(
      log.filter((l) => l.startsWith("record ")),
      event === undefined ? [] : [`record ${event} ${reason}`],
    );
    assert.deepEqual(log.slice(-2), ["drop", "signal SIGTERM"]);
    const [kill] = pending;
    assert.ok(kill !== undefined && pending.length === 1);
    assert.equal(kill.ms, STOP_GRACE_MS);
    kill.fn();
    assert.equal(log.at(-1), "signal SIGKILL");
  });
}

test("the first reason wins; later stops do nothing", () => {
  const { effects, log } = fakeEffects();
  const stop = new RunStop(effects);
  stop.stop("token_revoked");
  const after = log.length;
  stop.stop("budget_exceeded");
  stop.stop("audit_unwritable");
  assert.equal(stop.reason, "token_revoked");
  assert.equal(log.length, after);
});

test("the cause's detail is named on the same one line", () => {
  const { effects, log } = fakeEffects();
  new RunStop(effects).stop("audit_unwritable", "cannot append: ENOSPC\nsecond line");
  assert.deepEqual(
    log.filter((l) => l.startsWith("report ")),
    [
      "report vallignus: run stopped: the audit log cannot be written (cannot append: ENOSPC) [ERR_RUN_STOPPED_AUDIT_WRITE]\n",
    ],
  );
});

test("an audit log or proxy that throws while stopping does not keep the group running", () => {
  const { effects, log, pending } = fakeEffects({
    record: () => {
      throw new Error("disk full");
    },
    dropConnections: () => {
      throw new Error("already closed");
    },
  });
  new RunStop(effects).stop("agent_disabled");
  assert.equal(log.at(-1), "signal SIGTERM");
  assert.equal(pending.length, 1);
});
