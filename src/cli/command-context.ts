import { fileAuthorityStore, type AuthorityStore, type Home } from "../authority/index.js";
import type { Printer } from "./output.js";

/** What every command is given: the home it works on, the clock and where it prints. */
export interface CommandContext {
  readonly home: Home;
  readonly now: () => Date;
  readonly out: Printer;
}

/** The home, after checking that `auth init` made it (else ERR_HOME_NOT_INITIALIZED). */
export function initialized(ctx: CommandContext): Home {
  ctx.home.requireInitialized();
  return ctx.home;
}

/** The authority's state (agents, policies, keys, revocations) of an initialized home. */
export function authorityStore(ctx: CommandContext): AuthorityStore {
  return fileAuthorityStore(initialized(ctx));
}
