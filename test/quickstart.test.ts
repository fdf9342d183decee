import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdirSync, readFileSync, symlinkSync } from "node:fs";
import { join, resolve } from "node:path";
import { test } from "node:test";

import { CLI, makeTempHome } from "./helpers/cli.js";

const README = resolve(import.meta.dirname, "../README.md");

/** The README's quickstart, steps 1-4, run as written by bash with `vallignus` on PATH. */
test("the README quickstart works as written", (t) => {
  const readme = readFileSync(README, "utf8");
  const block = /<!-- quickstart:begin -->\s*```sh\n([\s\S]*?)```\s*<!-- quickstart:end -->/.exec(
    readme,
  )?.[1];
  assert.ok(block !== undefined, "README has a quickstart block");
  const home = makeTempHome();
  t.after(() => {
    home.cleanup();
  });
  const bin = join(home.root, "bin");
  mkdirSync(bin);
  symlinkSync(CLI, join(bin, "vallignus"));
  const script = `set -euo pipefail\n${block}\necho "JTI=$(vallignus auth inspect-token --json "$VALLIGNUS_TOKEN" | python3 -c 'import json,sys; print(json.load(sys.stdin)["claims"]["jti"])')"\n`;
  const r = spawnSync("bash", ["-c", script], {
    env: {
      ...home.env,
      PATH: `${bin}:${process.env["PATH"] ?? ""}`,
      HOME: home.root,
      VALLIGNUS_HOME: home.home,
    },
    encoding: "utf8",
  });
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /initialized /);
  assert.match(r.stdout, /created agent support-bot/);
  assert.match(r.stdout, /created policy support v1/);
  assert.match(r.stdout, /^ok: jti [0-9a-f]{32}, agent support-bot, policy support v1/m);
  assert.match(r.stdout, /accepted: run would take this token/);
  assert.match(r.stdout, /^JTI=[0-9a-f]{32}$/m);
  // Step 5: example.com is not in the policy, so curl prints the deny JSON.
  assert.match(
    r.stdout,
    /\{"decision":"deny","agent_id":"support-bot","owner":"you@example.com","policy_id":"support","policy_version":1,"deny_reason":"domain_not_allowed"/,
  );
  assert.match(r.stdout, /deny +GET http:\/\/example\.com:80\/ -> 403 \(domain_not_allowed\)/);
  const agents = JSON.parse(home.ok("auth", "list-agents", "--json")) as {
    agent_id: string;
    owner: string;
  }[];
  assert.deepEqual(
    agents.map((a) => [a.agent_id, a.owner]),
    [["support-bot", "you@example.com"]],
  );
  const policy = JSON.parse(
    home.ok("auth", "show-policy", "--policy-id", "support", "--json"),
  ) as Record<string, unknown>;
  assert.deepEqual(policy["allowed_domains"], ["api.anthropic.com", "api.openai.com"]);
  assert.equal(policy["max_spend_usd"], "5");
});
