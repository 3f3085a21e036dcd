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

/**
 * A mistake in what the user wrote (an option's value, an argument): the CLI exits 2 for these, as for any
 * usage error, and nothing has been started. `code` is always 'EUSAGE'.
 */
export class UsageError extends TunpipeError {
  override name = 'UsageError';
  constructor(message: string) {
    super(message, 'EUSAGE');
  }
}
