/**
 * The virtio_net_hdr (virtio 1.x 5.1.6, the legacy 10-byte layout without num_buffers) that a TUN/TAP
 * device opened with IFF_VNET_HDR puts in front of every packet, and expects in front of every packet
 * written to it. Little-endian, as the kernel uses it on x86 unless TUNSETVNETBE is set:
 *
 *   0 flags (u8)        NEEDS_CSUM: the transport checksum is partial; DATA_VALID: it was verified
 *   1 gso_type (u8)     NONE, TCPV4, UDP (UFO), TCPV6, UDP_L4 (USO); | ECN
 *   2 hdr_len (u16)     a hint: bytes of headers (the kernel gives the length of its linear part)
 *   4 gso_size (u16)    payload bytes per segment of a super-packet
 *   6 csum_start (u16)  where the partial checksum's range starts (from the packet's first byte)
 *   8 csum_offset (u16) where, from csum_start, the checksum is stored
 *
 * With NEEDS_CSUM the kernel leaves the sum of the pseudo-header (not complemented) in the checksum field;
 * the sum over csum_start..end completes it.
 */
import type { Packet } from './packet.js';

/** Bytes of the virtio_net_hdr in front of every packet of a device opened with offloads. */
export const VNET_HDR_SIZE = 10;

export const VNET_F_NEEDS_CSUM = 1;
export const VNET_F_DATA_VALID = 2;

export const GSO_NONE = 0;
export const GSO_TCPV4 = 1;
/** UFO: a UDP datagram to be sent in IP fragments. tunpipe does not turn it on (TUN_F_UFO). */
export const GSO_UDP = 3;
export const GSO_TCPV6 = 4;
/** USO: a train of UDP datagrams of gso_size payload bytes each, one UDP header each. */
export const GSO_UDP_L4 = 5;
/** Flag in gso_type: the TCP sender uses ECN (the CWR bit belongs to the first segment). */
export const GSO_ECN = 0x80;

/** Reads the header at `at` of `b` into the packet's fields. `b` must hold VNET_HDR_SIZE bytes from `at`. */
export function readVnetHeader(b: Uint8Array, at: number, p: Packet): void {
  p.vnetFlags = b[at];
  p.gsoType = b[at + 1];
  p.hdrLen = b[at + 2] | (b[at + 3] << 8);
  p.gsoSize = b[at + 4] | (b[at + 5] << 8);
  p.csumStart = b[at + 6] | (b[at + 7] << 8);
  p.csumOffset = b[at + 8] | (b[at + 9] << 8);
}

/** Writes the packet's header fields at `at` of `b` (VNET_HDR_SIZE bytes). */
export function writeVnetHeader(b: Uint8Array, at: number, p: Packet): void {
  b[at] = p.vnetFlags;
  b[at + 1] = p.gsoType;
  b[at + 2] = p.hdrLen & 0xff;
  b[at + 3] = p.hdrLen >>> 8;
  b[at + 4] = p.gsoSize & 0xff;
  b[at + 5] = p.gsoSize >>> 8;
  b[at + 6] = p.csumStart & 0xff;
  b[at + 7] = p.csumStart >>> 8;
  b[at + 8] = p.csumOffset & 0xff;
  b[at + 9] = p.csumOffset >>> 8;
}

/** True when the packet is a super-packet (a GSO type other than NONE) or has a partial checksum. */
export function needsSegmenting(p: Packet): boolean {
  return p.gsoType !== GSO_NONE || (p.vnetFlags & VNET_F_NEEDS_CSUM) !== 0;
}

/**
 * True when the VNET_HDR_SIZE bytes right before `p.data` are the packet's header room (`p.head` at
 * `p.headAt`): same memory, and `data` still starts where it was put. A stage that gave the packet new
 * bytes, or cut it from the front, leaves no room, and the header goes in front of a copy.
 */
export function hasHeaderRoom(p: Packet): boolean {
  const h = p.head;
  if (h === null) return false;
  const d = p.data;
  return d.buffer === h.buffer && d.byteOffset === h.byteOffset + p.headAt + VNET_HDR_SIZE;
}

/**
 * The packet as a device with offloads takes it: its header, then its bytes. Written into the header room
 * when it has some (a view, no copy), else into a new Buffer (the slow path: a packet a stage made).
 */
export function offloadFrame(p: Packet): Buffer {
  if (hasHeaderRoom(p)) {
    const h = p.head!;
    writeVnetHeader(h, p.headAt, p);
    return h.subarray(p.headAt, p.headAt + VNET_HDR_SIZE + p.data.length);
  }
  const out = Buffer.allocUnsafe(VNET_HDR_SIZE + p.data.length);
  writeVnetHeader(out, 0, p);
  p.data.copy(out, VNET_HDR_SIZE);
  return out;
}

/**
 * Makes `p` the packet in `frame` (as read from a device with offloads): its header into the fields, `data`
 * the bytes after it (`view` when the caller has it cached, else a new view), the header room recorded. A
 * frame shorter than the header (the kernel never gives one) becomes an empty packet.
 */
export function adoptOffloadFrame(p: Packet, frame: Buffer, view: Buffer | null = null): Packet {
  if (frame.length < VNET_HDR_SIZE) {
    p.reset(frame.subarray(0, 0));
    return p;
  }
  p.reset(view ?? frame.subarray(VNET_HDR_SIZE));
  readVnetHeader(frame, 0, p);
  p.head = frame;
  p.headAt = 0;
  return p;
}
