/**
 * A minimal io_uring for one TUN device, through koffi and raw syscalls (no liburing): what lets a pipeline
 * move a batch of packets with one system call instead of two per packet.
 *
 * How it is used (src/pipeline/uring-loop.ts):
 * - one multishot read (IORING_OP_READ_MULTISHOT) stays armed on the device: whenever it is readable, the
 *   kernel reads every waiting packet, each into a buffer of a provided-buffer ring, one completion each;
 * - replies are queued as write requests straight from those buffers (or from any Buffer the caller keeps
 *   alive until the write completes);
 * - `enter()` submits the queued writes (a TUN write completes as it is submitted) and, asked to, waits for
 *   the next completions.
 * The ring is set up with SINGLE_ISSUER and DEFER_TASKRUN, so the kernel runs the reads only inside a
 * waiting `io_uring_enter`, on this thread: no completion arrives while JavaScript is looking at the rings,
 * and reading the ring memory needs no atomics. The device and the wake eventfd are registered (fixed
 * files), which spares the per-request file lookup a plain read()/write() pays in a multi-threaded process.
 *
 * Measured on the project's 2-core machine against the C read/write loop: 1.02 to 1.06 times its CPU per
 * reply, where the poll()/read()/write() path through koffi needs about 1.25 (see README, Performance).
 *
 * Needs Linux 6.7 (multishot read) and io_uring allowed (kernel.io_uring_disabled, seccomp). DeviceRing.open()
 * returns the reason instead of a ring when it cannot be had; the caller falls back to poll()/read()/write().
 */
import { koffi } from './koffi.js';
import * as libc from './libc.js';

const lib = koffi.load('libc.so.6');

// System call numbers (x86_64) and the flags and opcodes of include/uapi/linux/io_uring.h used here.
const SYS_IO_URING_SETUP = 425;
const SYS_IO_URING_ENTER = 426;
const SYS_IO_URING_REGISTER = 427;
const SETUP_CQSIZE = 1 << 3;
const SETUP_SINGLE_ISSUER = 1 << 12;
const SETUP_DEFER_TASKRUN = 1 << 13;
const SETUP_NO_SQARRAY = 1 << 16;
const FEAT_SINGLE_MMAP = 1 << 0;
const FEAT_NODROP = 1 << 1;
const OFF_SQES = 0x10000000;
const ENTER_GETEVENTS = 1;
const ENTER_EXT_ARG = 8;
const REGISTER_FILES = 2;
const UNREGISTER_FILES = 3;
const REGISTER_PROBE = 8;
const REGISTER_PBUF_RING = 22;
const OP_POLL_ADD = 6;
const OP_ASYNC_CANCEL = 14;
const OP_READ = 22;
const OP_WRITE = 23;
const OP_READ_MULTISHOT = 49;
const SQE_FIXED_FILE = 1;
const SQE_BUFFER_SELECT = 32;
/** CQE flags: a provided buffer was used (its id in the upper 16 bits); more completions will follow. */
export const CQE_F_BUFFER = 1;
export const CQE_F_MORE = 2;
const PROT_READ_WRITE = 3;
const MAP_SHARED = 0x01;
const MAP_PRIVATE = 0x02;
const MAP_ANONYMOUS = 0x20;
const MAP_POPULATE = 0x8000;
const ETIME = 62;

// Variadic syscall() called through fixed prototypes: on x86_64 the arguments travel in registers either way.
const setupCall = lib.func('long syscall(long nr, uint32_t entries, void *params)') as (nr: number, entries: number, params: Buffer) => number;
const enterCall = lib.func('long syscall(long nr, int fd, uint32_t toSubmit, uint32_t minComplete, uint32_t flags, uintptr_t arg, size_t argSize)') as (
  nr: number,
  fd: number,
  toSubmit: number,
  minComplete: number,
  flags: number,
  arg: number,
  argSize: number,
) => number;
const registerCall = lib.func('long syscall(long nr, int fd, uint32_t op, void *arg, uint32_t count)') as (nr: number, fd: number, op: number, arg: Uint8Array | null, count: number) => number;
const mmap = lib.func('uintptr_t mmap(uintptr_t addr, size_t len, int prot, int flags, int fd, intptr_t off)') as (
  addr: number,
  len: number,
  prot: number,
  flags: number,
  fd: number,
  off: number,
) => number;
const munmap = lib.func('int munmap(uintptr_t addr, size_t len)') as (addr: number, len: number) => number;

function mapFailed(addr: number): boolean {
  return addr === 0 || addr >= 2 ** 63;
}

function errnoText(what: string): string {
  return `${what}: ${libc.errnoName(libc.errno())}`;
}

/** A region this module mapped, to unmap on close. */
interface Mapping {
  addr: number;
  size: number;
}

function mapAnonymous(size: number): Mapping | null {
  const addr = mmap(0, size, PROT_READ_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  return mapFailed(addr) ? null : { addr, size };
}

export interface RingOptions {
  /** The device's fd (registered as fixed file 0); or `deviceFds` for several devices. */
  deviceFd?: number;
  /** Several devices, registered as fixed files 0..n-1, each read into its own buffer group. */
  deviceFds?: number[];
  /** An eventfd whose becoming readable ends the wait (the fixed file after the devices). */
  wakeFd: number;
  /** Receive buffers per device in its provided-buffer ring (a power of two). */
  buffers?: number;
  /** Bytes per receive buffer: the largest packet the device can give. */
  bufferSize?: number;
}

/**
 * What a completion is for, in the low 32 bits of its user data: a kind in the low byte, with the device's
 * index in the next byte for reads (TAG_READ | device << 8).
 */
export const TAG_READ = 1;
export const TAG_WAKE = 2;
export const TAG_CANCEL = 3;
/** A poll of an fd that is not a device (a link watch): TAG_POLL | index << 8, the index the caller's. */
export const TAG_POLL = 4;
/** A write from receive buffer `id`: TAG_WRITE_BUFFER | id (| device << 24, see writeTag). */
export const TAG_WRITE_BUFFER = 0x10000;
/** A write from a caller's Buffer held in slot `n`: TAG_WRITE_OWNED | n (| device << 24). */
export const TAG_WRITE_OWNED = 0x20000;
/** The kind of a write's tag (0 for reads and the wake); the device a write went to is `tag >>> 24`. */
export const TAG_KIND = 0x00ff0000;

/** The tag of a write of `kind` for buffer or slot `id` to device `device`. */
export function writeTag(kind: number, id: number, device: number): number {
  return (kind | id | (device << 24)) >>> 0;
}

/** One device's provided-buffer ring: the ring the kernel takes buffers from, and how many it holds. */
interface BufferGroup {
  map: Mapping;
  ring: Uint32Array;
  ring16: Uint16Array;
  tail: number;
  published: number;
  available: number;
}

export class DeviceRing {
  readonly fd: number;
  /**
   * Receive buffers of every device: buffer `id` is bytes [id * bufferSize, (id + 1) * bufferSize); device
   * `d` reads into ids d * bufferCount .. (d + 1) * bufferCount - 1, so a buffer knows its device.
   */
  readonly buffers: Buffer;
  /** Buffers per device. */
  readonly bufferCount: number;
  readonly bufferSize: number;
  /** Devices registered (fixed files 0..devices-1; the wake eventfd is fixed file `devices`). */
  readonly devices: number;
  private readonly buffersAddr: number;
  private readonly ringMap: Mapping;
  private readonly sqeMap: Mapping;
  private readonly groups: BufferGroup[];
  private readonly bufMap: Mapping;
  /** The SQ and CQ rings, and the SQE array, as 32-bit words. */
  private readonly ring: Uint32Array;
  private readonly sqes: Uint32Array;
  private readonly sqHead: number;
  private readonly sqTail: number;
  private readonly sqMask: number;
  private readonly sqEntries: number;
  private readonly cqHead: number;
  private readonly cqTail: number;
  private readonly cqMask: number;
  private readonly cqes: number;
  /** The 8 bytes the wake read goes into, and the wait's timeout argument (io_uring_getevents_arg + timespec). */
  private readonly wakeBuf = Buffer.alloc(8);
  private readonly waitArg = Buffer.alloc(24 + 16);
  private readonly waitArgAddr: number;
  private closed = false;

  private constructor(fd: number, params: Buffer, maps: { ring: Mapping; sqes: Mapping; bufRings: Mapping[]; bufs: Mapping }, count: number, size: number) {
    this.fd = fd;
    this.ringMap = maps.ring;
    this.sqeMap = maps.sqes;
    this.bufMap = maps.bufs;
    this.ring = new Uint32Array(koffi.view(maps.ring.addr, maps.ring.size));
    this.sqes = new Uint32Array(koffi.view(maps.sqes.addr, maps.sqes.size));
    const sq = (k: number) => params.readUInt32LE(40 + k * 4) >> 2;
    const cq = (k: number) => params.readUInt32LE(80 + k * 4) >> 2;
    this.sqHead = sq(0);
    this.sqTail = sq(1);
    this.sqMask = this.ring[sq(2)];
    this.sqEntries = params.readUInt32LE(0);
    this.cqHead = cq(0);
    this.cqTail = cq(1);
    this.cqMask = this.ring[cq(2)];
    this.cqes = cq(5);
    this.bufferCount = count;
    this.bufferSize = size;
    this.devices = maps.bufRings.length;
    this.buffersAddr = maps.bufs.addr;
    this.buffers = Buffer.from(koffi.view(maps.bufs.addr, maps.bufs.size));
    this.groups = maps.bufRings.map((m) => {
      const ring = new Uint32Array(koffi.view(m.addr, m.size));
      return { map: m, ring, ring16: new Uint16Array(ring.buffer), tail: 0, published: 0, available: 0 };
    });
    for (let id = 0; id < count * this.devices; id++) this.recycle(id);
    this.publish();
    const argAddr = libc.addressOf(this.waitArg);
    this.waitArgAddr = argAddr;
    // io_uring_getevents_arg.ts points at the timespec that follows it.
    this.waitArg.writeBigUInt64LE(BigInt(argAddr + 24), 16);
  }

  /** The address of receive buffer `id`. */
  bufferAddress(id: number): number {
    return this.buffersAddr + id * this.bufferSize;
  }

  /** The device whose reads use receive buffer `id`. */
  deviceOf(id: number): number {
    return Math.floor(id / this.bufferCount);
  }

  /** Buffers device 0 (or `device`) can read into now. */
  get buffersAvailable(): number {
    return this.buffersAvailableFor(0);
  }

  buffersAvailableFor(device: number): number {
    const g = this.groups[device];
    return g.available + ((g.tail - g.published) & 0xffff);
  }

  /** Gives receive buffer `id` back to the kernel, to its device's group (seen by it after publish()). */
  recycle(id: number): void {
    const g = this.groups[Math.floor(id / this.bufferCount)];
    const at = (g.tail & (this.bufferCount - 1)) * 4;
    const addr = this.bufferAddress(id);
    // struct io_uring_buf { u64 addr; u32 len; u16 bid; u16 resv }
    g.ring[at] = addr % 0x100000000;
    g.ring[at + 1] = Math.floor(addr / 0x100000000);
    g.ring[at + 2] = this.bufferSize;
    g.ring16[at * 2 + 6] = id;
    g.tail = (g.tail + 1) & 0xffff;
  }

  /** Makes recycled buffers visible to the kernel: each ring's tail is the u16 at byte 14. */
  publish(): void {
    const groups = this.groups;
    for (let d = 0; d < groups.length; d++) {
      const g = groups[d];
      if (g.tail === g.published) continue;
      g.available += (g.tail - g.published) & 0xffff;
      g.published = g.tail;
      g.ring16[7] = g.tail;
    }
  }

  /** A read completion of `device` used a buffer: one fewer in its ring. */
  tookBuffer(device = 0): void {
    this.groups[device].available--;
  }

  /** Free SQ slots. */
  get sqSpace(): number {
    return this.sqEntries - this.queued;
  }

  /** Requests queued and not yet submitted. */
  get queued(): number {
    return (this.ring[this.sqTail] - this.ring[this.sqHead]) >>> 0;
  }

  private sqe(op: number, flags: number, file: number, addr: number, len: number, tag: number, bufGroup: number): void {
    const tail = this.ring[this.sqTail];
    const s = this.sqes;
    const o = (tail & this.sqMask) * 16;
    s[o] = op | (flags << 8);
    s[o + 1] = file;
    s[o + 2] = 0; // u64 off: 0, a TUN device has no file position
    s[o + 3] = 0;
    s[o + 4] = addr % 0x100000000;
    s[o + 5] = Math.floor(addr / 0x100000000);
    s[o + 6] = len;
    s[o + 7] = 0; // rw_flags
    s[o + 8] = tag; // user_data, low word
    s[o + 9] = 0;
    s[o + 10] = bufGroup; // buf_group (u16), personality (u16)
    s[o + 11] = 0;
    s[o + 12] = 0;
    s[o + 13] = 0;
    s[o + 14] = 0;
    s[o + 15] = 0;
    this.ring[this.sqTail] = tail + 1;
  }

  /** Arms the multishot read of a device (its own buffer group); completions carry TAG_READ | device << 8. */
  armRead(device = 0): void {
    this.sqe(OP_READ_MULTISHOT, SQE_FIXED_FILE | SQE_BUFFER_SELECT, device, 0, 0, TAG_READ | (device << 8), device);
  }

  /** The value the last wake read took from the eventfd. */
  wakeValue(): number {
    return Number(this.wakeBuf.readBigUInt64LE(0));
  }

  /** Arms a read of the wake eventfd: its completion ends the wait (the value says why). */
  armWake(): void {
    this.sqe(OP_READ, SQE_FIXED_FILE, this.devices, libc.addressOf(this.wakeBuf), 8, TAG_WAKE, 0);
  }

  /**
   * Arms a one-shot poll for readability of `fd` (any fd, not registered); its completion's result is the
   * poll mask, or minus an errno value.
   */
  armPoll(fd: number, index: number): void {
    this.sqe(OP_POLL_ADD, 0, fd, 0, 0, TAG_POLL | (index << 8), 0);
    // poll32_events sits where a read's rw_flags do.
    this.sqes[((this.ring[this.sqTail] - 1) & this.sqMask) * 16 + 7] = libc.POLLIN;
  }

  /** Cancels a device's multishot read (its last completion then comes without CQE_F_MORE). */
  cancelRead(device = 0): void {
    // IORING_OP_ASYNC_CANCEL matches on user_data, given in the addr field.
    this.sqe(OP_ASYNC_CANCEL, 0, 0, TAG_READ | (device << 8), 0, TAG_CANCEL, 0);
  }

  /** Queues a write of `len` bytes at `addr` to a device. The memory must stay as it is until completion. */
  queueWrite(addr: number, len: number, tag: number, device = 0): void {
    this.sqe(OP_WRITE, SQE_FIXED_FILE, device, addr, len, tag, 0);
  }

  /**
   * Submits what is queued and waits for at least `minComplete` completions, at most `timeoutMs` (-1: no
   * limit). Returns 0, or an errno value (ETIME when the time ran out, EINTR).
   */
  enter(minComplete: number, timeoutMs = -1): number {
    let flags = minComplete > 0 ? ENTER_GETEVENTS : 0;
    let arg = 0;
    let argSize = 0;
    if (minComplete > 0 && timeoutMs >= 0) {
      const a = this.waitArg;
      a.writeBigInt64LE(BigInt(Math.floor(timeoutMs / 1000)), 24);
      a.writeBigInt64LE(BigInt(Math.round((timeoutMs % 1000) * 1e6)), 32);
      flags |= ENTER_EXT_ARG;
      arg = this.waitArgAddr;
      argSize = 24;
    }
    const rc = enterCall(SYS_IO_URING_ENTER, this.fd, this.queued, minComplete, flags, arg, argSize);
    return rc < 0 ? libc.errno() : 0;
  }

  /** True when completions are waiting. */
  get hasCompletions(): boolean {
    return this.ring[this.cqHead] !== this.ring[this.cqTail];
  }

  /** Completions waiting to be drained. */
  get completionsWaiting(): number {
    return (this.ring[this.cqTail] - this.ring[this.cqHead]) >>> 0;
  }

  /**
   * Hands each waiting completion (at most `max`) to `take(tag, result, flags)` and frees its slot.
   * Completions that arrive meanwhile (none can, with DEFER_TASKRUN) wait for the next call.
   */
  drainCompletions(take: (tag: number, result: number, flags: number) => void, max = Infinity): number {
    const r = this.ring;
    let head = r[this.cqHead];
    const tail = r[this.cqTail];
    let n = 0;
    while (head !== tail && n < max) {
      const o = this.cqes + (head & this.cqMask) * 4;
      const tag = r[o];
      const result = r[o + 2] | 0;
      const flags = r[o + 3];
      head = (head + 1) >>> 0;
      n++;
      take(tag, result, flags);
    }
    r[this.cqHead] = head;
    return n;
  }

  /**
   * Closes the ring and unmaps its memory. The device is unregistered first: the kernel tears a closed ring
   * down later, in a work queue, and a device tunpipe created must be gone when tunpipe has exited.
   */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    registerCall(SYS_IO_URING_REGISTER, this.fd, UNREGISTER_FILES, null, 0);
    libc.close(this.fd);
    for (const m of [this.ringMap, this.sqeMap, ...this.groups.map((g) => g.map), this.bufMap]) munmap(m.addr, m.size);
  }

  static readonly ETIME = ETIME;

  /**
   * Sets up a ring for the device, or says why not (kernel too old, io_uring disabled or filtered, ...).
   */
  static open(options: RingOptions): DeviceRing | string {
    const deviceFds = options.deviceFds ?? (options.deviceFd !== undefined ? [options.deviceFd] : []);
    if (deviceFds.length === 0) return 'no device to read';
    const count = options.buffers ?? 128;
    if (count * deviceFds.length > 65536) return `too many receive buffers: ${count} for each of ${deviceFds.length} devices (at most 65536 in all)`;
    const size = options.bufferSize ?? 65536;
    const params = Buffer.alloc(120);
    params.writeUInt32LE(1024, 4); // cq_entries: room for every read and write in flight
    params.writeUInt32LE(SETUP_SINGLE_ISSUER | SETUP_DEFER_TASKRUN | SETUP_NO_SQARRAY | SETUP_CQSIZE, 8);
    const fd = setupCall(SYS_IO_URING_SETUP, 256, params);
    if (fd < 0) return errnoText('io_uring_setup');
    const maps: Mapping[] = [];
    const fail = (why: string): string => {
      for (const m of maps) munmap(m.addr, m.size);
      libc.close(fd);
      return why;
    };
    const features = params.readUInt32LE(20);
    if (!(features & FEAT_SINGLE_MMAP) || !(features & FEAT_NODROP)) return fail('io_uring lacks single-mmap rings or no-drop completions');
    const probe = Buffer.alloc(16 + 256 * 8);
    if (registerCall(SYS_IO_URING_REGISTER, fd, REGISTER_PROBE, probe, 256) < 0) return fail(errnoText('io_uring probe'));
    const supported = (op: number) => op <= probe[0] && (probe.readUInt16LE(16 + op * 8 + 2) & 1) !== 0;
    for (const op of [OP_READ_MULTISHOT, OP_READ, OP_WRITE, OP_ASYNC_CANCEL, OP_POLL_ADD]) {
      if (!supported(op)) return fail(`io_uring lacks opcode ${op} (multishot read needs Linux 6.7)`);
    }
    const sqEntries = params.readUInt32LE(0);
    const cqEntries = params.readUInt32LE(4);
    const ringSize = Math.max(params.readUInt32LE(40 + 6 * 4) + sqEntries * 4, params.readUInt32LE(80 + 5 * 4) + cqEntries * 16);
    const ringAddr = mmap(0, ringSize, PROT_READ_WRITE, MAP_SHARED | MAP_POPULATE, fd, 0);
    if (mapFailed(ringAddr)) return fail(errnoText('mapping the io_uring rings'));
    maps.push({ addr: ringAddr, size: ringSize });
    const sqeAddr = mmap(0, sqEntries * 64, PROT_READ_WRITE, MAP_SHARED | MAP_POPULATE, fd, OFF_SQES);
    if (mapFailed(sqeAddr)) return fail(errnoText('mapping the io_uring requests'));
    maps.push({ addr: sqeAddr, size: sqEntries * 64 });
    const n = deviceFds.length;
    const files = Buffer.alloc(4 * (n + 1));
    deviceFds.forEach((d, i) => files.writeInt32LE(d, 4 * i));
    files.writeInt32LE(options.wakeFd, 4 * n);
    if (registerCall(SYS_IO_URING_REGISTER, fd, REGISTER_FILES, files, n + 1) < 0) return fail(errnoText('registering the device with io_uring'));
    const bufRings: Mapping[] = [];
    for (let g = 0; g < n; g++) {
      const bufRing = mapAnonymous(count * 16);
      if (!bufRing) return fail(errnoText('mapping the buffer ring'));
      maps.push(bufRing);
      bufRings.push(bufRing);
      // struct io_uring_buf_reg { u64 ring_addr; u32 ring_entries; u16 bgid; u16 flags; u64 resv[3] }
      const reg = Buffer.alloc(40);
      reg.writeBigUInt64LE(BigInt(bufRing.addr), 0);
      reg.writeUInt32LE(count, 8);
      reg.writeUInt16LE(g, 12);
      if (registerCall(SYS_IO_URING_REGISTER, fd, REGISTER_PBUF_RING, reg, 1) < 0) return fail(errnoText('registering the receive buffers'));
    }
    const bufs = mapAnonymous(count * size * n);
    if (!bufs) return fail(errnoText('mapping the receive buffers'));
    maps.push(bufs);
    return new DeviceRing(fd, params, { ring: maps[0], sqes: maps[1], bufRings, bufs }, count, size);
  }
}
