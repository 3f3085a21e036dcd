/**
 * Classic pcap files for the fuzz harness, written and read here rather than with tunpipe's own writer and
 * reader, so that the offline run and the capture checks do not trust the code under test.
 */
import { readFileSync, writeFileSync } from 'node:fs';

export interface PcapRecord {
  /** Captured bytes. */
  data: Buffer;
  /** Length of the packet on the wire (the record header's orig_len). */
  origLen: number;
}

export interface PcapContents {
  magic: number;
  linkType: number;
  records: PcapRecord[];
  /** Bytes after the last whole record (0 for a clean file). */
  trailing: number;
}

/** Writes a little-endian microsecond pcap; records are 1 ms apart, so a run's packets share one second or so. */
export function writePcapFile(path: string, packets: Buffer[], linkType: number): void {
  const h = Buffer.alloc(24);
  h.writeUInt32LE(0xa1b2c3d4, 0);
  h.writeUInt16LE(2, 4);
  h.writeUInt16LE(4, 6);
  h.writeUInt32LE(262144, 16);
  h.writeUInt32LE(linkType, 20);
  const parts: Buffer[] = [h];
  packets.forEach((p, i) => {
    const r = Buffer.alloc(16);
    r.writeUInt32LE(1_700_000_000 + Math.floor(i / 1000), 0);
    r.writeUInt32LE((i % 1000) * 1000, 4);
    r.writeUInt32LE(p.length, 8);
    r.writeUInt32LE(p.length, 12);
    parts.push(r, p);
  });
  writeFileSync(path, Buffer.concat(parts));
}

/** Reads a little-endian pcap (as written on this machine, by tunpipe or by writePcapFile). */
export function readPcapFile(path: string): PcapContents {
  const file = readFileSync(path);
  if (file.length < 24) throw new Error(`${path}: ${file.length} bytes, shorter than a pcap header`);
  const magic = file.readUInt32LE(0);
  if (magic !== 0xa1b2c3d4 && magic !== 0xa1b23c4d) throw new Error(`${path}: magic 0x${magic.toString(16)} is not a little-endian pcap`);
  const records: PcapRecord[] = [];
  let o = 24;
  while (o + 16 <= file.length) {
    const caplen = file.readUInt32LE(o + 8);
    if (o + 16 + caplen > file.length) break;
    records.push({ data: file.subarray(o + 16, o + 16 + caplen), origLen: file.readUInt32LE(o + 12) });
    o += 16 + caplen;
  }
  return { magic, linkType: file.readUInt32LE(20), records, trailing: file.length - o };
}
