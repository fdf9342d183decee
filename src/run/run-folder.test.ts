import assert from "node:assert/strict";
import { chmodSync, existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";

import { makeRunFolder, removeStaleRunFolders, runsBase } from "./run-folder.js";

test("stale run folders go; live, starting and foreign ones stay", () => {
  const tmp = mkdtempSync(join(tmpdir(), "vallignus-runs-"));
  try {
    const base = runsBase(tmp);
    const mine = makeRunFolder(base);
    const dead = join(base, "run-dead");
    mkdirSync(dead);
    writeFileSync(
      join(dead, "owner.json"),
      JSON.stringify({ pid: 2 ** 22 + 7, start: "1", bootId: null }),
    );
    const starting = join(base, "run-starting");
    mkdirSync(starting);
    const abandoned = join(base, "run-abandoned");
    mkdirSync(abandoned);
    const other = join(base, "not-a-run");
    mkdirSync(other);
    const now = Date.now();
    assert.deepEqual(removeStaleRunFolders(base, now), [dead]);
    assert.deepEqual(removeStaleRunFolders(base, now + 61_000), [abandoned, starting].sort());
    assert.ok(existsSync(mine) && existsSync(other));
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
});

test("a base folder that is not the user's own private folder is refused", () => {
  const tmp = mkdtempSync(join(tmpdir(), "vallignus-runs-"));
  try {
    const base = join(tmp, `vallignus-${process.getuid?.() ?? 0}`);
    mkdirSync(base);
    chmodSync(base, 0o777);
    assert.throws(() => runsBase(tmp), { code: "ERR_RUN_FOLDER" });
    chmodSync(base, 0o700);
    assert.equal(runsBase(tmp), base);
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
});
