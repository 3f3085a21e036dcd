/**
 * Interface configuration: MTU and link state through the classic socket ioctls, addresses through rtnetlink
 * (./netlink.ts: RTM_NEWADDR adds beside what is there, where SIOCSIFADDR would replace the IPv4 address),
 * IPv6 on or off through /proc/sys/net/ipv6/conf/DEV. Run in the calling thread's network namespace, so a
 * device created inside `ip netns exec` (or after a setns) is configured there.
 */
import { writeFileSync } from 'node:fs';
import * as libc from './libc.js';
import { parseIPv4Address } from '../packet/ipv4.js';
import { parseIPv6Address } from '../packet/ipv6-address.js';
import { TunpipeError, UsageError } from '../errors.js';
import { addAddressNetlink } from './netlink.js';
export { listAddresses, interfaceIndex, type DeviceAddress } from './netlink.js';

const SIOCGIFFLAGS = 0x8913;
const SIOCSIFFLAGS = 0x8914;
const SIOCGIFMTU = 0x8921;
const SIOCSIFMTU = 0x8922;
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

const PREFIX = /^(0|[1-9]\d{0,2})$/;

/**
 * Parses CIDR text such as `198.18.0.1/24` or `2001:db8::1/64`. Throws a UsageError saying what is wrong for
 * anything else, guessing nothing: the prefix length is required (a bare address would become a /32 or
 * /128, leaving every peer "unreachable"), decimal without sign, leading zero, hex or exponent (`/0x10`,
 * `/1e1`, `/024`), and IPv4 octets are decimal without leading zeros (`198.18.0.010`).
 */
export function parseCidr(text: string): InterfaceAddress {
  const slash = text.indexOf('/');
  const host = slash < 0 ? text : text.slice(0, slash);
  const v4 = parseIPv4Address(host);
  const v6 = v4 === null ? parseIPv6Address(host) : null;
  if (v4 === null && v6 === null) {
    const leadingZero = /^\d+\.\d+\.\d+\.\d+$/.test(host) ? ' (IPv4 octets are 0..255, written without leading zeros)' : '';
    throw new UsageError(`bad address '${text}': expected an IPv4 or IPv6 address with a prefix length, such as 198.18.0.1/24 or 2001:db8::1/64${leadingZero}`);
  }
  const family: 4 | 6 = v4 !== null ? 4 : 6;
  const max = family === 4 ? 32 : 128;
  const example = family === 4 ? `${host}/24` : `${host}/64`;
  if (slash < 0) {
    throw new UsageError(`address '${text}' has no prefix length: write ${example} for a subnet with peers in it (a lone /${max} leaves every peer unreachable; write /${max} to mean it)`);
  }
  const ptext = text.slice(slash + 1);
  const prefix = PREFIX.test(ptext) ? Number(ptext) : NaN;
  if (!(prefix >= 0 && prefix <= max)) {
    throw new UsageError(`bad address '${text}': the prefix length must be a decimal number 0..${max} (e.g. ${example})`);
  }
  let bytes: Buffer;
  if (v4 !== null) {
    bytes = Buffer.alloc(4);
    bytes.writeUInt32BE(v4);
  } else {
    bytes = v6!;
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

/** Adds an address to the interface, beside the ones it has. An address it already has is not an error. */
export function addAddress(dev: string, a: InterfaceAddress): void {
  addAddressNetlink(dev, a.family, a.bytes, a.prefix, a.text);
}

/**
 * Sets one of the per-device IPv6 sysctls, /proc/sys/net/ipv6/conf/DEV/NAME, in the calling thread's network
 * namespace. Returns false when that could not be done (no permission, IPv6 absent from the kernel).
 */
function setIPv6Conf(dev: string, name: string, value: string): boolean {
  if (!/^[^/\0.][^/\0]*$/.test(dev)) return false;
  try {
    writeFileSync(`/proc/sys/net/ipv6/conf/${dev}/${name}`, `${value}\n`);
    return true;
  } catch {
    return false;
  }
}

/**
 * Stops the kernel from sending router solicitations into `dev` when it comes up (router_solicitations=0):
 * nothing behind a tunpipe device is a router unless a pipeline makes one, and the solicitation would reach
 * the pipeline as a packet nobody sent. Router advertisements that do arrive are still accepted.
 */
export function setRouterSolicitations(dev: string, count: number): boolean {
  return setIPv6Conf(dev, 'router_solicitations', String(count));
}

/**
 * Turns IPv6 off (or on) on `dev` through /proc/sys/net/ipv6/conf/DEV/disable_ipv6, in the calling thread's
 * namespace. Off, the kernel gives the device no link-local address and sends no router solicitations or MLD
 * reports into it. Returns false when that could not be done (no permission, IPv6 absent from the kernel).
 */
export function setIPv6Enabled(dev: string, enabled: boolean): boolean {
  return setIPv6Conf(dev, 'disable_ipv6', enabled ? '0' : '1');
}
