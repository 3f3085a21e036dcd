/**
 * Writes packets to a classic pcap file or to stdout.
 *
 * Records are gathered in a buffer and written by `flush()`, which the pcap stage calls at the end of a
 * batch (on a device: once 64 KiB are buffered or traffic pauses), so a capture costs one system call per
 * batch, not per packet; a full buffer is written at once. To stdout (`-`) every packet is written at once,
 * like `tcpdump -U -w -`, so a reader on the pipe sees each packet live.
 *
 * The file only ever ends on a whole record: if a write fails part way (disk full), the file is cut back to
 * the last whole record before the error is raised. A process killed mid-write leaves at most the last
 * record cut, which tcpdump reports and skips.
 */
import { closeSync, fstatSync, ftruncateSync, openSync, readSync, writeSync } from 'node:fs';
import { TunpipeError } from '../errors.js';
import { DEFAULT_SNAPLEN, GLOBAL_HEADER_SIZE, globalHeader, LINKTYPE_RAW, PCAP_MAGIC_MICROS, PCAP_MAGIC_NANOS, RECORD_HEADER_SIZE } from './format.js';

/** Byte stores: cheaper per record than Buffer#writeUInt32LE and its checks (the buffer has room). */
function putU32LE(b: Buffer, o: number, v: number): void {
  b[o] = v & 0xff;
  b[o + 1] = (v >>> 8) & 0xff;
  b[o + 2] = (v >>> 16) & 0xff;
  b[o + 3] = (v >>> 24) & 0xff;
}

const sleeper = new Int32Array(new SharedArrayBuffer(4));
const EAGAIN_WAIT_MS = 5000;

export interface PcapWriterOptions {
  /** Nanosecond timestamps (magic 0xa1b23c4d) instead of microseconds. */
  nanos?: boolean;
  /** Link type of the file: 101 RAW for a TUN device (default), 1 Ethernet for TAP. */
  linkType?: number;
  /** Bytes kept of each packet (longer packets are cut, their original length recorded). */
  snaplen?: number;
  /** File mode for a new file. Default 0600: captures hold other people's traffic. */
  mode?: number;
  /** Append to an existing capture instead of replacing it (its header must match). Not for stdout. */
  append?: boolean;
  /** Bytes gathered before a write is forced even inside a batch. Default 256 KiB. */
  bufferSize?: number;
}

function writeError(err: unknown, target: string): TunpipeError {
  const code = (err as NodeJS.ErrnoException).code ?? 'EIO';
  if (code === 'EPIPE') return new TunpipeError(`the reader of ${target} went away (EPIPE)`, code);
  if (code === 'ENOSPC') return new TunpipeError(`cannot write ${target}: the disk is full (ENOSPC); the file keeps every whole packet written before`, code);
  if (code === 'EDQUOT') return new TunpipeError(`cannot write ${target}: disk quota exceeded (EDQUOT); the file keeps every whole packet written before`, code);
  return new TunpipeError(`cannot write ${target}: ${(err as Error).message}`, code);
}

export class PcapWriter {
  /** Records written to the file (a record still in the buffer is not counted until its write succeeds). */
  packets = 0;
  /** Records in the buffer. */
  private pending = 0;
  /** Bytes known to be in the file: always a whole number of records. */
  private committed = 0;
  private readonly fd: number;
  private readonly ownsFd: boolean;
  private readonly live: boolean;
  private buf: Buffer;
  private used = 0;
  private readonly nanos: boolean;
  private readonly snaplen: number;
  private failed: TunpipeError | null = null;
  private closed = false;

  /** Opens FILE (or `-` for stdout) and writes the global header. Throws a TunpipeError with the cause. */
  constructor(
    readonly target: string,
    options: PcapWriterOptions = {},
  ) {
    this.nanos = options.nanos ?? false;
    this.snaplen = options.snaplen ?? DEFAULT_SNAPLEN;
    this.buf = Buffer.allocUnsafe(Math.max(options.bufferSize ?? 1 << 18, 1 << 16));
    this.live = target === '-';
    if (this.live) {
      this.fd = 1;
      this.ownsFd = false;
    } else {
      try {
        this.fd = openSync(target, options.append ? 'a+' : 'w', options.mode ?? 0o600);
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code;
        const why = code === 'ENOENT' ? 'its directory does not exist' : code === 'EACCES' ? 'permission denied' : code === 'EISDIR' ? 'it is a directory' : (err as Error).message;
        throw new TunpipeError(`cannot create capture file ${target}: ${why}`, code);
      }
      this.ownsFd = true;
    }
    const existing = options.append && this.ownsFd ? fstatSync(this.fd).size : 0;
    if (existing > 0) {
      try {
        this.checkAppendable(options.linkType ?? LINKTYPE_RAW);
      } catch (err) {
        closeSync(this.fd);
        throw err;
      }
    }
    this.committed = existing;
    if (existing === 0) {
      const h = globalHeader(options.linkType ?? LINKTYPE_RAW, this.nanos, this.snaplen);
      h.copy(this.buf, 0);
      this.used = h.length;
      this.flush();
    }
  }

  /** Refuses to append to a file that is not a little-endian pcap of the same time unit and link type. */
  private checkAppendable(linkType: number): void {
    const h = Buffer.alloc(GLOBAL_HEADER_SIZE);
    const n = readSync(this.fd, h, 0, GLOBAL_HEADER_SIZE, 0);
    const magic = h.readUInt32LE(0);
    const what = `cannot append to ${this.target}`;
    if (n < GLOBAL_HEADER_SIZE || (magic !== PCAP_MAGIC_MICROS && magic !== PCAP_MAGIC_NANOS)) {
      throw new TunpipeError(`${what}: it is not a pcap file this machine wrote (choose another file, or drop append=true to replace it)`);
    }
    const fileNanos = magic === PCAP_MAGIC_NANOS;
    if (fileNanos !== this.nanos) throw new TunpipeError(`${what}: it has ${fileNanos ? 'nanosecond' : 'microsecond'} timestamps; add nanos=${fileNanos}`);
    if (h.readUInt32LE(20) !== linkType) throw new TunpipeError(`${what}: its link type is ${h.readUInt32LE(20)}, not ${linkType}`);
  }

  /** Appends one record stamped `sec` seconds and `nsec` nanoseconds since the epoch. */
  write(data: Uint8Array, sec: number, nsec: number): void {
    if (this.failed) throw this.failed;
    const caplen = data.length < this.snaplen ? data.length : this.snaplen;
    if (this.used + RECORD_HEADER_SIZE + caplen > this.buf.length) {
      this.flush();
      if (RECORD_HEADER_SIZE + caplen > this.buf.length) this.buf = Buffer.allocUnsafe(RECORD_HEADER_SIZE + caplen);
    }
    const b = this.buf;
    let o = this.used;
    // Microseconds are truncated, as libpcap does when it writes a nanosecond time to a microsecond file.
    const frac = this.nanos ? nsec : Math.floor(nsec / 1000);
    putU32LE(b, o, sec);
    putU32LE(b, o + 4, frac);
    putU32LE(b, o + 8, caplen);
    putU32LE(b, o + 12, data.length);
    o += RECORD_HEADER_SIZE;
    b.set(caplen === data.length ? data : data.subarray(0, caplen), o);
    this.used = o + caplen;
    this.pending++;
    if (this.live) this.flush();
  }

  /** Writes what is buffered. On failure cuts the file back to whole records and throws a TunpipeError. */
  flush(): void {
    if (this.used === 0) return;
    if (this.failed) throw this.failed;
    let off = 0;
    let waited = 0;
    try {
      while (off < this.used) {
        try {
          off += writeSync(this.fd, this.buf, off, this.used - off);
        } catch (err) {
          // A non-blocking stdout (another part of the process made it so) whose reader is slow: wait for it
          // rather than drop records, for at most a few seconds.
          if ((err as NodeJS.ErrnoException).code !== 'EAGAIN' || waited >= EAGAIN_WAIT_MS) throw err;
          Atomics.wait(sleeper, 0, 0, 1);
          waited++;
        }
      }
    } catch (err) {
      this.failed = writeError(err, this.live ? 'stdout' : this.target);
      // Whole records only: cut the file after the last record that was written whole.
      const whole = this.wholeRecords(off);
      if (this.ownsFd && off > 0) {
        try {
          ftruncateSync(this.fd, this.committed + whole.bytes);
        } catch {
          /* the file is as good as the kernel left it */
        }
      }
      this.packets += whole.records;
      this.pending = 0;
      this.used = 0;
      throw this.failed;
    }
    this.committed += this.used;
    this.packets += this.pending;
    this.pending = 0;
    this.used = 0;
  }

  /** How many of the first `written` buffered bytes form whole records (or the global header), and how many records. */
  private wholeRecords(written: number): { bytes: number; records: number } {
    let pos = this.committed === 0 ? GLOBAL_HEADER_SIZE : 0;
    let records = 0;
    if (pos > written) return { bytes: 0, records };
    while (pos + RECORD_HEADER_SIZE <= written) {
      const next = pos + RECORD_HEADER_SIZE + this.buf.readUInt32LE(pos + 8);
      if (next > written) break;
      pos = next;
      records++;
    }
    return { bytes: pos, records };
  }

  /** Bytes of records waiting in the buffer. */
  get buffered(): number {
    return this.used;
  }

  /** True once a write failed; the writer then refuses further packets. */
  get broken(): boolean {
    return this.failed !== null;
  }

  /** Flushes and closes the file (not stdout). */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    try {
      if (!this.failed) this.flush();
    } finally {
      if (this.ownsFd) closeSync(this.fd);
    }
  }
}
