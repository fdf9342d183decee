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

/**
 * Node settings the isolation helper must start without (it is a Node process too): the preload,
 * and a CA file that exists only once the run folder is mounted. They travel renamed, and the
 * helper hands them back to the command.
 */
const SET_ASIDE = /^(NODE_OPTIONS|NODE_EXTRA_CA_CERTS)$/;
const SET_ASIDE_PREFIX = "VALLIGNUS_CHILD_";

export function setAsideForHelper(env: NodeJS.ProcessEnv): NodeJS.ProcessEnv {
  return Object.fromEntries(
    Object.entries(env).map(([name, value]) => [
      SET_ASIDE.test(name) ? `${SET_ASIDE_PREFIX}${name}` : name,
      value,
    ]),
  );
}

export function handBackFromHelper(env: NodeJS.ProcessEnv): NodeJS.ProcessEnv {
  return Object.fromEntries(
    Object.entries(env).map(([name, value]) => {
      const original = name.startsWith(SET_ASIDE_PREFIX) ? name.slice(SET_ASIDE_PREFIX.length) : "";
      return [SET_ASIDE.test(original) ? original : name, value];
    }),
  );
}
