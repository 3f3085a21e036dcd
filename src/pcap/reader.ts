/**
 * Reads a classic pcap file, both byte orders, micro- and nanosecond variants. Packets are handed out as
 * views into large chunks read from the file (no copy per packet, see ./chunked-input.ts), in batches, so
 * offline runs move millions of packets a second. `openCaptureReader` (./open-reader.ts) picks this reader
 * or the pcapng one from a file's first bytes.
 */
import { TunpipeError } from '../errors.js';
import { ChunkedInput, openInput, readPrefix, type OpenedInput } from './chunked-input.js';
import { GLOBAL_HEADER_SIZE, PCAP_MAGIC_MICROS, PCAP_MAGIC_NANOS, PCAPNG_MAGIC, RECORD_HEADER_SIZE } from './format.js';

export interface PcapHeader {
  linkType: number;
  nanos: boolean;
  snaplen: number;
  bigEndian: boolean;
}

/** What the offline driver reads packets through, whichever the file's format (classic pcap or pcapng). */
export interface CaptureReader {
  readonly path: string;
  /** The link type of every packet, and whether the file's times are finer than microseconds. */
  readonly header: PcapHeader;
  /** Set when the file ended inside a record or block (a capture cut short): the partial one is skipped. */
  readonly truncatedTail: boolean;
  /**
   * Calls `onPacket(data, sec, nsec)` for up to `max` packets; returns how many it delivered (0 at the end).
   * `data` is a view into the reader's chunk (see `reuseChunks`). A corrupt file throws a TunpipeError
   * that gives the file offset.
   */
  readBatch(max: number, onPacket: (data: Buffer, sec: number, nsec: number) => void): number;
  close(): void;
  /** Input that arrives as it is written (a pipe, a FIFO): readBatch never blocks on it; see fillLive(). */
  readonly live: boolean;
  /** Live input: the last batch stopped because nothing more has arrived yet. */
  readonly starved: boolean;
  /** Live input: resolves when more has arrived (true) or the input has ended (false). */
  fillLive(): Promise<boolean>;
}

export interface CaptureReaderOptions {
  /**
   * Packets handed out are valid only until the next one is read: their bytes are copied to one place and
   * handed out there (two chunks of the file serve in turn), with no allocation per packet.
   */
  reuseChunks?: boolean;
}

/** Larger records than this are taken as corruption rather than allocated. */
export const MAX_RECORD = 1 << 26;

export function u32le(b: Buffer, o: number): number {
  return (b[o] | (b[o + 1] << 8) | (b[o + 2] << 16)) + b[o + 3] * 0x1000000;
}

export function u32be(b: Buffer, o: number): number {
  return b[o] * 0x1000000 + ((b[o + 1] << 16) | (b[o + 2] << 8) | b[o + 3]);
}

export class PcapReader extends ChunkedInput implements CaptureReader {
  readonly header: PcapHeader;
  truncatedTail = false;

  /**
   * Opens a pcap file (`-`: standard input) and checks its header; throws a TunpipeError saying what is wrong.
   * `opened`: an input already open, with the bytes read from it to tell its format.
   */
  constructor(path: string, options: CaptureReaderOptions = {}, opened?: OpenedInput) {
    let input = opened;
    if (!input) {
      const fd = openInput(path);
      input = { fd, prefix: Buffer.alloc(0) };
    }
    super(path, input, options.reuseChunks ?? false);
    try {
      this.header = this.readHeader();
    } catch (err) {
      this.close();
      throw err;
    }
  }

  private readHeader(): PcapHeader {
    this.ensure(GLOBAL_HEADER_SIZE);
    const n = Math.min(this.available, GLOBAL_HEADER_SIZE);
    const h = this.chunk.subarray(this.pos, this.pos + n);
    if (n === 0) throw new TunpipeError(`${this.path} is empty, not a pcap file`);
    const le = n >= 4 ? h.readUInt32LE(0) : 0;
    if (n >= 4 && le === PCAPNG_MAGIC) {
      throw new TunpipeError(`${this.path} is a pcapng file; PcapReader reads classic pcap: open it with openCaptureReader(), which reads both`);
    }
    if (n < GLOBAL_HEADER_SIZE) throw new TunpipeError(`${this.path} is not a pcap file (shorter than a pcap header)`);
    const be = h.readUInt32BE(0);
    let bigEndian: boolean;
    let nanos: boolean;
    if (le === PCAP_MAGIC_MICROS || le === PCAP_MAGIC_NANOS) {
      bigEndian = false;
      nanos = le === PCAP_MAGIC_NANOS;
    } else if (be === PCAP_MAGIC_MICROS || be === PCAP_MAGIC_NANOS) {
      bigEndian = true;
      nanos = be === PCAP_MAGIC_NANOS;
    } else {
      throw new TunpipeError(`${this.path} is not a pcap file (magic 0x${le.toString(16).padStart(8, '0')}); expected a capture written by tcpdump -w, dumpcap or tunpipe`);
    }
    const u32 = (o: number) => (bigEndian ? h.readUInt32BE(o) : h.readUInt32LE(o));
    const header = { bigEndian, nanos, snaplen: u32(16), linkType: u32(20) & 0x0fffffff };
    this.pos += GLOBAL_HEADER_SIZE;
    this.sniffed = true;
    return header;
  }

  readBatch(max: number, onPacket: (data: Buffer, sec: number, nsec: number) => void): number {
    const be = this.header.bigEndian;
    const fracScale = this.header.nanos ? 1 : 1000;
    let count = 0;
    while (count < max) {
      const left = this.chunk.length - this.pos;
      if (left < RECORD_HEADER_SIZE) {
        if (this.refill(RECORD_HEADER_SIZE)) continue;
        if (this.starved) break;
        if (left > 0) this.truncatedTail = true;
        this.pos = this.chunk.length;
        break;
      }
      const c = this.chunk;
      const o = this.pos;
      // Byte arithmetic rather than readUInt32LE(): that one checks its offset each time, a measurable
      // share of an offline run; the bounds were checked just above.
      const secs = be ? u32be(c, o) : u32le(c, o);
      const frac = be ? u32be(c, o + 4) : u32le(c, o + 4);
      const caplen = be ? u32be(c, o + 8) : u32le(c, o + 8);
      if (caplen > MAX_RECORD) throw new TunpipeError(`${this.path}: corrupt record at offset ${this.offset} (captured length ${caplen})`);
      const end = o + RECORD_HEADER_SIZE + caplen;
      if (end > c.length) {
        // More bytes came: look again. None: the file ends inside this record.
        if (this.refill(RECORD_HEADER_SIZE + caplen)) continue;
        if (this.starved) break;
        this.truncatedTail = true;
        this.pos = this.chunk.length;
        break;
      }
      this.pos = end;
      onPacket(this.packetAt(o + RECORD_HEADER_SIZE, end), secs, frac * fracScale);
      count++;
    }
    return count;
  }
}

export { readPrefix };
