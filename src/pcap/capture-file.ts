/**
 * The file side shared by the classic pcap and the pcapng writers: opening (or stdout), a buffer that
 * gathers whole units (a header, a record, a block) and is written by `flush()` with as few `write()`s as
 * possible, and the rule that the file only ever ends on a whole unit: when a write fails part way (disk
 * full), the file is cut back to the end of the last unit written whole before the error is raised.
 *
 * A process killed between two flushes leaves a file that ends on a whole unit; killed inside a `write()`
 * of many pages, the kernel may have written part of it, which the readers report as a cut tail and
 * `append=true` cuts back (see ./append.ts).
 */
import { closeSync, ftruncateSync, openSync, renameSync, writeSync } from 'node:fs';
import { TunpipeError } from '../errors.js';
import { claimStdout, releaseStdout } from './stdout-claim.js';

const sleeper = new Int32Array(new SharedArrayBuffer(4));
const EAGAIN_WAIT_MS = 5000;

export interface CaptureFileOptions {
  /** File mode for a new file (permission bits). Default 0600: captures hold other people's traffic. */
  mode?: number;
  /** Open for appending (the format checks and repairs what is there first). Not for stdout. */
  append?: boolean;
  /** Bytes gathered before a write is forced even inside a batch. Default 256 KiB. */
  bufferSize?: number;
}

/**
 * How long the unit at `pos` of `buf` is (a record: its header says; a block: its length field), and
 * whether it holds a packet. `fileOffset` is where it lies in the file (the classic header is at 0).
 */
export interface UnitFormat {
  unitLength(buf: Buffer, pos: number, fileOffset: number): number;
  isPacket(buf: Buffer, pos: number, fileOffset: number): boolean;
}

export function writeError(err: unknown, target: string): TunpipeError {
  const code = (err as NodeJS.ErrnoException).code ?? 'EIO';
  if (code === 'EPIPE') return new TunpipeError(`the reader of ${target} went away (EPIPE)`, code);
  if (code === 'ENOSPC') return new TunpipeError(`cannot write ${target}: the disk is full (ENOSPC); the file keeps every whole packet written before`, code);
  if (code === 'EDQUOT') return new TunpipeError(`cannot write ${target}: disk quota exceeded (EDQUOT); the file keeps every whole packet written before`, code);
  return new TunpipeError(`cannot write ${target}: ${(err as Error).message}`, code);
}

/** Opens FILE for writing (truncating, or appending); a TunpipeError that says why it cannot be. */
export function openCaptureFile(target: string, append: boolean, mode: number): number {
  try {
    return openSync(target, append ? 'a+' : 'w', mode);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    const why = code === 'ENOENT' ? 'its directory does not exist' : code === 'EACCES' ? 'permission denied' : code === 'EISDIR' ? 'it is a directory' : (err as Error).message;
    throw new TunpipeError(`cannot create capture file ${target}: ${why}`, code);
  }
}

export class CaptureFile {
  /** Packet units written to the file (one still in the buffer is not counted until its write succeeds). */
  packets = 0;
  /** Packet units in the buffer. */
  private pending = 0;
  /** Bytes known to be in the file: always a whole number of units. */
  committed = 0;
  readonly fd: number;
  readonly live: boolean;
  private readonly ownsFd: boolean;
  /** The buffer and how much of it is used: writers fill `buf` from `used` after `room()`, then `commit()`. */
  buf: Buffer;
  used = 0;
  private failed: TunpipeError | null = null;
  private closed = false;

  constructor(
    public target: string,
    private readonly format: UnitFormat,
    options: CaptureFileOptions = {},
  ) {
    this.buf = Buffer.allocUnsafe(Math.max(options.bufferSize ?? 1 << 18, 1 << 16));
    this.live = target === '-';
    this.ownsFd = !this.live;
    this.fd = this.live ? 1 : openCaptureFile(target, options.append ?? false, options.mode ?? 0o600);
    if (this.live) claimStdout();
  }

  /** Gives the open file another name in the same file system (the fd stays valid). Throws the fs error. */
  rename(to: string): void {
    renameSync(this.target, to);
    this.target = to;
  }

  /** Sets how many whole bytes the file already holds (append, after its repair). */
  adopt(bytes: number): void {
    this.committed = bytes;
  }

  /** Makes room for `n` more bytes at `used` (writing out the buffer first if it is too full); returns the buffer. */
  room(n: number): Buffer {
    if (this.failed) throw this.failed;
    if (this.used + n > this.buf.length) {
      this.flush();
      if (n > this.buf.length) this.buf = Buffer.allocUnsafe(n);
    }
    return this.buf;
  }

  /** The `n` bytes after `used` form one unit; `packet`: it holds a packet. */
  commit(n: number, packet: boolean): void {
    this.used += n;
    if (packet) this.pending++;
    if (this.live && packet) this.flush();
  }

  /** Bytes the file holds once the buffer is written. */
  get size(): number {
    return this.committed + this.used;
  }

  get broken(): boolean {
    return this.failed !== null;
  }

  /** Writes what is buffered. On failure cuts the file back to whole units and throws a TunpipeError. */
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
      const whole = this.wholeUnits(off);
      if (this.ownsFd && off > 0) {
        try {
          ftruncateSync(this.fd, this.committed + whole.bytes);
        } catch {
          /* the file is as good as the kernel left it */
        }
      }
      this.committed += whole.bytes;
      this.packets += whole.packets;
      this.pending = 0;
      this.used = 0;
      throw this.failed;
    }
    this.committed += this.used;
    this.packets += this.pending;
    this.pending = 0;
    this.used = 0;
  }

  /** How many of the first `written` buffered bytes form whole units, and how many packets they hold. */
  private wholeUnits(written: number): { bytes: number; packets: number } {
    let pos = 0;
    let packets = 0;
    while (pos < written) {
      const next = pos + this.format.unitLength(this.buf, pos, this.committed + pos);
      if (next > written) break;
      if (this.format.isPacket(this.buf, pos, this.committed + pos)) packets++;
      pos = next;
    }
    return { bytes: pos, packets };
  }

  /** Flushes and closes the file (not stdout). */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    try {
      if (!this.failed) this.flush();
    } finally {
      if (this.ownsFd) closeSync(this.fd);
      else releaseStdout();
    }
  }
}

/** Byte stores: cheaper per record than Buffer#writeUInt32LE and its checks (the buffer has room). */
export function putU32LE(b: Buffer, o: number, v: number): void {
  b[o] = v & 0xff;
  b[o + 1] = (v >>> 8) & 0xff;
  b[o + 2] = (v >>> 16) & 0xff;
  b[o + 3] = (v >>> 24) & 0xff;
}

/**
 * What both capture writers (classic pcap, pcapng) do the same way, through their CaptureFile: flush,
 * rename (rotation), counts, close. Each writer adds its own header and record format.
 */
export abstract class CaptureFileWriter {
  protected abstract readonly file: CaptureFile;
  abstract target: string;

  /** Writes what is buffered. On failure cuts the file back to whole records and throws a TunpipeError. */
  flush(): void {
    this.file.flush();
  }

  rename(to: string): void {
    this.file.rename(to);
    this.target = to;
  }

  get packets(): number {
    return this.file.packets;
  }

  get buffered(): number {
    return this.file.used;
  }

  get size(): number {
    return this.file.size;
  }

  get broken(): boolean {
    return this.file.broken;
  }

  /** Flushes and closes the file (not stdout). */
  close(): void {
    this.file.close();
  }
}
