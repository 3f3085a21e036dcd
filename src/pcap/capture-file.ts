/**
 * The file side shared by the classic pcap and the pcapng writers: opening (or stdout), a buffer that
 * gathers whole units (a header, a record, a block) and is written by `flush()` with as few `write()`s as
 * possible, and the rule that the file only ever ends on a whole unit: when a write fails part way (disk
 * full), the file is cut back to the end of the last unit written whole before the error is raised.
 *
 * A process killed between two flushes leaves a file that ends on a whole unit; killed inside a `write()`
 * of many pages, the kernel may have written part of it, which the readers report as a cut tail and
 * `append=true` cuts back (see ./append.ts).
 *
 * Write-behind (`background`, for offline runs on a regular file): a full buffer is written on the
 * threadpool while the pipeline fills a second one, so the kernel's copy into the page cache runs on
 * another core. Writes then name their file position (pwrite), so a buffer that fills while the last one
 * is still being written can be written at once behind it; what it adds is counted only once everything
 * before it is in the file, and a failure cuts the file back to the last whole unit before it, as above.
 * `settle()` waits for the write in flight and raises its failure.
 */
import { closeSync, fstatSync, ftruncateSync, openSync, renameSync, write, writeSync } from 'node:fs';
import { TunpipeError } from '../errors.js';
import { claimStdout, releaseStdout } from './stdout-claim.js';
import { guardFile, refuseGuarded } from './file-guard.js';
import { SalvageRow } from './salvage.js';

const sleeper = new Int32Array(new SharedArrayBuffer(4));
const EAGAIN_WAIT_MS = 5000;

export interface CaptureFileOptions {
  /** File mode for a new file (permission bits). Default 0600: captures hold other people's traffic. */
  mode?: number;
  /** Open for appending (the format checks and repairs what is there first). Not for stdout. */
  append?: boolean;
  /** Bytes gathered before a write is forced even inside a batch. Default 256 KiB. */
  bufferSize?: number;
  /** Write full buffers on the threadpool (see the header); honoured for a regular file not appended to. */
  background?: boolean;
}

/** A buffer being written on the threadpool: where it goes, what it holds. */
interface Flight {
  start: number;
  buf: Buffer;
  bytes: number;
  packets: number;
  /** Resolves when the write has landed or failed (never rejects). */
  done: Promise<void>;
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
  refuseGuarded(target);
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
  /** Ends the guard on this file (./file-guard.ts), once it is closed. */
  private unguard: () => void = () => {};
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
    this.live = target === '-';
    this.ownsFd = !this.live;
    this.fd = this.live ? 1 : openCaptureFile(target, options.append ?? false, options.mode ?? 0o600);
    if (this.live) claimStdout();
    else this.unguard = guardFile(this.fd, `written by another capture of this run (${target})`);
    this.background = options.background === true && !this.live && options.append !== true && isRegularFile(this.fd);
    this.salvage = new SalvageRow(this.fd);
    this.buf = this.salvage.allocate(Math.max(options.bufferSize ?? 1 << 18, 1 << 16));
    this.published();
  }

  /** This file's row for another thread that may write out the buffer if this one gets stuck (./salvage.ts). */
  private readonly salvage: SalvageRow;

  /** Tells the salvage row which buffer is being filled, and where it goes (after `used` went back to 0). */
  private published(): void {
    this.salvage.fill(this.buf, this.background ? this.position : -1);
  }

  /** Write-behind is on (see the header). */
  private readonly background: boolean;
  /** The write on the threadpool, if one is. */
  private flight: Flight | null = null;
  /** Bytes and packets written (at once) behind the flight: counted when it lands. */
  private aheadBytes = 0;
  private aheadPackets = 0;
  /** A buffer given back by a landed flight, for the next one. */
  private spare: Buffer | null = null;
  /** A failure raised by a flight that no caller has seen yet (settle() raises it). */
  private unseen: TunpipeError | null = null;
  private closeWhenLanded = false;

  /** Where the next write goes in the file. */
  private get position(): number {
    return this.committed + (this.flight !== null ? this.flight.bytes + this.aheadBytes : 0);
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
    if (this.failed) {
      // The caller sees it now: settle() need not raise it again.
      this.unseen = null;
      throw this.failed;
    }
    if (this.used + n > this.buf.length) {
      if (!this.writeBehind(0)) this.flush();
      if (n > this.buf.length) {
        this.salvage.release(this.buf);
        this.buf = this.salvage.allocate(n);
        this.published();
      }
    }
    return this.buf;
  }

  /**
   * Write-behind: starts writing the buffer on the threadpool when it holds at least `atLeast` bytes and no
   * write is in flight, and goes on in a second buffer. False when it did not (then flush() is the way).
   */
  writeBehind(atLeast: number): boolean {
    if (!this.background || this.flight !== null || this.failed || this.used === 0 || this.used < atLeast) return false;
    const flight: Flight = { start: this.committed, buf: this.buf, bytes: this.used, packets: this.pending, done: Promise.resolve() };
    flight.done = this.writeOut(flight);
    this.flight = flight;
    const spare = this.spare;
    if (spare !== null && spare.length >= this.buf.length) this.buf = spare;
    else {
      if (spare !== null) this.salvage.release(spare);
      this.buf = this.salvage.allocate(this.buf.length);
    }
    this.spare = null;
    this.used = 0;
    this.pending = 0;
    this.published();
    return true;
  }

  /** Writes a flight's buffer at its position, in as many writes as it takes; settles its accounting. */
  private async writeOut(f: Flight): Promise<void> {
    let off = 0;
    let error: unknown = null;
    while (off < f.bytes) {
      try {
        off += await new Promise<number>((resolve, reject) => write(this.fd, f.buf, off, f.bytes - off, f.start + off, (err, n) => (err ? reject(err) : resolve(n))));
      } catch (err) {
        error = err;
        break;
      }
    }
    this.flight = null;
    this.spare = f.buf;
    if (error === null) {
      this.committed = f.start + f.bytes + this.aheadBytes;
      this.packets += f.packets + this.aheadPackets;
    } else {
      const failure = writeError(error, this.target);
      if (this.failed === null) this.unseen = failure;
      this.failed ??= failure;
      // What was written behind it is cut away with the rest.
      const whole = this.wholeUnits(f.buf, off, f.start);
      try {
        ftruncateSync(this.fd, f.start + whole.bytes);
      } catch {
        /* the file is as good as the kernel left it */
      }
      this.committed = f.start + whole.bytes;
      this.packets += whole.packets;
      this.pending = 0;
      this.used = 0;
    }
    this.aheadBytes = 0;
    this.aheadPackets = 0;
    if (error !== null) this.published();
    if (this.closeWhenLanded) closeSync(this.fd);
  }

  /** Waits for the write in flight; raises a failure it met that no write() has raised yet. */
  async settle(): Promise<void> {
    if (this.flight !== null) await this.flight.done;
    const failure = this.unseen;
    this.unseen = null;
    if (failure !== null) throw failure;
  }

  /** The `n` bytes after `used` form one unit; `packet`: it holds a packet. */
  commit(n: number, packet: boolean): void {
    this.used += n;
    this.salvage.filled(this.used);
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
    // With write-behind every write names its position; one written behind a flight counts when it lands.
    const at = this.background ? this.position : null;
    const behind = this.flight !== null;
    this.salvage.writing(true);
    try {
      while (off < this.used) {
        try {
          off += writeSync(this.fd, this.buf, off, this.used - off, at === null ? null : at + off);
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
      const start = at ?? this.committed;
      const whole = this.wholeUnits(this.buf, off, start);
      if (this.ownsFd && (off > 0 || behind)) {
        try {
          ftruncateSync(this.fd, start + whole.bytes);
        } catch {
          /* the file is as good as the kernel left it */
        }
      }
      this.account(whole.bytes, whole.packets, behind);
      throw this.failed;
    } finally {
      this.salvage.writing(false);
    }
    this.account(this.used, this.pending, behind);
  }

  /** Counts what a write put in the file (behind: still landing on the threadpool) and empties the buffer. */
  private account(bytes: number, packets: number, behind: boolean): void {
    if (behind) {
      this.aheadBytes += bytes;
      this.aheadPackets += packets;
    } else {
      this.committed += bytes;
      this.packets += packets;
    }
    this.pending = 0;
    this.used = 0;
    this.published();
  }

  /**
   * How many of the first `written` bytes of `buf` (which goes at `fileOffset` in the file) form whole
   * units, and how many packets they hold.
   */
  private wholeUnits(buf: Buffer, written: number, fileOffset: number): { bytes: number; packets: number } {
    let pos = 0;
    let packets = 0;
    while (pos < written) {
      const next = pos + this.format.unitLength(buf, pos, fileOffset + pos);
      if (next > written) break;
      if (this.format.isPacket(buf, pos, fileOffset + pos)) packets++;
      pos = next;
    }
    return { bytes: pos, packets };
  }

  /**
   * Flushes and closes the file (not stdout). With a write still in flight (settle() not awaited), the fd is
   * closed once it lands.
   */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    try {
      if (!this.failed) this.flush();
    } finally {
      this.salvage.close();
      this.unguard();
      if (this.ownsFd && this.flight !== null) this.closeWhenLanded = true;
      else if (this.ownsFd) closeSync(this.fd);
      else releaseStdout();
    }
  }
}

function isRegularFile(fd: number): boolean {
  try {
    return fstatSync(fd).isFile();
  } catch {
    return false;
  }
}

/**
 * The error for a packet time a format cannot hold (`lastSec`: its last second since 1970): written anyway,
 * its time would wrap around into a wrong one.
 */
export function timeRangeError(target: string, sec: number, format: string, lastSec: number): TunpipeError {
  const last = new Date(lastSec * 1000).toISOString().replace('.000Z', 'Z');
  return new TunpipeError(`cannot write a packet stamped ${sec} s after 1970 to ${target}: ${format} times end at ${last} (a delay or a capture's time past that?)`);
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

  /** Write-behind (CaptureFileOptions.background): writes the buffer on the threadpool once it holds `atLeast` bytes. */
  writeBehind(atLeast: number): boolean {
    return this.file.writeBehind(atLeast);
  }

  /** Waits for a write on the threadpool; raises its failure. */
  settle(): Promise<void> {
    return this.file.settle();
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
