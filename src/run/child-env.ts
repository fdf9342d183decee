import { fileURLToPath } from "node:url";

const PROXY_VARIABLES = ["HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"] as const;
const CA_VARIABLES = [
  "NODE_EXTRA_CA_CERTS",
  "SSL_CERT_FILE",
  "REQUESTS_CA_BUNDLE",
  "CURL_CA_BUNDLE",
] as const;

/**
 * The built preload, dist/run/preload.js. Named from the parent folder because the bundler may
 * move this code into any folder one level below dist/ (the bin's, or a chunk's).
 */
export const PRELOAD_PATH = fileURLToPath(new URL("../run/preload.js", import.meta.url));

/**
 * The agent's environment: every proxy variable in both cases points at our proxy, NO_PROXY is
 * cleared, the CA variables name a bundle of the system roots plus the local CA, and Node
 * processes load the preload. The token itself is not passed on: the agent never needs it.
 */
export function buildChildEnv(
  base: NodeJS.ProcessEnv,
  proxyUrl: string,
  caBundlePath: string,
): NodeJS.ProcessEnv {
  const dropped = new Set(["VALLIGNUS_TOKEN", "NO_PROXY", "no_proxy"]);
  const env: NodeJS.ProcessEnv = Object.fromEntries(
    Object.entries(base).filter(([name]) => !dropped.has(name)),
  );
  for (const name of PROXY_VARIABLES) {
    env[name] = proxyUrl;
    env[name.toLowerCase()] = proxyUrl;
  }
  for (const name of CA_VARIABLES) env[name] = caBundlePath;
  env["VALLIGNUS_PROXY_URL"] = proxyUrl;
  const preload = `--import=${JSON.stringify(new URL(`file://${PRELOAD_PATH}`).href)}`;
  env["NODE_OPTIONS"] = [base["NODE_OPTIONS"], preload]
    .filter((p) => p !== undefined && p !== "")
    .join(" ");
  return env;
}
