import { randomBytes, type KeyObject } from "node:crypto";

import { SignJWT } from "jose";

import { ISSUER, type TokenClaims } from "./claims.js";

export interface TokenSubject {
  readonly agentId: string;
  readonly owner: string;
  readonly policyId: string;
  readonly policyVersion: number;
  readonly policySha256: string;
}

/** A fresh jti: 128 bits from the CSPRNG, in hex (so it is also a valid file name). */
export function newJti(random: (size: number) => Buffer = randomBytes): string {
  return random(16).toString("hex");
}

/** Signs a token binding one agent to one policy version for `ttlSeconds`. */
export async function signToken(
  subject: TokenSubject,
  key: { kid: string; privateKey: KeyObject },
  now: Date,
  ttlSeconds: number,
  jti: string = newJti(),
): Promise<{ token: string; claims: TokenClaims }> {
  const iat = Math.floor(now.getTime() / 1000);
  const claims: TokenClaims = {
    iss: ISSUER,
    sub: subject.agentId,
    agent_id: subject.agentId,
    owner: subject.owner,
    policy_id: subject.policyId,
    policy_version: subject.policyVersion,
    policy_sha256: subject.policySha256,
    iat,
    exp: iat + ttlSeconds,
    jti,
  };
  const token = await new SignJWT({ ...claims })
    .setProtectedHeader({ alg: "EdDSA", typ: "JWT", kid: key.kid })
    .sign(key.privateKey);
  return { token, claims };
}
