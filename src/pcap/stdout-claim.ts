/**
 * Who writes a capture to stdout in this thread: a capture writer on `-` (the pcap stage's `pcap -`, and
 * `--write -`, which both go through ./capture-file.ts) claims stdout while it is open, so that text output
 * (`print`) goes to stderr rather than into the middle of a capture. A fallback for when the driver cannot
 * say so itself (StageContext.stdoutTaken); both are consulted.
 */
let claims = 0;

export function claimStdout(): void {
  claims++;
}

export function releaseStdout(): void {
  if (claims > 0) claims--;
}

/** True while some capture writer in this thread writes to stdout. */
export function stdoutClaimed(): boolean {
  return claims > 0;
}
