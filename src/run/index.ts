export { runSupervised } from "./supervisor.js";
export type { RunOptions } from "./supervisor.js";
export { buildChildEnv } from "./child-env.js";
