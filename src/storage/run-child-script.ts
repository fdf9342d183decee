/* For tests: another process doing something to a journal or lock while the test's process runs. */
import { spawn } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pathToFileURL } from "node:url";

/** `import` text for a module of this repository, by its path from src/. */
export function srcModule(pathFromSrc: string): string {
  return JSON.stringify(pathToFileURL(join(import.meta.dirname, "..", pathFromSrc)).href);
}

/**
 * Runs `script` (ESM; TypeScript imports allowed) in a child process. `firstLine` resolves once
 * it writes to stdout; `exited` gives its exit status and all it wrote. `limitBlocks` caps the
 * size of any file it writes (RLIMIT_FSIZE, 512-byte blocks): writes past it fail with EFBIG
 * (Node ignores SIGXFSZ), as on a full disk.
 */
export function runChildScript(script: string, limitBlocks?: number) {
  const dir = mkdtempSync(join(tmpdir(), "vallignus-child-"));
  const file = join(dir, "child.mjs");
  writeFileSync(file, script);
  const node = `exec ${JSON.stringify(process.execPath)} --import tsx ${JSON.stringify(file)}`;
  const command = limitBlocks === undefined ? node : `ulimit -f ${String(limitBlocks)}; ${node}`;
  const child = spawn("sh", ["-c", command], { stdio: ["ignore", "pipe", "inherit"] });
  let stdout = "";
  child.stdout.setEncoding("utf8").on("data", (chunk: string) => (stdout += chunk));
  const firstLine = new Promise<void>((resolve) => {
    child.stdout.once("data", () => {
      resolve();
    });
  });
  const exited = new Promise<{ code: number | null; stdout: string }>((resolve) =>
    child.once("exit", (code) => {
      rmSync(dir, { recursive: true, force: true });
      resolve({ code, stdout });
    }),
  );
  return { firstLine, exited };
}
