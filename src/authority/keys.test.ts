import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { sign, verify } from "node:crypto";
import { test } from "node:test";

import { newEd25519KeyPair } from "./keys.js";

test("a new Ed25519 key pair signs and verifies, and each pair is new", () => {
  const a = newEd25519KeyPair();
  const b = newEd25519KeyPair();
  assert.equal(a.privateKey.asymmetricKeyType, "ed25519");
  const message = Buffer.from("vallignus");
  const signature = sign(null, message, a.privateKey);
  assert.ok(verify(null, message, a.publicKey, signature));
  assert.ok(!verify(null, message, b.publicKey, signature));
  assert.notEqual(a.publicKey.export({ format: "jwk" }).x, b.publicKey.export({ format: "jwk" }).x);
});

test("making and exporting thousands of keys as JWK never hangs (Node 20's keygen-job deadlock)", () => {
  // generateKeyPairSync + export as JWK deadlocks within 5,000 rounds on Node 20 (it hung
  // `auth init` in a test run); run in a child so that a hang is a failure, not a stuck suite.
  const script = `
    import { newEd25519KeyPair } from ${JSON.stringify(new URL("./keys.ts", import.meta.url).href)};
    for (let i = 0; i < 5000; i++) {
      const { publicKey, privateKey } = newEd25519KeyPair();
      publicKey.export({ format: "jwk" });
      privateKey.export({ format: "jwk" });
    }
    console.log("made 5000");
  `;
  const r = spawnSync(process.execPath, ["--import", "tsx", "--input-type=module", "-e", script], {
    encoding: "utf8",
    timeout: 60_000,
  });
  assert.equal(r.signal, null, "the key loop hung and was killed");
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /made 5000/);
});
