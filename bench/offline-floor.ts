/**
 * A floor for the offline row: `node dist/bench/offline-floor.js IN OUT` answers the echo requests of a
 * classic pcap file (LINKTYPE_RAW, as the bench writes it) in one hand-written loop, with none of tunpipe:
 * no stages, no Packet, no engine. It does what the kernel's echo must do and nothing more: the IPv4
 * header checksum and the ICMP checksum checked, type 8 and no fragment, addresses swapped, type 0 and
 * TTL 64 with both checksums updated incrementally (RFC 1624), every other record dropped. Reads and
 * writes a MiB at a time, synchronously. The bench times it beside tunpipe and tcpdump: what one Node
 * thread does at best on this machine, which tells a cost of tunpipe's own from the language's.
 */
import { closeSync, openSync, readSync, writeSync } from 'node:fs';

const CHUNK = 1 << 20;
const HEADER = 24;
const RECORD = 16;

function sum16(b: Uint8Array, start: number, len: number): number {
  let hi = 0;
  let lo = 0;
  const end = start + len;
  let i = start;
  for (; i + 7 < end; i += 8) {
    hi += b[i] + b[i + 2] + b[i + 4] + b[i + 6];
    lo += b[i + 1] + b[i + 3] + b[i + 5] + b[i + 7];
  }
  for (; i + 1 < end; i += 2) {
    hi += b[i];
    lo += b[i + 1];
  }
  if (i < end) hi += b[i];
  return hi * 256 + lo;
}

function fold(s: number): number {
  s = (s % 0x10000) + Math.floor(s / 0x10000);
  return (s >>> 16) + (s & 0xffff);
}

/** RFC 1624 equation 3: the checksum at `at` after the word `oldWord` became `newWord`. */
function adjust(b: Uint8Array, at: number, oldWord: number, newWord: number): void {
  const c = ~fold((~((b[at] << 8) | b[at + 1]) & 0xffff) + (~oldWord & 0xffff) + newWord) & 0xffff;
  b[at] = c >> 8;
  b[at + 1] = c & 0xff;
}

/** Answers one packet in place at `l3`, `len` bytes; false for a packet the kernel would not answer. */
function answer(b: Uint8Array, l3: number, len: number): boolean {
  if (len < 28 || b[l3] >> 4 !== 4) return false;
  const ihl = (b[l3] & 15) * 4;
  const total = (b[l3 + 2] << 8) | b[l3 + 3];
  if (ihl < 20 || total < ihl + 8 || total > len) return false;
  if (b[l3 + 9] !== 1 || ((b[l3 + 6] << 8) | b[l3 + 7]) & 0x3fff) return false;
  const l4 = l3 + ihl;
  if (b[l4] !== 8) return false;
  if (fold(sum16(b, l3, ihl)) !== 0xffff || fold(sum16(b, l4, total - ihl)) !== 0xffff) return false;
  for (let k = 0; k < 4; k++) {
    const t = b[l3 + 12 + k];
    b[l3 + 12 + k] = b[l3 + 16 + k];
    b[l3 + 16 + k] = t;
  }
  const typeWord = (b[l4] << 8) | b[l4 + 1];
  b[l4] = 0;
  adjust(b, l4 + 2, typeWord, b[l4 + 1]);
  const ttlWord = (b[l3 + 8] << 8) | b[l3 + 9];
  b[l3 + 8] = 64;
  adjust(b, l3 + 10, ttlWord, (64 << 8) | b[l3 + 9]);
  return true;
}

function main(inPath: string, outPath: string): number {
  const fd = openSync(inPath, 'r');
  const out = openSync(outPath, 'w', 0o600);
  const inBuf = Buffer.allocUnsafeSlow(2 * CHUNK);
  const outBuf = Buffer.allocUnsafeSlow(2 * CHUNK);
  let len = readSync(fd, inBuf, 0, CHUNK, null);
  if (len < HEADER) throw new Error(`${inPath}: not a pcap file`);
  inBuf.copy(outBuf, 0, 0, HEADER);
  let used = HEADER;
  let pos = HEADER;
  let answered = 0;
  let eof = false;
  for (;;) {
    if (!eof && len - pos < RECORD + 65536) {
      inBuf.copyWithin(0, pos, len);
      len -= pos;
      pos = 0;
      const n = readSync(fd, inBuf, len, CHUNK, null);
      eof = n === 0;
      len += n;
    }
    if (len - pos < RECORD) break;
    const caplen = inBuf.readUInt32LE(pos + 8);
    if (len - pos < RECORD + caplen) break;
    if (answer(inBuf, pos + RECORD, caplen)) {
      if (used + RECORD + caplen > outBuf.length) {
        writeAll(out, outBuf, used);
        used = 0;
      }
      inBuf.copy(outBuf, used, pos, pos + RECORD + caplen);
      used += RECORD + caplen;
      answered++;
    }
    pos += RECORD + caplen;
  }
  writeAll(out, outBuf, used);
  closeSync(fd);
  closeSync(out);
  return answered;
}

function writeAll(fd: number, b: Buffer, n: number): void {
  for (let off = 0; off < n; ) off += writeSync(fd, b, off, n - off);
}

const [inPath, outPath] = process.argv.slice(2);
if (!inPath || !outPath) {
  process.stderr.write('usage: node dist/bench/offline-floor.js IN.pcap OUT.pcap\n');
  process.exit(2);
}
process.stderr.write(`offline-floor: ${main(inPath, outPath)} replies\n`);
