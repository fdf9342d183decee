// Cost of signing and verifying one token, in-process: with an in-memory authority view, and
// through a real temporary VALLIGNUS_HOME (the lookups `run` and `verify-token` make on disk).
import { generateKeyPairSync } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

import {
  authorityView,
  createAgent,
  createPolicy,
  Home,
  initHome,
  fileAuthorityStore,
  issueTokenFrom,
  resolveHomeDir,
} from "../src/authority/index.js";
import { signToken, verifyToken, type TokenAuthorityView } from "../src/tokens/index.js";
import { NO_RULES } from "../test/helpers/policy-rules.js";

const WARM_UP_SECONDS = 0.3;
const RUN_SECONDS = 1;

/** Runs `op` back to back for `seconds`; returns how many completed and the time they took. */
async function timed(
  op: () => Promise<unknown>,
  seconds: number,
): Promise<{ ops: number; ms: number }> {
  let ops = 0;
  const start = performance.now();
  const end = start + seconds * 1000;
  while (performance.now() < end) {
    await op();
    ops++;
  }
  return { ops, ms: performance.now() - start };
}

interface Row {
  readonly name: string;
  readonly opsPerSecond: number;
  readonly meanMicros: number;
}

async function measure(name: string, op: () => Promise<unknown>): Promise<Row> {
  await timed(op, WARM_UP_SECONDS);
  const { ops, ms } = await timed(op, RUN_SECONDS);
  return { name, opsPerSecond: (ops * 1000) / ms, meanMicros: (ms * 1000) / ops };
}

async function mustAccept(token: string, view: TokenAuthorityView, now: Date): Promise<void> {
  const verdict = await verifyToken(token, view, now);
  if (!verdict.ok) throw new Error(`bench token refused: ${verdict.message}`);
}

const now = new Date();
const subject = {
  agentId: "bench-bot",
  owner: "bench@example.com",
  policyId: "bench",
  policyVersion: 1,
  policySha256: "a".repeat(64),
};
const { publicKey, privateKey } = generateKeyPairSync("ed25519");
const kid = "bench-key";
const memoryView: TokenAuthorityView = {
  findKey: (k) => (k === kid ? { publicKey, revoked: false } : undefined),
  isRevoked: () => false,
  findAgent: (id) =>
    id === subject.agentId ? { owner: subject.owner, disabled: false } : undefined,
  findPolicyHash: (id, version) =>
    id === subject.policyId && version === subject.policyVersion
      ? { sha256: subject.policySha256 }
      : undefined,
};

const root = mkdtempSync(join(tmpdir(), "vallignus-bench-tokens-"));
const previousHome = process.env["VALLIGNUS_HOME"];
try {
  const rows: Row[] = [];
  rows.push(await measure("signToken", () => signToken(subject, { kid, privateKey }, now, 3600)));

  const memoryToken = (await signToken(subject, { kid, privateKey }, now, 3600)).token;
  await mustAccept(memoryToken, memoryView, now);
  rows.push(
    await measure("verifyToken (in-memory view)", () => verifyToken(memoryToken, memoryView, now)),
  );

  process.env["VALLIGNUS_HOME"] = join(root, "home");
  const home = new Home(resolveHomeDir());
  await initHome(home, now, false);
  createAgent(home, subject.agentId, subject.owner, now);
  createPolicy(
    home,
    subject.policyId,
    { ...NO_RULES, max_spend_usd: "5", allowed_domains: ["api.openai.com", "*.example.com"] },
    now,
  );
  const homeToken = (
    await issueTokenFrom(
      fileAuthorityStore(home),
      subject.agentId,
      subject.policyId,
      undefined,
      3600,
      now,
    )
  ).token;
  const homeView = authorityView(home);
  await mustAccept(homeToken, homeView, now);
  rows.push(
    await measure("verifyToken (VALLIGNUS_HOME on disk)", () =>
      verifyToken(homeToken, homeView, now),
    ),
  );

  console.log(`Node ${process.version}, ${RUN_SECONDS} s per operation after a warm-up.\n`);
  console.log("| operation | ops/s | mean µs/op |");
  console.log("| --- | ---: | ---: |");
  for (const row of rows) {
    console.log(
      `| ${row.name} | ${Math.round(row.opsPerSecond).toLocaleString("en")} | ${row.meanMicros.toFixed(1)} |`,
    );
  }
} finally {
  if (previousHome === undefined) delete process.env["VALLIGNUS_HOME"];
  else process.env["VALLIGNUS_HOME"] = previousHome;
  rmSync(root, { recursive: true, force: true });
}
