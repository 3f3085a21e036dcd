/**
 * Text output for the `print` stage that never holds up the pipeline for long: lines are gathered and
 * written by `flush()` at the end of a batch. A pipe on stdout or stderr is opened again, non-blocking
 * (through /proc/self/fd, which gives a new open file description, so the process's own fd keeps its
 * flags); when its reader is slow, a flush waits at most WAIT_MS, keeps the rest for the next flush and,
 * past MAX_BACKLOG bytes, drops whole lines (counted). A reader that went away (EPIPE) ends the output
 * quietly. Regular files and terminals are written directly. The lines are gathered as bytes in a buffer
 * that the salvage of a stuck thread can write out (./salvage.ts), like a capture's.
 */
import { closeSync, constants, fstatSync, openSync, writeSync } from 'node:fs';
import { TunpipeError } from '../errors.js';
import { SalvageRow } from './salvage.js';

const WAIT_MS = 50;
const MAX_BACKLOG = 1 << 20;
const FLUSH_AT = 64 * 1024;
const sleeper = new Int32Array(new SharedArrayBuffer(4));

export class LineOutput {
  /** Lines handed to the output, and lines dropped because its reader was too slow. */
  lines = 0;
  dropped = 0;
  /** True once the reader went away: nothing more is written. */
  closed = false;
  private fd = -1;
  private ownsFd = false;
  /** Lines not yet written: what a slow reader has not taken first, then what was added since. */
  private buf: Buffer;
  private used = 0;
  /** Bytes added since the last flush (the rest of `used` is what a slow reader left). */
  private fresh = 0;
  private readonly salvage: SalvageRow;
  private nonBlocking = false;
  private target: string | 1 | 2 | null = null;

  /**
   * `target`: a file path (opened now), 1 / 2 for stdout / stderr, or a function that picks 1 or 2 when the
   * first line is written (when every stage of the pipeline exists, so that a capture on stdout is known).
   */
  constructor(private readonly choose: string | 1 | 2 | (() => 1 | 2)) {
    if (typeof choose === 'string') {
      try {
        this.fd = openSync(choose, 'w', 0o600);
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code;
        const why = code === 'ENOENT' ? 'its directory does not exist' : code === 'EACCES' ? 'permission denied' : code === 'EISDIR' ? 'it is a directory' : (err as Error).message;
        throw new TunpipeError(`cannot create ${choose}: ${why}`, code);
      }
      this.ownsFd = true;
      this.target = choose;
    } else if (typeof choose === 'number') this.openStd(choose);
    this.salvage = new SalvageRow(null);
    if (this.target !== null) this.salvage.open(this.fd, this.nonBlocking);
    this.buf = this.salvage.allocate(MAX_BACKLOG + FLUSH_AT);
    this.salvage.fill(this.buf, -1);
  }

  /** A pipe is opened again, non-blocking (see above); anything else is used as it is. */
  private openStd(which: 1 | 2): void {
    this.target = which;
    this.fd = which;
    try {
      if (fstatSync(which).isFIFO()) {
        this.fd = openSync(`/proc/self/fd/${which}`, constants.O_WRONLY | constants.O_NONBLOCK);
        this.ownsFd = true;
        this.nonBlocking = true;
      }
    } catch {
      /* keep the fd as it is */
    }
    // At the first line (see the constructor); called from the constructor, the row is not made yet and
    // is opened there.
    this.salvage?.open(this.fd, this.nonBlocking);
  }

  get name(): string {
    const t = this.target ?? (typeof this.choose === 'function' ? 'stdout or stderr' : this.choose);
    return t === 1 ? 'stdout' : t === 2 ? 'stderr' : t;
  }

  /** Adds text that ends in a newline (one or more whole lines). */
  add(text: string, lines = 1): void {
    if (this.closed) return;
    if (this.target === null) this.openStd((this.choose as () => 1 | 2)());
    this.lines += lines;
    const n = Buffer.byteLength(text);
    if (this.used + n > this.buf.length) {
      this.flush();
      if (this.closed) return;
      // Lines longer than the buffer itself (a hex dump of a super-packet) get a buffer of their own.
      if (this.used + n > this.buf.length) this.grow(this.used + n);
    }
    const written = this.buf.write(text, this.used);
    this.used += written;
    this.fresh += written;
    this.salvage.filled(this.used);
    if (this.fresh >= FLUSH_AT) this.flush();
  }

  private grow(size: number): void {
    const next = this.salvage.allocate(size);
    this.buf.copy(next, 0, 0, this.used);
    this.salvage.release(this.buf);
    this.buf = next;
    this.salvage.fill(next, -1);
    this.salvage.filled(this.used);
  }

  get pending(): boolean {
    return !this.closed && this.used > 0;
  }

  /** Writes what is gathered; throws a TunpipeError for a write error other than a gone or slow reader. */
  flush(): void {
    if (this.closed || this.used === 0) return;
    this.fresh = 0;
    this.salvage.writing(true);
    try {
      this.writeOut();
    } finally {
      this.salvage.writing(false);
      this.salvage.filled(this.used);
    }
  }

  private writeOut(): void {
    const buf = this.buf.subarray(0, this.used);
    let off = 0;
    let waited = 0;
    while (off < buf.length) {
      try {
        off += writeSync(this.fd, buf, off, buf.length - off);
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code;
        if (code === 'EPIPE') {
          this.closed = true;
          this.used = 0;
          return;
        }
        if (code !== 'EAGAIN') {
          this.used = 0;
          throw new TunpipeError(`cannot write ${this.name}: ${(err as Error).message}`, code);
        }
        if (waited >= WAIT_MS) break;
        Atomics.wait(sleeper, 0, 0, 1);
        waited++;
      }
    }
    let rest = buf.subarray(off);
    if (rest.length > MAX_BACKLOG) {
      // Finish the line being written, drop the whole lines after it.
      const nl = rest.indexOf(10);
      const kept = nl < 0 ? rest : rest.subarray(0, nl + 1);
      for (let i = kept.length; i < rest.length; i++) if (rest[i] === 10) this.dropped++;
      rest = kept;
    }
    // What the reader has not taken yet goes first next time.
    this.buf.copyWithin(0, off, off + rest.length);
    this.used = rest.length;
  }

  close(): void {
    try {
      this.flush();
    } finally {
      this.salvage.close();
      if (this.ownsFd && this.fd >= 0) closeSync(this.fd);
    }
  }
}
