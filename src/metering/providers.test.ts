import assert from "node:assert/strict";
import { test } from "node:test";

import { METERED_HOSTS, meteredProviderFor, type ProviderId } from "./providers.js";

const cases: [string, string, ProviderId | undefined][] = [
  ["OpenAI", "api.openai.com", "openai"],
  ["Anthropic", "api.anthropic.com", "anthropic"],
  ["Gemini", "generativelanguage.googleapis.com", "gemini"],
  ["Groq", "api.groq.com", "groq"],
  ["Mistral", "api.mistral.ai", "mistral"],
  ["DeepSeek", "api.deepseek.com", "deepseek"],
  ["OpenRouter", "openrouter.ai", "openrouter"],
  ["xAI", "api.x.ai", "xai"],
  ["Together (xyz)", "api.together.xyz", "together"],
  ["Together (ai)", "api.together.ai", "together"],
  ["Fireworks", "api.fireworks.ai", "fireworks"],
  ["an Azure OpenAI resource", "my-resource.openai.azure.com", "azure"],
  ["a deeper Azure name", "a.b.openai.azure.com", "azure"],
  ["the Azure apex itself", "openai.azure.com", undefined],
  ["an Azure look-alike without a dot boundary", "evilopenai.azure.com", undefined],
  ["an Azure AI Services resource", "x.cognitiveservices.azure.com", "azure"],
  ["an Azure AI Foundry resource", "x.services.ai.azure.com", "azure"],
  ["an unrelated Azure service", "x.blob.core.windows.net", undefined],
  // Review F3: other hosts of the same families, formerly tunnelled.
  ["Azure OpenAI, US Government cloud", "res.openai.azure.us", "azure"],
  ["Azure OpenAI, China cloud", "res.openai.azure.cn", "azure"],
  ["Azure AI model inference, serverless", "x.eastus2.models.ai.azure.com", "azure"],
  ["Azure AI model inference, managed", "x.inference.ai.azure.com", "azure"],
  ["the Azure model-inference apex itself", "models.ai.azure.com", undefined],
  ["Gemini over mutual TLS", "generativelanguage.mtls.googleapis.com", "gemini"],
  ["Vertex AI over mutual TLS, global", "aiplatform.mtls.googleapis.com", "vertex"],
  ["Vertex AI over mutual TLS, regional", "us-central1-aiplatform.mtls.googleapis.com", "vertex"],
  [
    "a Vertex mTLS look-alike with a dot in the star",
    "a.b-aiplatform.mtls.googleapis.com",
    undefined,
  ],
  ["another mTLS Google API", "storage.mtls.googleapis.com", undefined],
  ["OpenAI's EU data-residency host", "eu.api.openai.com", "openai"],
  ["OpenAI's US data-residency host", "us.api.openai.com", "openai"],
  ["Mistral's Codestral host", "codestral.mistral.ai", "mistral"],
  ["Vertex AI, global", "aiplatform.googleapis.com", "vertex"],
  ["Vertex AI, regional", "us-central1-aiplatform.googleapis.com", "vertex"],
  ["Vertex AI, regional, upper case", "Europe-West4-AIPlatform.googleapis.com", "vertex"],
  ["a Vertex look-alike with a dot in the star", "a.b-aiplatform.googleapis.com", undefined],
  ["a Vertex look-alike without the dash", "xaiplatform.googleapis.com", undefined],
  ["a Vertex look-alike, bare dash", "-aiplatform.googleapis.com", undefined],
  ["upper case is folded (a metered host must never be tunnelled)", "API.OpenAI.com", "openai"],
  ["one trailing dot is ignored", "api.anthropic.com.", "anthropic"],
  ["a subdomain of an exact host", "eu.api.anthropic.com", undefined],
  ["the apex of an exact host", "openai.com", undefined],
  ["a suffix look-alike", "api.openai.com.evil.test", undefined],
  ["a prefix look-alike", "xapi.openai.com", undefined],
  ["an unrelated host", "example.com", undefined],
  ["the empty string", "", undefined],
];

for (const [name, host, expected] of cases) {
  test(`meteredProviderFor: ${name}`, () => {
    assert.equal(meteredProviderFor(host), expected);
  });
}

test("METERED_HOSTS: every exact row maps to its own provider", () => {
  for (const row of METERED_HOSTS) {
    const host = row.pattern.startsWith("*") ? `resource${row.pattern.slice(1)}` : row.pattern;
    assert.equal(meteredProviderFor(host), row.provider, row.pattern);
  }
});

test("METERED_HOSTS: covers all twelve providers and cannot be changed", () => {
  assert.equal(new Set(METERED_HOSTS.map((row) => row.provider)).size, 12);
  assert.ok(Object.isFrozen(METERED_HOSTS));
});
