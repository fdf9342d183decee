import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after } from "node:test";

import { Home } from "../../src/authority/index.js";
import type { CommandContext } from "../../src/cli/command-context.js";
import { createPrinter } from "../../src/cli/output.js";

/** A command context whose printer writes, uncoloured, into `text()`. */
export function captureContext(home: Home): CommandContext & { text(): string } {
  let buffer = "";
  const stream = {
    isTTY: false,
    write: (chunk: string) => {
      buffer += chunk;
      return true;
    },
  } as unknown as NodeJS.WriteStream;
  return { home, now: () => new Date(), out: createPrinter(stream, {}), text: () => buffer };
}

const roots: string[] = [];
after(() => {
  for (const root of roots) rmSync(root, { recursive: true, force: true });
});

/** A laid-out home in a temporary folder, removed after the test file. */
export function tempCommandHome(prefix: string, initialized = true): Home {
  const root = mkdtempSync(join(tmpdir(), prefix));
  roots.push(root);
  const home = new Home(join(root, "home"));
  home.ensureLayout();
  // `auth init` is not under test here: an active key name is what "initialized" means.
  if (initialized) writeFileSync(home.path("keys", "active"), "test-kid\n");
  return home;
}
