/**
 * Interface configuration through the classic socket ioctls (what `ip` and `ifconfig` do underneath):
 * addresses, netmask, MTU, link up. Run in the process's own network namespace, so a device created inside
 * `ip netns exec` is configured there.
 */
import * as libc from './libc.js';
import { parseIPv4Address } from '../packet/ipv4.js';
import { parseIPv6Address } from '../packet/ipv6-address.js';
import { TunpipeError } from '../errors.js';

const SIOCGIFFLAGS = 0x8913;
const SIOCSIFFLAGS = 0x8914;
const SIOCSIFADDR = 0x8916;
const SIOCSIFNETMASK = 0x891c;
const SIOCGIFMTU = 0x8921;
const SIOCSIFMTU = 0x8922;
const SIOCGIFINDEX = 0x8933;
const IFF_UP = 0x1;
const IFREQ_SIZE = 40;
const IFNAMSIZ = 16;

/** A parsed `--addr` value. */
export interface InterfaceAddress {
  family: 4 | 6;
  bytes: Buffer;
  prefix: number;
  text: string;
}

/** Parses CIDR text such as `198.18.0.1/24` or `2001:db8::1/64`; throws a TunpipeError saying what is wrong. */
export function parseCidr(text: string): InterfaceAddress {
  const slash = text.lastIndexOf('/');
  const host = slash < 0 ? text : text.slice(0, slash);
  const v4 = parseIPv4Address(host);
  const family: 4 | 6 = v4 !== null ? 4 : 6;
  const max = family === 4 ? 32 : 128;
  const prefix = slash < 0 ? max : Number(text.slice(slash + 1));
  if (!Number.isInteger(prefix) || prefix < 0 || prefix > max || (slash >= 0 && text.slice(slash + 1) === '')) {
    throw new TunpipeError(`bad address '${text}': the prefix length must be 0..${max} (e.g. 198.18.0.1/24)`);
  }
  let bytes: Buffer;
  if (v4 !== null) {
    bytes = Buffer.alloc(4);
    bytes.writeUInt32BE(v4);
  } else {
    const v6 = parseIPv6Address(host);
    if (!v6) throw new TunpipeError(`bad address '${text}': expected IPv4 or IPv6 CIDR such as 198.18.0.1/24 or 2001:db8::1/64`);
    bytes = v6;
  }
  return { family, bytes, prefix, text };
}

function ifreq(name: string): Buffer {
  const b = Buffer.alloc(IFREQ_SIZE);
  b.write(name, 0, IFNAMSIZ - 1, 'latin1');
  return b;
}

function withSocket<T>(family: number, fn: (sock: number) => T): T {
  const sock = libc.socket(family, libc.SOCK_DGRAM | libc.SOCK_CLOEXEC, 0);
  if (sock < 0) throw new TunpipeError(`cannot open a control socket: ${libc.errnoName(libc.errno())}`);
  try {
    return fn(sock);
  } finally {
    libc.close(sock);
  }
}

function check(rc: number, what: string, dev: string): void {
  if (rc >= 0) return;
  const e = libc.errno();
  const hint =
    e === libc.E.EPERM || e === libc.E.EACCES
      ? ' (needs CAP_NET_ADMIN: run as root, or configure the device with `ip` and drop --addr/--mtu)'
      : e === libc.E.ENODEV
        ? ' (the device is gone)'
        : e === libc.E.EINVAL
          ? ' (value refused by the kernel)'
          : '';
  throw new TunpipeError(`cannot ${what} on ${dev}: ${libc.errnoName(e)}${hint}`);
}

/** Brings the interface up (IFF_UP), keeping its other flags. */
export function setLinkUp(dev: string): void {
  withSocket(libc.AF_INET, (sock) => {
    const r = ifreq(dev);
    check(libc.ioctlPtr(sock, SIOCGIFFLAGS, r), 'read the link flags', dev);
    r.writeUInt16LE(r.readUInt16LE(16) | IFF_UP, 16);
    check(libc.ioctlPtr(sock, SIOCSIFFLAGS, r), 'bring the link up', dev);
  });
}

export function setMtu(dev: string, mtu: number): void {
  withSocket(libc.AF_INET, (sock) => {
    const r = ifreq(dev);
    r.writeInt32LE(mtu, 16);
    check(libc.ioctlPtr(sock, SIOCSIFMTU, r), `set the MTU to ${mtu}`, dev);
  });
}

export function getMtu(dev: string): number {
  return withSocket(libc.AF_INET, (sock) => {
    const r = ifreq(dev);
    check(libc.ioctlPtr(sock, SIOCGIFMTU, r), 'read the MTU', dev);
    return r.readInt32LE(16);
  });
}

function ifIndex(sock: number, dev: string): number {
  const r = ifreq(dev);
  check(libc.ioctlPtr(sock, SIOCGIFINDEX, r), 'find the interface index', dev);
  return r.readInt32LE(16);
}

function sockaddrIn(dev: string, addr: Buffer): Buffer {
  const r = ifreq(dev);
  r.writeUInt16LE(libc.AF_INET, 16);
  addr.copy(r, 20);
  return r;
}

/** Adds an address to the interface. An address it already has is not an error (a persistent device). */
export function addAddress(dev: string, a: InterfaceAddress): void {
  if (a.family === 4) {
    withSocket(libc.AF_INET, (sock) => {
      check(libc.ioctlPtr(sock, SIOCSIFADDR, sockaddrIn(dev, a.bytes)), `assign ${a.text}`, dev);
      const mask = Buffer.alloc(4);
      mask.writeUInt32BE(a.prefix === 0 ? 0 : (0xffffffff << (32 - a.prefix)) >>> 0);
      check(libc.ioctlPtr(sock, SIOCSIFNETMASK, sockaddrIn(dev, mask)), `set the netmask of ${a.text}`, dev);
    });
    return;
  }
  withSocket(libc.AF_INET6, (sock) => {
    // struct in6_ifreq: in6_addr, u32 prefix length, int ifindex.
    const r = Buffer.alloc(24);
    a.bytes.copy(r, 0);
    r.writeUInt32LE(a.prefix, 16);
    r.writeInt32LE(ifIndex(sock, dev), 20);
    const rc = libc.ioctlPtr(sock, SIOCSIFADDR, r);
    if (rc < 0 && libc.errno() === libc.E.EEXIST) return;
    check(rc, `assign ${a.text}`, dev);
  });
}
