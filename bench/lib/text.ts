/**
 * Number formatting for the table and the progress lines, and squeezing a child's output into one line.
 */

export function fmtInt(x: number): string {
  return Number.isFinite(x) ? Math.round(x).toLocaleString('en-US') : '—';
}

export function fmtNum(x: number, digits: number): string {
  return Number.isFinite(x) ? x.toFixed(digits) : '—';
}

export function plural(n: number, noun: string): string {
  return `${n} ${noun}${n === 1 ? '' : 's'}`;
}

/** With an explicit sign, for differences (RTT tunpipe − ref). */
export function fmtSigned(x: number, digits: number): string {
  if (!Number.isFinite(x)) return '—';
  const s = x.toFixed(digits);
  return x >= 0 && !s.startsWith('-') ? `+${s}` : s;
}

/**
 * A process's output on one short line: its first line that mentions an error (where Node and most CLIs say
 * what went wrong; a stack trace follows it) and its last line.
 */
export function oneLine(text: string, max = 300): string {
  const lines = text.split('\n').map((l) => l.trim()).filter(Boolean);
  const last = lines[lines.length - 1] ?? '';
  const firstError = lines.find((l) => /error/i.test(l));
  const joined = firstError && firstError !== last ? `${firstError} … ${last}` : last;
  return joined.length > max ? `${joined.slice(0, max)}…` : joined;
}
