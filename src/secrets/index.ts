export type { SecretMeta, SecretPlacement, StoredSecret } from "./types.js";
export { guardHost, guardRequest } from "./guard.js";
export type {
  Guarded,
  OutboundRequest,
  RunSecret,
  SecretRefusal,
  SecretSnapshot,
} from "./guard.js";
export { makeStandIn, publicPrefix } from "./stand-in.js";
export { createScrubber } from "./response-scrub.js";
export type { Scrubber } from "./response-scrub.js";
