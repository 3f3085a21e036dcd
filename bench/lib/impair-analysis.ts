/**
 * The arithmetic of the impairment accuracy section (lib/impair.ts runs the measurements): reading ping's
 * output, the statistics each row needs, and the expected values to compare with.
 * - Delay: mean RTT with the delay minus the mean RTT of the same wire without it, against twice the
 *   one-way delay; p99 reported.
 * - Jitter: the one-way jitter's standard deviation from the RTTs' spread, with the wire's own spread taken
 *   out (independent variances add): sqrt(s² - s_base²), each s estimated as interquartile range / 1.349
 *   (exact for a normal distribution, and blind to the rare late wake-ups of a loaded machine, which make
 *   ping's mdev useless here). Reordering: replies that arrive after a later-sent one.
 * - Loss: the requests without a reply against the 99% binomial interval of the configured probability;
 *   Gilbert-Elliott bursts as runs of consecutive missing sequence numbers, their mean against 1/r.
 * - Rate: the bucket counts IP bytes, iperf3 counts payload, so the goodput to expect is the rate times
 *   payload / IP packet size (TCP: MSS / (MSS + 20 IP + 20 TCP + 12 timestamps); UDP: L / (L + 28)).
 */

/** What one run of iputils ping printed. */
export interface PingRun {
  transmitted: number;
  received: number;
  /** icmp_seq of each reply, in the order the replies arrived (duplicates included). */
  seqs: number[];
  /** Per-reply round-trip times in ms, as printed (3 significant digits). */
  rtts: number[];
  /** The summary line's mean and mdev (population standard deviation), in ms, to the microsecond. */
  avg: number;
  mdev: number;
}

export function parsePing(output: string): PingRun {
  const summary = /(\d+) packets transmitted, (\d+) received/.exec(output);
  if (!summary) throw new Error(`no ping summary in: ${output.slice(-300)}`);
  const seqs: number[] = [];
  const rtts: number[] = [];
  for (const m of output.matchAll(/icmp_seq=(\d+) ttl=\d+ time=([\d.]+) ms/g)) {
    seqs.push(Number(m[1]));
    rtts.push(Number(m[2]));
  }
  const rtt = /= ([\d.]+)\/([\d.]+)\/([\d.]+)\/([\d.]+) ms/.exec(output);
  return {
    transmitted: Number(summary[1]),
    received: Number(summary[2]),
    seqs,
    rtts,
    avg: rtt ? Number(rtt[2]) : NaN,
    mdev: rtt ? Number(rtt[4]) : NaN,
  };
}

/** Nearest-rank percentile (an observed value). */
export function percentile(xs: number[], p: number): number {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1))];
}

/** Replies that arrived after a reply with a higher sequence number (0 when order was kept). */
export function reordered(seqs: number[]): number {
  let n = 0;
  let highest = -Infinity;
  for (const s of seqs) {
    if (s < highest) n++;
    else highest = s;
  }
  return n;
}

/** Lengths of the runs of sequence numbers 1..transmitted that got no reply. */
export function lossBursts(seqs: number[], transmitted: number): number[] {
  const got = new Uint8Array(transmitted + 1);
  for (const s of seqs) if (s >= 1 && s <= transmitted) got[s] = 1;
  const runs: number[] = [];
  let run = 0;
  for (let s = 1; s <= transmitted; s++) {
    if (!got[s]) run++;
    else if (run > 0) {
      runs.push(run);
      run = 0;
    }
  }
  if (run > 0) runs.push(run);
  return runs;
}

const Z99 = 2.5758293035489;

/** The two-sided 99% interval of the count of successes in n trials of probability p (normal approximation). */
export function binomialInterval99(n: number, p: number): [number, number] {
  const half = Z99 * Math.sqrt(n * p * (1 - p));
  return [n * p - half, n * p + half];
}

/** Mean and the half-width of its 99% interval. */
export function meanWithInterval(xs: number[]): { mean: number; half: number } {
  const mean = xs.reduce((a, b) => a + b, 0) / xs.length;
  const sd = Math.sqrt(xs.reduce((a, b) => a + (b - mean) ** 2, 0) / Math.max(1, xs.length - 1));
  return { mean, half: (Z99 * sd) / Math.sqrt(xs.length) };
}

/** A normal distribution's standard deviation from a sample's interquartile range (robust to outliers). */
export function robustDeviation(xs: number[]): number {
  if (xs.length < 4) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  const q = (f: number) => {
    const h = (s.length - 1) * f;
    const lo = Math.floor(h);
    return s[lo] + (h - lo) * (s[Math.min(s.length - 1, lo + 1)] - s[lo]);
  };
  return (q(0.75) - q(0.25)) / 1.3489795003921634;
}

/** The jitter's standard deviation from the RTTs' (`sd`), the wire's own (`baseSd`) taken out. */
export function jitterDeviation(sd: number, baseSd: number): number {
  return Math.sqrt(Math.max(0, sd * sd - baseSd * baseSd));
}

/** TCP goodput a bucket of `bitsPerSecond` IP bits allows, for segments of `mss` payload bytes with timestamps. */
export function tcpGoodput(bitsPerSecond: number, mss: number): number {
  return (bitsPerSecond * mss) / (mss + 52);
}

/** UDP goodput a bucket of `bitsPerSecond` IP bits allows, for datagrams of `payload` bytes over IPv4. */
export function udpGoodput(bitsPerSecond: number, payload: number): number {
  return (bitsPerSecond * payload) / (payload + 28);
}

/** One row of the accuracy table. */
export interface AccuracyRow {
  what: string;
  configured: string;
  measured: string;
  /** The error against the configured value, as text ("+0.04 ms", "-1.2%"). */
  error: string;
  /** The bar it is held to ("|error| <= 0.1 ms"), and whether it met it (null: reported only). */
  bar: string;
  pass: boolean | null;
}

export function formatAccuracyTable(rows: AccuracyRow[]): string {
  const head: AccuracyRow = { what: 'impairment', configured: 'configured', measured: 'measured', error: 'error', bar: 'bar', pass: null };
  const cells = (r: AccuracyRow) => [r.what, r.configured, r.measured, r.error, r.bar, r.pass === null ? '' : r.pass ? 'PASS' : 'FAIL'];
  const all = [head, ...rows].map(cells);
  const widths = all[0].map((_, i) => Math.max(...all.map((c) => c[i].length)));
  return all.map((c) => c.map((x, i) => x.padEnd(widths[i])).join('  ').trimEnd()).join('\n');
}
