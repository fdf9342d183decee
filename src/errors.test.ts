import assert from "node:assert/strict";
import { test } from "node:test";

import { ERROR_CODES, EXIT, VallignusError, errorLine, type ErrorCode } from "./errors.js";

test("every code in the catalogue is ERR_<AREA>_<WHAT> and has one of the contract's exit statuses", () => {
  const statuses = new Set<number>(Object.values(EXIT));
  for (const [code, status] of Object.entries(ERROR_CODES)) {
    assert.match(code, /^ERR_[A-Z]+(_[A-Z0-9]+)+$|^ERR_INTERNAL$/, code);
    assert.ok(statuses.has(status) && status > 0, `${code}: ${String(status)}`);
  }
});

test("an error's exit status is its code's, from the catalogue", () => {
  const cases: [ErrorCode, number][] = [
    ["ERR_CLI_USAGE", 2],
    ["ERR_TOKEN_MISSING", 3],
    ["ERR_TOKEN_EXPIRED", 3],
    ["ERR_RUN_STOPPED_BUDGET_EXCEEDED", 4],
    ["ERR_HOME_CORRUPT", 1],
  ];
  for (const [code, status] of cases) {
    const err = new VallignusError(code, "m");
    assert.equal(err.exitStatus, status, code);
    assert.equal(err.code, code);
  }
  assert.equal(errorLine("ERR_CLI_USAGE", "bad flag"), "vallignus: bad flag [ERR_CLI_USAGE]\n");
});
