/**
 * What capture files still hold in memory, kept where another thread can write it out. A thread whose
 * JavaScript is stuck (a user's stage that never returns) cannot flush its own captures; the thread that
 * ends it can, if the records are in shared memory: the watch on users' code offline
 * (../pipeline/user-code-watch.ts), the main thread for a device's worker (../pipeline/device-worker.ts).
 *
 * A thread that wants this calls `startSalvage()`. From then on every CaptureFile it opens gathers its
 * records in a SharedArrayBuffer and keeps, in a shared table, its fd, which buffer it fills, where in the
 * file that buffer goes and how much of it holds whole records. The stuck thread is never inside a
 * CaptureFile method while a user's code runs, so the table always describes whole records. A file stopped
 * inside a write of its own (a slow reader on stdout) is marked so and left alone: a second writer there
 * would interleave. A blocking pipe or socket may have a reader that stopped, and the thread writing out
 * must never block for good: see writeUnwritten (print's pipes are non-blocking already, and say so).
 * `writeUnwritten()` writes what each file still open holds.
 */

/** Where each value of a file lies in the table (cells of a Float64Array, SALVAGE_LAYOUT.cells per file). */
export const SALVAGE_LAYOUT = {
  /** Files a table has room for; a file opened past them is not salvaged. */
  files: 64,
  cells: 6,
  /** The fd; -1 for a free row, -2 for a row whose file is not chosen yet (see SalvageRow.open). */
  fd: 0,
  /** 1 while the file's own thread is inside a write. */
  writing: 1,
  /** Id of the buffer being filled (see startSalvage's listener). */
  buffer: 2,
  /** File position of the buffer's first byte; -1: wherever the fd's offset is. */
  at: 3,
  /** Bytes of whole records in the buffer. */
  used: 4,
  /** 1 when the fd is non-blocking already (see writeUnwritten for the others). */
  nonBlocking: 5,
} as const;

export type SalvageLayout = typeof SALVAGE_LAYOUT;

/** Hears of every shared buffer of this thread's captures (null: the buffer is no longer used). */
export type SalvageListener = (id: number, buffer: SharedArrayBuffer | null) => void;

/**
 * Keeps a file open for the thread that writes out, past the end of the thread that opened it: a worker
 * whose fds Node closes when it ends (Worker's trackUnmanagedFds) keeps a duplicate Node does not know of.
 * `hold` returns the fd the table gives out (-1: none), `letGo` closes it when the file closes.
 */
export interface SalvageFds {
  hold(fd: number): number;
  letGo(fd: number): void;
}

let table: Float64Array | null = null;
let listener: SalvageListener | null = null;
let fds: SalvageFds | null = null;
let nextId = 0;

/**
 * From now on the captures this thread opens keep their records where another thread can write them out.
 * Returns the shared table (give it to that thread); `onBuffer` hears of each shared buffer, to pass on too.
 * `ownFds`: the table holds fds of its own (see SalvageFds); the thread that reads it closes those left open.
 */
export function startSalvage(onBuffer: SalvageListener, ownFds?: SalvageFds): SharedArrayBuffer {
  if (table === null) {
    table = new Float64Array(new SharedArrayBuffer(SALVAGE_LAYOUT.files * SALVAGE_LAYOUT.cells * 8));
    for (let i = 0; i < SALVAGE_LAYOUT.files; i++) table[i * SALVAGE_LAYOUT.cells + SALVAGE_LAYOUT.fd] = -1;
  }
  listener = onBuffer;
  fds = ownFds ?? null;
  return table.buffer as SharedArrayBuffer;
}

/**
 * One capture file's row in the table, and the buffers it fills. Without salvage (or with a full table)
 * the row is a private one nobody reads and buffers are plain, so that a CaptureFile need not ask.
 */
export class SalvageRow {
  private readonly cells: Float64Array;
  private readonly base: number;
  private readonly shared: boolean;
  private readonly ids = new Map<Buffer, number>();
  /** The fd of the table's own (SalvageFds.hold), to close with the file; -1: none. */
  private held = -1;

  /** `fd`: the file's, or null when it is chosen later (open()). */
  constructor(fd: number | null) {
    const row = table === null ? -1 : freeRow(table);
    this.shared = row >= 0;
    this.cells = this.shared ? table! : new Float64Array(SALVAGE_LAYOUT.cells);
    this.base = this.shared ? row * SALVAGE_LAYOUT.cells : 0;
    this.cells[this.base + SALVAGE_LAYOUT.used] = 0;
    this.cells[this.base + SALVAGE_LAYOUT.writing] = 0;
    this.cells[this.base + SALVAGE_LAYOUT.buffer] = -1;
    this.cells[this.base + SALVAGE_LAYOUT.at] = -1;
    this.cells[this.base + SALVAGE_LAYOUT.nonBlocking] = 0;
    this.cells[this.base + SALVAGE_LAYOUT.fd] = -2;
    if (fd !== null) this.open(fd, false);
  }

  /**
   * The row's file is `fd` (given later for print's stdout or stderr, at its first line). A row that cannot
   * hold an fd of its own stays taken, with none: its file is not written out.
   */
  open(fd: number, nonBlocking: boolean): void {
    this.cells[this.base + SALVAGE_LAYOUT.nonBlocking] = nonBlocking ? 1 : 0;
    if (this.shared && fds !== null) {
      // Out of the table before it is closed: a number closed may be reused by anyone.
      this.cells[this.base + SALVAGE_LAYOUT.fd] = -2;
      this.letGo();
      this.held = fds.hold(fd);
      fd = this.held < 0 ? -2 : this.held;
    }
    this.cells[this.base + SALVAGE_LAYOUT.fd] = fd;
  }

  private letGo(): void {
    if (this.held >= 0) fds?.letGo(this.held);
    this.held = -1;
  }

  /** A buffer of `size` bytes for records: in shared memory when this row is read by another thread. */
  allocate(size: number): Buffer {
    if (!this.shared) return Buffer.allocUnsafe(size);
    const sab = new SharedArrayBuffer(size);
    const buf = Buffer.from(sab);
    const id = nextId++;
    this.ids.set(buf, id);
    listener?.(id, sab);
    return buf;
  }

  /** A buffer this row gave out is dropped: the other thread need not keep it. */
  release(buf: Buffer): void {
    const id = this.ids.get(buf);
    if (id === undefined) return;
    this.ids.delete(buf);
    listener?.(id, null);
  }

  /** Records now go into `buf`, which goes at file position `at` (-1: the fd's offset); it holds none yet. */
  fill(buf: Buffer, at: number): void {
    this.cells[this.base + SALVAGE_LAYOUT.buffer] = this.ids.get(buf) ?? -1;
    this.cells[this.base + SALVAGE_LAYOUT.at] = at;
    this.cells[this.base + SALVAGE_LAYOUT.used] = 0;
  }

  /** The buffer holds `used` bytes of whole records. */
  filled(used: number): void {
    this.cells[this.base + SALVAGE_LAYOUT.used] = used;
  }

  /** The file's own thread enters (true) or leaves a write. */
  writing(on: boolean): void {
    this.cells[this.base + SALVAGE_LAYOUT.writing] = on ? 1 : 0;
  }

  /** The file is closing: its row is free (before the fd is closed, which another open may reuse). */
  close(): void {
    this.cells[this.base + SALVAGE_LAYOUT.fd] = -1;
    this.letGo();
    for (const id of this.ids.values()) listener?.(id, null);
    this.ids.clear();
  }
}

function freeRow(t: Float64Array): number {
  for (let i = 0; i < SALVAGE_LAYOUT.files; i++) if (t[i * SALVAGE_LAYOUT.cells + SALVAGE_LAYOUT.fd] === -1) return i;
  return -1;
}

/** The fds of the files a table holds (still open when their thread stopped). */
export function salvagedFds(tableBuffer: SharedArrayBuffer): number[] {
  const t = new Float64Array(tableBuffer);
  const fds: number[] = [];
  for (let i = 0; i < SALVAGE_LAYOUT.files; i++) {
    const fd = t[i * SALVAGE_LAYOUT.cells + SALVAGE_LAYOUT.fd];
    if (fd >= 0) fds.push(fd);
  }
  return fds;
}

/** What writeUnwritten() did: files written out, and files left alone (inside a write, a blocking pipe, an error). */
export interface Salvaged {
  files: number;
  skipped: number;
}

/**
 * What writeUnwritten() writes with (the watcher thread passes its own): node:fs, and a send() on a
 * socket that never blocks (MSG_DONTWAIT; -1 when it would), which node:fs has no way to ask for.
 */
export type SalvageIo = Pick<typeof import('node:fs'), 'writeSync' | 'fstatSync' | 'openSync' | 'closeSync' | 'constants'> & {
  sendNow(fd: number, data: Uint8Array): number;
};

/**
 * Writes what the captures of a stopped thread still held. Self-contained (the watch on users' code runs
 * its text in a thread of its own): everything it needs comes as arguments. A blocking pipe is written
 * through a non-blocking open of its own (/proc/self/fd), a blocking socket (stdout of a process Node
 * started) with sendNow, so a reader that stopped reading costs the rest of that file, never a hang.
 */
export function writeUnwritten(layout: SalvageLayout, tableBuffer: SharedArrayBuffer, buffers: Map<number, SharedArrayBuffer>, io: SalvageIo): Salvaged {
  const t = new Float64Array(tableBuffer);
  const done = { files: 0, skipped: 0 };
  for (let i = 0; i < layout.files; i++) {
    const row = i * layout.cells;
    const fd = t[row + layout.fd];
    const used = t[row + layout.used];
    if (fd < 0 || used <= 0) continue;
    const sab = buffers.get(t[row + layout.buffer]);
    if (t[row + layout.writing] !== 0 || sab === undefined) {
      done.skipped++;
      continue;
    }
    const data = new Uint8Array(sab, 0, used);
    const at = t[row + layout.at];
    let target = fd;
    let socket = false;
    try {
      if (t[row + layout.nonBlocking] === 0) {
        const kind = io.fstatSync(fd);
        socket = kind.isSocket();
        if (kind.isFIFO()) target = io.openSync('/proc/self/fd/' + fd, io.constants.O_WRONLY | io.constants.O_NONBLOCK);
      }
      for (let off = 0; off < used; ) {
        const n = socket ? io.sendNow(fd, data.subarray(off)) : io.writeSync(target, data, off, used - off, at < 0 ? null : at + off);
        if (!(n > 0)) throw new Error('no progress');
        off += n;
      }
      done.files++;
    } catch {
      done.skipped++;
    } finally {
      if (target !== fd) io.closeSync(target);
    }
  }
  return done;
}

/**
 * What writeUnwritten() did, in the words of the error that ends a stuck run ("" when there was nothing to
 * write out); `when` ends each "written out" (" first": before the process ended). Self-contained, like
 * writeUnwritten: the watch on users' code runs its text.
 */
export function salvageWords(kept: Salvaged, when: string): string {
  if (kept.skipped > 0) {
    const others = kept.files > 0 ? '; what the others still held was written out' + when : '';
    return kept.skipped + ' output(s) could not be written out (inside a write of their own, a reader not reading, an error) and keep only what was written before' + others;
  }
  return kept.files > 0 ? 'what its captures and printed lines still held was written out' + when : '';
}
