/**
 * The few statistics the report uses: medians, quantiles, and a sample's summary (median and spread).
 */

export function median(xs: number[]): number {
  const s = finiteSorted(xs);
  if (s.length === 0) return NaN;
  const mid = s.length >> 1;
  return s.length % 2 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}

function finiteSorted(xs: number[]): number[] {
  return xs.filter((x) => Number.isFinite(x)).sort((a, b) => a - b);
}

/** Nearest-rank percentile of an ascending array (an observed value: what "p99 RTT" usually means). */
export function percentileNearestRank(sorted: number[], p: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))]!;
}

/** Quantile with linear interpolation between order statistics (R's type 7), for quartiles of few values. */
function quantile(sorted: number[], q: number): number {
  if (sorted.length === 0) return NaN;
  const h = (sorted.length - 1) * q;
  const lo = Math.floor(h);
  const hi = Math.min(sorted.length - 1, lo + 1);
  return sorted[lo]! + (h - lo) * (sorted[hi]! - sorted[lo]!);
}

export interface SampleSummary {
  n: number;
  median: number;
  min: number;
  max: number;
  q1: number;
  q3: number;
}

export function summarizeSample(xs: number[]): SampleSummary {
  const s = finiteSorted(xs);
  return {
    n: s.length,
    median: median(s),
    min: s.length ? s[0]! : NaN,
    max: s.length ? s[s.length - 1]! : NaN,
    q1: quantile(s, 0.25),
    q3: quantile(s, 0.75),
  };
}
