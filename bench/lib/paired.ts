/**
 * The paired comparison. Measurements are grouped in blocks: every responder once, back to back (see
 * session.ts). Within a block they see nearly the same machine state (the ping client's speed, where the
 * scheduler puts it, other people's load), so each candidate is compared with the reference's measurement OF THE
 * SAME BLOCK: a ratio for throughput and CPU, a difference for RTT. The report gives the median of those
 * per-block values and their spread; the drift between blocks, which is large on a shared machine, cancels out
 * of each pair instead of adding to the noise.
 */
import { REF_LABEL } from './responders.js';
import type { Measurement } from './session.js';
import { summarizeSample, type SampleSummary } from './stats.js';

export interface PerBlockValue {
  block: number;
  value: number;
}

export interface PairedMetric {
  kind: 'ratio' | 'difference';
  perBlock: PerBlockValue[];
  summary: SampleSummary;
}

export interface PairedComparison {
  label: string;
  /** Blocks in which both this responder's measurement and the reference's succeeded. */
  pairs: number;
  repliesPerSec: PairedMetric;
  usCpuPerReply: PairedMetric;
  rttAvgUs: PairedMetric;
  rttP99Us: PairedMetric;
}

function paired(
  pairs: [Measurement, Measurement][],
  kind: PairedMetric['kind'],
  value: (r: Measurement) => number | undefined,
): PairedMetric {
  const perBlock = pairs.map(([ref, c]) => {
    const a = value(ref) ?? NaN;
    const b = value(c) ?? NaN;
    return { block: c.block, value: kind === 'ratio' ? b / a : b - a };
  });
  return { kind, perBlock, summary: summarizeSample(perBlock.map((p) => p.value)) };
}

export function compareWithRef(measurements: Measurement[], label: string): PairedComparison {
  const refByBlock = new Map(measurements.filter((m) => m.label === REF_LABEL && m.ok).map((m) => [m.block, m]));
  const pairs: [Measurement, Measurement][] = [];
  for (const c of measurements) {
    const ref = refByBlock.get(c.block);
    if (c.label === label && c.ok && ref) pairs.push([ref, c]);
  }
  return {
    label,
    pairs: pairs.length,
    repliesPerSec: paired(pairs, 'ratio', (r) => r.flood?.repliesPerSec),
    usCpuPerReply: paired(pairs, 'ratio', (r) => r.flood?.usCpuPerReply),
    rttAvgUs: paired(pairs, 'difference', (r) => r.latency?.avgUs),
    rttP99Us: paired(pairs, 'difference', (r) => r.latency?.p99Us),
  };
}

/** How many of the per-block values meet a bar on their own: how robust a verdict on the median is. */
export function blocksMeeting(m: PairedMetric, test: (v: number) => boolean): number {
  return m.perBlock.filter((p) => Number.isFinite(p.value) && test(p.value)).length;
}
