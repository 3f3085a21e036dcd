/**
 * Names of capture files when a capture rotates: strftime patterns (`cap-%Y%m%d-%H%M%S.pcap`, local time,
 * as tcpdump -G uses them) and numbered names (`cap.pcap` -> `cap-00001.pcap`, `cap-00002.pcap`, ...:
 * the number goes before the extension, so that every file keeps the extension Wireshark opens it by,
 * zero-padded so that names sort by age; numbers are never reused, also in a ring of `files=N`).
 */
import { basename, dirname, extname, join } from 'node:path';

const CONVERSIONS = 'YmdHMSjyse%';

/** True when `pattern` holds a strftime conversion this module expands. */
export function hasTimePattern(pattern: string): boolean {
  for (let i = pattern.indexOf('%'); i >= 0; i = pattern.indexOf('%', i + 2)) {
    if (i + 1 < pattern.length && CONVERSIONS.includes(pattern[i + 1])) return true;
  }
  return false;
}

/** The first conversion in `pattern` that this module does not know, or null. */
export function unknownConversion(pattern: string): string | null {
  for (let i = pattern.indexOf('%'); i >= 0; i = pattern.indexOf('%', i + 2)) {
    const c = pattern[i + 1];
    if (c === undefined || !CONVERSIONS.includes(c)) return `%${c ?? ''}`;
  }
  return null;
}

const two = (n: number) => String(n).padStart(2, '0');

/** Expands %Y %m %d %H %M %S %j %y %e %s %% at `epochMs`, in local time. */
export function strftime(pattern: string, epochMs: number): string {
  const d = new Date(epochMs);
  const startOfYear = new Date(d.getFullYear(), 0, 1).getTime();
  const day = Math.floor((new Date(d.getFullYear(), d.getMonth(), d.getDate()).getTime() - startOfYear) / 86_400_000) + 1;
  return pattern.replace(/%([YmdHMSjyse%])/g, (_, c: string) => {
    switch (c) {
      case 'Y':
        return String(d.getFullYear());
      case 'y':
        return two(d.getFullYear() % 100);
      case 'm':
        return two(d.getMonth() + 1);
      case 'd':
        return two(d.getDate());
      case 'e':
        return String(d.getDate()).padStart(2, ' ');
      case 'H':
        return two(d.getHours());
      case 'M':
        return two(d.getMinutes());
      case 'S':
        return two(d.getSeconds());
      case 'j':
        return String(day).padStart(3, '0');
      case 's':
        return String(Math.floor(epochMs / 1000));
      default:
        return '%';
    }
  });
}

/** `dir/cap.pcap`, 7 -> `dir/cap-00007.pcap` (a name without extension: `cap-00007`). */
export function numbered(path: string, n: number, digits = 5): string {
  const base = basename(path);
  const ext = extname(base);
  const stem = ext && ext !== base ? base.slice(0, -ext.length) : base;
  return join(dirname(path), `${stem}-${String(n).padStart(digits, '0')}${ext && ext !== base ? ext : ''}`);
}

/**
 * Start of the period of `ms` milliseconds that holds `epochMs`, aligned to the local clock: periods that
 * divide a day start at local midnight (time=1h on the hour, time=15m at :00, :15, ...); longer ones count
 * from the epoch.
 */
export function periodStart(epochMs: number, ms: number): number {
  const tz = new Date(epochMs).getTimezoneOffset() * 60_000;
  const local = epochMs - tz;
  return Math.floor(local / ms) * ms + tz;
}
