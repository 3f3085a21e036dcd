/**
 * IPv4 header layout and the checks a receiver makes (RFC 791, RFC 1122 3.2.1). Offsets are relative to
 * the start of the IP header.
 */
import { checksumIsValid } from './checksum.js';

export const IPV4_MIN_HEADER = 20;
export const OFF_VERSION_IHL = 0;
export const OFF_TOTAL_LENGTH = 2;
export const OFF_ID = 4;
export const OFF_FLAGS_FRAGMENT = 6;
export const OFF_TTL = 8;
export const OFF_PROTOCOL = 9;
export const OFF_HEADER_CHECKSUM = 10;
export const OFF_SRC = 12;
export const OFF_DST = 16;

/** The "more fragments" flag and the fragment offset mask within the flags/fragment word. */
export const FLAG_MF = 0x2000;
export const FLAG_DF = 0x4000;
export const FRAGMENT_OFFSET_MASK = 0x1fff;

export const PROTO_ICMP = 1;
export const PROTO_TCP = 6;
export const PROTO_UDP = 17;

/** Drop reasons given by `checkIPv4Header`, exported so tests and counters can name them. */
export const IPV4_DROP = {
  short: 'truncated: shorter than an IPv4 header',
  version: 'not IPv4 (version field)',
  ihl: 'bad IHL (header length below 20 bytes)',
  headerPastEnd: 'truncated: IHL longer than the packet',
  totalLength: 'bad total length (below the header length)',
  truncated: 'truncated: total length longer than the packet',
  checksum: 'bad IPv4 header checksum',
} as const;

/**
 * Checks the IPv4 header that starts at `l3` in `buf`. Returns a drop reason, or null when the header is
 * sound: version 4, IHL at least 5 and inside the buffer, total length between the header length and the
 * buffer length, header checksum right. Bytes past the total length (link padding) are allowed.
 */
export function checkIPv4Header(buf: Uint8Array, l3: number): string | null {
  const avail = buf.length - l3;
  if (avail < IPV4_MIN_HEADER) return IPV4_DROP.short;
  const vihl = buf[l3];
  if (vihl >> 4 !== 4) return IPV4_DROP.version;
  const hlen = (vihl & 0x0f) * 4;
  if (hlen < IPV4_MIN_HEADER) return IPV4_DROP.ihl;
  if (hlen > avail) return IPV4_DROP.headerPastEnd;
  const total = (buf[l3 + 2] << 8) | buf[l3 + 3];
  if (total < hlen) return IPV4_DROP.totalLength;
  if (total > avail) return IPV4_DROP.truncated;
  if (!checksumIsValid(buf, l3, hlen)) return IPV4_DROP.checksum;
  return null;
}

/** Header length in bytes of the IPv4 header at `l3`. */
export function ipv4HeaderLength(buf: Uint8Array, l3: number): number {
  return (buf[l3] & 0x0f) * 4;
}

/** Reads a 32-bit address at `at` as an unsigned number. */
export function readAddress(buf: Uint8Array, at: number): number {
  return ((buf[at] << 24) | (buf[at + 1] << 16) | (buf[at + 2] << 8) | buf[at + 3]) >>> 0;
}

/** Dotted-quad text of an address given as an unsigned 32-bit number. */
export function formatIPv4(addr: number): string {
  return `${addr >>> 24}.${(addr >>> 16) & 0xff}.${(addr >>> 8) & 0xff}.${addr & 0xff}`;
}

const DOTTED_QUAD = /^(0|[1-9]\d{0,2})\.(0|[1-9]\d{0,2})\.(0|[1-9]\d{0,2})\.(0|[1-9]\d{0,2})$/;

/**
 * Parses dotted-quad text; returns null for anything that is not exactly four decimal octets 0..255 written
 * without leading zeros (`010` is octal to inet_aton and decimal to others: refused rather than guessed).
 */
export function parseIPv4Address(text: string): number | null {
  const m = DOTTED_QUAD.exec(text);
  if (!m) return null;
  const o = m.slice(1).map(Number);
  if (o.some((x) => x > 255)) return null;
  return ((o[0] << 24) | (o[1] << 16) | (o[2] << 8) | o[3]) >>> 0;
}

/**
 * True for a source address that must never be answered (RFC 1122 3.2.2.6 and 3.2.1.3): "this network"
 * 0.0.0.0/8, loopback 127/8 (a martian on any other interface), limited broadcast, multicast 224/4 and the
 * reserved 240/4.
 */
export function isUnanswerableSource(addr: number): boolean {
  const first = addr >>> 24;
  return first === 0 || first === 127 || first >= 224;
}

/** True for a destination a reply could not come from: 0/8, loopback, multicast, broadcast, reserved. */
export function isUnanswerableDestination(addr: number): boolean {
  return isUnanswerableSource(addr);
}
