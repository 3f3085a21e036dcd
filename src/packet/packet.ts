import { wordDelta } from './checksum.js';

/**
 * Which checksums a stage has disturbed; the `checksum` stage reads and clears these. The built-in code uses
 * this const enum (inlined, no property load per packet); JavaScript users get the same values from `Dirty`.
 */
export const enum DirtyFlag {
  /** The IP header changed by known words: `ipSumAdj` holds the RFC 1624 terms. */
  IpAdjust = 1,
  /** The transport header or payload changed by known words: `l4SumAdj` holds the terms. */
  L4Adjust = 2,
  /** The IP header changed in a way not tracked word by word: recompute in full. */
  IpStale = 4,
  /** The transport checksum must be recomputed in full (length change, new payload, ...). */
  L4Stale = 8,
}

/** The `DirtyFlag` values as a real object, for JavaScript (a const enum does not exist at run time). */
export const Dirty = Object.freeze({
  IpAdjust: DirtyFlag.IpAdjust,
  L4Adjust: DirtyFlag.L4Adjust,
  IpStale: DirtyFlag.IpStale,
  L4Stale: DirtyFlag.L4Stale,
} as const);
export type Dirty = DirtyFlag;

/**
 * One packet moving through a pipeline: the bytes exactly as the device gave them, plus a parsed view that
 * stages fill in and read without copying. For a TUN device `data` starts with the IP header (`l3` = 0); a
 * TAP frame will set `l3` past its Ethernet header, so stages always index from `l3` and `l4`.
 */
export class Packet {
  /** The packet's bytes. Stages may modify them in place. */
  data: Buffer;
  /** When the packet was captured: whole seconds since the epoch; 0 if unknown (a capture stage stamps it). */
  sec: number;
  /** Nanoseconds within `sec` (0..999999999). Kept as integers so a pcap file's timestamps survive exactly. */
  nsec: number;
  /** IP version once a parser stage has validated the header (4 or 6); 0 before. */
  version = 0;
  /** Offset of the network-layer header in `data`. */
  l3 = 0;
  /**
   * Offset of the transport (upper-layer) header in `data`; valid once parsed. For IPv6 it lies past every
   * extension header (for a fragment that is not the first: past the fragment header, where its data starts).
   */
  l4 = 0;
  /** End of the IP datagram in `data` (its total length from `l3`); bytes past it are not part of it. */
  end = 0;
  /**
   * Transport protocol number (1 ICMP, 6 TCP, 17 UDP, 58 ICMPv6; for IPv6 the upper-layer protocol at the
   * end of the extension-header chain: 50 ESP and 59 "no next header" end a chain too); valid once parsed.
   */
  proto = 0;
  /**
   * IPv6 only: offset in `data` of the fragment header, 0 when the packet has none (no real header can start
   * at 0). An atomic fragment (offset 0, M clear, RFC 6946) has one and is still a whole datagram.
   */
  frag = 0;
  /** Bit set of `Dirty` flags. */
  dirty = 0;
  /** Unfolded sum of RFC 1624 terms pending for the IP header checksum. */
  ipSumAdj = 0;
  /** Unfolded sum of RFC 1624 terms pending for the transport checksum. */
  l4SumAdj = 0;
  /**
   * The virtio_net_hdr of a packet from a device opened with offloads (./vnet.ts), 0 otherwise: its flags
   * (NEEDS_CSUM: the transport checksum is partial; DATA_VALID), its GSO type (0: a plain packet; TCPV4,
   * TCPV6, UDP_L4: a super-packet of `gsoSize`-byte segments), `hdrLen` (the kernel's hint: bytes of
   * headers), and where the partial checksum starts (`csumStart`, from the start of `data`) and is stored
   * (`csumOffset`, from `csumStart`). A device with offloads writes them back in front of the packet.
   */
  vnetFlags = 0;
  gsoType = 0;
  hdrLen = 0;
  gsoSize = 0;
  csumStart = 0;
  csumOffset = 0;
  /**
   * Room for the virtio_net_hdr right before `data`: the bytes [headAt, headAt + 10) of `head`, when `data`
   * still starts where it was put behind them (see vnet.ts hasHeaderRoom). A device with offloads writes the
   * header there and the packet from there, without a copy. Null: no room.
   */
  head: Buffer | null = null;
  headAt = 0;

  constructor(data: Buffer, sec = 0, nsec = 0) {
    this.data = data;
    this.sec = sec;
    this.nsec = nsec;
    this.end = data.length;
  }

  /** Makes this object a new, unparsed packet holding `data` (the device's zero-allocation path reuses one). */
  reset(data: Buffer): void {
    this.data = data;
    this.sec = 0;
    this.nsec = 0;
    this.version = 0;
    this.l3 = 0;
    this.l4 = 0;
    this.end = data.length;
    this.proto = 0;
    this.frag = 0;
    this.dirty = 0;
    this.ipSumAdj = 0;
    this.l4SumAdj = 0;
    this.vnetFlags = 0;
    this.gsoType = 0;
    this.hdrLen = 0;
    this.gsoSize = 0;
    this.csumStart = 0;
    this.csumOffset = 0;
    this.head = null;
    this.headAt = 0;
  }

  /** Length of the IP datagram (the whole packet for an unparsed one). */
  get length(): number {
    return this.end - this.l3;
  }

  /** Reads the big-endian 16-bit word at absolute offset `at`. */
  word(at: number): number {
    return (this.data[at] << 8) | this.data[at + 1];
  }

  /**
   * Writes a 16-bit word inside the IP header and records the change for an incremental checksum update.
   * `at` is an absolute offset and must be even relative to `l3`.
   */
  setIpWord(at: number, value: number): void {
    this.ipSumAdj += this.replaceWord(at, value);
    this.dirty |= DirtyFlag.IpAdjust;
  }

  /** Like `setIpWord`, for a word covered by the transport checksum (ICMP header or payload). */
  setL4Word(at: number, value: number): void {
    this.l4SumAdj += this.replaceWord(at, value);
    this.dirty |= DirtyFlag.L4Adjust;
  }

  /** Writes a word and returns its RFC 1624 term. */
  private replaceWord(at: number, value: number): number {
    const old = this.word(at);
    this.data[at] = value >> 8;
    this.data[at + 1] = value & 0xff;
    return wordDelta(old, value);
  }
}

/** Marks the Packets of every copy of this module: the CLI's bundle and the library a user's stage imports. */
const PACKET_BRAND = Symbol.for('tunpipe.packet');
Object.defineProperty(Packet.prototype, PACKET_BRAND, { value: true });

/**
 * A Packet made by another copy of this module, as one of this copy's with the same fields; null for
 * anything else. `instanceof Packet` knows only this copy's: the CLI runs from a bundle (scripts/bundle.mjs)
 * while a user's stage that makes packets of its own imports them from the library.
 */
export function adoptPacket(x: unknown): Packet | null {
  if (typeof x !== 'object' || x === null || (x as Record<symbol, unknown>)[PACKET_BRAND] !== true) return null;
  const data = (x as { data?: unknown }).data;
  if (!Buffer.isBuffer(data)) return null;
  return Object.assign(new Packet(data), x as Packet);
}

/** Wraps a Buffer as a Packet; passes a Packet through. Lets every stage take either. */
export function asPacket(p: Packet | Buffer | Uint8Array): Packet {
  if (p instanceof Packet) return p;
  const b = Buffer.isBuffer(p) ? p : Buffer.from(p.buffer, p.byteOffset, p.byteLength);
  return new Packet(b);
}

/** Bytes of header room a copy of a packet from a device with offloads keeps in front (the virtio_net_hdr). */
const COPY_ROOM = 10;

/**
 * A copy of a packet with the same parsed view, timestamps, checksum bookkeeping and virtio header fields,
 * and its own bytes: in `scratch` when it is given and large enough (a tee's reused copy), else in a new
 * Buffer. `into`: a Packet object to reuse for the copy. A packet that has header room (it came from a
 * device with offloads) is copied with room of its own, so that it is written out without another copy.
 */
export function copyPacket(p: Packet, into: Packet | null = null, scratch: Buffer | null = null): Packet {
  const n = p.data.length;
  const room = p.head !== null ? COPY_ROOM : 0;
  let data: Buffer;
  let head: Buffer | null = null;
  if (scratch !== null && n + room <= scratch.length) {
    p.data.copy(scratch, room, 0, n);
    data = scratch.subarray(room, room + n);
    if (room) head = scratch;
  } else if (room) {
    head = Buffer.allocUnsafe(n + room);
    p.data.copy(head, room);
    data = head.subarray(room);
  } else {
    data = Buffer.allocUnsafe(n);
    p.data.copy(data);
  }
  const c = into ?? new Packet(data);
  c.data = data;
  c.sec = p.sec;
  c.nsec = p.nsec;
  c.version = p.version;
  c.l3 = p.l3;
  c.l4 = p.l4;
  c.end = p.end;
  c.proto = p.proto;
  c.dirty = p.dirty;
  c.ipSumAdj = p.ipSumAdj;
  c.l4SumAdj = p.l4SumAdj;
  c.frag = p.frag;
  c.vnetFlags = p.vnetFlags;
  c.gsoType = p.gsoType;
  c.hdrLen = p.hdrLen;
  c.gsoSize = p.gsoSize;
  c.csumStart = p.csumStart;
  c.csumOffset = p.csumOffset;
  c.head = head;
  c.headAt = 0;
  return c;
}
