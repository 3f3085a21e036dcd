/**
 * Writes packets to a classic pcap file or to stdout.
 *
 * Records are gathered in a buffer and written by `flush()`, which the pcap stage calls at the end of a
 * batch (on a device: once 64 KiB are buffered or traffic pauses), so a capture costs one system call per
 * batch, not per packet; a full buffer is written at once. To stdout (`-`) every packet is written at once,
 * like `tcpdump -U -w -`, so a reader on the pipe sees each packet live.
 *
 * The file only ever ends on a whole record (./capture-file.ts): if a write fails part way (disk full),
 * the file is cut back to the last whole record before the error is raised. Appending to a file that was
 * cut short (a killed writer) first cuts it back to its last whole record (./append.ts).
 */
import { fstatSync } from 'node:fs';
import { CaptureFile, CaptureFileWriter, putU32LE, timeRangeError, type UnitFormat } from './capture-file.js';
import { repairClassic } from './append.js';
import { DEFAULT_SNAPLEN, GLOBAL_HEADER_SIZE, globalHeader, LINKTYPE_RAW, RECORD_HEADER_SIZE } from './format.js';

/** A record's seconds are an unsigned 32-bit field. */
const LAST_SECOND = 0xffffffff;

export interface PcapWriterOptions {
  /** Nanosecond timestamps (magic 0xa1b23c4d) instead of microseconds. */
  nanos?: boolean;
  /** Link type of the file: 101 RAW for a TUN device (default), 1 Ethernet for TAP. */
  linkType?: number;
  /** Bytes kept of each packet (longer packets are cut, their original length recorded). */
  snaplen?: number;
  /** File mode for a new file (permission bits only). Default 0600: captures hold other people's traffic. */
  mode?: number;
  /** Append to an existing capture instead of replacing it (its header must match). Not for stdout. */
  append?: boolean;
  /** Bytes gathered before a write is forced even inside a batch. Default 256 KiB. */
  bufferSize?: number;
  /** Write full buffers on the threadpool while the next fills (offline; see ./capture-file.ts). */
  background?: boolean;
}

/**
 * What the pcap stage writes through, whichever the format: records with a time and, for pcapng, the
 * interface (an index into the writer's interfaces) and a direction (epb_flags bits, 0 unknown).
 */
export interface CaptureWriter {
  /** The file's name (a rotation may rename it: `rename`). */
  readonly target: string;
  /** Records written to the file (a record still in the buffer is not counted until its write succeeds). */
  readonly packets: number;
  /** Bytes of records waiting in the buffer. */
  readonly buffered: number;
  /** Bytes the file holds once the buffer is written (its header included). */
  readonly size: number;
  /** True once a write failed; the writer then refuses further packets. */
  readonly broken: boolean;
  /** Set when append=true had to cut the file back to its last whole record or block: what was done. */
  readonly repaired: string | null;
  /** Bytes one record of `caplen` captured bytes takes in the file. */
  recordSize(caplen: number): number;
  /** Bytes kept of each packet. */
  readonly snaplen: number;
  /** `caplen`: keep at most this many bytes of the packet (below snaplen; the original length is recorded). */
  write(data: Uint8Array, sec: number, nsec: number, iface?: number, flags?: number, caplen?: number): void;
  flush(): void;
  close(): void;
  /** Gives the open file another name in its directory (a rotation naming its first file after the first packet). */
  rename(to: string): void;
}

const classicUnits: UnitFormat = {
  unitLength: (b, pos, fileOffset) => (fileOffset === 0 ? GLOBAL_HEADER_SIZE : RECORD_HEADER_SIZE + b.readUInt32LE(pos + 8)),
  isPacket: (_b, _pos, fileOffset) => fileOffset !== 0,
};

export class PcapWriter extends CaptureFileWriter implements CaptureWriter {
  protected readonly file: CaptureFile;
  private readonly nanos: boolean;
  readonly snaplen: number;
  readonly repaired: string | null = null;

  /** Opens FILE (or `-` for stdout) and writes the global header. Throws a TunpipeError with the cause. */
  constructor(
    public target: string,
    options: PcapWriterOptions = {},
  ) {
    super();
    this.nanos = options.nanos ?? false;
    this.snaplen = options.snaplen ?? DEFAULT_SNAPLEN;
    const append = (options.append ?? false) && target !== '-';
    this.file = new CaptureFile(target, classicUnits, { mode: options.mode, append, bufferSize: options.bufferSize, background: options.background });
    const linkType = options.linkType ?? LINKTYPE_RAW;
    try {
      const existing = append ? fstatSync(this.file.fd).size : 0;
      if (existing > 0) {
        const repair = repairClassic(this.file.fd, target, existing, { nanos: this.nanos, linkType });
        this.repaired = repair.message;
        this.file.adopt(repair.bytes);
      }
      if (this.file.size === 0) {
        const h = globalHeader(linkType, this.nanos, this.snaplen);
        h.copy(this.file.room(h.length), this.file.used);
        this.file.commit(h.length, false);
        this.file.flush();
      }
    } catch (err) {
      try {
        this.file.close();
      } catch {
        /* the first error says more */
      }
      throw err;
    }
  }

  recordSize(caplen: number): number {
    return RECORD_HEADER_SIZE + (caplen < this.snaplen ? caplen : this.snaplen);
  }

  /** Appends one record stamped `sec` seconds and `nsec` nanoseconds since the epoch (no interfaces here). */
  write(data: Uint8Array, sec: number, nsec: number, _iface = 0, _flags = 0, keep = this.snaplen): void {
    if (!(sec >= 0 && sec <= LAST_SECOND)) throw timeRangeError(this.target, sec, 'pcap', LAST_SECOND);
    const limit = keep < this.snaplen ? keep : this.snaplen;
    const caplen = data.length < limit ? data.length : limit;
    const b = this.file.room(RECORD_HEADER_SIZE + caplen);
    const o = this.file.used;
    // Microseconds are truncated, as libpcap does when it writes a nanosecond time to a microsecond file.
    const frac = this.nanos ? nsec : Math.floor(nsec / 1000);
    putU32LE(b, o, sec);
    putU32LE(b, o + 4, frac);
    putU32LE(b, o + 8, caplen);
    putU32LE(b, o + 12, data.length);
    b.set(caplen === data.length ? data : data.subarray(0, caplen), o + RECORD_HEADER_SIZE);
    this.file.commit(RECORD_HEADER_SIZE + caplen, true);
  }

}
