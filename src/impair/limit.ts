/**
 * A queue bound written either as a size (`limit=100kB`: bytes held) or as a time (`limit=50ms`: how long a
 * packet may wait), as in `rate RATE limit=SIZE|TIME`. One string argument parsed by both unit parsers:
 * a unit says which (B/kB/KiB... a size; ns/us/ms/s... a time); a bare number is bytes.
 */
import { TunpipeError } from '../errors.js';
import { parseDuration, parseSize } from '../pipeline/units.js';

export type QueueLimit = { kind: 'bytes'; bytes: number } | { kind: 'time'; ms: number };

/** The limit written in `text`, or a message saying what was expected (never throws). */
export function parseQueueLimit(text: string): QueueLimit | string {
  const bytes = parseSize(text);
  if (typeof bytes === 'number') return bytes > 0 ? { kind: 'bytes', bytes } : `limit=${text}: give a size above 0 (such as 100kB) or a time (such as 50ms)`;
  const ms = parseDuration(text);
  if (typeof ms === 'number') return ms > 0 ? { kind: 'time', ms } : `limit=${text}: give a time above 0 (such as 50ms) or a size (such as 100kB)`;
  return `limit=${text}: expected a size such as 100kB or 64KiB, or a time such as 50ms`;
}

/** Like parseQueueLimit, for create(): a bad limit is a TunpipeError (the CLI has refused it before, in checkArgs). */
export function queueLimit(stage: string, text: string): QueueLimit {
  const limit = parseQueueLimit(text);
  if (typeof limit === 'string') throw new TunpipeError(`${stage} ${limit}`);
  return limit;
}

/** How a limit reads in a report. */
export function describeLimit(limit: QueueLimit): string {
  return limit.kind === 'bytes' ? `${limit.bytes} bytes` : `${limit.ms} ms`;
}
