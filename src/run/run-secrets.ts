import { randomBytes } from "node:crypto";

import type { SecretReader } from "../authority/index.js";
import { VallignusError } from "../errors.js";
import { compileHostSet, type HostSet } from "../policy/index.js";
import type { SecretSource } from "../proxy/index.js";
import { makeStandIn, type RunSecret, type StoredSecret } from "../secrets/index.js";

/** The stand-ins of one run: one per secret its policy names, made when the run starts. */
export interface RunSecrets {
  /** NAME → stand-in, for the command's environment. */
  readonly standIns: ReadonlyMap<string, string>;
  /** What the proxy checks each request against, read fresh each time. */
  readonly source: SecretSource;
}

/**
 * Makes a stand-in for each secret the policy names (each must exist: a run whose secret was
 * removed since the policy was written refuses to start), and the source the proxy reads the
 * secrets from: every value the authority holds is looked for, the policy's stand-ins swapped.
 */
export function prepareRunSecrets(reader: SecretReader, names: readonly string[]): RunSecrets {
  const standIns = new Map<string, string>();
  const all = reader.all();
  for (const name of names) {
    const secret = reader.read(name);
    if (secret === undefined)
      throw new VallignusError(
        "ERR_SECRET_NOT_FOUND",
        `run: the policy gives its runs secret ${name}, which the authority no longer holds (auth set-secret)`,
      );
    standIns.set(name, freshStandIn(secret.value, all));
  }
  return { standIns, source: secretSource(reader, standIns) };
}

/** A stand-in that is not, and holds no, value the authority keeps (a 1 in 2^128 event). */
function freshStandIn(value: string, all: readonly StoredSecret[]): string {
  for (;;) {
    const standIn = makeStandIn(value, randomBytes);
    if (!all.some((s) => s.value.includes(standIn) || standIn.includes(s.value))) return standIn;
  }
}

function secretSource(reader: SecretReader, standIns: ReadonlyMap<string, string>): SecretSource {
  const hostSets = new Map<string, HostSet>();
  const hostsOf = (secret: StoredSecret): HostSet => {
    const key = secret.hosts.join(",");
    let set = hostSets.get(key);
    if (set === undefined) {
      set = compileHostSet(secret.hosts);
      hostSets.set(key, set);
    }
    return set;
  };
  return {
    snapshot: () => {
      const all = reader.all();
      if (all.length === 0 && standIns.size === 0) return undefined;
      const usable: RunSecret[] = [];
      for (const secret of all) {
        const standIn = standIns.get(secret.name);
        if (standIn === undefined) continue;
        const { name, value, placements } = secret;
        usable.push({ name, standIn, value, placements, hosts: hostsOf(secret) });
      }
      return { usable, values: all.map(({ name, value }) => ({ name, value })) };
    },
  };
}

/**
 * The command's environment with each secret's stand-in under its name, and no value of any
 * secret the authority holds: an inherited variable that holds one is dropped.
 */
export function withStandIns(
  env: NodeJS.ProcessEnv,
  standIns: ReadonlyMap<string, string>,
  all: readonly StoredSecret[],
): NodeJS.ProcessEnv {
  const out: NodeJS.ProcessEnv = {};
  for (const [name, text] of Object.entries(env)) {
    if (text === undefined || all.some((s) => text.includes(s.value))) continue;
    out[name] = text;
  }
  for (const [name, standIn] of standIns) out[name] = standIn;
  return out;
}
