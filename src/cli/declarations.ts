/**
 * Every command of the CLI, declared once: its summary, its flags with their descriptions, its
 * operands. Parsing, the flags' types and `--help` all come from here. This module loads nothing
 * heavy, so that `--help` starts fast; the commands themselves are imported on demand.
 */
import { defineCommand, defineFlags, defineGroup } from "./command.js";
import type { Section } from "./help.js";

const JSON_FLAG = defineFlags({
  json: { type: "boolean", description: "print JSON for scripts instead of a table" },
});

const AGENT_ID = defineFlags({
  "agent-id": { type: "string", value: "ID", required: true, description: "the agent's id" },
});

const POLICY_VERSION = defineFlags({
  version: { type: "string", value: "N", description: "a policy version (default: the latest)" },
});

/** The fields of a policy, as create-policy and update-policy take them. */
const POLICY_FIELDS = defineFlags({
  "policy-id": { type: "string", value: "ID", required: true, description: "the policy's id" },
  "max-spend-usd": {
    type: "string",
    value: "USD",
    description: "budget of each token, 0 to 1000000 with at most 9 decimals",
  },
  "allowed-domains": {
    type: "string",
    value: "LIST",
    description: "comma list of hosts it may reach: example.com, *.example.com, host:port",
  },
  "denied-domains": {
    type: "string",
    value: "LIST",
    description: "comma list of hosts refused even when allowed",
  },
  "allowed-models": {
    type: "string",
    value: "LIST",
    description: 'comma list of models on metered hosts ("*": any priced model)',
  },
  "max-requests": { type: "string", value: "N", description: "requests per run" },
  "max-runtime": { type: "string", value: "D", description: "wall time per run: 90s, 30m, 2h, 1d" },
  "allow-private-networks": {
    type: "boolean",
    negation: "also",
    description: "allow private, loopback and link-local addresses (off unless given)",
  },
  price: {
    type: "string",
    multiple: true,
    value: "MODEL=IN/OUT",
    description: "USD per million tokens for a model the price table lacks",
  },
  secrets: {
    type: "string",
    value: "LIST",
    description:
      'comma list of secrets (auth set-secret) whose stand-ins its runs get; "none": no secret',
  },
  "inspect-hosts": {
    type: "string",
    value: "LIST",
    description: 'comma list of hosts whose HTTPS requests the proxy opens and sees; "none": none',
  },
  "allow-requests": {
    type: "string",
    multiple: true,
    value: "RULES",
    description:
      'comma list of "METHOD host/path-glob"; a host with rules passes only these; "none"',
  },
  "deny-requests": {
    type: "string",
    multiple: true,
    value: "RULES",
    description: 'comma list of "METHOD host/path-glob" refused even when allowed; "none"',
  },
});

const {
  "policy-id": policyId,
  "max-spend-usd": spend,
  "allowed-domains": allowed,
  ...OTHER_POLICY_FIELDS
} = POLICY_FIELDS;

export const CREATE_POLICY = defineCommand({
  summary: "create version 1 of a policy",
  flags: {
    "policy-id": policyId,
    "max-spend-usd": { ...spend, required: true },
    "allowed-domains": { ...allowed, required: true },
    ...OTHER_POLICY_FIELDS,
    ...JSON_FLAG,
  },
});

export const UPDATE_POLICY = defineCommand({
  summary: "write version n+1 of a policy; earlier versions never change",
  flags: {
    ...POLICY_FIELDS,
    "add-domains": {
      type: "string",
      value: "LIST",
      description: "hosts to add to the allowed list",
    },
    "remove-domains": {
      type: "string",
      value: "LIST",
      description: "hosts to remove from the allowed list",
    },
    ...JSON_FLAG,
  },
});

const SECRET_NAME = defineFlags({
  name: {
    type: "string",
    value: "NAME",
    required: true,
    description: "the secret's name: the environment variable the agent sees (A-Z 0-9 _)",
  },
});

const FROM_ENV = defineFlags({
  "from-env": {
    type: "string",
    value: "VAR",
    description: "read the value from this environment variable instead of stdin",
  },
});

const VALUE_NOTE =
  "The value is read from stdin (one trailing line break removed) or from --from-env VAR, " +
  "never from the command line, where other users could see it in the process list. It must " +
  "have 16 to 8192 visible ASCII characters. No output ever shows it: only its fingerprint, " +
  "the first 8 hex digits of its sha256.";

export const AUTH = defineGroup({
  summary: "the local authority: agents, versioned policies, signing keys and tokens",
  commands: {
    init: defineCommand({
      summary: "create $VALLIGNUS_HOME, the first signing key and the local CA",
      flags: {
        force: {
          type: "boolean",
          description: "replace the signing key (revoking the old) and CA",
        },
      },
    }),
    "create-agent": defineCommand({
      summary: "register an agent identity",
      flags: {
        ...AGENT_ID,
        owner: { type: "string", value: "TEXT", required: true, description: "who answers for it" },
        ...JSON_FLAG,
      },
    }),
    "list-agents": defineCommand({ summary: "list agents", flags: JSON_FLAG }),
    "disable-agent": defineCommand({
      summary: "disable an agent: its tokens stop working, live",
      flags: AGENT_ID,
    }),
    "enable-agent": defineCommand({ summary: "enable a disabled agent again", flags: AGENT_ID }),
    "create-policy": CREATE_POLICY,
    "update-policy": UPDATE_POLICY,
    "show-policy": defineCommand({
      summary: "show a policy version (the latest unless --version)",
      flags: { "policy-id": policyId, ...POLICY_VERSION, ...JSON_FLAG },
    }),
    "list-policies": defineCommand({
      summary: "list policies with their latest version",
      flags: JSON_FLAG,
    }),
    "issue-token": defineCommand({
      summary: "sign a token for an agent and a policy version; prints only the token",
      flags: {
        ...AGENT_ID,
        "policy-id": policyId,
        ...POLICY_VERSION,
        ttl: { type: "string", value: "D", description: "lifetime, at most 30d (default 24h)" },
      },
    }),
    "inspect-token": defineCommand({
      summary: "decode a token without trusting it and show a verdict for each check",
      flags: JSON_FLAG,
      operands: "TOKEN|-",
      positionals: 1,
    }),
    "verify-token": defineCommand({
      summary: "exit 0 if run would accept the token, else 3 and the reason",
      flags: JSON_FLAG,
      operands: "TOKEN|-",
      positionals: 1,
    }),
    "revoke-token": defineCommand({
      summary: "revoke a token by jti (or --token); a run using it stops within 1 s",
      flags: {
        jti: { type: "string", value: "ID", description: "the token's jti" },
        token: {
          type: "string",
          value: "TOKEN|-",
          description: "the token itself (- reads stdin)",
        },
        reason: { type: "string", value: "TEXT", description: "why, kept with the revocation" },
      },
    }),
    "rotate-key": defineCommand({
      summary: "make a new active signing key; --revoke-previous revokes the older ones",
      flags: {
        "revoke-previous": {
          type: "boolean",
          description: "revoke every older key: tokens they signed are refused",
        },
        ...JSON_FLAG,
      },
    }),
    "list-keys": defineCommand({ summary: "list signing keys", flags: JSON_FLAG }),
    "set-secret": defineCommand({
      summary: "store a secret; runs get a stand-in, the proxy puts the value in on its hosts",
      notes: [
        VALUE_NOTE,
        "Without --header or --query the place is inferred when every host is a known LLM API " +
          "of one kind: OpenAI-style (Authorization: Bearer), Anthropic (x-api-key or Authorization: Bearer), Gemini " +
          "(x-goog-api-key and the key parameter), Azure OpenAI (api-key).",
      ],
      flags: {
        ...SECRET_NAME,
        hosts: {
          type: "string",
          value: "LIST",
          required: true,
          description: "comma list of the hosts it may be sent to (domain patterns)",
        },
        header: {
          type: "string",
          value: "H",
          description: "the request header the value goes in",
        },
        template: {
          type: "string",
          value: "T",
          description: 'the header\'s value, with {secret} once: "token {secret}"',
        },
        query: {
          type: "string",
          value: "P",
          description: "the query parameter the value goes in",
        },
        ...FROM_ENV,
        ...JSON_FLAG,
      },
    }),
    "list-secrets": defineCommand({
      summary: "list secrets: hosts, where they go, dates and fingerprints, never a value",
      flags: JSON_FLAG,
    }),
    "rotate-secret": defineCommand({
      summary: "give a secret a new value; live runs use it from their next request",
      notes: [VALUE_NOTE],
      flags: { ...SECRET_NAME, ...FROM_ENV, ...JSON_FLAG },
    }),
    "remove-secret": defineCommand({
      summary: "remove a secret; runs of policies that name it then refuse to start",
      flags: SECRET_NAME,
    }),
  },
});

export const RUN = defineCommand({
  summary: "run a command behind the firewall: every request decided by the token's policy",
  operands: "-- CMD [ARGS…]",
  passThrough: true,
  notes: [
    "Without --isolate the command runs as you, with your files and your network: the proxy " +
      "variables are a request, not a wall. It can ignore them and connect directly, read " +
      "$VALLIGNUS_HOME (signing keys, ledger, audit log), signal vallignus, and leave the run " +
      "with setsid. Use it for agents you trust to cooperate.",
    "With --isolate (Linux) the kernel enforces it: no network but the proxy, the host's files " +
      "read-only except the working folder, a private /tmp, $VALLIGNUS_HOME and every run's " +
      "folder out of sight, and a pid namespace of its own that ends with the run.",
  ],
  flags: {
    token: { type: "string", value: "T", description: "the token (default: $VALLIGNUS_TOKEN)" },
    isolate: {
      type: "boolean",
      description: "let the kernel enforce it: the command has no network but the proxy",
    },
    "on-budget": {
      type: "string",
      value: "stop|deny",
      description: "when the budget is spent: end the run (default) or deny metered calls",
    },
    "max-runtime": {
      type: "string",
      value: "D",
      description: "end the run after this: 30s, 5m, 1h",
    },
    "max-requests": { type: "string", value: "N", description: "deny requests past this many" },
    "max-output-lines": {
      type: "string",
      value: "N",
      description: "end the run after this many lines of stdout and stderr",
    },
    port: { type: "string", value: "P", description: "the proxy's port (default: any free one)" },
    session: {
      type: "boolean",
      negation: "only",
      description: "write no sessions/<id>/ record (the run is still in the audit log)",
    },
    resolve: {
      type: "string",
      multiple: true,
      value: "HOST:PORT:ADDR",
      description: "dial ADDR for HOST:PORT, like curl's; exempt from the private-network rule",
    },
    "upstream-ca": {
      type: "string",
      value: "FILE",
      description: "extra roots the proxy trusts as a TLS client",
    },
  },
});

const SESSION_ID = { operands: "ID", positionals: 1 } as const;

export const AUDIT = defineGroup({
  summary: "the hash-chained decision log",
  commands: {
    verify: defineCommand({
      summary: "check the audit log's hash chain from the first line to the last",
      flags: JSON_FLAG,
    }),
    tail: defineCommand({
      summary: "show the last records; -f keeps printing new ones until Ctrl-C",
      flags: {
        lines: { type: "string", short: "n", value: "N", description: "how many (default 20)" },
        follow: { type: "boolean", short: "f", description: "keep printing new records" },
        ...JSON_FLAG,
      },
    }),
    query: defineCommand({
      summary: "records matching every filter given, oldest first",
      flags: {
        session: { type: "string", value: "ID", description: "one run's records" },
        agent: { type: "string", value: "ID", description: "one agent's records" },
        policy: { type: "string", value: "ID", description: "records under one policy" },
        decision: {
          type: "string",
          value: "allow|deny",
          description: "allowed or denied requests",
        },
        host: { type: "string", value: "H", description: "requests to this host" },
        reason: { type: "string", value: "R", description: "denials for this reason" },
        since: { type: "string", value: "ISO", description: "records at or after this date" },
        ...JSON_FLAG,
      },
    }),
  },
});

export const SESSIONS = defineGroup({
  summary: "what each run did, from its session record and the audit log",
  commands: {
    list: defineCommand({
      summary: "every recorded run, oldest first, with its allow and deny counts",
      flags: JSON_FLAG,
    }),
    show: defineCommand({
      summary: "one run: its session record, counts and every record",
      flags: JSON_FLAG,
      ...SESSION_ID,
    }),
  },
});

export const REPLAY = defineCommand({
  summary: "a run's records as a timeline from its start",
  flags: JSON_FLAG,
  ...SESSION_ID,
});

export const SPEND = defineCommand({
  summary: "budget, spent, reserved and left of each token (by jti)",
  flags: {
    agent: { type: "string", value: "ID", description: "only this agent's tokens" },
    jti: { type: "string", value: "ID", description: "only this token" },
    ...JSON_FLAG,
  },
});

/** `vallignus --help`, in this order. */
export const SECTIONS: readonly Section[] = [
  { heading: "Local authority", entries: { auth: AUTH } },
  { heading: "Firewall", entries: { run: RUN } },
  { heading: "Audit and sessions", entries: { audit: AUDIT, sessions: SESSIONS, replay: REPLAY } },
  { heading: "Spend", entries: { spend: SPEND } },
];
