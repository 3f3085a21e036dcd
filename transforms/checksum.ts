/**
 * checksum: makes the IPv4 header checksum and the transport checksum (ICMP, TCP, UDP) right.
 *
 * Arguments: `mode=auto|full|incremental` (default auto).
 * - auto: where earlier stages recorded which words they changed (to-reply does), the checksums are
 *   updated incrementally (RFC 1624 equation 3, exact, including the 0x0000/0xFFFF corner); a packet with
 *   no recorded change is recomputed in full, since a stage may have edited its bytes directly.
 * - full: always recompute both checksums from the bytes.
 * - incremental: apply recorded changes only; leave other packets as they are.
 * In: parsed packets. Out: the same packets with valid checksums.
 * Fragments get their IPv4 header checksum only: a fragment does not hold the whole transport payload.
 * Drops: packets that were not parsed.
 */
import { defineStage } from '../src/pipeline/stage.js';
import { stageTransform, type PacketTransform } from '../src/pipeline/transform.js';
import { adjustChecksumAt, sum16, writeChecksumAt } from '../src/packet/checksum.js';
import { FLAG_MF, FRAGMENT_OFFSET_MASK, OFF_FLAGS_FRAGMENT, OFF_HEADER_CHECKSUM, PROTO_ICMP, PROTO_TCP, PROTO_UDP } from '../src/packet/ipv4.js';
import { Dirty, type Packet } from '../src/packet/packet.js';

export const CHECKSUM_DROP = { unparsed: 'not parsed (put parse first)' } as const;

type Mode = 'auto' | 'full' | 'incremental';

/** Offset of the checksum field within a transport header, or -1 for a protocol without one we know. */
function transportChecksumOffset(proto: number): number {
  return proto === PROTO_ICMP ? 2 : proto === PROTO_TCP ? 16 : proto === PROTO_UDP ? 6 : -1;
}

function isFragment(p: Packet): boolean {
  const b = p.data;
  const at = p.l3 + OFF_FLAGS_FRAGMENT;
  return (((b[at] << 8) | b[at + 1]) & (FLAG_MF | FRAGMENT_OFFSET_MASK)) !== 0;
}

/** The IPv4 pseudo-header sum for TCP and UDP (RFC 793, RFC 768). */
function pseudoHeaderSum(p: Packet): number {
  return sum16(p.data, p.l3 + 12, 8) + p.proto + (p.end - p.l4);
}

function fullIPv4(p: Packet): void {
  const b = p.data;
  writeChecksumAt(b, p.l3, p.l4 - p.l3, p.l3 + OFF_HEADER_CHECKSUM);
  if (isFragment(p)) return;
  const off = transportChecksumOffset(p.proto);
  if (off < 0 || p.end - p.l4 < off + 2) return;
  const initial = p.proto === PROTO_ICMP ? 0 : pseudoHeaderSum(p);
  writeChecksumAt(b, p.l4, p.end - p.l4, p.l4 + off, initial);
  // UDP: a computed 0 is sent as 0xFFFF, since 0 means "no checksum" (RFC 768).
  if (p.proto === PROTO_UDP && b[p.l4 + 6] === 0 && b[p.l4 + 7] === 0) b[p.l4 + 6] = b[p.l4 + 7] = 0xff;
}

function incrementalIPv4(p: Packet): void {
  const b = p.data;
  if (p.dirty & Dirty.IpAdjust) adjustChecksumAt(b, p.l3, p.l4 - p.l3, p.l3 + OFF_HEADER_CHECKSUM, p.ipSumAdj);
  if (p.dirty & Dirty.L4Adjust && !isFragment(p)) {
    const off = transportChecksumOffset(p.proto);
    if (off >= 0 && p.end - p.l4 >= off + 2) adjustChecksumAt(b, p.l4, p.end - p.l4, p.l4 + off, p.l4SumAdj);
  }
}

/** Makes the checksums of one parsed packet right, per `mode`. */
export function fixChecksums(p: Packet, mode: Mode = 'auto'): Packet | string {
  if (p.version !== 4) return p.version === 0 ? CHECKSUM_DROP.unparsed : p;
  const tracked = (p.dirty & (Dirty.IpAdjust | Dirty.L4Adjust)) !== 0 && (p.dirty & (Dirty.IpStale | Dirty.L4Stale)) === 0;
  if (mode === 'full' || (mode === 'auto' && !tracked) || p.dirty & (Dirty.IpStale | Dirty.L4Stale)) fullIPv4(p);
  else incrementalIPv4(p);
  p.dirty = 0;
  p.ipSumAdj = 0;
  p.l4SumAdj = 0;
  return p;
}

const checksumStage = defineStage({
  name: 'checksum',
  keepsPackets: false,
  summary: 'make IPv4 header and ICMP/TCP/UDP checksums right (RFC 1624 incremental)',
  args: [{ name: 'mode', type: 'string', default: 'auto', choices: ['auto', 'full', 'incremental'], description: 'auto, full or incremental' }],
  create: (args) => {
    const mode = args.mode as Mode;
    return { process: (p: Packet) => fixChecksums(p, mode) };
  },
});
export default checksumStage;

/** it-pipe transform / pipeline stage: `checksum`. */
export function recomputeChecksum(args: { mode?: Mode } = {}): PacketTransform {
  return stageTransform(checksumStage, args);
}
