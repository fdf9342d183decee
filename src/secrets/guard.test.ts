import assert from "node:assert/strict";
import { test } from "node:test";

import { compileHostSet } from "../policy/index.js";
import { guardHost, guardRequest, type OutboundRequest, type RunSecret } from "./guard.js";

// Values and stand-ins as a run would have them (the stand-ins keep the public prefix).
const OPENAI_VALUE = "sk-proj-REALrealREALreal0123456789abcdef";
const OPENAI_STAND_IN = "sk-proj-STANDstandSTANDstand01234567";
const GEMINI_VALUE = "AIzaREALgeminiVALUE0123456789abcdefgh$&";
const GEMINI_STAND_IN = "GEMINIstandINgemini0123456789abcdefghij";
const OTHER_VALUE = "ghp_OTHERotherOTHERother0123456789abcd";

const openai: RunSecret = {
  name: "OPENAI_API_KEY",
  standIn: OPENAI_STAND_IN,
  value: OPENAI_VALUE,
  hosts: compileHostSet(["api.openai.com"]),
  placements: [{ kind: "header", name: "authorization", template: "Bearer {secret}" }],
};
const gemini: RunSecret = {
  name: "GEMINI_API_KEY",
  standIn: GEMINI_STAND_IN,
  value: GEMINI_VALUE,
  hosts: compileHostSet(["generativelanguage.googleapis.com"]),
  placements: [
    { kind: "header", name: "x-goog-api-key", template: null },
    { kind: "query", name: "key" },
  ],
};
const snapshot = {
  usable: [openai, gemini],
  values: [
    { name: "OPENAI_API_KEY", value: OPENAI_VALUE },
    { name: "GEMINI_API_KEY", value: GEMINI_VALUE },
    { name: "GITHUB_TOKEN", value: OTHER_VALUE },
  ],
};

function request(fields: Partial<OutboundRequest>): OutboundRequest {
  return {
    host: "api.openai.com",
    port: 443,
    path: "/v1/chat/completions",
    headers: ["Host", "api.openai.com", "Content-Type", "application/json"],
    body: Buffer.from('{"model":"gpt-4o"}'),
    ...fields,
  };
}

const GEMINI_HOST = "generativelanguage.googleapis.com";
const basic = (text: string): string => `Basic ${Buffer.from(text).toString("base64")}`;

/** [why, request fields, the swapped path, the swapped headers, used]. */
const swaps: [string, Partial<OutboundRequest>, string, string[], string[]][] = [
  [
    "header with template: the header becomes the template",
    { headers: ["Authorization", `Bearer ${OPENAI_STAND_IN}`] },
    "/v1/chat/completions",
    ["Authorization", `Bearer ${OPENAI_VALUE}`],
    ["OPENAI_API_KEY"],
  ],
  [
    "header name case does not matter, and each header of that name is handled",
    { headers: ["AUTHORIZATION", `bearer ${OPENAI_STAND_IN}`, "authorization", OPENAI_STAND_IN] },
    "/v1/chat/completions",
    ["AUTHORIZATION", `Bearer ${OPENAI_VALUE}`, "authorization", `Bearer ${OPENAI_VALUE}`],
    ["OPENAI_API_KEY"],
  ],
  [
    "header without template: replaced in place, taken literally ($& stays)",
    { host: GEMINI_HOST, headers: ["X-Goog-Api-Key", GEMINI_STAND_IN] },
    "/v1/chat/completions",
    ["X-Goog-Api-Key", GEMINI_VALUE],
    ["GEMINI_API_KEY"],
  ],
  [
    "query placement: the value is percent-encoded",
    { host: GEMINI_HOST, path: `/v1/models?alt=sse&key=${GEMINI_STAND_IN}`, headers: [] },
    `/v1/models?alt=sse&key=${encodeURIComponent(GEMINI_VALUE)}`,
    [],
    ["GEMINI_API_KEY"],
  ],
  [
    "both placements of one secret in one request",
    {
      host: GEMINI_HOST,
      path: `/v1/models?key=${GEMINI_STAND_IN}`,
      headers: ["x-goog-api-key", GEMINI_STAND_IN],
    },
    `/v1/models?key=${encodeURIComponent(GEMINI_VALUE)}`,
    ["x-goog-api-key", GEMINI_VALUE],
    ["GEMINI_API_KEY"],
  ],
  [
    "nothing to do: ok, headers unchanged, nothing used",
    {},
    "/v1/chat/completions",
    ["Host", "api.openai.com", "Content-Type", "application/json"],
    [],
  ],
];

for (const [why, fields, path, headers, used] of swaps) {
  test(`guardRequest swaps: ${why}`, () => {
    assert.deepEqual(guardRequest(snapshot, request(fields)), { ok: true, path, headers, used });
  });
}

test("guardRequest: two secrets swapped in one request are both listed, sorted", () => {
  const both = {
    usable: [openai, { ...gemini, hosts: compileHostSet(["api.openai.com"]) }],
    values: snapshot.values,
  };
  const result = guardRequest(
    both,
    request({
      path: `/v1/x?key=${GEMINI_STAND_IN}`,
      headers: ["Authorization", `Bearer ${OPENAI_STAND_IN}`],
    }),
  );
  assert.ok(result.ok);
  assert.deepEqual(result.used, ["GEMINI_API_KEY", "OPENAI_API_KEY"]);
  assert.equal(result.path, `/v1/x?key=${encodeURIComponent(GEMINI_VALUE)}`);
  assert.deepEqual(result.headers, ["Authorization", `Bearer ${OPENAI_VALUE}`]);
});

/** [why, request fields, reason, secret, where]. */
const refusals: [string, Partial<OutboundRequest>, string, string, string][] = [
  [
    "stand-in in the body",
    { body: Buffer.from(`{"key":"${OPENAI_STAND_IN}"}`) },
    "secret_wrong_host",
    "OPENAI_API_KEY",
    "body",
  ],
  [
    "stand-in in the path",
    { path: `/v1/${OPENAI_STAND_IN}/x` },
    "secret_wrong_host",
    "OPENAI_API_KEY",
    "path",
  ],
  [
    "stand-in in another header",
    { headers: ["X-Debug", OPENAI_STAND_IN] },
    "secret_wrong_host",
    "OPENAI_API_KEY",
    "header x-debug",
  ],
  [
    "stand-in in its own header, at another host",
    { host: "evil.example", headers: ["Authorization", `Bearer ${OPENAI_STAND_IN}`] },
    "secret_wrong_host",
    "OPENAI_API_KEY",
    "header authorization",
  ],
  [
    "stand-in in its own header, on another port of its host",
    { port: 8443, headers: ["Authorization", `Bearer ${OPENAI_STAND_IN}`] },
    "secret_wrong_host",
    "OPENAI_API_KEY",
    "header authorization",
  ],
  [
    "stand-in in another query parameter",
    { host: GEMINI_HOST, path: `/v1/models?token=${GEMINI_STAND_IN}` },
    "secret_wrong_host",
    "GEMINI_API_KEY",
    "query",
  ],
  [
    "stand-in as part of its query parameter's value",
    { host: GEMINI_HOST, path: `/v1/models?key=x${GEMINI_STAND_IN}` },
    "secret_wrong_host",
    "GEMINI_API_KEY",
    "query",
  ],
  [
    "stand-in of A at B's host, in B's header",
    { host: GEMINI_HOST, headers: ["x-goog-api-key", OPENAI_STAND_IN] },
    "secret_wrong_host",
    "OPENAI_API_KEY",
    "header x-goog-api-key",
  ],
  [
    "stand-in percent-encoded in the path",
    { path: `/v1/${OPENAI_STAND_IN.replace("-", "%2D")}` },
    "secret_wrong_host",
    "OPENAI_API_KEY",
    "path",
  ],
  [
    "stand-in in a host name",
    { host: `${OPENAI_STAND_IN.toLowerCase()}.evil.example` },
    "secret_wrong_host",
    "OPENAI_API_KEY",
    "host",
  ],
  [
    "stand-in in Basic credentials of its own header",
    { headers: ["Authorization", basic(`user:${OPENAI_STAND_IN}`)] },
    "secret_wrong_host",
    "OPENAI_API_KEY",
    "header authorization",
  ],
  [
    "real value in the body",
    { body: Buffer.from(`{"leak":"${OTHER_VALUE}"}`) },
    "secret_exfiltration",
    "GITHUB_TOKEN",
    "body",
  ],
  [
    "real value form-encoded in the body",
    { body: Buffer.from(`leak=${encodeURIComponent(GEMINI_VALUE)}`) },
    "secret_exfiltration",
    "GEMINI_API_KEY",
    "body",
  ],
  [
    "real value in a header, even its own header at its own host",
    { headers: ["Authorization", `Bearer ${OPENAI_VALUE}`] },
    "secret_exfiltration",
    "OPENAI_API_KEY",
    "header authorization",
  ],
  [
    "real value in the path",
    { path: `/upload/${OTHER_VALUE}` },
    "secret_exfiltration",
    "GITHUB_TOKEN",
    "path",
  ],
  [
    "real value percent-encoded in the path",
    { path: `/upload/${Buffer.from(OTHER_VALUE).toString("hex").replace(/../g, "%$&")}` },
    "secret_exfiltration",
    "GITHUB_TOKEN",
    "path",
  ],
  [
    "real value twice percent-encoded in the path",
    { path: `/upload/${OTHER_VALUE.replace("g", "%2567")}` },
    "secret_exfiltration",
    "GITHUB_TOKEN",
    "path",
  ],
  [
    "real value in the query",
    { path: `/v1/x?q=${OTHER_VALUE}` },
    "secret_exfiltration",
    "GITHUB_TOKEN",
    "query",
  ],
  [
    "real value in Basic auth",
    { headers: ["Authorization", basic(`x-access-token:${OTHER_VALUE}`)] },
    "secret_exfiltration",
    "GITHUB_TOKEN",
    "header authorization",
  ],
  [
    "real value in a header name",
    { headers: [`X-${OTHER_VALUE}`, "1"] },
    "secret_exfiltration",
    "GITHUB_TOKEN",
    "header name",
  ],
  [
    "a host name with a value, case-insensitively",
    { host: `${OTHER_VALUE.toLowerCase()}.evil.example` },
    "secret_exfiltration",
    "GITHUB_TOKEN",
    "host",
  ],
  [
    "value and stand-in together: exfiltration is checked first",
    { headers: ["Authorization", `Bearer ${OPENAI_STAND_IN}`], body: Buffer.from(OTHER_VALUE) },
    "secret_exfiltration",
    "GITHUB_TOKEN",
    "body",
  ],
];

for (const [why, fields, reason, secret, where] of refusals) {
  test(`guardRequest refuses: ${why}`, () => {
    assert.deepEqual(guardRequest(snapshot, request(fields)), { ok: false, reason, secret, where });
  });
}

test("guardRequest: a value's tail alone is not taken for the value", () => {
  const result = guardRequest(snapshot, request({ body: Buffer.from(OTHER_VALUE.slice(1)) }));
  assert.equal(result.ok, true);
});

test("guardHost: a value, a stand-in, or neither", () => {
  assert.deepEqual(guardHost(snapshot, `${OTHER_VALUE.toLowerCase()}.evil.example`), {
    reason: "secret_exfiltration",
    secret: "GITHUB_TOKEN",
    where: "host",
  });
  assert.deepEqual(guardHost(snapshot, `${GEMINI_STAND_IN.toLowerCase()}.evil.example`), {
    reason: "secret_wrong_host",
    secret: "GEMINI_API_KEY",
    where: "host",
  });
  assert.equal(guardHost(snapshot, "api.openai.com"), undefined);
});
