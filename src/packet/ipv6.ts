/**
 * IPv6 (RFC 8200): the fixed header, the walk along the extension-header chain that a receiver makes, the
 * address classes a host never answers, and the upper-layer pseudo-header sum (section 8.1). Offsets are
 * absolute in the packet's buffer unless said otherwise.
 */
import { sum16 } from './checksum.js';

export const IPV6_HEADER = 40;
export const OFF6_PAYLOAD_LENGTH = 4;
export const OFF6_NEXT_HEADER = 6;
export const OFF6_HOP_LIMIT = 7;
export const OFF6_SRC = 8;
export const OFF6_DST = 24;

/** Next-header values (IANA "Assigned Internet Protocol Numbers") that the chain walk knows. */
export const NH_HOP_BY_HOP = 0;
export const NH_TCP = 6;
export const NH_UDP = 17;
export const NH_ROUTING = 43;
export const NH_FRAGMENT = 44;
export const NH_ESP = 50;
export const NH_AH = 51;
export const NH_ICMPV6 = 58;
export const NH_NONE = 59;
export const NH_DEST_OPTS = 60;

export const FRAGMENT_HEADER = 8;
/** In the fragment header's offset word (its bytes 2..3): the offset in 8-byte units, and "more fragments". */
export const FRAG6_OFFSET_MASK = 0xfff8;
export const FRAG6_MF = 0x0001;

export const ICMPV6_ECHO_REQUEST = 128;
export const ICMPV6_ECHO_REPLY = 129;
export const ICMPV6_MLD_QUERY = 130;
export const ICMPV6_MLD_REPORT = 131;
export const ICMPV6_MLD_DONE = 132;
export const ICMPV6_ROUTER_SOLICITATION = 133;
export const ICMPV6_MLD2_REPORT = 143;
/** The hop limit a reply starts with: Linux's default (net.ipv6.conf.*.hop_limit). */
export const REPLY_HOP_LIMIT = 64;

/**
 * Most extension headers a packet may carry before the walk gives up: RFC 8200 allows each kind once (the
 * destination options twice), so a longer chain is an attack on the walk, not a packet.
 */
const MAX_EXTENSION_HEADERS = 8;

/** Drop reasons of the IPv6 checks, exported so tests and counters can name them. */
export const IPV6_DROP = {
  short: 'truncated: shorter than an IPv6 header',
  payloadLength: 'truncated: IPv6 payload length longer than the packet',
  chainTruncated: 'truncated: IPv6 extension header runs past the end of the packet',
  hopByHopNotFirst: 'IPv6 hop-by-hop options header not directly after the IPv6 header',
  chainTooLong: 'IPv6 extension-header chain longer than 8 headers',
  optionTruncated: 'IPv6 option runs past the end of its header',
  optionDiscard: 'IPv6 option of an unknown type that says discard (RFC 8200 4.2)',
  padding: 'IPv6 padding longer than 7 bytes or not zero (as Linux checks it)',
  fragmentHeaderTwice: 'two IPv6 fragment headers',
  firstFragmentChain: 'first IPv6 fragment without the whole header chain (RFC 8200 4.5, RFC 7112)',
} as const;

/**
 * Checks the options (type-length-value) of a hop-by-hop or destination options header whose option area
 * runs from `from` to `to`, as Linux's ip6_parse_tlv does: lengths inside the header, unknown options whose
 * two high type bits ask for a discard (01, 10, 11) refused, padding runs of at most 7 bytes made of zeros.
 */
function checkOptions(b: Uint8Array, from: number, to: number): string | null {
  let i = from;
  let pad = 0;
  while (i < to) {
    const type = b[i];
    if (type === 0) {
      // Pad1
      if (++pad > 7) return IPV6_DROP.padding;
      i++;
      continue;
    }
    if (i + 2 > to) return IPV6_DROP.optionTruncated;
    const len = b[i + 1];
    if (i + 2 + len > to) return IPV6_DROP.optionTruncated;
    if (type === 1) {
      // PadN
      pad += len + 2;
      if (pad > 7) return IPV6_DROP.padding;
      for (let k = i + 2; k < i + 2 + len; k++) if (b[k] !== 0) return IPV6_DROP.padding;
    } else {
      pad = 0;
      // Router alert (5) is known; other options are handled by their action bits (RFC 8200 4.2).
      if (type !== 5 && type >> 6 !== 0) return IPV6_DROP.optionDiscard;
    }
    i += 2 + len;
  }
  return null;
}

/** Where the chain walk ended: the upper-layer offset and protocol, and the fragment header's offset (0: none). */
export interface ChainEnd {
  l4: number;
  proto: number;
  frag: number;
}

/**
 * Walks the extension-header chain of the IPv6 packet whose header starts at `l3` and whose payload ends at
 * `end` (both absolute), with a bounds check on every header. Fills `out` and returns null, or returns a drop
 * reason. The walk stops at the first header that is not an extension header this code walks through: an
 * upper-layer protocol, ESP (50: what follows is encrypted), "no next header" (59); and after the fragment
 * header of a fragment that is not the first (what follows is the middle of the datagram's payload).
 */
export function walkExtensionHeaders(b: Uint8Array, l3: number, end: number, out: ChainEnd): string | null {
  let nh = b[l3 + OFF6_NEXT_HEADER];
  let at = l3 + IPV6_HEADER;
  let frag = 0;
  let count = 0;
  for (;;) {
    if (nh !== NH_HOP_BY_HOP && nh !== NH_ROUTING && nh !== NH_FRAGMENT && nh !== NH_DEST_OPTS && nh !== NH_AH) break;
    if (++count > MAX_EXTENSION_HEADERS) return IPV6_DROP.chainTooLong;
    if (nh === NH_HOP_BY_HOP && at !== l3 + IPV6_HEADER) return IPV6_DROP.hopByHopNotFirst;
    if (at + 2 > end) return frag !== 0 ? IPV6_DROP.firstFragmentChain : IPV6_DROP.chainTruncated;
    const next = b[at];
    if (nh === NH_FRAGMENT) {
      if (frag !== 0) return IPV6_DROP.fragmentHeaderTwice;
      if (at + FRAGMENT_HEADER > end) return IPV6_DROP.chainTruncated;
      frag = at;
      at += FRAGMENT_HEADER;
      nh = next;
      // Past a later fragment's header come payload bytes, not headers.
      if (((b[frag + 2] << 8) | b[frag + 3]) & FRAG6_OFFSET_MASK) break;
      continue;
    }
    const len = nh === NH_AH ? (b[at + 1] + 2) * 4 : (b[at + 1] + 1) * 8;
    if (at + len > end) return frag !== 0 ? IPV6_DROP.firstFragmentChain : IPV6_DROP.chainTruncated;
    if (nh === NH_HOP_BY_HOP || nh === NH_DEST_OPTS) {
      const bad = checkOptions(b, at + 2, at + len);
      if (bad !== null) return bad;
    }
    at += len;
    nh = next;
  }
  out.l4 = at;
  out.proto = nh;
  out.frag = frag;
  return null;
}

/** The fragment header's offset word (offset in bytes, with M in bit 0) of the fragment header at `frag`. */
export function fragmentWord(b: Uint8Array, frag: number): number {
  return (b[frag + 2] << 8) | b[frag + 3];
}

/**
 * True when the packet whose fragment header is at `frag` (0: none) is a piece of a larger datagram: an
 * offset or the M flag. An atomic fragment (both clear, RFC 6946) is whole.
 */
export function isIPv6Fragment(b: Uint8Array, frag: number): boolean {
  return frag !== 0 && (fragmentWord(b, frag) & (FRAG6_OFFSET_MASK | FRAG6_MF)) !== 0;
}

/**
 * The segments-left value of the routing header between `l3` and `l4` (0 when there is none). A routing
 * header with segments left is addressed to a later hop: this host would forward, not answer.
 */
export function routingSegmentsLeft(b: Uint8Array, l3: number, l4: number): number {
  let nh = b[l3 + OFF6_NEXT_HEADER];
  let at = l3 + IPV6_HEADER;
  while (at < l4) {
    if (nh === NH_ROUTING) return b[at + 3];
    const next = b[at];
    at += nh === NH_FRAGMENT ? FRAGMENT_HEADER : nh === NH_AH ? (b[at + 1] + 2) * 4 : (b[at + 1] + 1) * 8;
    nh = next;
  }
  return 0;
}

/**
 * The unfolded sum of the IPv6 pseudo-header (RFC 8200 8.1): source, destination, the 32-bit upper-layer
 * length and the next-header value. The destination is the one in the header, which is the final one unless a
 * routing header still has segments left (such packets are not this host's to answer or checksum).
 */
export function pseudoHeaderSum6(b: Uint8Array, l3: number, upperLength: number, proto: number): number {
  return sum16(b, l3 + OFF6_SRC, 32) + (upperLength >>> 16) + (upperLength & 0xffff) + proto;
}

/** True for ff00::/8. */
export function isMulticast6(b: Uint8Array, at: number): boolean {
  return b[at] === 0xff;
}

function allZero(b: Uint8Array, at: number, n: number): boolean {
  for (let i = at; i < at + n; i++) if (b[i] !== 0) return false;
  return true;
}

/** True for the unspecified address `::`. */
export function isUnspecified6(b: Uint8Array, at: number): boolean {
  return allZero(b, at, 16);
}

/** True for the loopback address `::1`. */
export function isLoopback6(b: Uint8Array, at: number): boolean {
  return allZero(b, at, 15) && b[at + 15] === 1;
}

/** True for an IPv4-mapped address `::ffff:a.b.c.d`, which Linux refuses on the wire (RFC 4291 2.5.5.2). */
export function isV4Mapped6(b: Uint8Array, at: number): boolean {
  return allZero(b, at, 10) && b[at + 10] === 0xff && b[at + 11] === 0xff;
}

/**
 * Why no echo reply may go to this source address, or null: unspecified (nowhere to answer), multicast (a
 * source never is, RFC 4291 2.7; ip6_rcv drops it), loopback or IPv4-mapped (ip6_rcv drops them on any
 * device but loopback).
 */
export function unanswerableSource6(b: Uint8Array, at: number): boolean {
  return b[at] === 0xff || isUnspecified6(b, at) || isLoopback6(b, at) || isV4Mapped6(b, at);
}

/** Text of 16 address bytes (lower-case hex words, no `::` shortening), for messages. */
export function formatIPv6(b: Uint8Array, at: number): string {
  const words: string[] = [];
  for (let i = 0; i < 16; i += 2) words.push(((b[at + i] << 8) | b[at + i + 1]).toString(16));
  return words.join(':');
}
