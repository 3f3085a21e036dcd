/** Builders for test packets and pcap files, written independently of the code under test. */
import { writeFileSync } from 'node:fs';

/** RFC 1071 checksum computed the plain way (word by word, fold at the end), as an oracle for tests. */
export function referenceChecksum(bytes: Uint8Array): number {
  let sum = 0;
  for (let i = 0; i < bytes.length; i += 2) sum += (bytes[i] << 8) | (i + 1 < bytes.length ? bytes[i + 1] : 0);
  while (sum > 0xffff) sum = (sum & 0xffff) + Math.floor(sum / 0x10000);
  return ~sum & 0xffff;
}

export interface EchoOptions {
  src?: string;
  dst?: string;
  id?: number;
  seq?: number;
  payload?: Buffer;
  ttl?: number;
  /** ICMP type (8 request, 0 reply). */
  type?: number;
  /** IP options bytes (a multiple of 4). */
  options?: Buffer;
  /** Flags/fragment-offset word. */
  frag?: number;
}

function addr(text: string): Buffer {
  return Buffer.from(text.split('.').map(Number));
}

/** A valid IPv4 ICMP echo packet with correct checksums. */
export function echoRequest(o: EchoOptions = {}): Buffer {
  const payload = o.payload ?? Buffer.from('tunpipe-test-payload-0123456789abcdefghijklmnopqrstuv').subarray(0, 56);
  const opts = o.options ?? Buffer.alloc(0);
  const ihl = 20 + opts.length;
  const icmp = Buffer.alloc(8 + payload.length);
  icmp[0] = o.type ?? 8;
  icmp.writeUInt16BE(o.id ?? 0x1234, 4);
  icmp.writeUInt16BE(o.seq ?? 1, 6);
  payload.copy(icmp, 8);
  icmp.writeUInt16BE(referenceChecksum(icmp), 2);
  const ip = Buffer.alloc(ihl);
  ip[0] = 0x40 | (ihl / 4);
  ip.writeUInt16BE(ihl + icmp.length, 2);
  ip.writeUInt16BE(0x4242, 4);
  ip.writeUInt16BE(o.frag ?? 0x4000, 6);
  ip[8] = o.ttl ?? 64;
  ip[9] = 1;
  addr(o.src ?? '198.18.0.2').copy(ip, 12);
  addr(o.dst ?? '198.18.0.1').copy(ip, 16);
  opts.copy(ip, 20);
  ip.writeUInt16BE(referenceChecksum(ip), 10);
  return Buffer.concat([ip, icmp]);
}

/** Writes packets to a classic pcap file (link type RAW 101, microseconds unless `nanos`). */
export function writePcap(path: string, packets: Buffer[], opts: { nanos?: boolean; linkType?: number; startSec?: number } = {}): void {
  const h = Buffer.alloc(24);
  h.writeUInt32LE(opts.nanos ? 0xa1b23c4d : 0xa1b2c3d4, 0);
  h.writeUInt16LE(2, 4);
  h.writeUInt16LE(4, 6);
  h.writeUInt32LE(262144, 16);
  h.writeUInt32LE(opts.linkType ?? 101, 20);
  const parts: Buffer[] = [h];
  packets.forEach((p, i) => {
    const r = Buffer.alloc(16);
    r.writeUInt32LE((opts.startSec ?? 1_700_000_000) + i, 0);
    r.writeUInt32LE(i * 7, 4);
    r.writeUInt32LE(p.length, 8);
    r.writeUInt32LE(p.length, 12);
    parts.push(r, p);
  });
  writeFileSync(path, Buffer.concat(parts));
}

/**
 * Reads the records of a classic little-endian pcap file written by tunpipe or writePcap; `trailing`: the
 * bytes after the last whole record.
 */
export function readPcapRecords(file: Buffer): { linkType: number; magic: number; packets: Buffer[]; trailing: number } {
  const magic = file.readUInt32LE(0);
  const linkType = file.readUInt32LE(20);
  const packets: Buffer[] = [];
  let o = 24;
  while (o + 16 <= file.length) {
    const len = file.readUInt32LE(o + 8);
    if (o + 16 + len > file.length) break;
    packets.push(file.subarray(o + 16, o + 16 + len));
    o += 16 + len;
  }
  return { linkType, magic, packets, trailing: Math.max(0, file.length - o) };
}

/** 16 address bytes from IPv6 text, for test packets (full or `::`-shortened hex words, no dotted quad). */
export function ipv6Bytes(text: string): Buffer {
  const [left, right] = text.includes('::') ? text.split('::') : [text, undefined];
  const words = (s: string | undefined) => (s ? s.split(':').map((w) => parseInt(w, 16)) : []);
  const l = words(left);
  const r = words(right);
  const all = right === undefined ? l : [...l, ...new Array<number>(8 - l.length - r.length).fill(0), ...r];
  const out = Buffer.alloc(16);
  all.forEach((w, i) => out.writeUInt16BE(w, i * 2));
  return out;
}

/** One IPv6 extension header for a test packet: its type and its bytes (byte 0, the next header, is filled in). */
export interface ExtensionHeader {
  type: number;
  bytes: Buffer;
}

/** A hop-by-hop or destination options header of `8 * units` bytes holding `options`, padded with PadN/Pad1. */
export function optionsHeader(type: 0 | 60, options: Buffer = Buffer.alloc(0), units = 1): ExtensionHeader {
  const bytes = Buffer.alloc(8 * units);
  bytes[1] = units - 1;
  options.copy(bytes, 2);
  const pad = bytes.length - 2 - options.length;
  if (pad === 1) bytes[2 + options.length] = 0;
  else if (pad > 7) {
    // Linux refuses more than 7 bytes of padding: fill with an unknown option of the "skip" kind instead.
    bytes[2 + options.length] = 0x1e;
    bytes[3 + options.length] = pad - 2;
  } else if (pad > 1) {
    bytes[2 + options.length] = 1;
    bytes[3 + options.length] = pad - 2;
  }
  return { type, bytes };
}

/** A fragment header: offset in bytes (a multiple of 8), M flag, identification. */
export function fragmentHeader(offset: number, more: boolean, id: number): ExtensionHeader {
  const bytes = Buffer.alloc(8);
  bytes.writeUInt16BE(offset | (more ? 1 : 0), 2);
  bytes.writeUInt32BE(id >>> 0, 4);
  return { type: 44, bytes };
}

/** A routing header (type 4 or 0 layout: 8 bytes of header plus 16 per address) with `left` segments left. */
export function routingHeader(left: number, addresses: Buffer[] = []): ExtensionHeader {
  const bytes = Buffer.alloc(8 + 16 * addresses.length);
  bytes[1] = addresses.length * 2;
  bytes[2] = 0;
  bytes[3] = left;
  addresses.forEach((a, i) => a.copy(bytes, 8 + 16 * i));
  return { type: 43, bytes };
}

export interface Echo6Options {
  src?: string;
  dst?: string;
  id?: number;
  seq?: number;
  payload?: Buffer;
  /** ICMPv6 type (128 request, 129 reply) and code. */
  type?: number;
  code?: number;
  hopLimit?: number;
  trafficClass?: number;
  flowLabel?: number;
  /** Extension headers between the fixed header and the ICMPv6 message, in order. */
  ext?: ExtensionHeader[];
}

/** RFC 8200 8.1 pseudo-header for the upper-layer checksum, followed by the message, for referenceChecksum. */
export function pseudoHeader6And(src: Buffer, dst: Buffer, next: number, message: Buffer): Buffer {
  const ph = Buffer.alloc(40);
  src.copy(ph, 0);
  dst.copy(ph, 16);
  ph.writeUInt32BE(message.length, 32);
  ph[39] = next;
  return Buffer.concat([ph, message]);
}

/** Chains a fixed IPv6 header, extension headers and an upper-layer message (next header values filled in). */
export function ipv6Datagram(o: { src?: string; dst?: string; hopLimit?: number; trafficClass?: number; flowLabel?: number; ext?: ExtensionHeader[] }, next: number, message: Buffer): Buffer {
  const ext = o.ext ?? [];
  const h = Buffer.alloc(40);
  const tc = o.trafficClass ?? 0;
  const fl = o.flowLabel ?? 0x12345;
  h.writeUInt32BE(((6 << 28) | (tc << 20) | fl) >>> 0, 0);
  h[6] = ext.length ? ext[0].type : next;
  h[7] = o.hopLimit ?? 64;
  ipv6Bytes(o.src ?? '2001:db8::1').copy(h, 8);
  ipv6Bytes(o.dst ?? '2001:db8::2').copy(h, 24);
  const parts = ext.map((e, i) => {
    const b = Buffer.from(e.bytes);
    b[0] = i + 1 < ext.length ? ext[i + 1].type : next;
    return b;
  });
  const body = Buffer.concat([...parts, message]);
  h.writeUInt16BE(body.length, 4);
  return Buffer.concat([h, body]);
}

/** A valid ICMPv6 echo packet (checksum over the pseudo-header), by default 2001:db8::1 > 2001:db8::2. */
export function echoRequest6(o: Echo6Options = {}): Buffer {
  const payload = o.payload ?? Buffer.from('tunpipe-test-payload-0123456789abcdefghijklmnopqrstuv').subarray(0, 56);
  const icmp = Buffer.alloc(8 + payload.length);
  icmp[0] = o.type ?? 128;
  icmp[1] = o.code ?? 0;
  icmp.writeUInt16BE(o.id ?? 0x1234, 4);
  icmp.writeUInt16BE(o.seq ?? 1, 6);
  payload.copy(icmp, 8);
  icmp.writeUInt16BE(referenceChecksum(pseudoHeader6And(ipv6Bytes(o.src ?? '2001:db8::1'), ipv6Bytes(o.dst ?? '2001:db8::2'), 58, icmp)), 2);
  return ipv6Datagram(o, 58, icmp);
}
