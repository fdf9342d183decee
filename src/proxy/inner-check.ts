import type { IncomingMessage } from "node:http";

import type { CompiledPolicy } from "../policy/index.js";
import type { Scrubber, SecretSnapshot } from "../secrets/index.js";
import type { TunnelContext } from "./intercept.js";
import type { Judgement } from "./judgement.js";
import type { SecretSource } from "./ports.js";
import { checkSecrets, readWholeBody, takeSnapshot } from "./secret-check.js";

type Denial = Extract<Judgement, { allow: false }>;

/** A request inside an intercepted tunnel, checked: what to send, or why nothing may be. */
export type InnerChecked =
  | {
      readonly ok: true;
      readonly body: Buffer;
      readonly path: string;
      readonly headers: readonly string[];
      /** Names of the secrets swapped in. */
      readonly secret: string | undefined;
      /** Set when the run holds secrets: their values are masked in the answer. */
      readonly secrets: { snapshot: SecretSnapshot; scrubber: Scrubber } | undefined;
    }
  | { readonly ok: false; readonly denial: Denial };

/**
 * What every request seen inside a tunnel passes before anything else of it is judged: the
 * policy's request rules (method and path), its body read whole (so that nothing leaves before
 * it is checked), and the run's secrets (stand-ins swapped, values and misplaced stand-ins
 * refused). `headers` are the request's headers as they would be forwarded.
 */
export async function checkInnerRequest(
  ports: { readonly policy: CompiledPolicy; readonly secrets?: SecretSource | undefined },
  req: IncomingMessage,
  tunnel: TunnelContext,
  headers: readonly string[],
  bodyLimit: number,
): Promise<InnerChecked> {
  const path = req.url ?? "/";
  const rule = ports.policy.requestRules.decide({
    method: req.method ?? "",
    host: tunnel.host,
    port: tunnel.port,
    path,
  });
  if (rule !== "allow") return { ok: false, denial: { allow: false, reason: rule } };
  const body = await readWholeBody(req, bodyLimit);
  if (body === undefined) {
    const error = "request body too large or unreadable";
    return { ok: false, denial: { allow: false, reason: "malformed_request", error } };
  }
  const taken = takeSnapshot(ports.secrets);
  if ("denial" in taken) return { ok: false, denial: taken.denial };
  const { snapshot } = taken;
  if (snapshot === undefined)
    return { ok: true, body, path, headers, secret: undefined, secrets: undefined };
  const target = { host: tunnel.host, port: tunnel.port, path, headers };
  const checked = await checkSecrets(snapshot, req, target, body);
  if (!checked.ok) return checked;
  const secrets = { snapshot, scrubber: checked.scrubber };
  return {
    ok: true,
    body,
    path: checked.path,
    headers: checked.headers,
    secret: checked.secret,
    secrets,
  };
}
