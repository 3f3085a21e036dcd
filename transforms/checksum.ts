/**
 * checksum: makes the IPv4 header checksum and the transport checksum (ICMP, ICMPv6, TCP, UDP; over IPv4 and
 * IPv6) right.
 *
 * Arguments: `mode=auto|full|incremental` (default auto).
 * - auto: where earlier stages recorded which words they changed (to-reply does), the checksums are
 *   updated incrementally (RFC 1624 equation 3, exact, including the 0x0000/0xFFFF corner); a packet with
 *   no recorded change is recomputed in full, since a stage may have edited its bytes directly.
 * - full: always recompute both checksums from the bytes.
 * - incremental: apply recorded changes only; leave other packets as they are.
 * Recorded changes are trusted only when every stage before this one declares that it records its changes
 * (`recordsChanges`, every built-in stage does): after any other stage (a user's stage that may edit bytes,
 * or unknown it-pipe transforms in front of a lone `checksum`) auto and incremental recompute in full, so no
 * wrong checksum leaves.
 * IPv6 has no header checksum; ICMPv6, TCP and UDP include the pseudo-header (RFC 8200 8.1) and a UDP
 * checksum computed as 0 is sent as 0xFFFF (a zero UDP checksum is not allowed over IPv6).
 * In: parsed packets. Out: the same packets with valid checksums.
 * Fragments get their IPv4 header checksum only: a fragment does not hold the whole transport payload (an
 * IPv6 atomic fragment, offset 0 without M, is whole and gets its transport checksum).
 * Drops: packets that were not parsed.
 */
import { defineStage } from '../src/pipeline/stage.js';
import { adjustChecksumAt, sum16, writeChecksumAt } from '../src/packet/checksum.js';
import { FLAG_MF, FRAGMENT_OFFSET_MASK, OFF_FLAGS_FRAGMENT, OFF_HEADER_CHECKSUM, PROTO_ICMP, PROTO_TCP, PROTO_UDP } from '../src/packet/ipv4.js';
import { isIPv6Fragment, NH_ICMPV6, pseudoHeaderSum6 } from '../src/packet/ipv6.js';
import { DirtyFlag, type Packet } from '../src/packet/packet.js';
import { isParsedArp } from '../src/packet/arp.js';

export const CHECKSUM_DROP = { unparsed: 'not parsed (put parse first)' } as const;

/** How `checksum` works: see its header. */
export type Mode = 'auto' | 'full' | 'incremental';

/** Offset of the checksum field within a transport header, or -1 for a protocol without one we know. */
function transportChecksumOffset(proto: number): number {
  return proto === PROTO_ICMP || proto === NH_ICMPV6 ? 2 : proto === PROTO_TCP ? 16 : proto === PROTO_UDP ? 6 : -1;
}

function isFragment(p: Packet): boolean {
  if (p.version === 6) return isIPv6Fragment(p.data, p.frag);
  const b = p.data;
  const at = p.l3 + OFF_FLAGS_FRAGMENT;
  return (((b[at] << 8) | b[at + 1]) & (FLAG_MF | FRAGMENT_OFFSET_MASK)) !== 0;
}

/** The pseudo-header sum the transport checksum starts from: none for ICMP over IPv4 (RFC 792). */
function pseudoHeaderSum(p: Packet): number {
  if (p.version === 6) return pseudoHeaderSum6(p.data, p.l3, p.end - p.l4, p.proto);
  if (p.proto === PROTO_ICMP) return 0;
  return sum16(p.data, p.l3 + 12, 8) + p.proto + (p.end - p.l4);
}

function fullTransport(p: Packet): void {
  if (isFragment(p)) return;
  const b = p.data;
  const off = transportChecksumOffset(p.proto);
  if (off < 0 || p.end - p.l4 < off + 2) return;
  writeChecksumAt(b, p.l4, p.end - p.l4, p.l4 + off, pseudoHeaderSum(p));
  // UDP: a computed 0 is sent as 0xFFFF, since 0 means "no checksum" (RFC 768; RFC 8200 8.1).
  if (p.proto === PROTO_UDP && b[p.l4 + 6] === 0 && b[p.l4 + 7] === 0) b[p.l4 + 6] = b[p.l4 + 7] = 0xff;
}

function full(p: Packet): void {
  if (p.version === 4) writeChecksumAt(p.data, p.l3, p.l4 - p.l3, p.l3 + OFF_HEADER_CHECKSUM);
  fullTransport(p);
}

function incremental(p: Packet): void {
  const b = p.data;
  if (p.dirty & DirtyFlag.IpAdjust && p.version === 4) adjustChecksumAt(b, p.l3, p.l4 - p.l3, p.l3 + OFF_HEADER_CHECKSUM, p.ipSumAdj);
  if (p.dirty & DirtyFlag.L4Adjust && !isFragment(p)) {
    const off = transportChecksumOffset(p.proto);
    if (off >= 0 && p.end - p.l4 >= off + 2) adjustChecksumAt(b, p.l4, p.end - p.l4, p.l4 + off, p.l4SumAdj);
  }
}

/**
 * Makes the checksums of one parsed packet right, per `mode`. `trusted`: every stage before recorded its
 * changes (see the header); when false, recorded changes are not enough and both checksums are recomputed.
 */
export function fixChecksums(p: Packet, mode: Mode = 'auto', trusted = true): Packet | string {
  if (p.version !== 4 && p.version !== 6) return isParsedArp(p) ? p : CHECKSUM_DROP.unparsed;
  const stale = (p.dirty & (DirtyFlag.IpStale | DirtyFlag.L4Stale)) !== 0;
  const tracked = (p.dirty & (DirtyFlag.IpAdjust | DirtyFlag.L4Adjust)) !== 0 && !stale;
  if (mode === 'full' || !trusted || stale || (mode === 'auto' && !tracked)) full(p);
  else incremental(p);
  p.dirty = 0;
  p.ipSumAdj = 0;
  p.l4SumAdj = 0;
  return p;
}

const checksumStage = defineStage({
  name: 'checksum',
  keepsPackets: false,
  recordsChanges: true,
  summary: 'make IPv4 header and ICMP/ICMPv6/TCP/UDP checksums right (RFC 1624 incremental)',
  help: 'Recorded changes are applied incrementally only when every stage before records its changes (every\nbuilt-in does); after a user stage, checksums are recomputed in full. ARP (on TAP) has no checksum and\npasses unchanged.',
  args: [{ name: 'mode', type: 'string', default: 'auto', choices: ['auto', 'full', 'incremental'], description: 'auto, full or incremental' }],
  create: (args, ctx) => {
    const mode = args.mode as Mode;
    const trusted = ctx.changesRecorded === true;
    if (mode === 'incremental' && !trusted) ctx.warn('mode=incremental after a stage that does not record its changes: recomputing in full, so no wrong checksum leaves');
    return { process: (p: Packet) => fixChecksums(p, mode, trusted) };
  },
});
export default checksumStage;
