/**
 * Pooled statistics over the blocks of one or more bench runs: the median of the per-block paired values, a
 * percentile-bootstrap 95% interval for it from a seeded resampler (so a README regenerated from the same files
 * prints the same interval), and k/n, where a failed block (no valid measurement, a value that is NaN or
 * infinite) counts in n and never in k.
 */
import { median } from './stats.js';

/** A block's paired value, or null when the block failed (it still counts in n). */
export type BlockValue = number | null;

/** mulberry32: a small, fast 32-bit generator; the same seed gives the same sequence on every machine. */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export interface Interval {
  low: number;
  high: number;
}

/**
 * Percentile bootstrap of the median: `resamples` samples of the same size drawn with replacement, the median
 * of each, and the 2.5% and 97.5% quantiles of those medians. NaN bounds for an empty sample.
 */
export function bootstrapMedianInterval(values: number[], seed: number, resamples = 10_000, level = 0.95): Interval {
  const xs = values.filter((v) => Number.isFinite(v));
  if (xs.length === 0) return { low: NaN, high: NaN };
  const rand = seededRandom(seed);
  const medians = new Float64Array(resamples);
  const sample = new Float64Array(xs.length);
  for (let r = 0; r < resamples; r++) {
    for (let i = 0; i < xs.length; i++) sample[i] = xs[Math.floor(rand() * xs.length)]!;
    sample.sort();
    const mid = sample.length >> 1;
    medians[r] = sample.length % 2 ? sample[mid]! : (sample[mid - 1]! + sample[mid]!) / 2;
  }
  medians.sort();
  const at = (q: number) => medians[Math.min(resamples - 1, Math.max(0, Math.round(q * (resamples - 1))))]!;
  const tail = (1 - level) / 2;
  return { low: at(tail), high: at(1 - tail) };
}

export interface PooledSummary {
  /** Blocks, failed ones included. */
  n: number;
  /** Blocks whose value is valid and finite (what the median and interval are computed from). */
  valid: number;
  failed: number;
  median: number;
  min: number;
  max: number;
  interval: Interval;
  /** Blocks meeting the bar on their own (failed blocks never do); undefined without a bar. */
  meeting?: number;
  /** The verdict on the pooled median; false when no block was valid or when a block failed. */
  met?: boolean;
}

/**
 * A failed block makes the verdict "not met": a run whose replies the kernel did not count as valid in every
 * block shows no bar as met, whatever the median of the others says.
 */
export function pool(values: BlockValue[], seed: number, bar?: (v: number) => boolean): PooledSummary {
  const ok = values.filter((v): v is number => v !== null && Number.isFinite(v));
  const out: PooledSummary = {
    n: values.length,
    valid: ok.length,
    failed: values.length - ok.length,
    median: median(ok),
    min: ok.length ? Math.min(...ok) : NaN,
    max: ok.length ? Math.max(...ok) : NaN,
    interval: bootstrapMedianInterval(ok, seed),
  };
  if (bar) {
    out.meeting = ok.filter(bar).length;
    out.met = ok.length > 0 && out.failed === 0 && bar(out.median);
  }
  return out;
}
