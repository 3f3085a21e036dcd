/**
 * An error meant for the user: its message is one line that says what went wrong and how to fix it, and the
 * CLI prints it without a stack trace.
 */
export class TunpipeError extends Error {
  override name = 'TunpipeError';
  /** errno name when the error came from a system call ("EBUSY"), for programs that tell errors apart. */
  readonly code?: string;
  constructor(message: string, code?: string) {
    super(message);
    this.code = code;
  }
}

/** A mistake in how tunpipe was called (an option, an argument, the pipeline text): exit code 2, nothing started. */
export class UsageError extends TunpipeError {
  override name = 'UsageError';
}

/** What code threw, as text, whatever it threw (`throw null` included). */
export function describeThrown(err: unknown): string {
  if (err instanceof Error) return err.message;
  try {
    return `it threw ${err === null ? 'null' : typeof err === 'object' ? JSON.stringify(err) : String(err)}`;
  } catch {
    return 'it threw a value that cannot be shown';
  }
}
