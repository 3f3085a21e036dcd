/**
 * Before `append=true` adds to a capture: check that it is one we can add to, and cut it back to the end of
 * its last whole record (classic pcap) or block (pcapng). A capture whose writer was killed mid-write ends
 * in part of a record; appending after it would make every later record unreadable (readers take the new
 * bytes as the rest of the cut one). Each function returns the bytes kept and, when it cut, a message.
 */
import { ftruncateSync, readSync } from 'node:fs';
import { TunpipeError } from '../errors.js';
import { GLOBAL_HEADER_SIZE, PCAP_MAGIC_MICROS, PCAP_MAGIC_NANOS, PCAPNG_MAGIC, RECORD_HEADER_SIZE } from './format.js';
import { BLOCK_IDB, BLOCK_SHB, BYTE_ORDER_MAGIC, IF_NAME, IF_TSRESOL, MAX_BLOCK, pad4 } from './pcapng-format.js';

export interface Repair {
  /** Bytes of the file kept: the new records go after them. */
  bytes: number;
  /** Said on stderr when the file had to be cut. */
  message: string | null;
}

/** An interface of a pcapng section, as far as appending needs it. */
export interface SectionInterface {
  name: string;
  linkType: number;
  tsresol: number;
}

export interface PcapngRepair extends Repair {
  /** The last section's byte order and interfaces (new packets may join it). */
  lastSection: { bigEndian: boolean; interfaces: SectionInterface[] };
}

/** Reads a file through a 1 MiB window, so walking a million records costs a few reads. */
class Window {
  private readonly buf = Buffer.alloc(1 << 20);
  private start = 0;
  private len = 0;
  constructor(private readonly fd: number) {}
  /** `n` bytes at `pos`, or null where the file ends first. */
  at(pos: number, n: number): Buffer | null {
    if (pos < this.start || pos + n > this.start + this.len) {
      this.start = pos;
      this.len = readSync(this.fd, this.buf, 0, this.buf.length, pos);
      if (n > this.len) return null;
    }
    return this.buf.subarray(pos - this.start, pos - this.start + n);
  }
}

function cut(fd: number, target: string, size: number, keep: number, what: string): Repair {
  if (keep === size) return { bytes: size, message: null };
  ftruncateSync(fd, keep);
  return { bytes: keep, message: `${target} ended inside a ${what} (a capture cut short, e.g. by SIGKILL): cut back from ${size} to ${keep} bytes, the last whole ${what}, before appending` };
}

/** A little-endian classic pcap with the same time unit and link type, cut back to whole records. */
export function repairClassic(fd: number, target: string, size: number, want: { nanos: boolean; linkType: number }): Repair {
  const win = new Window(fd);
  const h = win.at(0, GLOBAL_HEADER_SIZE);
  const what = `cannot append to ${target}`;
  const magic = h ? h.readUInt32LE(0) : 0;
  if (h && magic === PCAPNG_MAGIC) throw new TunpipeError(`${what}: it is a pcapng file; add format=pcapng`);
  if (!h || (magic !== PCAP_MAGIC_MICROS && magic !== PCAP_MAGIC_NANOS)) {
    throw new TunpipeError(`${what}: it is not a pcap file this machine wrote (choose another file, or drop append=true to replace it)`);
  }
  const fileNanos = magic === PCAP_MAGIC_NANOS;
  if (fileNanos !== want.nanos) throw new TunpipeError(`${what}: it has ${fileNanos ? 'nanosecond' : 'microsecond'} timestamps; add nanos=${fileNanos}`);
  const linkType = h.readUInt32LE(20) & 0x0fffffff;
  if (linkType !== want.linkType) throw new TunpipeError(`${what}: its link type is ${linkType}, not ${want.linkType}`);
  let pos = GLOBAL_HEADER_SIZE;
  for (;;) {
    const r = win.at(pos, RECORD_HEADER_SIZE);
    if (!r) break;
    const next = pos + RECORD_HEADER_SIZE + r.readUInt32LE(8);
    if (next > size) break;
    pos = next;
  }
  return cut(fd, target, size, pos, 'record');
}

/** Name, link type and time resolution of an interface description block. */
function describe(win: Window, pos: number, len: number, be: boolean): SectionInterface {
  const b = win.at(pos, len)!;
  const u16 = (o: number) => (be ? b.readUInt16BE(o) : b.readUInt16LE(o));
  let name = '';
  let tsresol = 6;
  for (let p = 16; p + 4 <= len - 4; ) {
    const code = u16(p);
    const olen = u16(p + 2);
    if (code === 0 || p + 4 + olen > len - 4) break;
    if (code === IF_NAME) name = b.toString('utf8', p + 4, p + 4 + olen);
    if (code === IF_TSRESOL && olen >= 1) tsresol = b[p + 4];
    p += 4 + pad4(olen);
  }
  return { name, linkType: u16(8), tsresol };
}

/** A pcapng file (any byte order, any number of sections), cut back to whole blocks; with the last
 * section's interfaces, which new packets may join. */
export function repairPcapng(fd: number, target: string, size: number): PcapngRepair {
  const win = new Window(fd);
  const what = `cannot append to ${target}`;
  const first = win.at(0, 12);
  if (!first || first.readUInt32LE(0) !== BLOCK_SHB) {
    const classic = first && [PCAP_MAGIC_MICROS, PCAP_MAGIC_NANOS].includes(first.readUInt32LE(0));
    throw new TunpipeError(`${what}: it is not a pcapng file${classic ? ' but classic pcap; add format=pcap' : ' (choose another file, or drop append=true to replace it)'}`);
  }
  let be = false;
  let pos = 0;
  let interfaces: SectionInterface[] = [];
  for (;;) {
    const b = win.at(pos, 12);
    if (!b) break;
    const type = be ? b.readUInt32BE(0) : b.readUInt32LE(0);
    if (type === BLOCK_SHB) {
      if (b.readUInt32LE(8) === BYTE_ORDER_MAGIC) be = false;
      else if (b.readUInt32BE(8) === BYTE_ORDER_MAGIC) be = true;
      else throw new TunpipeError(`${what}: corrupt section header at offset ${pos}`);
    }
    const len = be ? b.readUInt32BE(4) : b.readUInt32LE(4);
    if (len < 12 || len % 4 !== 0 || len > MAX_BLOCK) throw new TunpipeError(`${what}: corrupt pcapng block at offset ${pos} (total length ${len}); it was not just cut short`);
    if (pos + len > size) break;
    const tail = win.at(pos + len - 4, 4);
    if (!tail || (be ? tail.readUInt32BE(0) : tail.readUInt32LE(0)) !== len) throw new TunpipeError(`${what}: corrupt pcapng block at offset ${pos} (its two lengths differ); it was not just cut short`);
    if (type === BLOCK_SHB) interfaces = [];
    if (type === BLOCK_IDB && len >= 20) interfaces.push(describe(win, pos, len, be));
    pos += len;
  }
  return { ...cut(fd, target, size, pos, 'block'), lastSection: { bigEndian: be, interfaces } };
}
