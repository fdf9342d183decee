// `npm run demo`: the whole product in one minute, offline, in a temporary home.
import { spawn, spawnSync } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { createServer } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";

const cli = fileURLToPath(new URL("../dist/cli/main.js", import.meta.url));
const agent = fileURLToPath(new URL("./agent.mjs", import.meta.url));
const root = mkdtempSync(join(tmpdir(), "vallignus-demo-"));
const env = { ...process.env, VALLIGNUS_HOME: join(root, "home") };
delete env.VALLIGNUS_TOKEN;

const origin = createServer((req, res) => {
  res.setHeader("content-type", "application/json");
  res.end(JSON.stringify({ ok: true, path: req.url }));
});
await new Promise((resolve) => origin.listen(0, "127.0.0.1", resolve));
const port = origin.address().port;

/** Commands that make no request may block; the fake API runs in this process. */
function vallignus(args, { quiet = false } = {}) {
  console.log(`\n$ vallignus ${args.join(" ")}`);
  const r = spawnSync(process.execPath, [cli, ...args], { env, encoding: "utf8" });
  if (!quiet) process.stdout.write(r.stdout);
  process.stderr.write(r.stderr);
  if (r.status !== 0) throw new Error(`vallignus ${args.slice(0, 2).join(" ")} failed`);
  return r.stdout.trim();
}

/** `run` is awaited without blocking, so the fake API can answer the agent. */
function vallignusRun(args, show) {
  console.log(`\n$ vallignus ${show}`);
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [cli, ...args], { env, stdio: "inherit" });
    child.on("close", resolve);
  });
}

try {
  console.log(
    "Vallignus demo: a temporary home, a local fake API, and an agent under the firewall.",
  );
  vallignus(["auth", "init"]);
  vallignus(["auth", "create-agent", "--agent-id", "demo-bot", "--owner", "you@example.com"]);
  vallignus([
    "auth",
    "create-policy",
    "--policy-id",
    "demo",
    "--max-spend-usd",
    "1",
    "--allowed-domains",
    `api.demo.test:${port}`,
  ]);
  env.VALLIGNUS_TOKEN = vallignus(
    ["auth", "issue-token", "--agent-id", "demo-bot", "--policy-id", "demo", "--ttl", "10m"],
    {
      quiet: true,
    },
  );
  console.log("  (token issued; it is never printed or stored, only its jti)");
  const status = await vallignusRun(
    [
      "run",
      "--resolve",
      `api.demo.test:${port}:127.0.0.1`,
      "--",
      process.execPath,
      agent,
      String(port),
    ],
    `run --resolve api.demo.test:${port}:127.0.0.1 -- node demo/agent.mjs`,
  );
  console.log(`  (the agent exited with status ${status})`);
  vallignus(["audit", "tail", "-n", "6"]);
  vallignus(["audit", "verify"]);
  console.log(
    "\nEvery request was decided before it left; the log above is hash-chained and verified.",
  );
} finally {
  origin.close();
  rmSync(root, { recursive: true, force: true });
}
