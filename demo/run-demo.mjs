// `npm run demo`: the whole product in one minute, offline, in a temporary home.
import { spawn, spawnSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { createServer } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";

import { fingerprint, startFakeLlm } from "./fake-llm.mjs";

const cli = fileURLToPath(new URL("../dist/cli/main.js", import.meta.url));
const agent = fileURLToPath(new URL("./agent.mjs", import.meta.url));
const root = mkdtempSync(join(tmpdir(), "vallignus-demo-"));
const env = { ...process.env, VALLIGNUS_HOME: join(root, "home") };
delete env.VALLIGNUS_TOKEN;
delete env.OPENAI_API_KEY;

const origin = createServer((req, res) => {
  res.setHeader("content-type", "application/json");
  res.end(JSON.stringify({ ok: true, path: req.url }));
});
await new Promise((resolve) => origin.listen(0, "127.0.0.1", resolve));
const port = origin.address().port;

// The real key: made up for the demo, held by the authority and the fake API only.
const realKey = `sk-proj-${randomBytes(30).toString("base64url").replace(/[-_]/g, "x")}`;
const llm = await startFakeLlm("api.openai.com", realKey);
const llmCa = join(root, "fake-api-ca.pem");
writeFileSync(llmCa, llm.caPem);

/** Commands that make no request may block; the fake APIs run in this process. */
function vallignus(args, { quiet = false, input, show = args.join(" ") } = {}) {
  console.log(`\n$ vallignus ${show}`);
  const r = spawnSync(process.execPath, [cli, ...args], { env, encoding: "utf8", input });
  if (!quiet) process.stdout.write(r.stdout);
  process.stderr.write(r.stderr);
  if (r.status !== 0) throw new Error(`vallignus ${args.slice(0, 2).join(" ")} failed`);
  return r.stdout.trim();
}

/** `run` is awaited without blocking, so the fake APIs can answer the agent. */
function vallignusRun(args, show) {
  console.log(`\n$ vallignus ${show}`);
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [cli, ...args], { env, stdio: "inherit" });
    child.on("close", resolve);
  });
}

const llmHost = `api.openai.com:${llm.port}`;
try {
  console.log(
    "Vallignus demo: a temporary home, local fake APIs, and an agent under the firewall.",
  );
  vallignus(["auth", "init"]);
  vallignus(["auth", "create-agent", "--agent-id", "demo-bot", "--owner", "you@example.com"]);
  vallignus(["auth", "set-secret", "--name", "OPENAI_API_KEY", "--hosts", llmHost], {
    input: `${realKey}\n`,
    show: `auth set-secret --name OPENAI_API_KEY --hosts ${llmHost}   (the key on stdin, never in argv)`,
  });
  vallignus(["auth", "list-secrets"]);
  console.log(`  (the real key's fingerprint is ${fingerprint(realKey)}; the agent never sees it)`);
  vallignus([
    "auth",
    "create-policy",
    "--policy-id",
    "demo",
    "--max-spend-usd",
    "0.005",
    "--allowed-domains",
    `api.demo.test:${port},${llmHost}`,
    "--secrets",
    "OPENAI_API_KEY",
    // Input free: each call reserves its output bound (100 tokens, $0.002) and costs its 30
    // output tokens ($0.0006), so the budget stops the agent after a handful of calls.
    "--price",
    "demo-gpt=0/20",
  ]);
  env.VALLIGNUS_TOKEN = vallignus(
    ["auth", "issue-token", "--agent-id", "demo-bot", "--policy-id", "demo", "--ttl", "10m"],
    { quiet: true },
  );
  console.log("  (token issued; it is never printed or stored, only its jti)");
  const resolves = [`api.demo.test:${port}:127.0.0.1`, `${llmHost}:127.0.0.1`];
  const status = await vallignusRun(
    [
      "run",
      "--upstream-ca",
      llmCa,
      ...resolves.flatMap((r) => ["--resolve", r]),
      "--",
      process.execPath,
      agent,
      String(port),
      String(llm.port),
    ],
    `run --upstream-ca fake-api-ca.pem ${resolves.map((r) => `--resolve ${r}`).join(" ")} -- node demo/agent.mjs`,
  );
  console.log(`  (the agent was stopped: vallignus run exited with status ${status})`);
  vallignus(["spend"]);
  vallignus(["audit", "query", "--decision", "deny"]);
  vallignus(["audit", "tail", "-n", "4"]);
  vallignus(["audit", "verify"]);
  console.log(
    `\nThe fake API got the real key on all ${llm.seen.calls} calls; the agent held only a stand-in.` +
      "\nEvery request was decided before it left; the log above is hash-chained and verified.",
  );
  // The demo is also a check: it fails when what it shows did not happen.
  if (status !== 4 || llm.seen.calls === 0 || llm.seen.wrongKeys !== 0) {
    console.error(
      `demo: expected exit 4 and only real keys at the fake API; got exit ${status}, ` +
        `${llm.seen.calls} real and ${llm.seen.wrongKeys} other keys`,
    );
    process.exitCode = 1;
  }
} finally {
  origin.close();
  llm.close();
  rmSync(root, { recursive: true, force: true });
}
