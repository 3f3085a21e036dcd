/**
 * Text output for the `print` stage that never holds up the pipeline for long: lines are gathered and
 * written by `flush()` at the end of a batch. A pipe on stdout or stderr is opened again, non-blocking
 * (through /proc/self/fd, which gives a new open file description, so the process's own fd keeps its
 * flags); when its reader is slow, a flush waits at most WAIT_MS, keeps the rest for the next flush and,
 * past MAX_BACKLOG bytes, drops whole lines (counted). A reader that went away (EPIPE) ends the output
 * quietly. Regular files and terminals are written directly.
 */
import { closeSync, constants, fstatSync, openSync, writeSync } from 'node:fs';
import { TunpipeError } from '../errors.js';

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
  private text = '';
  private backlog: Buffer | null = null;
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
  }

  /** A pipe is opened again, non-blocking (see above); anything else is used as it is. */
  private openStd(which: 1 | 2): void {
    this.target = which;
    this.fd = which;
    try {
      if (fstatSync(which).isFIFO()) {
        this.fd = openSync(`/proc/self/fd/${which}`, constants.O_WRONLY | constants.O_NONBLOCK);
        this.ownsFd = true;
      }
    } catch {
      /* keep the fd as it is */
    }
  }

  get name(): string {
    const t = this.target ?? (typeof this.choose === 'function' ? 'stdout or stderr' : this.choose);
    return t === 1 ? 'stdout' : t === 2 ? 'stderr' : t;
  }

  /** Adds text that ends in a newline (one or more whole lines). */
  add(text: string, lines = 1): void {
    if (this.closed) return;
    this.text += text;
    this.lines += lines;
    if (this.text.length >= FLUSH_AT) this.flush();
  }

  get pending(): boolean {
    return !this.closed && (this.text.length > 0 || this.backlog !== null);
  }

  /** Writes what is gathered; throws a TunpipeError for a write error other than a gone or slow reader. */
  flush(): void {
    if (this.closed || (this.text.length === 0 && this.backlog === null)) return;
    if (this.target === null) this.openStd((this.choose as () => 1 | 2)());
    let buf = Buffer.from(this.text, 'utf8');
    this.text = '';
    if (this.backlog) {
      buf = Buffer.concat([this.backlog, buf]);
      this.backlog = null;
    }
    let off = 0;
    let waited = 0;
    while (off < buf.length) {
      try {
        off += writeSync(this.fd, buf, off, buf.length - off);
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code;
        if (code === 'EPIPE') {
          this.closed = true;
          return;
        }
        if (code !== 'EAGAIN') throw new TunpipeError(`cannot write ${this.name}: ${(err as Error).message}`, code);
        if (waited >= WAIT_MS) break;
        Atomics.wait(sleeper, 0, 0, 1);
        waited++;
      }
    }
    if (off === buf.length) return;
    let rest = buf.subarray(off);
    if (rest.length > MAX_BACKLOG) {
      // Finish the line being written, drop the whole lines after it.
      const nl = rest.indexOf(10);
      const kept = nl < 0 ? rest : rest.subarray(0, nl + 1);
      for (let i = kept.length; i < rest.length; i++) if (rest[i] === 10) this.dropped++;
      rest = kept;
    }
    this.backlog = Buffer.from(rest);
  }

  close(): void {
    try {
      this.flush();
    } finally {
      if (this.ownsFd && this.fd >= 0) closeSync(this.fd);
    }
  }
}
