/**
 * How a stage that throws is counted, the same in the fused engine and in an it-pipe transform: the packet
 * is dropped under `error: <message>`, with at most MAX_ERROR_REASONS distinct messages per stage and the
 * rest under one reason (so a message with a packet number in it cannot grow the table), and the caller
 * is told when this is the stage's first error, the one to report.
 */
import type { StageStats } from './stage.js';

/** Distinct error messages counted per stage before the rest are lumped together. */
export const MAX_ERROR_REASONS = 8;

/** The reason the errors beyond MAX_ERROR_REASONS distinct messages are counted under. */
export const OTHER_ERRORS = 'error: (other messages)';

/** What a stage keeps between its errors. */
export interface StageErrorState {
  /** Distinct error messages counted so far. */
  errorReasons: number;
  /** Set once the first error was reported. */
  reportedError: boolean;
}

/** Counts one error of a stage into `stats`; returns its message, and whether it is the first to report. */
export function recordStageError(stats: StageStats, state: StageErrorState, err: unknown): { message: string; first: boolean } {
  const message = err instanceof Error ? err.message : String(err);
  const reason = `error: ${message}`;
  if (stats.reasons.has(reason)) {
    stats.drop(reason);
  } else if (state.errorReasons < MAX_ERROR_REASONS) {
    state.errorReasons++;
    stats.drop(reason);
  } else {
    stats.drop(OTHER_ERRORS);
  }
  const first = !state.reportedError;
  state.reportedError = true;
  return { message, first };
}
