/**
 * Packet builders for the unit tests beyond test/helpers/packets.ts (UDP, TCP, IPv6, any IPv4 payload),
 * written from the RFCs and checked with referenceChecksum, independently of the code under test.
 */
import { referenceChecksum } from '../helpers/packets.js';

export function ipv4Bytes(text: string): Buffer {
  return Buffer.from(text.split('.').map(Number));
}

export interface IPv4Options {
  proto: number;
  payload: Buffer;
  src?: string;
  dst?: string;
  ttl?: number;
  /** Flags/fragment-offset word. */
  frag?: number;
  /** IP options (a multiple of 4 bytes). */
  options?: Buffer;
  /** Bytes appended after the datagram (link padding), not counted in the total length. */
  padding?: number;
}

/** An IPv4 datagram with a correct header checksum; the payload is taken as is. */
export function ipv4Packet(o: IPv4Options): Buffer {
  const opts = o.options ?? Buffer.alloc(0);
  const ihl = 20 + opts.length;
  const ip = Buffer.alloc(ihl);
  ip[0] = 0x40 | (ihl / 4);
  ip.writeUInt16BE(ihl + o.payload.length, 2);
  ip.writeUInt16BE(0x1357, 4);
  ip.writeUInt16BE(o.frag ?? 0x4000, 6);
  ip[8] = o.ttl ?? 64;
  ip[9] = o.proto;
  ipv4Bytes(o.src ?? '198.18.0.2').copy(ip, 12);
  ipv4Bytes(o.dst ?? '198.18.0.1').copy(ip, 16);
  opts.copy(ip, 20);
  ip.writeUInt16BE(referenceChecksum(ip), 10);
  return Buffer.concat([ip, o.payload, Buffer.alloc(o.padding ?? 0)]);
}

/** Recomputes the IPv4 header checksum of a packet in place after a test changed its header. */
export function fixIpHeaderChecksum(pkt: Buffer): Buffer {
  const ihl = (pkt[0] & 0x0f) * 4;
  pkt.writeUInt16BE(0, 10);
  pkt.writeUInt16BE(referenceChecksum(pkt.subarray(0, ihl)), 10);
  return pkt;
}

/** The RFC 768/793 pseudo-header followed by the transport segment, for the checksum oracle. */
export function pseudoHeaderAnd(src: string, dst: string, proto: number, segment: Buffer): Buffer {
  const ph = Buffer.alloc(12);
  ipv4Bytes(src).copy(ph, 0);
  ipv4Bytes(dst).copy(ph, 4);
  ph[9] = proto;
  ph.writeUInt16BE(segment.length, 10);
  return Buffer.concat([ph, segment]);
}

/** A UDP header and payload; checksum field left 0 (or `checksum` if given). */
export function udpSegment(payload: Buffer, checksum = 0): Buffer {
  const u = Buffer.alloc(8 + payload.length);
  u.writeUInt16BE(40000, 0);
  u.writeUInt16BE(53, 2);
  u.writeUInt16BE(u.length, 4);
  u.writeUInt16BE(checksum, 6);
  payload.copy(u, 8);
  return u;
}

/** A TCP header (20 bytes, ACK|PSH) and payload; checksum field left 0. */
export function tcpSegment(payload: Buffer): Buffer {
  const t = Buffer.alloc(20 + payload.length);
  t.writeUInt16BE(40001, 0);
  t.writeUInt16BE(80, 2);
  t.writeUInt32BE(0x01020304, 4);
  t.writeUInt32BE(0x0a0b0c0d, 8);
  t[12] = 5 << 4;
  t[13] = 0x18;
  t.writeUInt16BE(64240, 14);
  payload.copy(t, 20);
  return t;
}

/** An IPv6 packet (fixed header only) carrying `payload` with next header `next`, plus `padding` bytes. */
export function ipv6Packet(next: number, payload: Buffer, padding = 0, src?: Buffer, dst?: Buffer): Buffer {
  const h = Buffer.alloc(40);
  h[0] = 0x60;
  h.writeUInt16BE(payload.length, 4);
  h[6] = next;
  h[7] = 64;
  (src ?? Buffer.from('20010db8000000000000000000000002', 'hex')).copy(h, 8);
  (dst ?? Buffer.from('20010db8000000000000000000000001', 'hex')).copy(h, 24);
  return Buffer.concat([h, payload, Buffer.alloc(padding)]);
}

import assert from 'node:assert/strict';
import { Packet } from '../../src/packet/packet.js';
import { parsePacket } from '../../transforms/parse.js';

/** A Packet that the parse stage accepted (fails the test if it did not). */
export function parsed(buf: Buffer, l3 = 0): Packet {
  const p = new Packet(buf);
  p.l3 = l3;
  const r = parsePacket(p);
  assert.equal(r, p, `parse refused the test packet: ${String(r)}`);
  return p;
}
