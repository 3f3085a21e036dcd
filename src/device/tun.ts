/**
 * A TUN (or, later, TAP) device as a stream of packets: one Buffer per packet in each direction.
 *
 * The fd is non-blocking; a readiness watcher (./readiness.ts) says when packets wait, and the device drains
 * them with `read()` until EAGAIN (./slab-reader.ts), so one wake of the event loop moves a whole batch.
 * (The CLI instead hands the fd to a worker thread: ../pipeline/device-worker.ts.) Replies are written
 * with one `write()` each, never through a stream's write queue: a tun write never blocks, a queued write
 * could be merged into one writev() (one bogus packet), and a failed write (EIO while the link is down) is a
 * counted drop, not a stream error.
 *
 * Three ways to use it:
 * - fast path: `start(onPacket, onBatchEnd)` and `send(buf)`; runPipeline on the event loop uses these.
 * - Node stream: the device is an object-mode `Duplex`.
 * - it-pipe duplex: `source` (async iterable of Buffers) and `sink(source)`.
 */
import { lazyRequire } from '../lazy-require.js';
import { readFileSync } from 'node:fs';
import * as libc from './libc.js';
import { addAddress, getMtu, interfaceIndex, parseCidr, setIPv6Enabled, setLinkUp, setMtu, setRouterSolicitations, type InterfaceAddress } from './ifconfig.js';
import { watchReadable, type ReadinessWatcher } from './readiness.js';
import { drainLinkWatch, openLinkWatch } from './netlink.js';
import { TunpipeError, UsageError } from '../errors.js';
import { DRAIN_BUDGET, SlabReader } from './slab-reader.js';

// Required, not imported (../lazy-require.ts): only a run on a device loads node:stream.
const { Duplex } = lazyRequire('node:stream') as typeof import('node:stream');

const TUNSETIFF = 0x400454ca;
const TUNSETPERSIST = 0x400454cb;
/** _IOR('T', 210, unsigned int): the device's name and flags; refused with EBADFD once the device is gone. */
const TUNGETIFF = 0x800454d2;
/** _IOW('T', 213/214, struct sock_fprog): a classic BPF program on what the kernel hands the reader (TAP only). */
const TUNATTACHFILTER = 0x401054d5;
const TUNDETACHFILTER = 0x401054d6;
const IFF_TUN = 0x0001;
const IFF_TAP = 0x0002;
const IFF_MULTI_QUEUE = 0x0100;
const IFF_NO_PI = 0x1000;
const IFF_VNET_HDR = 0x4000;
const TUNSETOFFLOAD = 0x400454d0;
/** TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6, and UDP segmentation (TUN_F_USO4 | TUN_F_USO6) where the kernel has it. */
const OFFLOADS = 0x01 | 0x02 | 0x04;
const OFFLOADS_UDP = 0x20 | 0x40;
/** Bytes of the virtio_net_hdr in front of every packet of a device opened with offloads. */
export const VNET_HDR_SIZE = 10;
const IFNAMSIZ = 16;

export interface TunOptions {
  /** Interface name; empty or absent lets the kernel pick (tun0, tun1, ...). At most 15 characters. */
  name?: string;
  /** 'tun' carries IP packets (the default); 'tap' carries Ethernet frames. */
  mode?: 'tun' | 'tap';
  /** Addresses to assign, as CIDR text (`198.18.0.1/24`, `2001:db8::1/64`). The link is brought up. */
  addresses?: string[];
  /** MTU to set. */
  mtu?: number;
  /** Bring the link up even without addresses. Default: true when addresses are given. */
  up?: boolean;
  /** Mark the device persistent (it outlives the process, like `ip tuntap add`). */
  persist?: boolean;
  /**
   * IPv6 on a device this call creates (a device that existed is left as it is). Default: on when an IPv6
   * address is given, off otherwise, so that the kernel sends no router solicitations and MLD reports into a
   * device that was given IPv4 only (they would reach the pipeline as unexplained packets). With IPv6 on, the
   * new device sends no router solicitations either (router_solicitations=0).
   */
  ipv6?: boolean;
  /**
   * Offloads: the device is opened with IFF_VNET_HDR and TUNSETOFFLOAD (checksum and TCP segmentation, UDP
   * where the kernel has it), so the kernel hands over and takes TCP super-packets up to 64 KiB, each behind
   * a 10-byte virtio_net_hdr. For a wire that moves packets whole between two such devices.
   */
  offload?: boolean;
  /**
   * Queues: the device is opened this many times with IFF_MULTI_QUEUE (one TUNSETIFF per fd, the same
   * name), and the kernel spreads the packets it hands over across the queues by a hash of their flow. Each
   * queue is read by a worker of its own (`runPipeline({ thread: 'worker' })`); `queueFds` holds the fds.
   * Absent or 1: one fd, without IFF_MULTI_QUEUE (given as 1, an existing multi-queue device is opened
   * with one queue).
   */
  queues?: number;
  /** Readiness implementation (tests use it to exercise the fallback). */
  readiness?: 'pipe' | 'poll';
}

/** Counters the device keeps; read them at any time. */
export interface TunCounters {
  /** Packets read from the device. */
  rxPackets: number;
  rxBytes: number;
  /** Packets written to the device. */
  txPackets: number;
  txBytes: number;
  /** Writes the kernel refused (link down, packet too big or malformed): counted, not thrown. */
  txErrors: number;
  /** The errno of the last refused write. */
  lastTxErrno: number;
  /**
   * io_uring only: times the multishot read ended because a burst took every receive buffer, and was armed
   * again once buffers came back (TUNPIPE_IO_BUFFERS); the exit report prints it when it happened.
   */
  readsRearmed?: number;
}

/** Opening /dev/net/tun itself failed: before any device is named. */
function cloneDeviceError(e: number): TunpipeError {
  const code = libc.errnoName(e);
  if (e === libc.E.EPERM || e === libc.E.EACCES) {
    return new TunpipeError(`cannot open /dev/net/tun (${code}): it is not readable and writable by you; run as root, or ask root to change its mode (ls -l /dev/net/tun)`, code);
  }
  return openError(e, '');
}

/** The flags of an existing TUN/TAP device (/sys/class/net/NAME/tun_flags), or null when it is none (or unreadable). */
function existingTunFlags(name: string): number | null {
  try {
    const n = parseInt(readFileSync(`/sys/class/net/${name}/tun_flags`, 'latin1').trim(), 16);
    return Number.isFinite(n) ? n : null;
  } catch {
    return null;
  }
}

/**
 * Why TUNSETIFF refused `name` with EINVAL: the name belongs to a device of another kind, or is invalid, or
 * its queues are not what was asked for (`queues`: how many were asked for; the kernel opens a multi-queue
 * device only with IFF_MULTI_QUEUE and a single-queue one only without).
 */
export function nameTakenMessage(name: string, mode: 'tun' | 'tap', existed: boolean, flags: number | null, queues = 1): string {
  const wanted = mode === 'tap' ? 'TAP' : 'TUN';
  if (flags !== null) {
    const kind = flags & IFF_TAP ? 'TAP' : 'TUN';
    const mq = (flags & IFF_MULTI_QUEUE) !== 0;
    const what = `${name} already exists as a ${mq ? 'multi-queue ' : ''}${kind} device`;
    if (kind !== wanted) return `cannot open ${name} as a ${wanted} device (EINVAL): ${what}; ${kind === 'TAP' ? 'add --tap' : 'leave out --tap'} to use it, or delete it (ip link del ${name}) or choose another --dev`;
    if (mq && queues === 1) return `cannot open ${name} (EINVAL): ${what} (IFF_MULTI_QUEUE), which the kernel opens only as queues: give it --queues N (a worker per queue), or delete it (ip link del ${name}) or choose another --dev`;
    if (!mq && queues > 1) {
      return `cannot open ${name} with --queues ${queues} (EINVAL): ${what} with one queue, and the kernel adds queues only to a device created with IFF_MULTI_QUEUE; leave out --queues, or delete it (ip link del ${name}) and let tunpipe create it (or: ip tuntap add dev ${name} mode ${kind.toLowerCase()} multi_queue)`;
    }
    return `cannot open ${name} (EINVAL): ${what} with flags 0x${flags.toString(16)} that the kernel refuses to share; choose another --dev`;
  }
  if (existed) return `cannot create ${name} (EINVAL): an interface that is not a TUN/TAP device (a veth, a bridge, ...) has that name; choose another --dev`;
  return `cannot create ${name} (EINVAL): not a valid interface name`;
}

function openError(e: number, name: string, mode: 'tun' | 'tap' = 'tun', existed = false, queues = 1): TunpipeError {
  const dev = name || 'a new device';
  const code = libc.errnoName(e);
  switch (e) {
    case libc.E.ENOENT:
    case libc.E.ENODEV:
    case libc.E.ENXIO:
      return new TunpipeError(`cannot open /dev/net/tun (${code}): the tun module is not loaded or the node is missing; try 'modprobe tun'`, code);
    case libc.E.EPERM:
    case libc.E.EACCES:
      return new TunpipeError(
        `no permission to ${name ? `open or create ${dev}` : 'create a device'} (${code}): run as root (or with CAP_NET_ADMIN), or create a persistent device for your user first: sudo ip tuntap add dev ${name || 'tun0'} mode tun user $USER`,
        code,
      );
    case libc.E.EBUSY:
      return new TunpipeError(`device ${dev} is in use by another process (EBUSY): stop that process or choose another --dev`, code);
    case libc.E.EINVAL:
      if (name) {
        const flags = existed ? existingTunFlags(name) : null;
        const msg = nameTakenMessage(name, mode, existed, flags, queues);
        // Queues asked of a device that cannot have them: a mistake in the command line (exit 2).
        const queuesWrong = flags !== null && !(flags & IFF_TAP) === (mode === 'tun') && (flags & IFF_MULTI_QUEUE) === 0 && queues > 1;
        return queuesWrong ? new UsageError(msg, code) : new TunpipeError(msg, code);
      }
      return new TunpipeError(`cannot create ${dev} (EINVAL): the kernel refused the request`, code);
    default:
      return new TunpipeError(`cannot open ${dev}: ${code} (${libc.strerror(e)})`, code);
  }
}

/** Counts the result of one write() of a packet: bytes written, or -1 with the reason in errno. */
export function countWrite(counters: TunCounters, n: number): boolean {
  return countWriteResult(counters, n < 0 ? -libc.errno() : n);
}

/** Counts a write's result as the kernel gives it (io_uring): bytes written, or minus the errno value. */
export function countWriteResult(counters: TunCounters, n: number): boolean {
  if (n < 0) {
    counters.lastTxErrno = -n;
    counters.txErrors++;
    return false;
  }
  counters.txPackets++;
  counters.txBytes += n;
  return true;
}

/** The error for a failed read of a device: most often the device was deleted under us. */
export function readError(name: string, e: number): TunpipeError {
  const msg =
    e === libc.E.EBADFD || e === libc.E.EIO || e === libc.E.ENODEV
      ? `device ${name} went away (${libc.errnoName(e)}): it was deleted or its driver detached`
      : `reading ${name} failed: ${libc.errnoName(e)}`;
  return new TunpipeError(msg, libc.errnoName(e));
}

const ifreqScratch = Buffer.alloc(40);

/**
 * A link watch (netlink.ts openLinkWatch) woke its reader: reads the watch's events, then asks each of
 * `fds` whether its device still exists (TUNGETIFF, refused with EBADFD once it was deleted and the fd is
 * attached to nothing). The first that is gone, by index, with the errno; null when all are there.
 */
export function goneAfterLinkEvent(watch: number, fds: readonly number[]): { index: number; errno: number } | null {
  drainLinkWatch(watch);
  for (let index = 0; index < fds.length; index++) {
    if (libc.ioctlPtr(fds[index], TUNGETIFF, ifreqScratch) < 0) return { index, errno: libc.errno() };
  }
  return null;
}

export class TunDevice extends Duplex {
  /** The interface name the kernel gave the device. */
  readonly name: string;
  readonly mode: 'tun' | 'tap';
  /** The addresses this open gave the device (TunOptions.addresses), as written. */
  readonly addresses: readonly string[];
  /** Opened with offloads (TunOptions.offload): every packet read and written has a virtio_net_hdr in front. Set by openTun. */
  offload = false;
  readonly counters: TunCounters = { rxPackets: 0, rxBytes: 0, txPackets: 0, txBytes: 0, txErrors: 0, lastTxErrno: 0 };
  /**
   * Every queue's fd, the first being `fileDescriptor`: one entry unless opened with `queues` (IFF_MULTI_QUEUE).
   * The stream and the fast path on the event loop read the first queue only.
   */
  readonly queueFds: readonly number[];
  /**
   * Per queue, a link watch of the device's namespace (netlink.ts openLinkWatch), or -1 when the kernel gave
   * none: a loop that reads the queue waits on it too, and asks the device whether it still exists
   * (goneAfterLinkEvent) whenever a link changed. The device closes them.
   */
  readonly linkWatchFds: readonly number[];
  /** After a run on several queues: each queue's counters (what its worker read from it and wrote through it); `counters` is their sum. */
  queueCounters: TunCounters[] = [];
  private readonly fd: number;
  private readonly watcher: ReadinessWatcher;
  private readonly reader = new SlabReader();
  private onPacket: ((buf: Buffer) => void) | null = null;
  private onBatchEnd: (() => void) | null = null;
  private fdClosed = false;
  private vanished = false;
  /** Stream mode: the reader's buffer is full, so reading waits for its next _read(). */
  private consumerFull = false;
  /**
   * The attached kernel filter's instructions: the kernel keeps a pointer to them to attach them again to
   * a queue that opens later, so they live as long as the device is open.
   */
  private kernelFilter: Buffer | null = null;

  /** Use `openTun()`. */
  constructor(fd: number, name: string, mode: 'tun' | 'tap', readiness?: 'pipe' | 'poll', addresses: readonly string[] = [], moreQueues: readonly number[] = [], linkWatchFds: readonly number[] = []) {
    super({ objectMode: true, allowHalfOpen: true, highWaterMark: 1024 });
    this.fd = fd;
    this.queueFds = [fd, ...moreQueues];
    this.linkWatchFds = this.queueFds.map((_, q) => linkWatchFds[q] ?? -1);
    this.name = name;
    this.mode = mode;
    this.addresses = addresses;
    const linkWatch = this.linkWatchFds[0];
    this.watcher = watchReadable(fd, (first, n) => this.wake(first, n), (e) => this.fault(e), readiness, { fd: linkWatch, onEvent: () => this.linkChanged(linkWatch) });
  }

  /** The device's file descriptor, for a worker thread that reads and writes it (see pipeline/device-worker.ts). */
  get fileDescriptor(): number {
    return this.fd;
  }

  /** The first queue's link watch (linkWatchFds), for a worker thread that reads the device. */
  get linkWatch(): number {
    return this.linkWatchFds[0];
  }

  /** Which readiness implementation is in use ('pipe' fast path or 'poll' fallback). */
  get readiness(): 'pipe' | 'poll' {
    return this.watcher.kind;
  }

  /** The device's MTU as the kernel has it now. */
  get mtu(): number {
    return getMtu(this.name);
  }

  /**
   * Fast path: calls `onPacket` for every packet read, then `onBatchEnd` after each drain of the queue (a
   * natural point to flush buffered output). Exclusive with reading the device as a stream.
   */
  start(onPacket: (buf: Buffer) => void, onBatchEnd?: () => void): void {
    this.onPacket = onPacket;
    this.onBatchEnd = onBatchEnd ?? null;
    this.watcher.start();
  }

  /**
   * Without reading the device, watches for its deletion: the device then ends with its error ('error'), as
   * a read would. For a device that is only written to. stopReading() ends the watch too.
   */
  watchForDeletion(): void {
    this.watcher.watchSide();
  }

  /** Stops reading; packets wait in the kernel's queue (and are dropped there when it fills). */
  stopReading(): void {
    this.watcher.stop();
  }

  /** Writes one packet. Returns false (and counts it in `txErrors`) when the kernel refuses it. */
  send(buf: Uint8Array): boolean {
    if (this.fdClosed) {
      this.counters.txErrors++;
      return false;
    }
    return countWrite(this.counters, libc.write(this.fd, buf, buf.length));
  }

  private wake(first: Buffer | null, n: number): void {
    // The packet the watcher read counts against the wake's budget of DRAIN_BUDGET packets.
    const delivered = first !== null && n > 0;
    if (delivered) this.deliver(this.reader.adopt(first, n));
    this.drain(delivered ? DRAIN_BUDGET - 1 : DRAIN_BUDGET);
  }

  private drain(budget = DRAIN_BUDGET): void {
    for (; budget > 0 && !this.fdClosed; budget--) {
      const got = this.reader.read(this.fd);
      if (got === null) break;
      if (typeof got === 'number') {
        this.fault(got);
        return;
      }
      this.deliver(got);
      if (this.consumerFull) break;
    }
    if (this.onBatchEnd !== null) this.onBatchEnd();
  }

  private deliver(b: Buffer): void {
    this.counters.rxPackets++;
    this.counters.rxBytes += b.length;
    if (this.onPacket !== null) {
      this.onPacket(b);
    } else if (!this.push(b)) {
      // The consumer is behind: leave packets in the kernel queue until it reads again.
      this.consumerFull = true;
      this.watcher.stop();
    }
  }

  /** A link of the device's namespace changed: stops as a failed read would if the change was this device's deletion. */
  private linkChanged(watch: number): void {
    if (this.fdClosed) return;
    const gone = goneAfterLinkEvent(watch, [this.fd]);
    if (gone !== null) this.fault(gone.errno);
  }

  private fault(e: number): void {
    if (this.vanished || this.fdClosed) return;
    this.vanished = true;
    this.watcher.stop();
    this.destroy(readError(this.name, e));
  }

  override _read(): void {
    if (this.onPacket !== null) return;
    this.consumerFull = false;
    this.watcher.start();
  }

  override _write(chunk: Uint8Array | { data: Uint8Array }, _enc: BufferEncoding, cb: (err?: Error | null) => void): void {
    this.send(chunk instanceof Uint8Array ? chunk : chunk.data);
    cb();
  }

  override _final(cb: (err?: Error | null) => void): void {
    cb();
  }

  override _destroy(err: Error | null, cb: (err?: Error | null) => void): void {
    this.closeFd();
    cb(err);
  }

  /**
   * Ends the device as a stream, cleanly: reading stops and the readable side ends, so a `pipe(tun, ...,
   * tun)` that reads it completes (no ERR_STREAM_PREMATURE_CLOSE, as destroy() would give); the fd is
   * closed once that end has been read. Call it from a SIGINT handler.
   */
  close(): void {
    if (this.fdClosed) return;
    this.stopReading();
    if (this.readableEnded) {
      this.closeFd();
      return;
    }
    this.once('end', () => setImmediate(() => this.closeFd()));
    this.push(null);
    // A device nobody reads never emits 'end'.
    if (this.readableFlowing === null && this.listenerCount('data') === 0) this.resume();
  }

  /**
   * Attaches a classic BPF program (as libpcap compiles it for Ethernet, link type 1) in the kernel: frames
   * it rejects are dropped before they reach the reader, counted as the device's TX drops (`ip -s link`).
   * TAP only (TUNATTACHFILTER; TUN takes eBPF alone). Throws a TunpipeError when the kernel refuses.
   */
  attachFilter(program: readonly { code: number; jt: number; jf: number; k: number }[]): void {
    if (this.mode !== 'tap') throw new TunpipeError(`cannot attach a kernel filter to ${this.name}: the kernel filters only TAP devices (TUNATTACHFILTER)`);
    if (program.length === 0 || program.length > 4096) throw new TunpipeError(`a kernel filter takes 1 to 4096 instructions, this one has ${program.length}`);
    const insns = Buffer.alloc(program.length * 8);
    program.forEach((ins, i) => {
      insns.writeUInt16LE(ins.code, i * 8);
      insns[i * 8 + 2] = ins.jt;
      insns[i * 8 + 3] = ins.jf;
      insns.writeUInt32LE(ins.k >>> 0, i * 8 + 4);
    });
    // struct sock_fprog { unsigned short len; struct sock_filter *filter; }
    const fprog = Buffer.alloc(16);
    fprog.writeUInt16LE(program.length, 0);
    fprog.writeBigUInt64LE(BigInt(libc.addressOf(insns)), 8);
    if (libc.ioctlPtr(this.fd, TUNATTACHFILTER, fprog) < 0) {
      const e = libc.errno();
      throw new TunpipeError(`cannot attach the kernel filter to ${this.name}: ${libc.errnoName(e)} (${libc.strerror(e)})`, libc.errnoName(e));
    }
    this.kernelFilter = insns;
  }

  /** Closes the device's fd. A device that is not persistent disappears from the system. */
  closeFd(): void {
    if (this.fdClosed) return;
    if (this.kernelFilter !== null) {
      // A persistent device would keep our program's address for the next process that opens it.
      libc.ioctlPtr(this.fd, TUNDETACHFILTER, Buffer.alloc(16));
      this.kernelFilter = null;
    }
    this.fdClosed = true;
    this.onPacket = null;
    // The watcher closes the fd and the first link watch.
    this.watcher.close();
    for (let q = 1; q < this.queueFds.length; q++) {
      libc.close(this.queueFds[q]);
      if (this.linkWatchFds[q] >= 0) libc.close(this.linkWatchFds[q]);
    }
  }

  /** it-pipe source: the packets read, as an async iterable of Buffers. */
  get source(): AsyncIterable<Buffer> {
    return this;
  }

  /** it-pipe sink: writes every packet (Buffer, or anything with `data`) from `source` to the device. */
  readonly sink = async (source: AsyncIterable<Uint8Array | { data: Uint8Array }> | Iterable<Uint8Array | { data: Uint8Array }>): Promise<void> => {
    for await (const p of source) this.send(p instanceof Uint8Array ? p : p.data);
  };
}

/**
 * Opens (creating if needed) a TUN device through /dev/net/tun and TUNSETIFF, then applies the MTU and
 * addresses and brings the link up. Attaching to a persistent device works for its owner without root.
 * Throws a TunpipeError with a one-line explanation on failure.
 */
export function openTun(options: TunOptions = {}): TunDevice {
  const name = options.name ?? '';
  const mode = options.mode ?? 'tun';
  if (Buffer.byteLength(name) >= IFNAMSIZ) throw new TunpipeError(`device name '${name}' is too long: at most ${IFNAMSIZ - 1} characters`);
  if (/[\s/:]/.test(name)) throw new TunpipeError(`device name '${name}' is not valid: no spaces, '/' or ':'`);
  // Parse addresses before touching the system, so a typo changes nothing.
  const addresses: InterfaceAddress[] = (options.addresses ?? []).map(parseCidr);
  const existed = name !== '' && interfaceIndex(name) !== 0;
  const queues = options.queues ?? 1;
  if (!Number.isInteger(queues) || queues < 1 || queues > MAX_TAP_QUEUES) throw new TunpipeError(`queues: a whole number from 1 to ${MAX_TAP_QUEUES} (the kernel's MAX_TAP_QUEUES), got ${queues}`);
  // One queue asked for by name on a device that exists with several: opened as one of its queues.
  const multi = queues > 1 || (options.queues !== undefined && existed && ((existingTunFlags(name) ?? 0) & IFF_MULTI_QUEUE) !== 0);
  const fd = libc.open('/dev/net/tun', libc.O_RDWR | libc.O_NONBLOCK | libc.O_CLOEXEC);
  if (fd < 0) throw cloneDeviceError(libc.errno());
  const ifr = Buffer.alloc(40);
  ifr.write(name, 0, IFNAMSIZ - 1, 'latin1');
  const flags = (mode === 'tap' ? IFF_TAP : IFF_TUN) | IFF_NO_PI | (options.offload ? IFF_VNET_HDR : 0) | (multi ? IFF_MULTI_QUEUE : 0);
  ifr.writeUInt16LE(flags, 16);
  if (libc.ioctlPtr(fd, TUNSETIFF, ifr) < 0) {
    const e = libc.errno();
    libc.close(fd);
    throw openError(e, name, mode, existed || interfaceIndex(name) !== 0, queues);
  }
  const actual = ifr.toString('latin1', 0, IFNAMSIZ).replace(/\0.*$/s, '');
  let more: number[];
  try {
    more = openMoreQueues(actual, flags, queues - 1);
  } catch (err) {
    libc.close(fd);
    throw err;
  }
  let dev: TunDevice | undefined;
  // In the device's namespace, as this call is (--netns): that is where the kernel announces its deletion.
  const watches = [fd, ...more].map(() => openLinkWatch());
  try {
    if (options.offload && libc.ioctlInt(fd, TUNSETOFFLOAD, OFFLOADS | OFFLOADS_UDP) < 0 && libc.ioctlInt(fd, TUNSETOFFLOAD, OFFLOADS) < 0) {
      throw new TunpipeError(`cannot turn on offloads on ${actual} (TUNSETOFFLOAD): ${libc.errnoName(libc.errno())}`);
    }
    if (options.persist && libc.ioctlInt(fd, TUNSETPERSIST, 1) < 0) {
      throw new TunpipeError(`cannot make ${actual} persistent: ${libc.errnoName(libc.errno())}`);
    }
    dev = new TunDevice(fd, actual, mode, options.readiness, addresses.map((a) => a.text), more, watches);
    dev.offload = options.offload === true;
    if (!existed) {
      const ipv6 = options.ipv6 ?? addresses.some((a) => a.family === 6);
      setIPv6Enabled(actual, ipv6);
      if (ipv6) setRouterSolicitations(actual, 0);
    }
    if (options.mtu !== undefined) setMtu(actual, options.mtu);
    for (const a of addresses) addAddress(actual, a);
    if (options.up ?? addresses.length > 0) setLinkUp(actual);
    return dev;
  } catch (err) {
    if (dev) dev.closeFd();
    else for (const f of [fd, ...more, ...watches]) if (f >= 0) libc.close(f);
    throw err;
  }
}

/** The kernel's limit of queues per device (MAX_TAP_QUEUES in drivers/net/tun.c). */
export const MAX_TAP_QUEUES = 256;
const E2BIG = 7;

/**
 * Attaches `count` more queues to the multi-queue device `name` just opened with `flags` (the same flags:
 * the kernel takes IFF_VNET_HDR and the others from every TUNSETIFF, for the whole device). Offloads
 * (TUNSETOFFLOAD) and persistence belong to the device and are set once, through the first queue.
 */
function openMoreQueues(name: string, flags: number, count: number): number[] {
  const fds: number[] = [];
  try {
    for (let q = 1; q <= count; q++) {
      const fd = libc.open('/dev/net/tun', libc.O_RDWR | libc.O_NONBLOCK | libc.O_CLOEXEC);
      if (fd < 0) throw cloneDeviceError(libc.errno());
      const ifr = Buffer.alloc(40);
      ifr.write(name, 0, IFNAMSIZ - 1, 'latin1');
      ifr.writeUInt16LE(flags, 16);
      if (libc.ioctlPtr(fd, TUNSETIFF, ifr) < 0) {
        const e = libc.errno();
        libc.close(fd);
        if (e === E2BIG) throw new TunpipeError(`cannot open queue ${q + 1} of ${name} (E2BIG): the device has as many queues as the kernel allows (${MAX_TAP_QUEUES}, counting those other processes hold)`, 'E2BIG');
        throw new TunpipeError(`cannot open queue ${q + 1} of ${name}: ${libc.errnoName(e)} (${libc.strerror(e)})`, libc.errnoName(e));
      }
      fds.push(fd);
    }
  } catch (err) {
    for (const f of fds) libc.close(f);
    throw err;
  }
  return fds;
}
