/**
 * Reads pcapng files (what Wireshark and dumpcap write): every section (either byte order), every
 * interface's link type, time resolution (`if_tsresol`, powers of 10 and of 2) and offset (`if_tsoffset`);
 * enhanced, simple and the obsolete packet blocks are delivered, other blocks (name resolution,
 * statistics, custom, secrets) skipped. Packets are views into the file's chunks, as with classic pcap.
 *
 * The pipeline runs on one link type: the first interface's. RAW, IPv4 and IPv6 (101, 228, 229: all begin
 * with the IP header) count as one; any other mix is refused with a message that says how to split the
 * file. A block whose lengths do not add up is reported with its file offset; nothing is allocated from a
 * length before it is checked against MAX_BLOCK.
 */
import { TunpipeError } from '../errors.js';
import { ChunkedInput, openInput, readPrefix, type OpenedInput } from './chunked-input.js';
import { LINKTYPE_IPV4, LINKTYPE_IPV6, LINKTYPE_RAW } from './format.js';
import { BLOCK_EPB, BLOCK_IDB, BLOCK_PB, BLOCK_SHB, BLOCK_SPB, BYTE_ORDER_MAGIC, IF_TSOFFSET, IF_TSRESOL, MAX_BLOCK, pad4 } from './pcapng-format.js';
import { u32be, u32le, type CaptureReader, type CaptureReaderOptions, type PcapHeader } from './reader.js';

const TWO32 = 4294967296;

function sameFamily(a: number, b: number): boolean {
  const raw = (t: number) => t === LINKTYPE_RAW || t === LINKTYPE_IPV4 || t === LINKTYPE_IPV6;
  return a === b || (raw(a) && raw(b));
}

/**
 * How to turn one interface's 64-bit timestamps into seconds and nanoseconds with doubles only (a 64-bit
 * count of nanoseconds does not fit in a double exactly): units per second R, and 2^32 and 2^48 divided by
 * R (quotient, remainder), so that every partial product stays below 2^53.
 */
interface Resolution {
  units: number;
  q: number;
  r: number;
  q1: number;
  c1: number;
  /** Nanoseconds per unit when R divides 10^9, else 0. */
  scale: number;
}

function resolution(tsresol: number): Resolution {
  const units = tsresol & 0x80 ? 2 ** (tsresol & 0x7f) : 10 ** tsresol;
  const q = Math.floor(TWO32 / units);
  const r = TWO32 - q * units;
  const q1 = Math.floor((65536 * r) / units);
  const c1 = 65536 * r - q1 * units;
  const scale = Number.isInteger(1e9 / units) ? 1e9 / units : 0;
  return { units, q, r, q1, c1, scale };
}

export class PcapngReader extends ChunkedInput implements CaptureReader {
  readonly header: PcapHeader;
  truncatedTail = false;
  /** Byte order of the current section. */
  private be = false;
  /** The current section's interfaces. */
  private ifLinkType: number[] = [];
  private ifSnaplen: number[] = [];
  private ifRes: Resolution[] = [];
  private ifOffset: number[] = [];
  private firstLinkType = -1;
  private sections = 0;

  constructor(path: string, options: CaptureReaderOptions = {}, opened?: OpenedInput) {
    let input = opened;
    if (!input) {
      const fd = openInput(path);
      input = { fd, prefix: readPrefix(fd, 0) };
    }
    super(path, input, options.reuseChunks ?? false);
    try {
      this.header = this.readHead();
      this.sniffed = true;
    } catch (err) {
      this.close();
      throw err;
    }
  }

  private corrupt(what: string, at = this.offset): TunpipeError {
    return new TunpipeError(`${this.path}: corrupt pcapng block at offset ${at}: ${what}`);
  }

  private u32(o: number): number {
    return this.be ? u32be(this.chunk, o) : u32le(this.chunk, o);
  }

  private u16(o: number): number {
    const c = this.chunk;
    return this.be ? (c[o] << 8) | c[o + 1] : c[o] | (c[o + 1] << 8);
  }

  /**
   * Checks the block at `pos` and makes it all available; returns its length, or 0 at the end of the file
   * (a block cut short sets truncatedTail). Throws on lengths that cannot be.
   */
  private block(): number {
    if (!this.ensure(8)) {
      if (this.starved) return 0;
      if (this.available > 0) this.truncatedTail = true;
      this.pos = this.chunk.length;
      return 0;
    }
    const o = this.pos;
    const type = u32le(this.chunk, o);
    if (type === BLOCK_SHB) this.sectionOrder();
    const len = this.u32(o + 4);
    if (len < 12 || len % 4 !== 0) throw this.corrupt(`block total length ${len} (at least 12, a multiple of 4)`);
    if (len > MAX_BLOCK) throw this.corrupt(`block total length ${len} is larger than any packet (limit ${MAX_BLOCK})`);
    if (!this.ensure(len)) {
      if (this.starved) return 0;
      this.truncatedTail = true;
      this.pos = this.chunk.length;
      return 0;
    }
    if (this.u32(this.pos + len - 4) !== len) throw this.corrupt(`block total length ${len} at its start, ${this.u32(this.pos + len - 4)} at its end`);
    return len;
  }

  /** At a section header: reads its byte-order magic, which decides how its lengths are read. */
  private sectionOrder(): void {
    if (!this.ensure(12)) return;
    const bom = this.chunk.subarray(this.pos + 8, this.pos + 12);
    if (bom.readUInt32LE(0) === BYTE_ORDER_MAGIC) this.be = false;
    else if (bom.readUInt32BE(0) === BYTE_ORDER_MAGIC) this.be = true;
    else throw this.corrupt(`section header with byte-order magic 0x${bom.toString('hex')} (expected 1a2b3c4d in either order)`);
  }

  private readHead(): PcapHeader {
    if (!this.ensure(4)) throw new TunpipeError(`${this.path} is empty, not a capture file`);
    if (u32le(this.chunk, this.pos) !== BLOCK_SHB) throw new TunpipeError(`${this.path} is not a pcapng file (it does not start with a section header block)`);
    let nanos = false;
    // Read the interface descriptions up to the first packet so the link type and time unit are known.
    for (;;) {
      const len = this.block();
      if (len === 0) break;
      const type = this.u32(this.pos);
      if (type === BLOCK_EPB || type === BLOCK_SPB || type === BLOCK_PB) break;
      this.control(type, len);
      this.pos += len;
      for (const res of this.ifRes) if (res.units > 1e6) nanos = true;
    }
    if (this.sections === 0) throw new TunpipeError(`${this.path} is not a pcapng file (its section header is cut short)`);
    const be = this.be;
    return { linkType: this.firstLinkType < 0 ? LINKTYPE_RAW : this.firstLinkType, nanos, snaplen: this.ifSnaplen[0] ?? 262144, bigEndian: be };
  }

  /** A block that is not a packet: a new section, an interface, or something to skip. */
  private control(type: number, len: number): void {
    const o = this.pos;
    if (type === BLOCK_SHB) {
      if (len < 28) throw this.corrupt(`section header of ${len} bytes (at least 28)`);
      const major = this.u16(o + 12);
      if (major !== 1) throw this.corrupt(`section header of pcapng version ${major}.${this.u16(o + 14)} (this reader knows 1.x)`);
      this.sections++;
      this.ifLinkType = [];
      this.ifSnaplen = [];
      this.ifRes = [];
      this.ifOffset = [];
      return;
    }
    if (this.sections === 0) throw this.corrupt('a block before the first section header');
    if (type !== BLOCK_IDB) return;
    if (len < 20) throw this.corrupt(`interface description of ${len} bytes (at least 20)`);
    const linkType = this.u16(o + 8);
    let tsresol = 6;
    let tsoffset = 0;
    const end = o + len - 4;
    for (let p = o + 16; p + 4 <= end; ) {
      const code = this.u16(p);
      const olen = this.u16(p + 2);
      if (code === 0) break;
      if (p + 4 + olen > end) throw this.corrupt(`interface option ${code} of ${olen} bytes runs past its block`);
      if (code === IF_TSRESOL && olen >= 1) tsresol = this.chunk[p + 4];
      if (code === IF_TSOFFSET && olen >= 8) {
        const hi = this.be ? this.chunk.readInt32BE(p + 4) : this.chunk.readInt32LE(p + 8);
        const lo = this.be ? this.chunk.readUInt32BE(p + 8) : this.chunk.readUInt32LE(p + 4);
        tsoffset = hi * TWO32 + lo;
      }
      p += 4 + pad4(olen);
    }
    const units = tsresol & 0x80 ? 2 ** (tsresol & 0x7f) : 10 ** tsresol;
    if (!(units >= 1 && units <= TWO32)) throw this.corrupt(`interface time resolution ${tsresol & 0x80 ? '2^-' : '10^-'}${tsresol & 0x7f} s, finer than this reader keeps (at most 2^-32 s)`);
    const id = this.ifLinkType.length;
    if (this.firstLinkType < 0) this.firstLinkType = linkType;
    else if (!sameFamily(linkType, this.firstLinkType)) {
      throw new TunpipeError(
        `${this.path}: interface ${id} of section ${this.sections} (offset ${this.offset}) has link type ${linkType}, the first interface ${this.firstLinkType}; ` +
          `a pipeline runs on one link type: take one interface out with 'tshark -r ${this.path} -Y frame.interface_id==N -w one.pcapng'`,
      );
    }
    this.ifLinkType.push(linkType);
    this.ifSnaplen.push(this.u32(o + 12));
    this.ifRes.push(resolution(tsresol));
    this.ifOffset.push(tsoffset);
  }

  readBatch(max: number, onPacket: (data: Buffer, sec: number, nsec: number) => void): number {
    let count = 0;
    while (count < max) {
      let c = this.chunk;
      let o = this.pos;
      const be = this.be;
      // Fast path: a whole block in the chunk that is not a section header (whose first byte is 0x0a in
      // either order); anything else goes through block(), which reads more and checks more.
      let len = c.length - o >= 8 && c[o] !== 0x0a ? (be ? u32be(c, o + 4) : u32le(c, o + 4)) : 0;
      if (len < 12 || (len & 3) !== 0 || len > MAX_BLOCK || o + len > c.length) {
        len = this.block();
        if (len === 0) break;
        c = this.chunk;
        o = this.pos;
      } else if ((be ? u32be(c, o + len - 4) : u32le(c, o + len - 4)) !== len) {
        throw this.corrupt(`block total length ${len} at its start, ${be ? u32be(c, o + len - 4) : u32le(c, o + len - 4)} at its end`);
      }
      const type = be ? u32be(c, o) : u32le(c, o);
      if (type !== BLOCK_EPB && type !== BLOCK_PB) {
        if (type === BLOCK_SPB) count += this.simplePacket(len, onPacket);
        else this.control(type, len);
        this.pos += len;
        continue;
      }
      if (len < 32) throw this.corrupt(`packet block of ${len} bytes (at least 32)`);
      const iface = type === BLOCK_EPB ? (be ? u32be(c, o + 8) : u32le(c, o + 8)) : this.u16(o + 8);
      if (iface >= this.ifRes.length) throw this.corrupt(`packet on interface ${iface}, but the section describes ${this.ifRes.length}`);
      const hi = be ? u32be(c, o + 12) : u32le(c, o + 12);
      const lo = be ? u32be(c, o + 16) : u32le(c, o + 16);
      const caplen = be ? u32be(c, o + 20) : u32le(c, o + 20);
      if (28 + caplen + 4 > len) throw this.corrupt(`captured length ${caplen} does not fit in a block of ${len} bytes`);
      const res = this.ifRes[iface];
      const units = res.units;
      let sec: number;
      let rest: number;
      if (hi < 0x200000) {
        // The 64-bit count fits in a double exactly (microseconds until the year 2255).
        const ts = hi * 4294967296 + lo;
        sec = Math.floor(ts / units);
        rest = ts - sec * units;
        if (rest < 0) {
          sec--;
          rest += units;
        } else if (rest >= units) {
          sec++;
          rest -= units;
        }
      } else {
        // hi*2^32 + lo = R*(hi*q + h1*q1) + rest, every partial product below 2^53 (see Resolution).
        const h1 = Math.floor(hi / 65536);
        const h0 = hi & 0xffff;
        rest = h1 * res.c1 + h0 * res.r + lo;
        const whole = Math.floor(rest / units);
        rest -= whole * units;
        sec = hi * res.q + h1 * res.q1 + whole;
      }
      sec += this.ifOffset[iface];
      const nsec = res.scale !== 0 ? rest * res.scale : Math.floor((rest * 1e9) / units);
      this.pos = o + len;
      onPacket(this.packetAt(o + 28, o + 28 + caplen), sec, nsec);
      count++;
    }
    return count;
  }

  /** A simple packet block: interface 0, no time (0), data cut to the interface's snaplen. */
  private simplePacket(len: number, onPacket: (data: Buffer, sec: number, nsec: number) => void): number {
    if (this.ifRes.length === 0) throw this.corrupt('simple packet block in a section without interfaces');
    if (len < 16) throw this.corrupt(`simple packet block of ${len} bytes (at least 16)`);
    const orig = this.u32(this.pos + 8);
    const snap = this.ifSnaplen[0] || Infinity;
    const caplen = Math.min(orig, snap, len - 16);
    onPacket(this.packetAt(this.pos + 12, this.pos + 12 + caplen), 0, 0);
    return 1;
  }
}
