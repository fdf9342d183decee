import { readdirSync } from "node:fs";

import { VallignusError } from "../errors.js";
import { isValidId } from "../policy/index.js";
import {
  createFileExclusive,
  PUBLIC_FILE_MODE,
  withFileLock,
  writeFileAtomic,
} from "../storage/index.js";
import { type Home, readStateJson } from "./home.js";

export interface Agent {
  readonly agent_id: string;
  readonly owner: string;
  readonly created_at: string;
  readonly updated_at: string;
  readonly disabled: boolean;
}

export function assertValidId(kind: string, id: string): void {
  if (!isValidId(id)) {
    throw new VallignusError(
      "ERR_ID_INVALID",
      `invalid ${kind} id ${JSON.stringify(id)}: use 1-64 of a-z 0-9 . _ - starting with a letter or digit`,
    );
  }
}

function agentPath(home: Home, agentId: string): string {
  return home.path("agents", `${agentId}.json`);
}

function toAgent(path: string, doc: Record<string, unknown>): Agent {
  const { agent_id, owner, created_at, updated_at, disabled } = doc;
  if (
    typeof agent_id !== "string" ||
    !isValidId(agent_id) ||
    typeof owner !== "string" ||
    typeof created_at !== "string" ||
    typeof updated_at !== "string" ||
    typeof disabled !== "boolean"
  ) {
    throw new VallignusError("ERR_HOME_CORRUPT", `${path} is not a valid agent record`);
  }
  return { agent_id, owner, created_at, updated_at, disabled };
}

export function findAgent(home: Home, agentId: string): Agent | undefined {
  if (!isValidId(agentId)) return undefined;
  const path = agentPath(home, agentId);
  const doc = readStateJson(path);
  return doc === undefined ? undefined : toAgent(path, doc);
}

export function getAgent(home: Home, agentId: string): Agent {
  assertValidId("agent", agentId);
  const agent = findAgent(home, agentId);
  if (agent === undefined) {
    throw new VallignusError("ERR_AGENT_NOT_FOUND", `no agent ${JSON.stringify(agentId)}`);
  }
  return agent;
}

function serialize(agent: Agent): string {
  return `${JSON.stringify(agent, null, 2)}\n`;
}

export function createAgent(home: Home, agentId: string, owner: string, now: Date): Agent {
  assertValidId("agent", agentId);
  const trimmed = owner.trim();
  if (trimmed === "" || trimmed.length > 200 || /\p{Cc}/u.test(trimmed)) {
    throw new VallignusError("ERR_AGENT_OWNER_INVALID", "owner must be 1-200 printable characters");
  }
  const stamp = now.toISOString();
  const agent: Agent = {
    agent_id: agentId,
    owner: trimmed,
    created_at: stamp,
    updated_at: stamp,
    disabled: false,
  };
  if (!createFileExclusive(agentPath(home, agentId), serialize(agent), PUBLIC_FILE_MODE)) {
    throw new VallignusError("ERR_AGENT_EXISTS", `agent ${JSON.stringify(agentId)} already exists`);
  }
  return agent;
}

export function setAgentDisabled(home: Home, agentId: string, disabled: boolean, now: Date): Agent {
  assertValidId("agent", agentId);
  return withFileLock(home.path("agents", ".lock"), () => {
    const current = getAgent(home, agentId);
    if (current.disabled === disabled) return current;
    const next: Agent = { ...current, disabled, updated_at: now.toISOString() };
    writeFileAtomic(agentPath(home, agentId), serialize(next), PUBLIC_FILE_MODE);
    return next;
  });
}

export function listAgents(home: Home): Agent[] {
  return readdirSync(home.dir("agents"))
    .filter((name) => name.endsWith(".json") && !name.startsWith("."))
    .sort()
    .map((name) => getAgent(home, name.slice(0, -".json".length)));
}
