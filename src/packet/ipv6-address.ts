/** IPv6 address text (RFC 4291 2.2, with `::` and a trailing dotted quad) to 16 bytes. */
import { isIPv6 } from 'node:net';
import { parseIPv4Address } from './ipv4.js';

/** Parses IPv6 text; returns null when it is not a valid address (zone ids are refused). */
export function parseIPv6Address(text: string): Buffer | null {
  if (!isIPv6(text) || text.includes('%')) return null;
  let s = text;
  const lastColon = s.lastIndexOf(':');
  const quad = s.slice(lastColon + 1);
  if (quad.includes('.')) {
    const v4 = parseIPv4Address(quad);
    if (v4 === null) return null;
    s = `${s.slice(0, lastColon + 1)}${(v4 >>> 16).toString(16)}:${(v4 & 0xffff).toString(16)}`;
  }
  const halves = s.split('::');
  const words = (part: string) => (part === '' ? [] : part.split(':').map((w) => parseInt(w, 16)));
  const left = words(halves[0]);
  const right = halves.length > 1 ? words(halves[1]) : [];
  const gap = halves.length > 1 ? 8 - left.length - right.length : 0;
  const all = [...left, ...new Array<number>(gap).fill(0), ...right];
  if (all.length !== 8) return null;
  const out = Buffer.alloc(16);
  all.forEach((w, i) => out.writeUInt16BE(w, i * 2));
  return out;
}
