/**
 * Tells the device when its non-blocking fd has packets to read, without a thread parked in a blocking call
 * (which would keep the process from exiting) and without the libuv threadpool for the reads themselves
 * (ten times slower: see shared/reference/tun-io-facts.md).
 *
 * Two implementations:
 * - `pipe`: the fast path. It opens a libuv pipe handle on the fd through Node's internal `pipe_wrap`
 *   binding, reached through the deprecated `process.binding` (DEP0111); this is the only module that touches
 *   Node internals. libuv then watches the fd with the event loop's own epoll, on the main thread. On each
 *   wake libuv reads one packet itself (into a buffer we lend it, so nothing is allocated) and hands it over;
 *   the device drains the rest with its own `read()` until EAGAIN.
 * - `poll`: the fallback, used when the binding is missing or TUNPIPE_READINESS=poll. A koffi `poll()` on
 *   the fd and an eventfd runs on the libuv threadpool; when it returns the device drains on the main thread
 *   and the poll is armed again. `stop()` writes the eventfd so the parked poll returns at once.
 *
 * A watcher is armed by `start()` and disarmed by `stop()`; `close()` disarms it for good and closes the fd.
 * Beside the device it can watch a second fd, its link watch (netlink.ts openLinkWatch): the same kind of
 * watch, so the poll fallback still takes one threadpool thread per device.
 */
import * as libc from './libc.js';

/** Called on each wake: `first` holds a packet libuv already read (its length `n`), or is null. */
export type WakeHandler = (first: Buffer | null, n: number) => void;
/** Called when waiting or the first read failed: an errno value. */
export type WakeErrorHandler = (errno: number) => void;

/** A second fd watched with the device (its link watch): `onEvent` runs whenever it is readable, and must read it. */
export interface SideWatch {
  fd: number;
  onEvent: () => void;
}

export interface ReadinessWatcher {
  readonly kind: 'pipe' | 'poll';
  /** Reads the device (and watches the side fd). */
  start(): void;
  /** Watches the side fd alone, without reading the device; start() then reads it too. */
  watchSide(): void;
  /** Stops reading, and watching the side fd. */
  stop(): void;
  /** Disarms the watcher and closes the fd. */
  close(): void;
}

interface PipeHandle {
  open(fd: number): number;
  useUserBuffer(buf: Uint8Array): void;
  readStart(): number;
  readStop(): number;
  close(cb?: () => void): void;
  onread: (ab?: ArrayBuffer) => void;
}

interface PipeBinding {
  Pipe: new (type: number) => PipeHandle;
  constants: { SOCKET: number };
}

interface StreamWrapBinding {
  streamBaseState: Int32Array;
  kReadBytesOrError: number;
}

function loadPipeBinding(): { pipe: PipeBinding; stream: StreamWrapBinding } | null {
  try {
    const binding = (process as unknown as { binding(name: string): unknown }).binding;
    const pipe = binding('pipe_wrap') as PipeBinding;
    const stream = binding('stream_wrap') as StreamWrapBinding;
    if (typeof pipe?.Pipe !== 'function' || !(stream?.streamBaseState instanceof Int32Array)) return null;
    return { pipe, stream };
  } catch {
    return null;
  }
}

/** libuv reports errors as negative errno values. */
const UV_EOF = -4095;
const UV_ENOBUFS = -libc.E.ENOBUFS;

class PipeWatcher implements ReadinessWatcher {
  readonly kind = 'pipe';
  private readonly handle: PipeHandle;
  /** The side fd's handle; null when there is none, or once it failed (the device is still watched). */
  private side: PipeHandle | null = null;
  /** What libuv reads the side fd's events into: the handle keeps only its address, so this keeps it alive. */
  private readonly sideBuffer = Buffer.allocUnsafe(4096);
  private running = false;
  /** The side fd is watched (with the device, or alone). */
  private watching = false;
  private closed = false;

  constructor(fd: number, binding: { pipe: PipeBinding; stream: StreamWrapBinding }, onWake: WakeHandler, onError: WakeErrorHandler, side?: SideWatch) {
    const { Pipe, constants } = binding.pipe;
    const state = binding.stream.streamBaseState;
    const slot = binding.stream.kReadBytesOrError;
    this.handle = new Pipe(constants.SOCKET);
    const rc = this.handle.open(fd);
    if (rc !== 0) throw new Error(`pipe_wrap open failed: ${rc}`);
    const first = Buffer.allocUnsafe(65536);
    this.handle.useUserBuffer(first);
    this.handle.onread = () => {
      const n = state[slot];
      if (n > 0) onWake(first, n);
      else if (n === 0) onWake(null, 0);
      else {
        this.stop();
        onError(n === UV_EOF ? libc.E.EBADFD : -n);
      }
    };
    if (side !== undefined && side.fd >= 0) this.openSide(side.fd, side, binding.pipe, state, slot);
  }

  /** Reads the side fd through a pipe handle of its own, which then owns the fd; null if libuv refused it. */
  private openSide(fd: number, side: SideWatch, pipe: PipeBinding, state: Int32Array, slot: number): PipeHandle | null {
    const h = new pipe.Pipe(pipe.constants.SOCKET);
    if (h.open(fd) !== 0) {
      libc.close(fd);
      return null;
    }
    h.useUserBuffer(this.sideBuffer);
    h.onread = () => {
      const n = state[slot];
      if (n >= 0) {
        side.onEvent();
        return;
      }
      if (this.side !== h) return;
      // libuv stops a stream for good after a read error. An overrun (ENOBUFS: more link events came than
      // the socket holds) is reported once and loses only events: the socket goes on in a new handle on a
      // duplicate of its fd. After any other error the device is watched alone. Either way the device is
      // looked at now.
      const again = n === UV_ENOBUFS ? libc.dupCloexec(fd) : -1;
      this.side = null;
      h.close();
      if (again >= 0) {
        const next = this.openSide(again, side, pipe, state, slot);
        if (this.watching) next?.readStart();
      }
      side.onEvent();
    };
    this.side = h;
    return h;
  }

  start(): void {
    if (this.running || this.closed) return;
    this.running = true;
    this.handle.readStart();
    this.watchSide();
  }

  watchSide(): void {
    if (this.watching || this.closed) return;
    this.watching = true;
    this.side?.readStart();
  }

  stop(): void {
    if (this.closed) return;
    if (this.running) this.handle.readStop();
    if (this.watching) this.side?.readStop();
    this.running = false;
    this.watching = false;
  }

  close(): void {
    if (this.closed) return;
    this.stop();
    this.closed = true;
    // The pipe handles own the fds now: closing them closes the fds.
    this.handle.close();
    this.side?.close();
  }
}

class PollWatcher implements ReadinessWatcher {
  readonly kind = 'poll';
  private running = false;
  /** The side fd is watched (with the device, or alone). */
  private watching = false;
  private closed = false;
  private pending = false;
  private readonly wake: number;
  private readonly fds = Buffer.alloc(24);
  private readonly one = Buffer.alloc(8);
  /** The side fd, -1 when there is none or once it failed (poll() passes over a negative fd). */
  private sideFd: number;

  constructor(
    private readonly fd: number,
    private readonly onWake: WakeHandler,
    private readonly onError: WakeErrorHandler,
    private readonly side?: SideWatch,
  ) {
    this.sideFd = side !== undefined && side.fd >= 0 ? side.fd : -1;
    this.wake = libc.eventfd(0, libc.EFD_CLOEXEC | libc.EFD_NONBLOCK);
    if (this.wake < 0) throw new Error(`eventfd failed: ${libc.errnoName(libc.errno())}`);
    this.one.writeBigUInt64LE(1n);
  }

  start(): void {
    if (this.running || this.closed) return;
    this.running = true;
    this.watching = true;
    this.rearm();
  }

  watchSide(): void {
    if (this.watching || this.closed) return;
    this.watching = true;
    this.rearm();
  }

  /** Arms the poll, or, when one is parked, makes it return so that it is armed again with what is watched now. */
  private rearm(): void {
    if (this.pending) libc.write(this.wake, this.one, 8);
    else this.arm();
  }

  private arm(): void {
    if (this.pending || !(this.running || this.watching)) return;
    this.pending = true;
    const f = this.fds;
    f.writeInt32LE(this.fd, 0);
    // Only watching the side: the device is in the set for its errors alone (a deleted device has POLLERR).
    f.writeInt16LE(this.running ? libc.POLLIN : 0, 4);
    f.writeInt16LE(0, 6);
    f.writeInt32LE(this.wake, 8);
    f.writeInt16LE(libc.POLLIN, 12);
    f.writeInt16LE(0, 14);
    f.writeInt32LE(this.sideFd, 16);
    f.writeInt16LE(libc.POLLIN, 20);
    f.writeInt16LE(0, 22);
    libc.pollAsync(f, 3, -1).then(
      (rc) => {
        this.pending = false;
        if (this.closed) {
          this.closeFds();
          return;
        }
        // Swallow the wake-up count so the next poll blocks again.
        if (f.readInt16LE(14) !== 0) libc.read(this.wake, Buffer.alloc(8), 8);
        const revents = f.readInt16LE(6);
        if (rc < 0 || (revents & ~libc.POLLIN) !== 0) {
          this.running = false;
          this.watching = false;
          this.onError(rc < 0 ? libc.errno() : libc.E.EBADFD);
          return;
        }
        if (this.running && revents & libc.POLLIN) this.onWake(null, 0);
        const sideEvents = f.readInt16LE(22);
        if (sideEvents & libc.POLLIN) {
          if (this.watching) this.side!.onEvent();
        } else if (sideEvents !== 0) {
          this.sideFd = -1;
        }
        this.arm();
      },
      (err: unknown) => {
        this.pending = false;
        this.running = false;
        this.watching = false;
        this.onError(libc.E.EIO);
        void err;
      },
    );
  }

  stop(): void {
    if (!this.running && !this.watching) return;
    this.running = false;
    this.watching = false;
    if (this.pending) libc.write(this.wake, this.one, 8);
  }

  close(): void {
    if (this.closed) return;
    this.stop();
    this.closed = true;
    if (!this.pending) this.closeFds();
  }

  private closeFds(): void {
    libc.close(this.wake);
    libc.close(this.fd);
    if (this.side !== undefined && this.side.fd >= 0) libc.close(this.side.fd);
  }
}

/**
 * Watches `fd` (already non-blocking) for readability. `kind` forces an implementation; by default the pipe
 * handle is used when the binding is there, else poll (the CLI's TUNPIPE_READINESS=poll|pipe chooses).
 */
export function watchReadable(fd: number, onWake: WakeHandler, onError: WakeErrorHandler, kind?: 'pipe' | 'poll', side?: SideWatch): ReadinessWatcher {
  const want = kind;
  if (want !== 'poll') {
    const binding = loadPipeBinding();
    if (binding) return new PipeWatcher(fd, binding, onWake, onError, side);
    if (want === 'pipe') throw new Error('the pipe_wrap binding is not available in this Node.js');
  }
  return new PollWatcher(fd, onWake, onError, side);
}
