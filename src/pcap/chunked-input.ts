/**
 * What both capture readers share: a file (or stdin) read in large chunks (one read() per MiB), handed out
 * as views. By default each chunk is new memory, so a view stays valid for as long as it is held; a caller
 * that lets go of every packet before the next one is read can have two chunks reused in turn
 * (`reuseChunks`), which spares the kernel from handing out fresh pages for every megabyte of the file.
 * Reused chunks also hand packets out without allocating: each packet is copied (copyWithin, no garbage) to
 * the start of its chunk's memory, in front of the file's bytes, and handed out as a view made once per
 * packet length, as a device hands out its buffer (a new Buffer view per packet would cost more than the
 * copy, and the garbage collector more again). A regular file read with reused chunks is also read ahead:
 * the next MiB is read on the threadpool (at its file position) while the pipeline works through this one,
 * so the kernel's copy runs on another core; a refill that finds it has not landed reads at once instead.
 */
import { closeSync, fstatSync, openSync, read, readSync } from 'node:fs';
import { Socket } from 'node:net';
import { guardFile } from './file-guard.js';
import { TunpipeError } from '../errors.js';

const CHUNK = 1 << 20;

/** Room in front of a reused chunk's bytes where packets up to this size are copied to be handed out. */
const SCRATCH = 1 << 16;

/** Room after the scratch for the unread end of the chunk before (a record cut by the chunk's end). */
const TAIL = 1 << 16;

/** Where a reused chunk's file bytes start in its memory. */
const FRONT = SCRATCH + TAIL;

/** The next MiB of the file, being read (or read) on the threadpool into a buffer of its own. */
interface ReadAhead {
  buf: Buffer;
  views: Buffer[];
  /** File offset it was read from, and how many bytes came. */
  at: number;
  len: number;
  landed: boolean;
  /** Failed, or overtaken by a read at once: not to be used. */
  stale: boolean;
}

/** An open input and the bytes already read from it (a format sniffed from its first bytes). */
export interface OpenedInput {
  fd: number;
  prefix: Buffer;
}

/** The guards (./file-guard.ts) on the inputs open, by fd: ended by ChunkedInput.close(). */
const inputGuards = new Map<number, () => void>();

/** Opens `path` (`-`: standard input) for reading; a TunpipeError that says why it cannot be. */
export function openInput(path: string): number {
  let fd = -1;
  try {
    fd = path === '-' ? 0 : openSync(path, 'r');
    // Opening a directory for reading succeeds; reading it fails with a less helpful message.
    if (fstatSync(fd).isDirectory()) throw Object.assign(new Error('EISDIR'), { code: 'EISDIR' });
    // Until it is closed, no capture of this process may be made in its place.
    inputGuards.set(fd, guardFile(fd, `the file being read (--read ${path})`));
    return fd;
  } catch (err) {
    if (fd > 0) closeSync(fd);
    const code = (err as NodeJS.ErrnoException).code;
    const why = code === 'ENOENT' ? 'no such file' : code === 'EACCES' ? 'permission denied' : code === 'EISDIR' ? 'it is a directory' : (err as Error).message;
    throw new TunpipeError(`cannot read ${path}: ${why}`, code);
  }
}

/** Reads up to `n` bytes from the start of `fd` (fewer only at end of file). */
export function readPrefix(fd: number, n: number): Buffer {
  const b = Buffer.alloc(n);
  let len = 0;
  while (len < n) {
    const got = readSync(fd, b, len, n - len, null);
    if (got === 0) break;
    len += got;
  }
  return b.subarray(0, len);
}

export class ChunkedInput {
  protected readonly fd: number;
  /** The bytes read and not yet consumed start at `pos` in `chunk`. */
  protected chunk: Buffer;
  protected pos = 0;
  /** Offset in the file of `chunk[0]` (for messages that point at a corrupt block). */
  protected chunkStart = 0;
  private whole: Buffer | null = null;
  private spare: Buffer | null = null;
  /** Views of the first N bytes of `whole` (and `spare`), by N: what packetAt() hands out. */
  private views: Buffer[] = [];
  private spareViews: Buffer[] = [];
  /** `whole` while `chunk` lies in it (reused chunks), else null: packetAt() copies only then. */
  private scratch: Buffer | null = null;
  /** Offset of `chunk` in `scratch`. */
  private chunkBase = 0;
  private ahead: ReadAhead | null = null;
  /** Reads on the threadpool not landed yet (one overtaken by a read at once may still be). */
  private readsInFlight = 0;
  private closeWhenLanded = false;
  private readonly reuseChunks: boolean;
  private eof = false;
  private closed = false;

  constructor(
    readonly path: string,
    opened: OpenedInput,
    reuseChunks: boolean,
  ) {
    this.fd = opened.fd;
    this.chunk = opened.prefix;
    this.reuseChunks = reuseChunks;
  }

  /** Bytes available from `pos`. */
  protected get available(): number {
    return this.chunk.length - this.pos;
  }

  /**
   * True for input that arrives as it is written (a pipe, a FIFO, a socket): it is never read with a
   * blocking read on the event loop, which would hold back signals and the packets already there. The run
   * calls `fillLive()` (a read on the threadpool) when a batch found nothing new.
   */
  get live(): boolean {
    return !this.regular;
  }

  /** Live input: a batch stopped because nothing more has arrived yet (not the end). */
  starved = false;

  /** True once the input has ended. */
  get ended(): boolean {
    return this.eof;
  }

  /**
   * Live input: waits until more bytes arrive, and keeps them after the unread ones; resolves false at the
   * end of the input. The fd is read through a libuv pipe handle (the event loop's own epoll), never by a
   * blocking read: not on the event loop, which would hold back signals, and not on the threadpool, where a
   * read that never returns would keep the process from exiting.
   */
  async fillLive(): Promise<boolean> {
    if (this.eof) return false;
    const stream = (this.stream ??= this.openStream());
    const got = await new Promise<Buffer | null>((resolve) => {
      const onData = (d: Buffer) => done(d);
      const onEnd = () => done(null);
      const done = (d: Buffer | null) => {
        stream.off('data', onData);
        stream.off('end', onEnd);
        stream.off('error', onEnd);
        stream.pause();
        resolve(d);
      };
      stream.on('data', onData);
      stream.once('end', onEnd);
      stream.once('error', onEnd);
      stream.resume();
    });
    if (got === null) {
      this.eof = true;
      return false;
    }
    const rest = this.chunk.length - this.pos;
    const next = Buffer.allocUnsafeSlow(rest + got.length);
    this.chunk.copy(next, 0, this.pos);
    got.copy(next, rest);
    this.chunkStart += this.pos;
    this.chunk = next;
    this.scratch = null;
    this.pos = 0;
    this.starved = false;
    return true;
  }

  private stream: Socket | null = null;

  private openStream(): Socket {
    const s = new Socket({ fd: this.fd, readable: true, writable: false });
    s.pause();
    return s;
  }

  /** Reads more of the file, keeping the unread tail of the current chunk. Returns false when nothing new came. */
  protected refill(need: number): boolean {
    if (this.eof) return false;
    if (!this.regular && this.sniffed) {
      // Never block on live input here: the run waits for it with fillLive().
      this.starved = true;
      return false;
    }
    const rest = this.chunk.length - this.pos;
    // The file offset of the next byte not yet read.
    const from = this.chunkStart + this.chunk.length;
    const a = this.ahead;
    if (a !== null && a.landed && !a.stale && a.at === from && rest <= TAIL && rest + a.len >= need) {
      // The read ahead has landed: the unread end goes just in front of its bytes.
      this.ahead = null;
      const at = FRONT - rest;
      this.chunk.copy(a.buf, at, this.pos);
      this.use(a.buf, a.views, at, FRONT + a.len);
      this.readAhead();
      return a.len > 0;
    }
    if (a !== null) {
      // Not usable: a buffer still being read is left to land on its own.
      this.ahead = null;
      a.stale = true;
      if (a.landed) {
        this.spare = a.buf;
        this.spareViews = a.views;
      }
    }
    const size = Math.max(CHUNK, need + rest);
    // A reused chunk keeps room in front of the file's bytes for packetAt() and a read ahead's tail.
    const front = this.reuseChunks ? FRONT : 0;
    const reuse = this.spare !== null && this.spare.length >= front + size;
    const next = reuse ? this.spare! : Buffer.allocUnsafeSlow(front + size);
    const nextViews = reuse ? this.spareViews : [];
    this.spare = null;
    this.spareViews = [];
    this.chunk.copy(next, front, this.pos);
    const positional = this.readsAhead;
    let len = front + rest;
    while (len < next.length) {
      const n = readSync(this.fd, next, len, next.length - len, positional ? from + (len - front - rest) : null);
      if (n === 0) {
        this.eof = true;
        break;
      }
      len += n;
      // Live input (a pipe, a FIFO): what has arrived is enough once it holds what was asked for.
      if (len - front >= need && !this.regular) break;
    }
    this.use(next, nextViews, front, len);
    this.readAhead();
    return len - front > rest;
  }

  /** Makes bytes [start, end) of `buf` the chunk (the unread end of the last one already copied there). */
  private use(buf: Buffer, views: Buffer[], start: number, end: number): void {
    if (this.reuseChunks) {
      this.spare = this.whole;
      this.spareViews = this.views;
    }
    this.whole = buf;
    this.views = views;
    this.scratch = this.reuseChunks ? buf : null;
    this.chunkBase = start;
    this.chunkStart += this.pos;
    this.chunk = buf.subarray(start, end);
    this.pos = 0;
  }

  /**
   * Reused chunks of a regular file are read ahead (see the header), by file position: not stdin, whose
   * position may not have started at 0.
   */
  private get readsAhead(): boolean {
    return this.reuseChunks && this.fd !== 0 && this.regular;
  }

  /** Starts reading the next MiB on the threadpool, into the spare chunk. */
  private readAhead(): void {
    if (!this.readsAhead || this.eof || this.ahead !== null || this.closed) return;
    const reuse = this.spare !== null && this.spare.length >= FRONT + CHUNK;
    const a: ReadAhead = { buf: reuse ? this.spare! : Buffer.allocUnsafeSlow(FRONT + CHUNK), views: reuse ? this.spareViews : [], at: this.chunkStart + this.chunk.length, len: 0, landed: false, stale: false };
    this.spare = null;
    this.spareViews = [];
    this.ahead = a;
    this.readsInFlight++;
    read(this.fd, a.buf, FRONT, CHUNK, a.at, (err, n) => {
      a.landed = true;
      // A failed read is done again at once by the refill, which reports its error.
      if (err) a.stale = true;
      else a.len = n;
      if (--this.readsInFlight === 0 && this.closeWhenLanded) closeSync(this.fd);
    });
  }

  /**
   * The packet at [start, end) of `chunk`, as the readers hand it out: with reused chunks a copy at the
   * front of the chunk's memory, valid until the next packet is read (see the header); else a view.
   */
  protected packetAt(start: number, end: number): Buffer {
    const scratch = this.scratch;
    const n = end - start;
    if (scratch === null || n > SCRATCH) return this.chunk.subarray(start, end);
    scratch.copyWithin(0, this.chunkBase + start, this.chunkBase + end);
    let v = this.views[n];
    if (v === undefined) v = this.views[n] = scratch.subarray(0, n);
    return v;
  }

  /** Set once the header has been read: from then on live input is read only by fillLive(). */
  protected sniffed = false;

  private regularFile: boolean | undefined;
  private get regular(): boolean {
    if (this.regularFile === undefined) {
      try {
        this.regularFile = fstatSync(this.fd).isFile();
      } catch {
        this.regularFile = true;
      }
    }
    return this.regularFile;
  }

  /** Makes sure `n` bytes are available from `pos` if the file has them; false at end of file. */
  protected ensure(n: number): boolean {
    while (this.chunk.length - this.pos < n) if (!this.refill(n)) return false;
    return true;
  }

  /** File offset of the byte at `pos`. */
  protected get offset(): number {
    return this.chunkStart + this.pos;
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    inputGuards.get(this.fd)?.();
    inputGuards.delete(this.fd);
    if (this.stream !== null) {
      // The handle owns the fd now (stdin included): destroying it closes it.
      this.stream.destroy();
      return;
    }
    // A read still in flight on the threadpool must not find its fd closed (or reused) under it.
    if (this.readsInFlight > 0) this.closeWhenLanded = true;
    else if (this.fd !== 0) closeSync(this.fd);
  }
}
