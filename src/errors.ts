/** Exit statuses of the CLI, as the contract fixes them. */
export const EXIT = {
  ok: 0,
  failure: 1,
  usage: 2,
  tokenRefused: 3,
  policyStop: 4,
} as const;

export type ExitStatus = (typeof EXIT)[keyof typeof EXIT];

const { failure, usage, tokenRefused, policyStop } = EXIT;

/**
 * Every error code Vallignus reports, with the exit status it ends the CLI with. A code that is
 * not here does not compile, and no call site picks an exit status of its own.
 */
export const ERROR_CODES = {
  // Command line.
  ERR_CLI_USAGE: usage,
  ERR_CLI_UNKNOWN_COMMAND: usage,
  ERR_INTERNAL: failure,
  // $VALLIGNUS_HOME and its files.
  ERR_HOME_NOT_INITIALIZED: failure,
  ERR_HOME_CORRUPT: failure,
  ERR_HOME_READ: failure,
  ERR_HOME_WRITE: failure,
  ERR_HOME_INSECURE_PERMISSIONS: failure,
  ERR_LOCK_TIMEOUT: failure,
  ERR_ID_INVALID: usage,
  ERR_KEY_EXISTS: failure,
  ERR_CA_MISSING: failure,
  // Agents and policies.
  ERR_AGENT_EXISTS: failure,
  ERR_AGENT_NOT_FOUND: failure,
  ERR_AGENT_DISABLED: failure,
  ERR_AGENT_OWNER_INVALID: usage,
  ERR_POLICY_EXISTS: failure,
  ERR_POLICY_NOT_FOUND: failure,
  ERR_POLICY_VERSION_NOT_FOUND: failure,
  ERR_POLICY_CONFLICT: failure,
  ERR_POLICY_CORRUPT: failure,
  ERR_POLICY_TAMPERED: failure,
  ERR_POLICY_DOMAIN_ABSENT: usage,
  ERR_POLICY_DOMAIN_INVALID: usage,
  ERR_POLICY_LIMIT_INVALID: usage,
  ERR_POLICY_MODEL_INVALID: usage,
  ERR_POLICY_PRICE_INVALID: usage,
  ERR_POLICY_SPEND_INVALID: usage,
  ERR_POLICY_RULE_INVALID: usage,
  // Secrets (`auth set-secret`…): a value never appears in any of their messages.
  ERR_SECRET_EXISTS: failure,
  ERR_SECRET_NOT_FOUND: failure,
  ERR_SECRET_NAME_INVALID: usage,
  ERR_SECRET_VALUE_INVALID: usage,
  ERR_SECRET_PLACEMENT: usage,
  // Tokens: issuing, and every refusal `run` and `verify-token` make (src/tokens/verify.ts).
  ERR_TOKEN_TTL: usage,
  ERR_TOKEN_MISSING: tokenRefused,
  ERR_TOKEN_MALFORMED: tokenRefused,
  ERR_TOKEN_ALGORITHM: tokenRefused,
  ERR_TOKEN_UNKNOWN_KEY: tokenRefused,
  ERR_TOKEN_KEY_REVOKED: tokenRefused,
  ERR_TOKEN_SIGNATURE: tokenRefused,
  ERR_TOKEN_CLAIMS: tokenRefused,
  ERR_TOKEN_EXPIRED: tokenRefused,
  ERR_TOKEN_REVOKED: tokenRefused,
  ERR_TOKEN_AGENT_UNKNOWN: tokenRefused,
  ERR_TOKEN_AGENT_DISABLED: tokenRefused,
  ERR_TOKEN_POLICY_UNKNOWN: tokenRefused,
  ERR_TOKEN_POLICY_MISMATCH: tokenRefused,
  // Audit log and sessions.
  ERR_AUDIT_CHAIN_BROKEN: failure,
  ERR_AUDIT_CLOSED: failure,
  ERR_AUDIT_WRITE: failure,
  ERR_SESSION_NOT_FOUND: failure,
  // The spend ledger.
  ERR_LEDGER_AMOUNT: failure,
  ERR_LEDGER_CLOSED: failure,
  ERR_LEDGER_CORRUPT: failure,
  ERR_LEDGER_INPUT: failure,
  ERR_LEDGER_MISMATCH: failure,
  ERR_LEDGER_NOT_FOUND: failure,
  ERR_LEDGER_READ: failure,
  ERR_LEDGER_UNKNOWN_RESERVATION: failure,
  ERR_LEDGER_WRITE: failure,
  // `run`: starting, isolating, and the stops that policy makes (exit 4).
  ERR_RUN_NO_COMMAND: usage,
  ERR_RUN_UPSTREAM_CA: usage,
  ERR_RUN_SPAWN: failure,
  ERR_RUN_PORT_IN_USE: failure,
  ERR_RUN_FOLDER: failure,
  ERR_ISOLATE_UNSUPPORTED: failure,
  ERR_ISOLATE_UNAVAILABLE: failure,
  ERR_ISOLATE_SETUP: failure,
  ERR_RUN_STOPPED_TOKEN_REVOKED: policyStop,
  ERR_RUN_STOPPED_TOKEN_EXPIRED: policyStop,
  ERR_RUN_STOPPED_AGENT_DISABLED: policyStop,
  ERR_RUN_STOPPED_MAX_RUNTIME: policyStop,
  ERR_RUN_STOPPED_REQUEST_LIMIT_EXCEEDED: policyStop,
  ERR_RUN_STOPPED_MAX_OUTPUT_LINES: policyStop,
  ERR_RUN_STOPPED_BUDGET_EXCEEDED: policyStop,
  ERR_RUN_STOPPED_AUDIT_WRITE: policyStop,
  ERR_RUN_STOPPED_LEDGER_WRITE: policyStop,
} as const satisfies Readonly<Record<`ERR_${string}`, ExitStatus>>;

export type ErrorCode = keyof typeof ERROR_CODES;

/**
 * The one error class of Vallignus. `code` is stable (`ERR_<AREA>_<WHAT>`) and is what scripts
 * and tests match on; it fixes the exit status. `message` is for people and never carries a
 * token or a secret.
 */
export class VallignusError extends Error {
  readonly code: ErrorCode;
  readonly exitStatus: ExitStatus;

  constructor(code: ErrorCode, message: string) {
    super(message);
    this.name = "VallignusError";
    this.code = code;
    this.exitStatus = ERROR_CODES[code];
  }
}

/** A usage error: bad flag, bad value, missing argument (exit status 2). */
export function usageError(
  code: { [C in ErrorCode]: (typeof ERROR_CODES)[C] extends 2 ? C : never }[ErrorCode],
  message: string,
): VallignusError {
  return new VallignusError(code, message);
}

/** The one line a failure prints on stderr: `vallignus: <message> [ERR_…]`. */
export function errorLine(code: ErrorCode, message: string): string {
  return `vallignus: ${message} [${code}]\n`;
}

export function isErrnoException(err: unknown): err is NodeJS.ErrnoException {
  return err instanceof Error && "code" in err;
}
