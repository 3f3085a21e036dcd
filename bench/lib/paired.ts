/**
 * The paired comparison. Measurements are grouped in blocks: every responder once, back to back (see
 * session.ts). Within a block they see nearly the same machine state (the ping client's speed, where the
 * scheduler puts it, other people's load), so each candidate is compared with the reference's measurement OF THE
 * SAME BLOCK: a ratio for throughput and CPU, a difference for RTT. The report gives the median of those
 * per-block values and their spread; the drift between blocks, which is large on a shared machine, cancels out
 * of each pair instead of adding to the noise.
 *
 * A block counts as valid only when both measurements succeeded and the kernel counted their replies as valid
 * (nstat, for the flood and the latency test) and the value is finite; every other block is kept as a FAILED
 * block: out of the median, but in n of k/n, so that a run cannot meet a bar by losing its bad blocks.
 */
import { REF_LABEL } from './responders.js';
import type { Measurement } from './session.js';
import { summarizeSample, type SampleSummary } from './stats.js';

export interface PerBlockValue {
  block: number;
  /** NaN for a failed block. */
  value: number;
  valid: boolean;
}

export interface PairedMetric {
  kind: 'ratio' | 'difference';
  /** Every block the candidate was in, failed ones included. */
  perBlock: PerBlockValue[];
  /** Of the valid blocks only. */
  summary: SampleSummary;
}

export interface PairedComparison {
  label: string;
  /** Blocks in which both this responder's measurement and the reference's succeeded with valid replies. */
  pairs: number;
  /** Blocks the candidate was in (n of k/n). */
  blocks: number;
  repliesPerSec: PairedMetric;
  usCpuPerReply: PairedMetric;
  rttAvgUs: PairedMetric;
  rttP99Us: PairedMetric;
}

/** The replies of both measurements were counted as valid by the kernel. */
export function validPair(ref: Measurement | undefined, c: Measurement): boolean {
  const valid = (m: Measurement) => m.ok && m.flood?.nstat.valid === true && m.latency?.nstat.valid === true;
  return ref !== undefined && valid(ref) && valid(c);
}

function paired(
  pairs: [Measurement | undefined, Measurement][],
  kind: PairedMetric['kind'],
  value: (r: Measurement) => number | undefined,
): PairedMetric {
  const perBlock = pairs.map(([ref, c]) => {
    const v = validPair(ref, c) ? (kind === 'ratio' ? (value(c) ?? NaN) / (value(ref!) ?? NaN) : (value(c) ?? NaN) - (value(ref!) ?? NaN)) : NaN;
    return { block: c.block, value: v, valid: Number.isFinite(v) };
  });
  return { kind, perBlock, summary: summarizeSample(perBlock.filter((p) => p.valid).map((p) => p.value)) };
}

/**
 * The candidate's measurements (those `accept` keeps: e.g. one I/O path) paired with the reference's of the
 * same block; a block where the reference has none or failed is a failed block of the candidate.
 */
export function compareWithRef(
  measurements: Measurement[],
  label: string,
  accept: (m: Measurement) => boolean = () => true,
  name = label,
): PairedComparison {
  const refByBlock = new Map(measurements.filter((m) => m.label === REF_LABEL).map((m) => [m.block, m]));
  const pairs: [Measurement | undefined, Measurement][] = [];
  for (const c of measurements) {
    if (c.label === label && accept(c)) pairs.push([refByBlock.get(c.block), c]);
  }
  return {
    label: name,
    pairs: pairs.filter(([ref, c]) => validPair(ref, c)).length,
    blocks: pairs.length,
    repliesPerSec: paired(pairs, 'ratio', (r) => r.flood?.repliesPerSec),
    usCpuPerReply: paired(pairs, 'ratio', (r) => r.flood?.usCpuPerReply),
    rttAvgUs: paired(pairs, 'difference', (r) => r.latency?.avgUs),
    rttP99Us: paired(pairs, 'difference', (r) => r.latency?.p99Us),
  };
}

/** How many of the per-block values meet a bar on their own: how robust a verdict on the median is. */
export function blocksMeeting(m: PairedMetric, test: (v: number) => boolean): number {
  return m.perBlock.filter((p) => p.valid && test(p.value)).length;
}

/** The verdict on the median of the valid blocks; not met when any block failed or none was valid. */
export function barMet(m: PairedMetric, test: (v: number) => boolean): boolean {
  const failed = m.perBlock.length - m.summary.n;
  return m.summary.n > 0 && failed === 0 && test(m.summary.median);
}
