/**
 * What both capture readers share: a file (or stdin) read in large chunks, handed out as views. By default
 * each chunk is new memory, so a view stays valid for as long as it is held; a caller that lets go of every
 * packet before the next one is read can have two chunks reused in turn (`reuseChunks`), which spares the
 * kernel from handing out fresh pages for every megabyte of the file (a third of the time of an offline
 * run, measured).
 */
import { closeSync, fstatSync, openSync, readSync } from 'node:fs';
import { TunpipeError } from '../errors.js';

const CHUNK = 1 << 20;

/** An open input and the bytes already read from it (a format sniffed from its first bytes). */
export interface OpenedInput {
  fd: number;
  prefix: Buffer;
}

/** Opens `path` (`-`: standard input) for reading; a TunpipeError that says why it cannot be. */
export function openInput(path: string): number {
  let fd = -1;
  try {
    fd = path === '-' ? 0 : openSync(path, 'r');
    // Opening a directory for reading succeeds; reading it fails with a less helpful message.
    if (fstatSync(fd).isDirectory()) throw Object.assign(new Error('EISDIR'), { code: 'EISDIR' });
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

  /** Reads more of the file, keeping the unread tail of the current chunk. Returns false when nothing new came. */
  protected refill(need: number): boolean {
    if (this.eof) return false;
    const rest = this.chunk.length - this.pos;
    const size = Math.max(CHUNK, need + rest);
    const next = this.spare !== null && this.spare.length >= size ? this.spare : Buffer.allocUnsafeSlow(size);
    this.chunk.copy(next, 0, this.pos);
    let len = rest;
    while (len < next.length) {
      const n = readSync(this.fd, next, len, next.length - len, null);
      if (n === 0) {
        this.eof = true;
        break;
      }
      len += n;
      // Live input (a pipe, a FIFO): what has arrived is enough once it holds what was asked for.
      if (len >= need && !this.regular) break;
    }
    if (this.reuseChunks) this.spare = this.whole;
    this.whole = next;
    this.chunkStart += this.pos;
    this.chunk = next.subarray(0, len);
    this.pos = 0;
    return len > rest;
  }

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
    if (this.fd !== 0) closeSync(this.fd);
  }
}
