/**
 * Writes pcapng (./pcapng-format.ts): a section header (with an optional comment and the writing
 * application), one interface description per port (its name, link type, snaplen, and `if_tsresol` 9 for
 * nanoseconds), then an enhanced packet block per packet that names its interface and, in `epb_flags`,
 * its direction. Buffered and cut back to whole blocks exactly like the classic writer (./capture-file.ts);
 * appending (`append`) cuts a file back to its last whole block and joins its last section (a section of
 * our own when that one is big-endian); the comment of an appended capture stays the file's.
 *
 * Blocks are little-endian (byte-order magic 0x1A2B3C4D as written here); readers of either order read them.
 */
import { fstatSync } from 'node:fs';
import { CaptureFile, CaptureFileWriter, putU32LE, timeRangeError, type UnitFormat } from './capture-file.js';
import { repairPcapng } from './append.js';
import { DEFAULT_SNAPLEN, LINKTYPE_RAW } from './format.js';
import {
  BLOCK_EPB,
  BLOCK_IDB,
  BLOCK_SHB,
  BYTE_ORDER_MAGIC,
  EPB_FLAGS,
  EPB_OVERHEAD,
  IF_NAME,
  IF_TSRESOL,
  OPT_COMMENT,
  pad4,
  SHB_USERAPPL,
} from './pcapng-format.js';
import type { CaptureWriter, PcapWriterOptions } from './writer.js';

/** An enhanced packet block's time is a 64-bit count of units (if_tsresol): its last whole second. */
const LAST_SECOND_NANOS = Math.floor(2 ** 64 / 1e9) - 1;
const LAST_SECOND_MICROS = Math.floor(2 ** 64 / 1e6) - 1;

/** One interface of the section: a port the packets came from or went to. */
export interface PcapngInterface {
  name: string;
  linkType: number;
}

export interface PcapngWriterOptions extends Omit<PcapWriterOptions, 'linkType'> {
  /** The section's interfaces; packets name them by index. Default: one, 'tunpipe', RAW. */
  interfaces?: PcapngInterface[];
  /** The section header's comment (opt_comment). */
  comment?: string;
  /** shb_userappl. */
  application?: string;
}

const pcapngUnits: UnitFormat = {
  unitLength: (b, pos) => b.readUInt32LE(pos + 4),
  isPacket: (b, pos) => b.readUInt32LE(pos) === BLOCK_EPB,
};

/** Encodes options (code, UTF-8 or raw value) followed by opt_endofopt. */
function options(list: Array<[number, Buffer]>): Buffer {
  if (list.length === 0) return Buffer.alloc(0);
  const parts: Buffer[] = [];
  for (const [code, value] of list) {
    const h = Buffer.alloc(4);
    h.writeUInt16LE(code, 0);
    h.writeUInt16LE(value.length, 2);
    parts.push(h, value, Buffer.alloc(pad4(value.length) - value.length));
  }
  parts.push(Buffer.alloc(4));
  return Buffer.concat(parts);
}

function block(type: number, body: Buffer): Buffer {
  const len = 12 + body.length;
  const b = Buffer.alloc(len);
  b.writeUInt32LE(type, 0);
  b.writeUInt32LE(len, 4);
  body.copy(b, 8);
  b.writeUInt32LE(len, len - 4);
  return b;
}

/** Option values are at most 65535 bytes; a longer text is cut at a character boundary. */
function text(s: string): Buffer {
  let b = Buffer.from(s, 'utf8');
  if (b.length > 65532) b = Buffer.from(b.subarray(0, 65532).toString('utf8').replace(/\uFFFD$/, ''), 'utf8');
  return b;
}

/** The section header and interface blocks that begin every file (and every appended section). */
export function sectionHead(ifaces: PcapngInterface[], nanos: boolean, snaplen: number, comment?: string, application = 'tunpipe'): Buffer {
  const shbBody = Buffer.alloc(16);
  shbBody.writeUInt32LE(BYTE_ORDER_MAGIC, 0);
  shbBody.writeUInt16LE(1, 4);
  shbBody.writeUInt16LE(0, 6);
  shbBody.writeInt32LE(-1, 8); // section length unknown (-1, 64 bits)
  shbBody.writeInt32LE(-1, 12);
  const shbOpts: Array<[number, Buffer]> = [];
  if (comment) shbOpts.push([OPT_COMMENT, text(comment)]);
  shbOpts.push([SHB_USERAPPL, text(application)]);
  return Buffer.concat([block(BLOCK_SHB, Buffer.concat([shbBody, options(shbOpts)])), interfaceBlocks(ifaces, nanos, snaplen)]);
}

/** Interface description blocks for `ifaces`. */
function interfaceBlocks(ifaces: PcapngInterface[], nanos: boolean, snaplen: number): Buffer {
  const parts: Buffer[] = [];
  for (const i of ifaces) {
    const body = Buffer.alloc(8);
    body.writeUInt16LE(i.linkType, 0);
    body.writeUInt32LE(snaplen, 4);
    const opts: Array<[number, Buffer]> = [[IF_NAME, text(i.name)]];
    if (nanos) opts.push([IF_TSRESOL, Buffer.from([9])]);
    parts.push(block(BLOCK_IDB, Buffer.concat([body, options(opts)])));
  }
  return Buffer.concat(parts);
}

export class PcapngWriter extends CaptureFileWriter implements CaptureWriter {
  protected readonly file: CaptureFile;
  private readonly nanos: boolean;
  /** File interface id of each interface given (appending may find them in the file already). */
  private readonly ifaceIds: number[];
  readonly snaplen: number;
  readonly repaired: string | null = null;

  /** Opens FILE (or `-` for stdout) and writes the section header and interfaces. Throws a TunpipeError. */
  constructor(
    public target: string,
    options: PcapngWriterOptions = {},
  ) {
    super();
    this.nanos = options.nanos ?? false;
    this.snaplen = options.snaplen ?? DEFAULT_SNAPLEN;
    const ifaces = options.interfaces?.length ? options.interfaces : [{ name: 'tunpipe', linkType: LINKTYPE_RAW }];
    this.ifaceIds = ifaces.map((_, i) => i);
    const append = (options.append ?? false) && target !== '-';
    this.file = new CaptureFile(target, pcapngUnits, { mode: options.mode, append, bufferSize: options.bufferSize });
    try {
      const existing = append ? fstatSync(this.file.fd).size : 0;
      let head: Buffer;
      const repair = existing > 0 ? repairPcapng(this.file.fd, target, existing) : null;
      if (repair) {
        this.repaired = repair.message;
        this.file.adopt(repair.bytes);
      }
      if (repair && repair.bytes > 0 && !repair.lastSection.bigEndian) {
        // Join the last section: reuse its interfaces that are ours, describe the others after them. (A
        // section of our own would be as valid, but tshark before 4.2 gives a later section's packets the
        // interfaces of the first.)
        const known = repair.lastSection.interfaces;
        const tsresol = this.nanos ? 9 : 6;
        const added: PcapngInterface[] = [];
        ifaces.forEach((want, i) => {
          const found = known.findIndex((k) => k.name === want.name && k.linkType === want.linkType && k.tsresol === tsresol);
          if (found >= 0) this.ifaceIds[i] = found;
          else {
            this.ifaceIds[i] = known.length + added.length;
            added.push(want);
          }
        });
        head = interfaceBlocks(added, this.nanos, this.snaplen);
      } else {
        head = sectionHead(ifaces, this.nanos, this.snaplen, options.comment, options.application);
      }
      // One unit per block, so that a failed write is cut back between blocks.
      for (let o = 0; o < head.length; ) {
        const len = head.readUInt32LE(o + 4);
        head.copy(this.file.room(len), this.file.used, o, o + len);
        this.file.commit(len, false);
        o += len;
      }
      this.file.flush();
    } catch (err) {
      try {
        this.file.close();
      } catch {
        /* the first error says more */
      }
      throw err;
    }
  }

  /**
   * Describes one more interface (an interface description block, written before the packets that name
   * it) and returns its index for write(): several pipelines can share one file, each its own interface.
   */
  addInterface(iface: PcapngInterface): number {
    const idb = interfaceBlocks([iface], this.nanos, this.snaplen);
    idb.copy(this.file.room(idb.length), this.file.used);
    this.file.commit(idb.length, false);
    const fileId = Math.max(...this.ifaceIds) + 1;
    this.ifaceIds.push(fileId);
    return this.ifaceIds.length - 1;
  }

  recordSize(caplen: number): number {
    return EPB_OVERHEAD + pad4(caplen < this.snaplen ? caplen : this.snaplen);
  }

  /**
   * Appends one enhanced packet block stamped `sec` seconds and `nsec` nanoseconds since the epoch, on
   * interface `iface` (an index into the interfaces given), with `flags` as epb_flags (direction bits).
   */
  write(data: Uint8Array, sec: number, nsec: number, iface = 0, flags = 0, keep = this.snaplen): void {
    const lastSecond = this.nanos ? LAST_SECOND_NANOS : LAST_SECOND_MICROS;
    if (!(sec >= 0 && sec <= lastSecond)) throw timeRangeError(this.target, sec, this.nanos ? 'pcapng (nanosecond)' : 'pcapng', lastSecond);
    const limit = keep < this.snaplen ? keep : this.snaplen;
    const caplen = data.length < limit ? data.length : limit;
    const padded = pad4(caplen);
    const len = EPB_OVERHEAD + padded;
    const b = this.file.room(len);
    const o = this.file.used;
    // The 64-bit time as two 32-bit halves, without a product above 2^53: sec*R = (sec>>16)*R*2^16 + (sec&0xffff)*R.
    const units = this.nanos ? 1e9 : 1e6;
    const a = Math.floor(sec / 65536) * units;
    const low = (sec % 65536) * units + (this.nanos ? nsec : Math.floor(nsec / 1000)) + (a % 65536) * 65536;
    const hi = Math.floor(a / 65536) + Math.floor(low / 4294967296);
    putU32LE(b, o, BLOCK_EPB);
    putU32LE(b, o + 4, len);
    putU32LE(b, o + 8, iface < this.ifaceIds.length ? this.ifaceIds[iface] : this.ifaceIds[0]);
    putU32LE(b, o + 12, hi);
    putU32LE(b, o + 16, low % 4294967296);
    putU32LE(b, o + 20, caplen);
    putU32LE(b, o + 24, data.length);
    b.set(caplen === data.length ? data : data.subarray(0, caplen), o + 28);
    let p = o + 28 + caplen;
    while (p < o + 28 + padded) b[p++] = 0;
    // epb_flags (code 2, length 4), then opt_endofopt, then the trailing length.
    putU32LE(b, p, EPB_FLAGS | (4 << 16));
    putU32LE(b, p + 4, flags);
    putU32LE(b, p + 8, 0);
    putU32LE(b, p + 12, len);
    this.file.commit(len, true);
  }

}
