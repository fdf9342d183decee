import assert from "node:assert/strict";
import { appendFileSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { test } from "node:test";

import { VallignusError } from "../errors.js";
import {
  fileLedgerStore,
  ledgerJournalPath,
  listLedgers,
  openLedger,
  readLedgerSummary,
  recoverDeadReservations,
} from "./ledger.js";
import {
  assertLedgerError,
  journalLines,
  META,
  openTracked,
  options,
  tempHome,
} from "./ledger-test-support.js";

// ---------------------------------------------------------------------------------------------

test("reserve and settle keep budget, spent, reserved and left exact", () => {
  const home = tempHome();
  const ledger = openTracked(home);
  assert.deepEqual(ledger.state(), {
    budgetNano: 1000,
    spentNano: 0,
    reservedNano: 0,
    leftNano: 1000,
    calls: 0,
    openReservations: 0,
  });
  const a = ledger.reserve(400, META);
  assert.ok(a.ok);
  assert.deepEqual(a.state, {
    budgetNano: 1000,
    spentNano: 0,
    reservedNano: 400,
    leftNano: 600,
    calls: 0,
    openReservations: 1,
  });
  const b = ledger.reserve(600, META);
  assert.ok(b.ok);
  assert.equal(b.state.leftNano, 0);
  assert.notEqual(a.id, b.id);
  assert.deepEqual(ledger.settle(a.id, 250, { inputTokens: 10, outputTokens: 5 }), {
    budgetNano: 1000,
    spentNano: 250,
    reservedNano: 600,
    leftNano: 150,
    calls: 1,
    openReservations: 1,
  });
  // More than the bound: recorded anyway; left never goes below 0.
  assert.deepEqual(ledger.settle(b.id, 900, { charged_full: true, reason: "over bound" }), {
    budgetNano: 1000,
    spentNano: 1150,
    reservedNano: 0,
    leftNano: 0,
    calls: 2,
    openReservations: 0,
  });
  const settle = journalLines(home).find((l) => l["id"] === a.id && l["type"] === "settle");
  assert.equal(settle?.["input_tokens"], 10);
  assert.equal(settle["output_tokens"], 5);
});

test("a reservation that does not fit is refused and writes nothing", () => {
  const home = tempHome();
  const ledger = openTracked(home);
  assert.ok(ledger.reserve(700, META).ok);
  const size = statSync(ledgerJournalPath(home, "jti-1")).size;
  const refused = ledger.reserve(301, META);
  assert.equal(refused.ok, false);
  assert.equal(refused.state.reservedNano, 700);
  assert.equal(statSync(ledgerJournalPath(home, "jti-1")).size, size);
  assert.ok(ledger.reserve(300, META).ok, "exactly the budget fits");
  assert.equal(ledger.reserve(0, META).ok, true, "a free request fits while nothing is over");
});

test("settle is idempotent per id; an unknown id and a bad amount are errors", () => {
  const home = tempHome();
  const ledger = openTracked(home);
  const r = ledger.reserve(500, META);
  assert.ok(r.ok);
  const first = ledger.settle(r.id, 120);
  const lines = journalLines(home).length;
  assert.deepEqual(ledger.settle(r.id, 999), first);
  assert.deepEqual(ledger.settle(r.id, 120), first);
  assert.equal(journalLines(home).length, lines, "a repeated settle writes nothing");
  assertLedgerError(() => ledger.settle("r99", 1), "ERR_LEDGER_UNKNOWN_RESERVATION");
  assertLedgerError(() => ledger.reserve(-1, META), "ERR_LEDGER_AMOUNT");
  assertLedgerError(() => ledger.reserve(1.5, META), "ERR_LEDGER_AMOUNT");
  assertLedgerError(() => ledger.reserve(Number.MAX_SAFE_INTEGER + 2, META), "ERR_LEDGER_AMOUNT");
  assertLedgerError(() => ledger.settle(r.id, Number.NaN), "ERR_LEDGER_AMOUNT");
});

test("the journal holds the ledger's metadata, one checked line per event, mode 0600", () => {
  const home = tempHome();
  const ledger = openTracked(home, { jti: "abc123", policyVersion: 3, budgetNano: 5_250_000_000 });
  const r = ledger.reserve(10, META);
  assert.ok(r.ok);
  ledger.settle(r.id, 0, { reason: "upstream connect failed" });
  const lines = journalLines(home, "abc123");
  assert.deepEqual(
    { ...lines[0], ck: undefined },
    {
      seq: 0,
      type: "open",
      v: 1,
      jti: "abc123",
      agent_id: "support-bot",
      policy_id: "support",
      policy_version: 3,
      budget_nano: 5_250_000_000,
      created_at: "2026-11-26T18:15:00.000Z",
      ck: undefined,
    },
  );
  assert.deepEqual(
    lines.map((l) => l["type"]),
    ["open", "reserve", "settle"],
  );
  assert.equal(lines[1]?.["session_id"], "s-test");
  assert.equal(lines[1]["pid"], process.pid);
  assert.equal(lines[1]["model"], "gpt-4o-mini");
  for (const line of lines) assert.match(String(line["ck"]), /^[0-9a-f]{16}$/);
  assert.equal(statSync(ledgerJournalPath(home, "abc123")).mode & 0o777, 0o600);
});

test("a second open shares and continues the same state; a different budget is refused", () => {
  const home = tempHome();
  const first = openTracked(home);
  const r = first.reserve(300, META);
  assert.ok(r.ok);
  const second = openTracked(home, { owner: { sessionId: "s-two", pid: process.pid } });
  assert.equal(second.state().reservedNano, 300);
  assert.equal(second.reserve(701, META).ok, false, "the first open's reservation counts");
  assert.ok(second.reserve(700, META).ok);
  assert.equal(first.reserve(1, META).ok, false, "and the second's counts for the first");
  // The first settles its own reservation; the second sees it.
  first.settle(r.id, 100);
  assert.equal(second.state().spentNano, 100);
  first.close();
  second.close();

  const later = openTracked(home);
  assert.deepEqual(later.state(), {
    budgetNano: 1000,
    spentNano: 100,
    reservedNano: 700,
    leftNano: 200,
    calls: 1,
    openReservations: 1,
  });
  assertLedgerError(() => openLedger(home, options({ budgetNano: 2000 })), "ERR_LEDGER_MISMATCH");
  assertLedgerError(() => openLedger(home, options({ policyVersion: 2 })), "ERR_LEDGER_MISMATCH");
  assertLedgerError(() => openLedger(home, options({ agentId: "other" })), "ERR_LEDGER_MISMATCH");
});

test("bad input is refused before anything is written; a closed ledger refuses work", () => {
  const home = tempHome();
  assertLedgerError(() => openLedger(home, options({ jti: "../etc" })), "ERR_LEDGER_INPUT");
  assertLedgerError(() => openLedger(home, options({ policyVersion: 0 })), "ERR_LEDGER_INPUT");
  assertLedgerError(() => openLedger(home, options({ budgetNano: -5 })), "ERR_LEDGER_INPUT");
  assertLedgerError(
    () => openLedger(home, options({ owner: { sessionId: "s", pid: 0 } })),
    "ERR_LEDGER_INPUT",
  );
  assert.deepEqual(listLedgers(home), []);
  const ledger = openLedger(home, options());
  ledger.close();
  assertLedgerError(() => ledger.reserve(1, META), "ERR_LEDGER_CLOSED");
});

// ---------------------------------------------------------------------------------------------
// Damage

test("a torn last line (a write cut short) is ignored, then cut off by the next writer", () => {
  const home = tempHome();
  const ledger = openTracked(home);
  const r = ledger.reserve(400, META);
  assert.ok(r.ok);
  ledger.close();
  const path = ledgerJournalPath(home, "jti-1");
  const good = readFileSync(path, "utf8");
  appendFileSync(path, '{"seq":2,"type":"reserve","id":"r2","amount_nano":5');
  // A reader ignores it and leaves the file alone.
  assert.equal(readLedgerSummary(home, "jti-1")?.reservedNano, 400);
  assert.notEqual(readFileSync(path, "utf8"), good);
  // A writer cuts it off before appending, so lines never glue together.
  const again = openTracked(home);
  assert.equal(readFileSync(path, "utf8"), good);
  assert.ok(again.reserve(100, META).ok);
  again.settle(r.id, 400);
  const lines = journalLines(home);
  assert.deepEqual(
    lines.map((l) => l["seq"]),
    [0, 1, 2, 3],
  );
  assert.equal(readLedgerSummary(home, "jti-1")?.spentNano, 400);
});

test("a damaged line that is not an unfinished tail is ERR_LEDGER_CORRUPT, everywhere", () => {
  const cases: [string, (text: string) => string][] = [
    ["a changed amount (checksum)", (t) => t.replace('"amount_nano":400', '"amount_nano":40')],
    ["garbage in the middle", (t) => t.replace(/\n/, "\nnot json at all\n")],
    ["a complete last line with a bad checksum", (t) => `${t}{"seq":3,"ck":"0000000000000000"}\n`],
    [
      "a removed line (seq gap)",
      (t) =>
        t
          .split("\n")
          .filter((_, i) => i !== 1)
          .join("\n"),
    ],
    ["an empty file", () => ""],
  ];
  for (const [name, damage] of cases) {
    const home = tempHome();
    const ledger = openLedger(home, options());
    const r = ledger.reserve(400, META);
    assert.ok(r.ok);
    ledger.settle(r.id, 300);
    ledger.close();
    const path = ledgerJournalPath(home, "jti-1");
    writeFileSync(path, damage(readFileSync(path, "utf8")));
    for (const [what, fn] of [
      ["openLedger", () => openLedger(home, options())],
      ["readLedgerSummary", () => readLedgerSummary(home, "jti-1")],
      ["listLedgers", () => listLedgers(home)],
      ["recoverDeadReservations", () => recoverDeadReservations(home)],
    ] as const) {
      assert.throws(
        fn,
        (err: unknown) => err instanceof VallignusError && err.code === "ERR_LEDGER_CORRUPT",
        `${name}: ${what}`,
      );
    }
  }
});

test("damage appearing under an open ledger stops it for good (fail closed)", () => {
  const home = tempHome();
  const ledger = openTracked(home);
  assert.ok(ledger.reserve(100, META).ok);
  appendFileSync(ledgerJournalPath(home, "jti-1"), "garbage\n");
  assertLedgerError(() => ledger.reserve(1, META), "ERR_LEDGER_CORRUPT");
  assertLedgerError(() => ledger.state(), "ERR_LEDGER_CORRUPT");
});

test("listLedgers summarises every token, oldest first", () => {
  const home = tempHome();
  const a = openTracked(home, {
    jti: "b-token",
    budgetNano: 5_000_000_000,
    now: () => new Date("2026-11-26T10:00:00.000Z"),
  });
  const r = a.reserve(1_000_000, META);
  assert.ok(r.ok);
  a.settle(r.id, 250_000);
  assert.ok(a.reserve(2_000_000, META).ok);
  openTracked(home, {
    jti: "a-token",
    agentId: "other",
    policyVersion: 2,
    now: () => new Date("2026-11-26T11:00:00.000Z"),
  });
  assert.deepEqual(listLedgers(home), [
    {
      jti: "b-token",
      agent_id: "support-bot",
      policy_id: "support",
      policy_version: 1,
      created_at: "2026-11-26T10:00:00.000Z",
      budgetNano: 5_000_000_000,
      spentNano: 250_000,
      reservedNano: 2_000_000,
      leftNano: 4_997_750_000,
      calls: 1,
      openReservations: 1,
    },
    {
      jti: "a-token",
      agent_id: "other",
      policy_id: "support",
      policy_version: 2,
      created_at: "2026-11-26T11:00:00.000Z",
      budgetNano: 1000,
      spentNano: 0,
      reservedNano: 0,
      leftNano: 1000,
      calls: 0,
      openReservations: 0,
    },
  ]);
  assert.equal(readLedgerSummary(home, "missing"), undefined);
});

test("the file ledger store is the same ledgers, reached through the LedgerStore interface", () => {
  const home = tempHome();
  const store = fileLedgerStore(home);
  const ledger = store.open(options());
  const reserved = ledger.reserve(300, META);
  assert.ok(reserved.ok);
  ledger.settle(reserved.id, 100);
  ledger.close();
  assert.equal(store.readSummary("jti-1")?.spentNano, 100);
  assert.deepEqual(store.list(), listLedgers(home));
  assert.deepEqual(store.recoverDead(), []);
  assert.equal(readLedgerSummary(home, "jti-1")?.calls, 1);
});
