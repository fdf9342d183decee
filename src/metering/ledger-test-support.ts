/* Helpers shared by the ledger's test files (ledger*.test.ts); not a test itself. */
import assert from "node:assert/strict";
import { spawnSync, type ChildProcess } from "node:child_process";
import { createHash } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { after } from "node:test";

import { Home } from "../authority/home.js";
import { VallignusError } from "../errors.js";
import { ledgerJournalPath, openLedger, type Ledger, type OpenLedgerOptions } from "./ledger.js";

export const REPO = fileURLToPath(new URL("../..", import.meta.url));
export const LEDGER_MODULE = pathToFileURL(
  fileURLToPath(new URL("./ledger.ts", import.meta.url)),
).href;
export const HOME_MODULE = pathToFileURL(
  fileURLToPath(new URL("../authority/home.ts", import.meta.url)),
).href;

const roots: string[] = [];
export const children: ChildProcess[] = [];
after(() => {
  for (const child of children) if (child.exitCode === null) child.kill("SIGKILL");
  for (const root of roots) rmSync(root, { recursive: true, force: true });
});

export function tempRoot(): string {
  const root = mkdtempSync(join(tmpdir(), "vallignus-ledger-"));
  roots.push(root);
  return root;
}

export function tempHome(): Home {
  const home = new Home(join(tempRoot(), "home"));
  home.ensureLayout();
  return home;
}

export const META = { provider: "openai", model: "gpt-4o-mini" };

export function options(overrides: Partial<OpenLedgerOptions> = {}): OpenLedgerOptions {
  return {
    jti: "jti-1",
    agentId: "support-bot",
    policyId: "support",
    policyVersion: 1,
    budgetNano: 1000,
    owner: { sessionId: "s-test", pid: process.pid },
    now: () => new Date("2026-11-26T18:15:00.000Z"),
    ...overrides,
  };
}

/** Opens a ledger that the test closes at the end, whatever happens. */
export const open: Ledger[] = [];
after(() => {
  for (const ledger of open) ledger.close();
});
export function openTracked(home: Home, overrides: Partial<OpenLedgerOptions> = {}): Ledger {
  const ledger = openLedger(home, options(overrides));
  open.push(ledger);
  return ledger;
}

/** A pid that certainly belonged to a process that has exited (spawnSync reaps it). */
export function deadPid(): number {
  const pid = spawnSync(process.execPath, ["-e", ""]).pid;
  assert.ok(pid > 0);
  return pid;
}

export function journalLines(home: Home, jti = "jti-1"): Record<string, unknown>[] {
  return readFileSync(ledgerJournalPath(home, jti), "utf8")
    .split("\n")
    .filter((l) => l !== "")
    .map((l) => JSON.parse(l) as Record<string, unknown>);
}

/** Encodes a line the way the ledger does, so a test can forge a well-formed one. */
export function forgeLine(fields: Record<string, unknown>): string {
  const body = JSON.stringify(fields);
  const ck = createHash("sha256").update(body).digest("hex").slice(0, 16);
  return `${body.slice(0, -1)},"ck":"${ck}"}\n`;
}

/**
 * Replays a journal independently of the ledger's own fold and checks that at no point did
 * spent + reserved exceed the budget through a reservation (settles may overshoot: spent is spent).
 */
export function replayJournal(lines: Record<string, unknown>[]): {
  budget: number;
  spent: number;
  reserved: number;
  reservations: number;
} {
  const budget = lines[0]?.["budget_nano"] as number;
  const open = new Map<string, number>();
  let spent = 0;
  let reserved = 0;
  let reservations = 0;
  lines.forEach((line, i) => {
    assert.equal(line["seq"], i);
    if (line["type"] === "reserve") {
      const amount = line["amount_nano"] as number;
      assert.ok(!open.has(line["id"] as string), "reservation ids are unique");
      reserved += amount;
      reservations++;
      assert.ok(spent + reserved <= budget, `line ${i}: ${spent} + ${reserved} > ${budget}`);
      open.set(line["id"] as string, amount);
    } else if (line["type"] === "settle" || line["type"] === "recover") {
      const amount = open.get(line["id"] as string);
      assert.ok(amount !== undefined);
      reserved -= amount;
      spent += (line["actual_nano"] ?? line["charged_nano"]) as number;
      open.delete(line["id"] as string);
    }
  });
  return { budget, spent, reserved, reservations };
}

export function assertLedgerError(fn: () => unknown, code: string): void {
  assert.throws(fn, (err: unknown) => err instanceof VallignusError && err.code === code);
}
