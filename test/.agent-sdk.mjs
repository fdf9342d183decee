
import OpenAI from "openai";
import Anthropic from "@anthropic-ai/sdk";
const [mode, port] = process.argv.slice(2);
const openai = new OpenAI({ apiKey: "sk-test-secret", baseURL: "https://api.openai.com:" + port + "/v1", maxRetries: 0 });
const anthropic = new Anthropic({ apiKey: "sk-ant-secret", baseURL: "https://api.anthropic.com:" + port, maxRetries: 0 });
const out = {};
try {
  if (mode === "openai-json") {
    const r = await openai.chat.completions.create({ model: "fake-gpt", max_tokens: 100, messages: [{ role: "user", content: "hi" }] });
    out.text = r.choices[0].message.content;
  } else if (mode === "openai-stream") {
    const stream = await openai.chat.completions.create({ model: "fake-gpt", max_tokens: 100, stream: true, messages: [{ role: "user", content: "hi" }] });
    out.chunks = 0; out.usageChunks = 0; out.text = "";
    for await (const c of stream) { out.chunks++; if (c.usage) out.usageChunks++; out.text += c.choices[0]?.delta?.content ?? ""; }
  } else if (mode === "anthropic-stream") {
    const stream = anthropic.messages.stream({ model: "fake-claude", max_tokens: 100, messages: [{ role: "user", content: "hi" }] });
    const final = await stream.finalMessage();
    out.text = final.content[0].text; out.output = final.usage.output_tokens;
  } else if (mode === "openai-huge") {
    await openai.chat.completions.create({ model: "fake-gpt", max_tokens: 5000000, messages: [{ role: "user", content: "hi" }] });
  } else if (mode === "openai-loop") {
    out.calls = 0;
    for (let i = 0; i < 1000; i++) {
      await openai.chat.completions.create({ model: "fake-gpt", max_tokens: 100, messages: [{ role: "user", content: "again" }] });
      out.calls++;
      console.log(JSON.stringify(out));
    }
  } else if (mode === "openai-unpriced") {
    await openai.chat.completions.create({ model: "unknown-model-xyz", max_tokens: 10, messages: [{ role: "user", content: "hi" }] });
  }
} catch (err) {
  out.error = { status: err.status, name: err.constructor.name, message: String(err.message) };
}
console.log(JSON.stringify(out));
