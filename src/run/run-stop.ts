import { errorLine, type ErrorCode } from "../errors.js";
import type { DenyReason } from "../policy/index.js";
import type { LifecycleEventName } from "../audit/records.js";

/** Why a run was ended by Vallignus rather than by its command. */
export type StopReason =
  | "token_revoked"
  | "token_expired"
  | "agent_disabled"
  | "max_runtime"
  | "request_limit_exceeded"
  | "max_output_lines"
  | "budget_exceeded"
  | "audit_unwritable"
  | "ledger_unwritable";

const STOPS: Record<
  StopReason,
  {
    readonly text: string;
    readonly code: ErrorCode;
    readonly deny: DenyReason;
    /** The lifecycle event, if any: a log that cannot be written gets none. */
    readonly event: Exclude<LifecycleEventName, "run_start" | "run_end"> | undefined;
  }
> = {
  token_revoked: {
    text: "the token was revoked",
    code: "ERR_RUN_STOPPED_TOKEN_REVOKED",
    deny: "token_revoked",
    event: "token_revoked_live",
  },
  token_expired: {
    text: "the token expired",
    code: "ERR_RUN_STOPPED_TOKEN_EXPIRED",
    deny: "token_expired",
    event: "token_expired_live",
  },
  agent_disabled: {
    text: "the agent was disabled",
    code: "ERR_RUN_STOPPED_AGENT_DISABLED",
    deny: "agent_disabled",
    event: "agent_disabled_live",
  },
  max_runtime: {
    text: "the run's --max-runtime passed",
    code: "ERR_RUN_STOPPED_MAX_RUNTIME",
    deny: "request_limit_exceeded",
    event: "limit_reached",
  },
  request_limit_exceeded: {
    text: "the request limit was reached",
    code: "ERR_RUN_STOPPED_REQUEST_LIMIT_EXCEEDED",
    deny: "request_limit_exceeded",
    event: "limit_reached",
  },
  max_output_lines: {
    text: "the run's --max-output-lines was reached",
    code: "ERR_RUN_STOPPED_MAX_OUTPUT_LINES",
    deny: "request_limit_exceeded",
    event: "limit_reached",
  },
  budget_exceeded: {
    text: "the spend budget cannot pay for another request",
    code: "ERR_RUN_STOPPED_BUDGET_EXCEEDED",
    deny: "budget_exceeded",
    event: "budget_exhausted",
  },
  // A request that cannot be recorded, or reserved for, cannot be judged: denied (fail closed).
  audit_unwritable: {
    text: "the audit log cannot be written",
    code: "ERR_RUN_STOPPED_AUDIT_WRITE",
    deny: "store_unavailable",
    event: undefined,
  },
  ledger_unwritable: {
    text: "the spend ledger cannot be written",
    code: "ERR_RUN_STOPPED_LEDGER_WRITE",
    deny: "store_unavailable",
    event: undefined,
  },
};

/** How long the process group has between SIGTERM and SIGKILL when a run is stopped. */
export const STOP_GRACE_MS = 2000;

/** What stopping a run does to the world; the supervisor passes the real ones, tests fakes. */
export interface StopEffects {
  /** Writes one line to stderr. */
  report(line: string): void;
  /** Appends the stop's lifecycle event to the audit log. */
  record(event: Exclude<LifecycleEventName, "run_start" | "run_end">, reason: StopReason): void;
  dropConnections(): void;
  signalGroup(signal: NodeJS.Signals): void;
  /** Runs `fn` after `ms`, without keeping the process alive for it. */
  later(fn: () => void, ms: number): void;
}

/**
 * The one way a run is ended from outside its command: the first reason wins, one line names
 * it, new requests are denied at once, connections are dropped, and the process group gets
 * SIGTERM, then SIGKILL after STOP_GRACE_MS.
 */
export class RunStop {
  private stopped: StopReason | undefined;

  constructor(private readonly effects: StopEffects) {}

  get reason(): StopReason | undefined {
    return this.stopped;
  }

  /** What a request is denied with once the run is stopping; undefined while it runs. */
  denyReason(): DenyReason | undefined {
    return this.stopped === undefined ? undefined : STOPS[this.stopped].deny;
  }

  /** `detail` says more about the cause (an I/O error's message); never a secret. */
  stop(reason: StopReason, detail?: string): void {
    if (this.stopped !== undefined) return;
    this.stopped = reason;
    const { text, code, event } = STOPS[reason];
    const line = detail === undefined ? text : `${text} (${detail.split("\n")[0] ?? ""})`;
    this.effects.report(errorLine(code, `run stopped: ${line}`));
    this.attempt(() => {
      if (event !== undefined) this.effects.record(event, reason);
    });
    this.attempt(() => {
      this.effects.dropConnections();
    });
    this.effects.signalGroup("SIGTERM");
    this.effects.later(() => {
      this.effects.signalGroup("SIGKILL");
    }, STOP_GRACE_MS);
  }

  /**
   * A failure while stopping must not keep the command running. (An audit log that cannot take
   * the event reports itself through its own failure callback; the run is already stopping.)
   */
  private attempt(step: () => void): void {
    try {
      step();
    } catch {
      // See above.
    }
  }
}
