/**
 * The few libc calls the device layer needs, bound once through koffi. Every call returns -1 on failure and
 * leaves the reason in `errno()`, which must be read right after the call (before any other FFI call).
 */
import { koffi } from './koffi.js';

const libc = koffi.load('libc.so.6');

export const open = libc.func('int open(const char *path, int flags)') as (path: string, flags: number) => number;
export const close = libc.func('int close(int fd)') as (fd: number) => number;
const fcntlInt = libc.func('int fcntl(int fd, int cmd, int arg)') as (fd: number, cmd: number, arg: number) => number;
const F_DUPFD_CLOEXEC = 1030;
/** A duplicate of `fd` (the same open file), closed on exec, numbered `lowest` or above; -1 with errno on failure. */
export const dupCloexec = (fd: number, lowest = 0): number => fcntlInt(fd, F_DUPFD_CLOEXEC, lowest);
// ssize_t is not a koffi type name; intptr_t has its size.
export const read = libc.func('intptr_t read(int fd, void *buf, size_t count)') as (fd: number, buf: Uint8Array, count: number) => number;
/** read() into raw memory: the drain loop passes slab address + offset, which allocates nothing per call. */
export const readAt = libc.func('intptr_t read(int fd, uintptr_t buf, size_t count)') as (fd: number, addr: number, count: number) => number;
/** write() from raw memory: the worker's reused receive buffer, by address (no Buffer unwrapped per call). */
export const writeAt = libc.func('intptr_t write(int fd, uintptr_t buf, size_t count)') as (fd: number, addr: number, count: number) => number;
export const write = libc.func('intptr_t write(int fd, void *buf, size_t count)') as (fd: number, buf: Uint8Array, count: number) => number;
/** ioctl is variadic: its third argument is passed as a (type, value) pair. */
const ioctlRaw = libc.func('int ioctl(int fd, unsigned long request, ...)');
/** send(2) on a socket; with MSG_DONTWAIT it never blocks (-1, EAGAIN, instead). */
export const send = libc.func('intptr_t send(int fd, const void *buf, size_t len, int flags)') as (fd: number, buf: Uint8Array, len: number, flags: number) => number;
export const socket = libc.func('int socket(int domain, int type, int protocol)') as (d: number, t: number, p: number) => number;
export const eventfd = libc.func('int eventfd(unsigned int initval, int flags)') as (v: number, flags: number) => number;
export const setuid = libc.func('int setuid(uint32_t uid)') as (uid: number) => number;
export const setgid = libc.func('int setgid(uint32_t gid)') as (gid: number) => number;
export const setgroups = libc.func('int setgroups(size_t size, const uint32_t *list)') as (n: number, list: Uint32Array | null) => number;
export const strerror = libc.func('const char *strerror(int errnum)') as (e: number) => string;
/** prctl() is variadic; on x86_64 its integer arguments travel in registers either way. */
export const prctl = libc.func('int prctl(int option, unsigned long a2, unsigned long a3, unsigned long a4, unsigned long a5)') as (o: number, a2: number, a3: number, a4: number, a5: number) => number;
export const PR_SET_TIMERSLACK = 29;

/** The pollfd array layout: int fd, short events, short revents. */
const pollFn = libc.func('int poll(void *fds, unsigned long nfds, int timeout)');
/** A blocking poll(), for a worker thread that has nothing else to do while it waits. */
export const pollSync = pollFn as (fds: Buffer, nfds: number, timeout: number) => number;
const ppollFn = libc.func('int ppoll(void *fds, unsigned long nfds, void *timeout, void *sigmask)') as (fds: Buffer, nfds: number, timeout: Buffer | null, sigmask: null) => number;
const ppollTimeout = Buffer.alloc(16);
/**
 * A blocking poll() with a timeout to the microsecond (poll() counts whole milliseconds, which would make
 * a delayed packet late by up to one): `timeoutMs` < 0 waits until something is ready.
 */
export function pollSyncPrecise(fds: Buffer, nfds: number, timeoutMs: number): number {
  if (timeoutMs < 0) return ppollFn(fds, nfds, null, null);
  const ns = Math.round(timeoutMs * 1e6);
  ppollTimeout.writeBigInt64LE(BigInt(Math.floor(ns / 1e9)), 0);
  ppollTimeout.writeBigInt64LE(BigInt(ns % 1e9), 8);
  return ppollFn(fds, nfds, ppollTimeout, null);
}
export const pollAsync = (fds: Buffer, nfds: number, timeout: number): Promise<number> =>
  new Promise((resolve, reject) => {
    pollFn.async(fds, nfds, timeout, (err: unknown, res: number) => (err ? reject(err) : resolve(res)));
  });

export function ioctlPtr(fd: number, request: number, arg: Uint8Array): number {
  return ioctlRaw(fd, request, 'void *', arg) as number;
}

export function ioctlInt(fd: number, request: number, arg: number): number {
  return ioctlRaw(fd, request, 'unsigned long', arg) as number;
}

/** The address of a Buffer's memory, as a number (addresses fit in 2^53). The Buffer must stay referenced. */
export function addressOf(buf: Buffer): number {
  return Number(koffi.address(buf));
}

export function errno(): number {
  return koffi.errno();
}

export const O_RDWR = 0o2;
export const O_NONBLOCK = 0o4000;
export const O_CLOEXEC = 0o2000000;
export const MSG_DONTWAIT = 0x40;
export const MSG_NOSIGNAL = 0x4000;
export const AF_INET = 2;
export const AF_INET6 = 10;
export const SOCK_DGRAM = 2;
export const SOCK_CLOEXEC = 0o2000000;
export const EFD_CLOEXEC = 0o2000000;
export const EFD_NONBLOCK = 0o4000;
export const POLLIN = 0x001;
export const POLLERR = 0x008;
export const POLLHUP = 0x010;
export const POLLNVAL = 0x020;

/** errno values the device layer tells apart. */
export const E = {
  EPERM: 1,
  ENOENT: 2,
  EINTR: 4,
  EIO: 5,
  EBADF: 9,
  EAGAIN: 11,
  ENOMEM: 12,
  EACCES: 13,
  EFAULT: 14,
  EBUSY: 16,
  EEXIST: 17,
  ENODEV: 19,
  EINVAL: 22,
  ENOSPC: 28,
  EMSGSIZE: 90,
  EADDRNOTAVAIL: 99,
  EBADFD: 77,
  ENXIO: 6,
  ENOSYS: 38,
  ENOBUFS: 105,
} as const;

/** The symbolic name for an errno value, for messages ("EBUSY"). */
export function errnoName(e: number): string {
  for (const [k, v] of Object.entries(E)) if (v === e) return k;
  return `errno ${e}`;
}
