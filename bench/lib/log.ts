/**
 * Progress lines and the bench's clock. Progress goes to stderr so that stdout holds only the final report.
 */
import { performance } from 'node:perf_hooks';

const startedAt = performance.now();

export function log(line: string): void {
  process.stderr.write(`${line}\n`);
}

/** Seconds since the bench started: the time budget is checked against this. */
export function elapsedS(): number {
  return (performance.now() - startedAt) / 1000;
}
