/**
 * pcap files: writing the offline bench's input (N valid ICMP echo requests), walking the records of a
 * capture, and recognising a valid echo reply to one of those requests.
 */
import * as fs from 'node:fs';
import { LOCAL_ADDR, PEER_ADDR } from './constants.js';

const LINKTYPE_RAW = 101;
const ECHO_PACKET_LEN = 84; // 20 IPv4 + 8 ICMP + 56 payload, like ping's default
const PCAP_RECORD_HEADER = 16;

function pcapFileHeader(linkType: number): Buffer {
  const h = Buffer.alloc(24);
  h.writeUInt32LE(0xa1b2c3d4, 0); // microsecond timestamps, little-endian
  h.writeUInt16LE(2, 4);
  h.writeUInt16LE(4, 6);
  h.writeUInt32LE(65535, 16); // snaplen
  h.writeUInt32LE(linkType, 20);
  return h;
}

function ipv4Bytes(text: string): number[] {
  return text.split('.').map(Number);
}

/** RFC 1071 checksum of buf[start, end); over data that includes a correct checksum field it returns 0. */
function internetChecksum(buf: Buffer, start: number, end: number): number {
  let sum = 0;
  for (let i = start; i + 1 < end; i += 2) sum += (buf[i]! << 8) | buf[i + 1]!;
  if ((end - start) & 1) sum += buf[end - 1]! << 8;
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
  return ~sum & 0xffff;
}

/** A request from the peer to us, as the kernel would hand it to a responder reading the device. */
function echoRequestTemplate(): Buffer {
  const p = Buffer.alloc(ECHO_PACKET_LEN);
  p[0] = 0x45;
  p.writeUInt16BE(ECHO_PACKET_LEN, 2);
  p.writeUInt16BE(0x4000, 6); // DF
  p[8] = 64; // TTL
  p[9] = 1; // ICMP
  Buffer.from(ipv4Bytes(PEER_ADDR)).copy(p, 12);
  Buffer.from(ipv4Bytes(LOCAL_ADDR)).copy(p, 16);
  p[20] = 8; // echo request
  p.writeUInt16BE(0x7470, 24); // identifier "tp"
  for (let i = 28; i < ECHO_PACKET_LEN; i++) p[i] = (i - 28 + 0x10) & 0xff;
  return p;
}

/** Fills one record (header + packet) at `at` for request number i: IP id and ICMP sequence vary with i. */
function fillEchoRequestRecord(out: Buffer, at: number, i: number, template: Buffer): void {
  out.writeUInt32LE(1_700_000_000 + Math.floor(i / 1_000_000), at);
  out.writeUInt32LE(i % 1_000_000, at + 4);
  out.writeUInt32LE(ECHO_PACKET_LEN, at + 8);
  out.writeUInt32LE(ECHO_PACKET_LEN, at + 12);
  const p = at + PCAP_RECORD_HEADER;
  template.copy(out, p);
  out.writeUInt16BE(i & 0xffff, p + 4);
  out.writeUInt16BE(i & 0xffff, p + 26);
  out.writeUInt16BE(internetChecksum(out, p, p + 20), p + 10);
  out.writeUInt16BE(internetChecksum(out, p + 20, p + ECHO_PACKET_LEN), p + 22);
}

export function writeEchoRequestPcap(file: string, count: number): void {
  const template = echoRequestTemplate();
  const recordLen = PCAP_RECORD_HEADER + ECHO_PACKET_LEN;
  const perChunk = 10_000;
  const chunk = Buffer.alloc(perChunk * recordLen);
  const fd = fs.openSync(file, 'w');
  try {
    fs.writeSync(fd, pcapFileHeader(LINKTYPE_RAW));
    for (let first = 0; first < count; first += perChunk) {
      const n = Math.min(perChunk, count - first);
      for (let k = 0; k < n; k++) fillEchoRequestRecord(chunk, k * recordLen, first + k, template);
      fs.writeSync(fd, chunk, 0, n * recordLen);
    }
  } finally {
    fs.closeSync(fd);
  }
}

export interface PcapScan {
  linkType: number;
  records: number;
  truncatedTail: boolean;
}

/**
 * Walks the records of a classic pcap file (24-byte file header, then 16-byte record headers each followed by
 * incl_len bytes), in chunks so that large captures need no large buffer. `visit` sees each packet's bytes.
 */
export function scanPcap(file: string, visit?: (pkt: Buffer, linkType: number) => void): PcapScan {
  const fd = fs.openSync(file, 'r');
  try {
    const header = Buffer.alloc(24);
    if (fs.readSync(fd, header, 0, 24, 0) < 24) return { linkType: -1, records: 0, truncatedTail: true };
    const magicLE = header.readUInt32LE(0);
    const le = magicLE === 0xa1b2c3d4 || magicLE === 0xa1b23c4d;
    const be = header.readUInt32BE(0) === 0xa1b2c3d4 || header.readUInt32BE(0) === 0xa1b23c4d;
    if (!le && !be) throw new Error(`${file}: not a pcap file (magic 0x${magicLE.toString(16)})`);
    const u32 = (b: Buffer, at: number) => (le ? b.readUInt32LE(at) : b.readUInt32BE(at));
    const linkType = u32(header, 20) & 0xffff;
    let buf = Buffer.alloc(4 << 20);
    let have = 0; // bytes of buf in use, starting at a record boundary
    let filePos = 24;
    let records = 0;
    for (;;) {
      const n = fs.readSync(fd, buf, have, buf.length - have, filePos);
      filePos += n;
      have += n;
      let at = 0;
      while (have - at >= PCAP_RECORD_HEADER) {
        const incl = u32(buf, at + 8);
        if (have - at < PCAP_RECORD_HEADER + incl) break;
        visit?.(buf.subarray(at + PCAP_RECORD_HEADER, at + PCAP_RECORD_HEADER + incl), linkType);
        records++;
        at += PCAP_RECORD_HEADER + incl;
      }
      buf.copy(buf, 0, at, have);
      have -= at;
      if (n === 0) return { linkType, records, truncatedTail: have > 0 };
      if (have === buf.length) {
        const bigger = Buffer.alloc(buf.length * 2); // a record larger than the buffer
        buf.copy(bigger, 0, 0, have);
        buf = bigger;
      }
    }
  } finally {
    fs.closeSync(fd);
  }
}

export interface CaptureCheck {
  records: number;
  requestsRead: number;
  ok: boolean;
  note?: string;
}

/** A capture in the pipeline must hold every packet the responder read from the device, no more, no less. */
export function checkCapture(file: string, requestsRead: number): CaptureCheck {
  if (!fs.existsSync(file)) return { records: 0, requestsRead, ok: false, note: 'no capture file' };
  const scan = scanPcap(file);
  const note = scan.truncatedTail ? 'last record truncated' : undefined;
  return { records: scan.records, requestsRead, ok: scan.records === requestsRead && !scan.truncatedTail, note };
}

/** Offset of the IP header for the link types a raw-IP tool may write. */
function ipOffset(linkType: number): number | null {
  if (linkType === LINKTYPE_RAW || linkType === 228 || linkType === 12 || linkType === 14) return 0;
  if (linkType === 1) return 14; // Ethernet
  return null;
}

const LOCAL_U32 = Buffer.from(ipv4Bytes(LOCAL_ADDR)).readUInt32BE(0);
const PEER_U32 = Buffer.from(ipv4Bytes(PEER_ADDR)).readUInt32BE(0);

/** A correct reply to one of our generated requests: ICMP echo reply 198.18.0.1 → .2, both checksums valid. */
export function isValidEchoReply(pkt: Buffer, linkType: number): boolean {
  const o = ipOffset(linkType);
  if (o === null || pkt.length < o + 28 || pkt[o] !== 0x45 || pkt[o + 9] !== 1) return false;
  const total = pkt.readUInt16BE(o + 2);
  if (pkt.length < o + total) return false;
  return (
    pkt[o + 20] === 0 &&
    pkt.readUInt32BE(o + 12) === LOCAL_U32 &&
    pkt.readUInt32BE(o + 16) === PEER_U32 &&
    internetChecksum(pkt, o, o + 20) === 0 &&
    internetChecksum(pkt, o + 20, o + total) === 0
  );
}
