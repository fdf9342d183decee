/** Exit statuses of the CLI, as the contract fixes them. */
export const EXIT = {
  ok: 0,
  failure: 1,
  usage: 2,
  tokenRefused: 3,
  policyStop: 4,
} as const;

export type ExitStatus = (typeof EXIT)[keyof typeof EXIT];

/**
 * The one error class of Vallignus. `code` is stable (`ERR_<AREA>_<WHAT>`) and is what scripts
 * and tests match on; `message` is for people and never carries a token or a secret.
 */
export class VallignusError extends Error {
  readonly code: string;
  readonly exitStatus: ExitStatus;

  constructor(code: `ERR_${string}`, message: string, exitStatus: ExitStatus = EXIT.failure) {
    super(message);
    this.name = "VallignusError";
    this.code = code;
    this.exitStatus = exitStatus;
  }
}

/** A usage error: bad flag, bad value, missing argument (exit status 2). */
export function usageError(code: `ERR_${string}`, message: string): VallignusError {
  return new VallignusError(code, message, EXIT.usage);
}

export function isErrnoException(err: unknown): err is NodeJS.ErrnoException {
  return err instanceof Error && "code" in err;
}
