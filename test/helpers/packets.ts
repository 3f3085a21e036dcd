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
