/**
 * Interface addresses through rtnetlink (RFC 3549; linux/rtnetlink.h, linux/if_addr.h), what `ip addr` does
 * underneath: RTM_NEWADDR adds an address beside the ones a device has (SIOCSIFADDR would replace the IPv4
 * one), RTM_GETADDR lists them. A NETLINK_ROUTE socket is opened per call in the calling thread's network
 * namespace, which is the one the device was created in. And link events, as `ip monitor link` sees them
 * (openLinkWatch).
 */
import { koffi } from './koffi.js';
import * as libc from './libc.js';
import { TunpipeError } from '../errors.js';

const lib = koffi.load('libc.so.6');
const bind = lib.func('int bind(int fd, const void *addr, uint32_t len)') as (fd: number, addr: Buffer, len: number) => number;
const sendto = lib.func('intptr_t sendto(int fd, const void *buf, size_t len, int flags, const void *addr, uint32_t alen)') as (
  fd: number,
  buf: Buffer,
  len: number,
  flags: number,
  addr: Buffer,
  alen: number,
) => number;
const recv = lib.func('intptr_t recv(int fd, void *buf, size_t len, int flags)') as (fd: number, buf: Buffer, len: number, flags: number) => number;
const setsockopt = lib.func('int setsockopt(int fd, int level, int name, const void *val, uint32_t len)') as (fd: number, level: number, name: number, val: Buffer, len: number) => number;
const ifNameToIndex = lib.func('unsigned int if_nametoindex(const char *name)') as (name: string) => number;

const AF_NETLINK = 16;
const SOCK_RAW = 3;
const NETLINK_ROUTE = 0;
const SOL_SOCKET = 1;
const SO_RCVTIMEO = 20;

/** The multicast group of link changes (RTM_NEWLINK, RTM_DELLINK), as a bind()'s nl_groups bit. */
const RTMGRP_LINK = 1;
const SOCK_NONBLOCK = 0o4000;
const MSG_DONTWAIT = 0x40;

const NLMSG_ERROR = 2;
const NLMSG_DONE = 3;
const RTM_NEWADDR = 20;
const RTM_GETADDR = 22;
const NLM_F_REQUEST = 0x1;
const NLM_F_ACK = 0x4;
const NLM_F_DUMP = 0x300;
const NLM_F_EXCL = 0x200;
const NLM_F_CREATE = 0x400;
const IFA_ADDRESS = 1;
const IFA_LOCAL = 2;

const NLMSG_HEADER = 16;
const IFADDRMSG = 8;

/** An address a device has, as RTM_GETADDR reports it. */
export interface DeviceAddress {
  family: 4 | 6;
  /** `198.18.0.1/24`, `2001:db8::1/64` (IPv6 in its shortest form). */
  text: string;
  prefix: number;
  /** RT_SCOPE_*: 0 universe (global), 253 link, 254 host. */
  scope: number;
}

/** The interface index of `dev` in the calling thread's namespace, 0 when there is no such device. */
export function interfaceIndex(dev: string): number {
  return ifNameToIndex(dev);
}

function align4(n: number): number {
  return (n + 3) & ~3;
}

function kernelAddress(): Buffer {
  const a = Buffer.alloc(12);
  a.writeUInt16LE(AF_NETLINK, 0);
  return a;
}

/**
 * A non-blocking NETLINK_ROUTE socket of the calling thread's namespace that becomes readable whenever a
 * link there changes (RTMGRP_LINK), or -1 when the kernel gives none. A device loop waits on it beside its
 * devices, because a deleted TUN device does not always wake a reader that waits on it: the kernel wakes
 * the readers before it detaches their queue (tun_detach_all), so a reader that looks at once finds the
 * queue attached and empty, and waits again for good. The kernel announces the deletion (RTM_DELLINK)
 * after the detach, so on that event a loop asks each device whether it is still attached (tun.ts
 * goneAfterLinkEvent).
 */
export function openLinkWatch(): number {
  const fd = libc.socket(AF_NETLINK, SOCK_RAW | SOCK_NONBLOCK | libc.SOCK_CLOEXEC, NETLINK_ROUTE);
  if (fd < 0) return -1;
  const local = kernelAddress();
  local.writeUInt32LE(RTMGRP_LINK, 8);
  if (bind(fd, local, local.length) < 0) {
    libc.close(fd);
    return -1;
  }
  return fd;
}

let watchBuffer: Buffer | null = null;

/**
 * Reads every event waiting on a link watch (openLinkWatch), so that it waits again; what they say is not
 * needed (the caller asks the devices themselves). An overrun (ENOBUFS: events were lost) is only a sign
 * that something changed, like an event.
 */
export function drainLinkWatch(fd: number): void {
  const buf = (watchBuffer ??= Buffer.alloc(16 * 1024));
  for (let i = 0; i < 1024; i++) {
    const n = recv(fd, buf, buf.length, MSG_DONTWAIT);
    if (n < 0) {
      const e = libc.errno();
      if (e === libc.E.EINTR || e === libc.E.ENOBUFS) continue;
      return;
    }
  }
}

function withRouteSocket<T>(fn: (fd: number) => T): T {
  const fd = libc.socket(AF_NETLINK, SOCK_RAW | libc.SOCK_CLOEXEC, NETLINK_ROUTE);
  if (fd < 0) throw new TunpipeError(`cannot open a netlink socket: ${libc.errnoName(libc.errno())}`);
  try {
    const local = kernelAddress();
    if (bind(fd, local, local.length) < 0) throw new TunpipeError(`cannot bind a netlink socket: ${libc.errnoName(libc.errno())}`);
    // The kernel answers at once; the timeout only keeps a broken kernel from hanging the start-up.
    const tv = Buffer.alloc(16);
    tv.writeBigInt64LE(2n, 0);
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, tv, tv.length);
    return fn(fd);
  } finally {
    libc.close(fd);
  }
}

let sequence = Math.floor(Date.now() / 1000) & 0x7fffffff;

function send(fd: number, type: number, flags: number, body: Buffer): number {
  const seq = ++sequence;
  const msg = Buffer.alloc(NLMSG_HEADER + body.length);
  msg.writeUInt32LE(msg.length, 0);
  msg.writeUInt16LE(type, 4);
  msg.writeUInt16LE(flags, 6);
  msg.writeUInt32LE(seq, 8);
  body.copy(msg, NLMSG_HEADER);
  const to = kernelAddress();
  if (sendto(fd, msg, msg.length, 0, to, to.length) !== msg.length) {
    throw new TunpipeError(`cannot send to the kernel's netlink socket: ${libc.errnoName(libc.errno())}`);
  }
  return seq;
}

/**
 * Reads the kernel's answers to request `seq` and hands each message (type, payload) to `onMessage` until
 * the ACK or the end of a dump. Returns 0, or the errno the kernel answered with.
 */
function receive(fd: number, seq: number, onMessage: (type: number, body: Buffer) => void): number {
  const buf = Buffer.alloc(64 * 1024);
  for (;;) {
    const n = recv(fd, buf, buf.length, 0);
    if (n < 0) {
      const e = libc.errno();
      if (e === libc.E.EINTR) continue;
      throw new TunpipeError(`no answer from the kernel's netlink socket: ${libc.errnoName(e)}`);
    }
    let at = 0;
    while (at + NLMSG_HEADER <= n) {
      const len = buf.readUInt32LE(at);
      const type = buf.readUInt16LE(at + 4);
      const mseq = buf.readUInt32LE(at + 8);
      if (len < NLMSG_HEADER || at + len > n) break;
      if (mseq === seq) {
        if (type === NLMSG_DONE) return 0;
        if (type === NLMSG_ERROR) return -buf.readInt32LE(at + NLMSG_HEADER);
        onMessage(type, buf.subarray(at + NLMSG_HEADER, at + len));
      }
      at += align4(len);
    }
  }
}

function attribute(type: number, value: Buffer): Buffer {
  const a = Buffer.alloc(align4(4 + value.length));
  a.writeUInt16LE(4 + value.length, 0);
  a.writeUInt16LE(type, 2);
  value.copy(a, 4);
  return a;
}

function indexOrThrow(dev: string): number {
  const index = ifNameToIndex(dev);
  if (index === 0) throw new TunpipeError(`cannot configure ${dev}: no such device (ENODEV)`, 'ENODEV');
  return index;
}

/**
 * Adds `bytes`/`prefix` (4 or 16 bytes) to `dev`, beside the addresses it has. An address the device already
 * has is not an error (a persistent device); any other refusal is a TunpipeError saying why.
 */
export function addAddressNetlink(dev: string, family: 4 | 6, bytes: Buffer, prefix: number, text: string): void {
  const index = indexOrThrow(dev);
  const head = Buffer.alloc(IFADDRMSG);
  head[0] = family === 4 ? libc.AF_INET : libc.AF_INET6;
  head[1] = prefix;
  head.writeUInt32LE(index, 4);
  const body = Buffer.concat([head, attribute(IFA_LOCAL, bytes), attribute(IFA_ADDRESS, bytes)]);
  const e = withRouteSocket((fd) => receive(fd, send(fd, RTM_NEWADDR, NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL, body), () => {}));
  if (e === 0 || e === libc.E.EEXIST) return;
  const hint =
    e === libc.E.EPERM || e === libc.E.EACCES
      ? ' (needs CAP_NET_ADMIN: run as root, or configure the device with `ip` and drop --addr)'
      : e === libc.E.ENODEV
        ? ' (the device is gone)'
        : e === libc.E.EINVAL
          ? ' (value refused by the kernel)'
          : '';
  throw new TunpipeError(`cannot assign ${text} on ${dev}: ${libc.errnoName(e)}${hint}`, libc.errnoName(e));
}

/** Shortest text of 16 IPv6 address bytes (RFC 5952: lower case, the longest run of zero words as `::`). */
function ipv6Text(b: Buffer): string {
  const words: number[] = [];
  for (let i = 0; i < 16; i += 2) words.push(b.readUInt16BE(i));
  let best = -1;
  let bestLen = 1;
  for (let i = 0; i < 8; ) {
    if (words[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && words[j] === 0) j++;
    if (j - i > bestLen) {
      best = i;
      bestLen = j - i;
    }
    i = j;
  }
  const hex = (ws: number[]) => ws.map((w) => w.toString(16)).join(':');
  return best < 0 ? hex(words) : `${hex(words.slice(0, best))}::${hex(words.slice(best + bestLen))}`;
}

/** The addresses `dev` has now (RTM_GETADDR), IPv4 first, in the kernel's order. */
export function listAddresses(dev: string): DeviceAddress[] {
  const index = indexOrThrow(dev);
  const out: DeviceAddress[] = [];
  const req = Buffer.alloc(IFADDRMSG);
  const e = withRouteSocket((fd) =>
    receive(fd, send(fd, RTM_GETADDR, NLM_F_REQUEST | NLM_F_DUMP, req), (type, body) => {
      if (type !== RTM_NEWADDR || body.length < IFADDRMSG || body.readUInt32LE(4) !== index) return;
      const family = body[0] === libc.AF_INET ? 4 : body[0] === libc.AF_INET6 ? 6 : 0;
      if (family === 0) return;
      const prefix = body[1];
      const scope = body[3];
      let local: Buffer | null = null;
      let address: Buffer | null = null;
      for (let at = IFADDRMSG; at + 4 <= body.length; ) {
        const len = body.readUInt16LE(at);
        const t = body.readUInt16LE(at + 2);
        if (len < 4 || at + len > body.length) break;
        const v = body.subarray(at + 4, at + len);
        if (t === IFA_LOCAL) local = v;
        else if (t === IFA_ADDRESS) address = v;
        at += align4(len);
      }
      const a = local ?? address;
      if (!a || a.length !== (family === 4 ? 4 : 16)) return;
      const host = family === 4 ? [...a].join('.') : ipv6Text(Buffer.from(a));
      out.push({ family, text: `${host}/${prefix}`, prefix, scope });
    }),
  );
  if (e !== 0) throw new TunpipeError(`cannot list the addresses of ${dev}: ${libc.errnoName(e)}`, libc.errnoName(e));
  return out.sort((x, y) => x.family - y.family);
}
