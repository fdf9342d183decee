import { readFileSync } from "node:fs";
import { isatty } from "node:tty";

import {
  assertSecretName,
  describePlacement,
  placementsFromFlags,
  stripOneLineBreak,
  type AuthorityStore,
} from "../authority/index.js";
import { usageError, VallignusError } from "../errors.js";
import type { SecretMeta } from "../secrets/index.js";
import { authorityStore } from "./command-context.js";
import type { AUTH } from "./declarations.js";
import type { GroupHandlers } from "./dispatch.js";
import { parseDomainList } from "./policy-flags.js";

type SecretCommands = Pick<
  typeof AUTH.commands,
  "set-secret" | "list-secrets" | "rotate-secret" | "remove-secret"
>;

const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]{0,127}$/;

/**
 * The value, from a variable or from stdin; never from argv, where any user on the machine could
 * read it in the process list. A terminal on stdin is refused: typed there, the value would be
 * echoed to the screen and kept in the terminal's scrollback.
 */
function readSecretValue(command: string, fromEnv: string | undefined): string {
  if (fromEnv !== undefined) {
    if (!ENV_NAME.test(fromEnv)) {
      throw usageError("ERR_CLI_USAGE", `${command}: --from-env takes a variable's name`);
    }
    const value = process.env[fromEnv];
    if (value === undefined) {
      throw usageError("ERR_SECRET_VALUE_INVALID", `${command}: ${fromEnv} is not set`);
    }
    return value;
  }
  if (isatty(0)) {
    throw usageError(
      "ERR_CLI_USAGE",
      `${command}: stdin is a terminal; pipe the value in (… | vallignus ${command} …) or give --from-env VAR`,
    );
  }
  return stripOneLineBreak(readFileSync(0, "utf8"));
}

function placesOf(secret: SecretMeta): string {
  return secret.placements.map(describePlacement).join("; ");
}

/** Latest versions that name the secret: their runs refuse to start once it is gone. */
function policiesNaming(store: AuthorityStore, name: string): string[] {
  return store.listPolicyIds().filter((id) => {
    try {
      return store.getPolicyVersion(id).secrets.includes(name);
    } catch {
      // A policy that does not read is reported by the commands that use it, not here.
      return false;
    }
  });
}

export const SECRET_HANDLERS: GroupHandlers<SecretCommands> = {
  "set-secret": (ctx, { name, flags }) => {
    assertSecretName(flags.name);
    const hosts = [...new Set(parseDomainList("hosts", flags.hosts))].sort();
    if (hosts.length === 0) {
      throw usageError("ERR_POLICY_DOMAIN_INVALID", `--hosts: give at least one host`);
    }
    const placements = placementsFromFlags(hosts, flags);
    const store = authorityStore(ctx);
    const value = readSecretValue(name, flags["from-env"]);
    const meta = store.setSecret({ name: flags.name, hosts, placements }, value, ctx.now());
    if (flags.json === true) ctx.out.json(meta);
    else
      ctx.out.line(
        `stored secret ${meta.name} (fingerprint ${meta.fingerprint}) for ${meta.hosts.join(", ")}: ${placesOf(meta)}`,
      );
    return 0;
  },
  "list-secrets": (ctx, { flags }) => {
    const secrets = authorityStore(ctx).listSecrets();
    if (flags.json === true) ctx.out.json(secrets);
    else
      ctx.out.table(
        ["NAME", "HOSTS", "WHERE", "CREATED", "ROTATED", "FINGERPRINT"],
        secrets.map((s) => [
          s.name,
          s.hosts.join(","),
          placesOf(s),
          s.created_at,
          s.rotated_at ?? "-",
          s.fingerprint,
        ]),
      );
    return 0;
  },
  "rotate-secret": (ctx, { name, flags }) => {
    assertSecretName(flags.name);
    const store = authorityStore(ctx);
    if (store.findSecret(flags.name) === undefined) {
      throw new VallignusError("ERR_SECRET_NOT_FOUND", `no secret ${flags.name}`);
    }
    const value = readSecretValue(name, flags["from-env"]);
    const meta = store.rotateSecret(flags.name, value, ctx.now());
    if (flags.json === true) ctx.out.json(meta);
    else
      ctx.out.line(
        `rotated secret ${meta.name} (fingerprint now ${meta.fingerprint}); live runs send it from their next request`,
      );
    return 0;
  },
  "remove-secret": (ctx, { flags }) => {
    const store = authorityStore(ctx);
    store.removeSecret(flags.name);
    ctx.out.line(`removed secret ${flags.name}`);
    const naming = policiesNaming(store, flags.name);
    if (naming.length > 0) {
      ctx.out.line(
        `policies whose latest version names it (their runs now refuse to start): ${naming.join(", ")}`,
      );
    }
    return 0;
  },
};
