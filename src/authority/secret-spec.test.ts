import assert from "node:assert/strict";
import { describe, test } from "node:test";

import { VallignusError } from "../errors.js";
import {
  describePlacement,
  placementsFromFlags,
  secretValueProblem,
  stripOneLineBreak,
  type PlacementFlags,
} from "./secret-spec.js";

describe("placements: given by the flags, or inferred from hosts of one LLM family", () => {
  const cases: [string, string[], PlacementFlags, string | undefined][] = [
    ["OpenAI", ["api.openai.com"], {}, "header authorization: Bearer {secret}"],
    ["OpenAI's regional hosts", ["*.api.openai.com"], {}, "header authorization: Bearer {secret}"],
    [
      "a port does not change the family",
      ["api.openai.com:8443"],
      {},
      "header authorization: Bearer {secret}",
    ],
    [
      "Groq and Mistral: one family",
      ["api.groq.com", "api.mistral.ai"],
      {},
      "header authorization: Bearer {secret}",
    ],
    [
      "Anthropic",
      ["api.anthropic.com"],
      {},
      "header x-api-key; header authorization: Bearer {secret}",
    ],
    ["Gemini", ["generativelanguage.googleapis.com"], {}, "header x-goog-api-key; query key"],
    ["Azure (wildcard)", ["*.openai.azure.com"], {}, "header api-key"],
    ["Azure, two clouds", ["*.openai.azure.com", "*.openai.azure.us"], {}, "header api-key"],
    ["OpenAI and Anthropic", ["api.openai.com", "api.anthropic.com"], {}, undefined],
    ["OpenAI and a plain host", ["api.openai.com", "example.com"], {}, undefined],
    ["Vertex", ["aiplatform.googleapis.com"], {}, undefined],
    ["an IP literal", ["203.0.113.7"], {}, undefined],
    ["a plain host", ["example.com"], {}, undefined],
    ["a header given: lower case", ["example.com"], { header: "X-Token" }, "header x-token"],
    [
      "a header and template",
      ["example.com"],
      { header: "Authorization", template: "token {secret}" },
      "header authorization: token {secret}",
    ],
    ["a query given", ["example.com"], { query: "api_key" }, "query api_key"],
    ["flags win over inference", ["api.openai.com"], { query: "k" }, "query k"],
    ["a template alone", ["example.com"], { template: "t {secret}" }, undefined],
    ["{secret} twice", ["example.com"], { header: "a", template: "{secret}{secret}" }, undefined],
    ["no {secret}", ["example.com"], { header: "a", template: "Bearer" }, undefined],
    [
      "a line break in the template",
      ["example.com"],
      { header: "a", template: "{secret}\r\nX: y" },
      undefined,
    ],
    ["content-length", ["example.com"], { header: "Content-Length" }, undefined],
    ["a header with a colon", ["example.com"], { header: "x:y" }, undefined],
    ["a query name with =", ["example.com"], { query: "a=b" }, undefined],
  ];
  for (const [label, hosts, flags, expected] of cases) {
    test(label, () => {
      if (expected === undefined) {
        assert.throws(
          () => placementsFromFlags(hosts, flags),
          (err) => err instanceof VallignusError && err.code === "ERR_SECRET_PLACEMENT",
        );
      } else {
        assert.equal(placementsFromFlags(hosts, flags).map(describePlacement).join("; "), expected);
      }
    });
  }
});

test("values: 16-8192 visible ASCII characters; the reason names no character", () => {
  const cases: [string, boolean][] = [
    ["a".repeat(16), true],
    ["a".repeat(15), false],
    ["a".repeat(8192), true],
    ["a".repeat(8193), false],
    ["sk-proj-!#$%&'()*+,-./:;<=>?@[]^_`{|}~", true],
    ["sk-proj-aaaaaaaa bbbbbbb", false],
    ["sk-proj-aaaaaaaa\tbbbbbbb", false],
    ["sk-proj-aaaaaaaaébbbbbbb", false],
  ];
  for (const [value, valid] of cases) {
    const problem = secretValueProblem(value);
    assert.equal(problem === undefined, valid, value.slice(0, 30));
    if (problem !== undefined) assert.ok(!problem.includes("sk-proj"), problem);
  }
});

test("one trailing line break is the pipe's: removed; anything else is kept for the check", () => {
  const cases: [string, string][] = [
    ["key\n", "key"],
    ["key\r\n", "key"],
    ["key\n\n", "key\n"],
    ["key", "key"],
    ["key\r", "key\r"],
  ];
  for (const [input, expected] of cases) assert.equal(stripOneLineBreak(input), expected);
});
