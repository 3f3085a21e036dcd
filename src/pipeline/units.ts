/**
 * Quantities as users write them in stage arguments, each turned into one plain number:
 * - durations: `10ms`, `250us`, `1.5s`, `2m`, `1h`, `500ns` -> milliseconds (a bare number is seconds; at most
 *   a year);
 * - sizes: `1500`, `100kB`, `64KiB`, `1.5MB`, `2GiB` -> bytes (kB/MB/GB are powers of 1000, KiB/MiB/GiB of 1024);
 * - rates: `10mbit`, `1gbit`, `500kbit`, `500kbps` (bytes per second, as tc writes it), `64bit` -> bits per second
 *   (a bare number is bits per second);
 * - probabilities: `1%`, `0.01`, `0.5%` -> a fraction from 0 to 1.
 * Each parser returns the number, or a message saying what it expected (never throws).
 */

const DECIMAL = /^(\d+(?:\.\d*)?|\.\d+)/;

function split(text: string): { value: number; unit: string } | null {
  const m = DECIMAL.exec(text);
  if (!m) return null;
  return { value: Number(m[1]), unit: text.slice(m[1].length) };
}

const DURATION_MS: Record<string, number> = { ns: 1e-6, us: 1e-3, 'µs': 1e-3, ms: 1, s: 1000, '': 1000, m: 60_000, min: 60_000, h: 3_600_000 };

/**
 * The longest duration taken: a year. Longer ones (`99999999999999999999s`) are typos, and as packet times
 * they would pass what a capture file can hold.
 */
export const MAX_DURATION_MS = 365 * 24 * 3_600_000;

/** `10ms` -> 10. */
export function parseDuration(text: string): number | string {
  const s = split(text.trim());
  const scale = s ? DURATION_MS[s.unit.toLowerCase()] : undefined;
  if (!s || scale === undefined) return `expected a duration such as 10ms, 250us, 1.5s or 1h, got '${text}'`;
  const ms = s.value * scale;
  if (!(ms <= MAX_DURATION_MS)) return `'${text}' is longer than a year, the longest duration taken`;
  return ms;
}

const SIZE_BYTES: Record<string, number> = { '': 1, b: 1, kb: 1e3, mb: 1e6, gb: 1e9, kib: 1024, mib: 1024 ** 2, gib: 1024 ** 3 };

/** `100kB` -> 100000, `64KiB` -> 65536. Whole bytes only. */
export function parseSize(text: string): number | string {
  const s = split(text.trim());
  const scale = s ? SIZE_BYTES[s.unit.toLowerCase()] : undefined;
  if (!s || scale === undefined) return `expected a size such as 1500, 100kB, 64KiB or 1GB, got '${text}'`;
  const bytes = s.value * scale;
  if (!Number.isInteger(bytes)) return `expected a whole number of bytes, got '${text}' (${bytes} bytes)`;
  return bytes;
}

const RATE_BITS: Record<string, number> = {
  '': 1,
  bit: 1,
  kbit: 1e3,
  mbit: 1e6,
  gbit: 1e9,
  bps: 8,
  kbps: 8e3,
  mbps: 8e6,
  gbps: 8e9,
};

/** `10mbit` -> 10_000_000 bits per second; `500kbps` (kilobytes per second, as in tc) -> 4_000_000. */
export function parseRate(text: string): number | string {
  const s = split(text.trim());
  const scale = s ? RATE_BITS[s.unit.toLowerCase()] : undefined;
  if (!s || scale === undefined || s.value <= 0) return `expected a rate such as 10mbit, 1gbit, 500kbit or 500kbps (bytes/s), got '${text}'`;
  return s.value * scale;
}

/** `1%` -> 0.01, `0.25` -> 0.25. */
export function parseProbability(text: string): number | string {
  const t = text.trim();
  const pct = t.endsWith('%');
  const s = split(pct ? t.slice(0, -1) : t);
  const value = s && s.unit === '' ? (pct ? s.value / 100 : s.value) : NaN;
  if (!(value >= 0 && value <= 1)) return `expected a probability such as 1%, 0.5% or 0.01 (0 to 1), got '${text}'`;
  return value;
}
