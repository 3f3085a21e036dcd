/**
 * Segmentation offload in user space (GSO, as the kernel's tcp_gso_segment / __udp_gso_segment do it, and
 * as wireguard-go does it): a TCP or UDP super-packet from a device with offloads, described by its
 * virtio_net_hdr fields (./vnet.ts, Packet.gsoType/gsoSize), becomes the segments a link would carry, each
 * with complete checksums; and a packet with a partial checksum (NEEDS_CSUM) gets its checksum completed.
 *
 * - TCP over IPv4 or IPv6 (TCPV4, TCPV6): each segment carries the IP header (options and extension headers
 *   as they are) and the TCP header (options as they are), then `gsoSize` payload bytes (the last one the
 *   rest). IP total length / payload length per segment; IPv4 identification +1 per segment and the header
 *   checksum; the sequence number advanced by the payload before it; FIN and PSH only on the last segment,
 *   CWR only on the first; the TCP checksum computed in full.
 * - UDP (UDP_L4, "USO"): each `gsoSize` bytes of payload become a datagram of its own, with its own UDP
 *   header, length and full checksum (0 sent as 0xFFFF); IPv4 identification +1 per datagram.
 * - Partial checksum: the ones' complement sum over csum_start..end (the field holds the pseudo-header sum,
 *   as the kernel hands it over), stored at csum_start + csum_offset.
 *
 * What leaves has gso_type NONE and flags 0. Malformed headers are reasons to drop (GSO_DROP), never a
 * throw: gso_size 0, hdr_len or csum_start/csum_offset past the end, an unknown gso_type, UFO, a gso_type
 * that does not match the IP version or protocol, a truncated IP, TCP or UDP header, an IP fragment.
 *
 * Segments are written into slabs (SegmentSlabs) that are never written again once handed out: a segment
 * may wait in a queue or an io_uring write after the stage returns. Each segment keeps VNET_HDR_SIZE bytes
 * of room in front, so a device with offloads writes it with its header without another copy.
 */
import { fold16, sum16, writeChecksumAt } from './checksum.js';
import { DirtyFlag, Packet } from './packet.js';
import { FLAG_MF, FRAGMENT_OFFSET_MASK, OFF_FLAGS_FRAGMENT, OFF_HEADER_CHECKSUM, OFF_ID, OFF_PROTOCOL, OFF_SRC, OFF_TOTAL_LENGTH, PROTO_TCP, PROTO_UDP } from './ipv4.js';
import { IPV6_HEADER, OFF6_PAYLOAD_LENGTH, pseudoHeaderSum6, walkExtensionHeaders, type ChainEnd } from './ipv6.js';
import { GSO_ECN, GSO_NONE, GSO_TCPV4, GSO_TCPV6, GSO_UDP, GSO_UDP_L4, VNET_F_NEEDS_CSUM, VNET_HDR_SIZE } from './vnet.js';

export const GSO_DROP = {
  gsoSizeZero: 'super-packet with gso_size 0',
  hdrLen: 'virtio header: hdr_len past the end of the packet',
  csumRange: 'virtio header: csum_start/csum_offset out of range',
  unknownType: 'virtio header: unknown gso_type',
  ufo: 'virtio header: gso_type UDP (UFO, IP fragmentation) is not segmented',
  mismatch: 'super-packet whose IP version or protocol does not match its gso_type',
  ipHeader: 'super-packet with a truncated or malformed IP header',
  fragment: 'super-packet that is an IP fragment',
  transport: 'super-packet with a truncated TCP/UDP header',
} as const;

const TCP_FIN = 0x01;
const TCP_PSH = 0x08;
const TCP_CWR = 0x80;
const UDP_HEADER = 8;

/** Memory segments are written into: slabs carved front to back, a new one when the rest is too small. */
export class SegmentSlabs {
  private slab: Buffer;
  private used = 0;

  constructor(private readonly size = 1 << 18) {
    this.slab = Buffer.allocUnsafeSlow(size);
  }

  /** The slab that holds `n` more bytes, and moves past them; `offset` says where they start. */
  take(n: number): Buffer {
    if (this.used + n > this.slab.length) {
      // The old slab lives on for as long as segments in it are referenced (a queue, a write in flight).
      this.slab = Buffer.allocUnsafeSlow(Math.max(this.size, n));
      this.used = 0;
    }
    this.offset = this.used;
    this.used += n;
    return this.slab;
  }

  /** Where the bytes the last take() gave start. */
  offset = 0;
}

/** Where the IP header check leaves its result: one object for every packet, so it allocates nothing. */
const where: ChainEnd = { l4: 0, proto: 0, frag: 0 };

/**
 * Completes the partial checksum of `p` in place (NEEDS_CSUM), and clears the virtio fields. Returns null,
 * or a drop reason when csum_start/csum_offset lie outside the packet.
 */
export function completeChecksum(p: Packet): string | null {
  const b = p.data;
  const start = p.csumStart;
  const at = start + p.csumOffset;
  if (start >= b.length || at + 2 > b.length) return GSO_DROP.csumRange;
  // The field holds the pseudo-header sum: it is part of the sum, as the kernel's skb_checksum_help takes it.
  const c = ~fold16(sum16(b, start, b.length - start)) & 0xffff;
  const v = c === 0 ? 0xffff : c;
  b[at] = v >> 8;
  b[at + 1] = v & 0xff;
  p.dirty &= ~(DirtyFlag.L4Adjust | DirtyFlag.L4Stale);
  p.l4SumAdj = 0;
  clearVnet(p);
  return null;
}

function clearVnet(p: Packet): void {
  p.vnetFlags = 0;
  p.gsoType = GSO_NONE;
  p.hdrLen = 0;
  p.gsoSize = 0;
  p.csumStart = 0;
  p.csumOffset = 0;
}

/** The geometry of a checked super-packet, shared by the writer of its segments. */
interface Layout {
  version: number;
  l3: number;
  l4: number;
  /** Past the transport header: where the payload starts. */
  payload: number;
  end: number;
  tcp: boolean;
}
const layout: Layout = { version: 0, l3: 0, l4: 0, payload: 0, end: 0, tcp: false };

/** Checks the super-packet whose IP header is at `l3` and fills `layout`; returns a drop reason or null. */
function checkSuperPacket(p: Packet, l3: number): string | null {
  const b = p.data;
  const type = p.gsoType & ~GSO_ECN;
  if (type === GSO_UDP) return GSO_DROP.ufo;
  if (type !== GSO_TCPV4 && type !== GSO_TCPV6 && type !== GSO_UDP_L4) return GSO_DROP.unknownType;
  if (p.gsoSize === 0) return GSO_DROP.gsoSizeZero;
  if (p.hdrLen > b.length) return GSO_DROP.hdrLen;
  if ((p.vnetFlags & VNET_F_NEEDS_CSUM) !== 0 && (p.csumStart < l3 || p.csumStart + p.csumOffset + 2 > b.length)) return GSO_DROP.csumRange;
  if (b.length < l3 + 1) return GSO_DROP.ipHeader;
  const version = b[l3] >> 4;
  if ((type === GSO_TCPV4 && version !== 4) || (type === GSO_TCPV6 && version !== 6) || (version !== 4 && version !== 6)) return GSO_DROP.mismatch;
  let l4: number;
  let proto: number;
  let end: number;
  if (version === 4) {
    if (b.length < l3 + 20) return GSO_DROP.ipHeader;
    const ihl = (b[l3] & 0x0f) * 4;
    const total = (b[l3 + OFF_TOTAL_LENGTH] << 8) | b[l3 + OFF_TOTAL_LENGTH + 1];
    if (ihl < 20 || total < ihl || l3 + total > b.length) return GSO_DROP.ipHeader;
    if (((b[l3 + OFF_FLAGS_FRAGMENT] << 8) | b[l3 + OFF_FLAGS_FRAGMENT + 1]) & (FLAG_MF | FRAGMENT_OFFSET_MASK)) return GSO_DROP.fragment;
    l4 = l3 + ihl;
    proto = b[l3 + OFF_PROTOCOL];
    end = l3 + total;
  } else {
    if (b.length < l3 + IPV6_HEADER) return GSO_DROP.ipHeader;
    end = l3 + IPV6_HEADER + ((b[l3 + OFF6_PAYLOAD_LENGTH] << 8) | b[l3 + OFF6_PAYLOAD_LENGTH + 1]);
    if (end > b.length) return GSO_DROP.ipHeader;
    if (walkExtensionHeaders(b, l3, end, where) !== null) return GSO_DROP.ipHeader;
    if (where.frag !== 0) return GSO_DROP.fragment;
    l4 = where.l4;
    proto = where.proto;
  }
  const tcp = type !== GSO_UDP_L4;
  if (proto !== (tcp ? PROTO_TCP : PROTO_UDP)) return GSO_DROP.mismatch;
  let payload: number;
  if (tcp) {
    if (l4 + 20 > end) return GSO_DROP.transport;
    const thl = (b[l4 + 12] >> 4) * 4;
    if (thl < 20 || l4 + thl > end) return GSO_DROP.transport;
    payload = l4 + thl;
  } else {
    if (l4 + UDP_HEADER > end) return GSO_DROP.transport;
    payload = l4 + UDP_HEADER;
  }
  layout.version = version;
  layout.l3 = l3;
  layout.l4 = l4;
  layout.payload = payload;
  layout.end = end;
  layout.tcp = tcp;
  return null;
}

/** The unfolded pseudo-header sum for a transport segment of `length` bytes. */
function pseudoSum(b: Uint8Array, version: number, l3: number, proto: number, length: number): number {
  return version === 4 ? sum16(b, l3 + OFF_SRC, 8) + proto + length : pseudoHeaderSum6(b, l3, length, proto);
}

/**
 * Fixes the headers of one segment in `b` (the copied headers, then its payload up to `end`): IP lengths and
 * checksum, the transport fields and checksum. `index` counts segments from 0; `offset` is the payload's
 * offset in the super-packet's payload.
 */
function fixSegment(b: Buffer, l: Layout, end: number, index: number, last: boolean, offset: number, id0: number, seq0: number): void {
  const { l3, l4, version } = l;
  if (version === 4) {
    b.writeUInt16BE(end - l3, l3 + OFF_TOTAL_LENGTH);
    b.writeUInt16BE((id0 + index) & 0xffff, l3 + OFF_ID);
    writeChecksumAt(b, l3, l4 - l3, l3 + OFF_HEADER_CHECKSUM);
  } else {
    b.writeUInt16BE(end - l3 - IPV6_HEADER, l3 + OFF6_PAYLOAD_LENGTH);
  }
  const length = end - l4;
  if (l.tcp) {
    b.writeUInt32BE((seq0 + offset) >>> 0, l4 + 4);
    let flags = b[l4 + 13];
    if (!last) flags &= ~(TCP_FIN | TCP_PSH);
    if (index > 0) flags &= ~TCP_CWR;
    b[l4 + 13] = flags;
    writeChecksumAt(b, l4, length, l4 + 16, pseudoSum(b, version, l3, PROTO_TCP, length));
  } else {
    b.writeUInt16BE(length, l4 + 4);
    writeChecksumAt(b, l4, length, l4 + 6, pseudoSum(b, version, l3, PROTO_UDP, length));
    if (b[l4 + 6] === 0 && b[l4 + 7] === 0) b[l4 + 6] = b[l4 + 7] = 0xff;
  }
}

/** Gives `seg` the parsed view of its super-packet `p` (when `p` was parsed) and clears its virtio fields. */
function describeSegment(seg: Packet, p: Packet, l: Layout, end: number): void {
  seg.sec = p.sec;
  seg.nsec = p.nsec;
  if (p.version !== 0) {
    seg.version = p.version;
    seg.l3 = l.l3;
    seg.l4 = l.l4;
    seg.end = end;
    seg.proto = p.proto;
  }
}

/**
 * Segments the super-packet `p` (p.gsoType not NONE) whose IP header starts at `l3` (0 on TUN; past the
 * Ethernet header on TAP): every segment but the last goes to `emit`, in order; the last is returned. A
 * super-packet of one segment is fixed in place and returned. Returns a drop reason (GSO_DROP) when the
 * headers are malformed, before anything is emitted.
 */
export function segmentSuperPacket(p: Packet, l3: number, slabs: SegmentSlabs, emit: (seg: Packet) => void): Packet | string {
  const bad = checkSuperPacket(p, l3);
  if (bad !== null) return bad;
  const b = p.data;
  const l = layout;
  const { payload, end } = l;
  const size = p.gsoSize;
  const data = end - payload;
  const id0 = l.version === 4 ? (b[l3 + OFF_ID] << 8) | b[l3 + OFF_ID + 1] : 0;
  const seq0 = l.tcp ? b.readUInt32BE(l.l4 + 4) : 0;
  if (data <= size) {
    fixSegment(b, l, end, 0, true, 0, id0, seq0);
    p.dirty = 0;
    p.ipSumAdj = 0;
    p.l4SumAdj = 0;
    clearVnet(p);
    if (p.version !== 0) p.end = end;
    return p;
  }
  let last: Packet | null = null;
  for (let offset = 0, index = 0; offset < data; offset += size, index++) {
    const chunk = Math.min(size, data - offset);
    const segLen = payload + chunk;
    const slab = slabs.take(VNET_HDR_SIZE + segLen);
    const room = slabs.offset;
    const at = room + VNET_HDR_SIZE;
    b.copy(slab, at, 0, payload);
    b.copy(slab, at + payload, payload + offset, payload + offset + chunk);
    const view = slab.subarray(at, at + segLen);
    const isLast = offset + chunk >= data;
    fixSegment(view, l, segLen, index, isLast, offset, id0, seq0);
    const seg = new Packet(view);
    describeSegment(seg, p, l, segLen);
    seg.head = slab;
    seg.headAt = room;
    if (isLast) last = seg;
    else emit(seg);
  }
  return last!;
}
