/**
 * Link-layer settings of an interface through the socket ioctls: a TAP device's Ethernet address; and its
 * TX drop counter, where a kernel filter's rejections are counted.
 */
import { readFileSync } from 'node:fs';
import * as libc from './libc.js';
import { TunpipeError } from '../errors.js';

const SIOCSIFHWADDR = 0x8924;
const ARPHRD_ETHER = 1;

/** Sets the Ethernet address of `dev` ("02:00:00:00:00:01"). */
export function setMac(dev: string, mac: string): void {
  const sock = libc.socket(libc.AF_INET, libc.SOCK_DGRAM | libc.SOCK_CLOEXEC, 0);
  if (sock < 0) throw new TunpipeError(`cannot open a control socket: ${libc.errnoName(libc.errno())}`);
  try {
    // struct ifreq: name[16], then struct sockaddr { sa_family; sa_data[14] }.
    const r = Buffer.alloc(40);
    r.write(dev, 0, 15, 'latin1');
    r.writeUInt16LE(ARPHRD_ETHER, 16);
    Buffer.from(mac.split(':').map((h) => parseInt(h, 16))).copy(r, 18);
    if (libc.ioctlPtr(sock, SIOCSIFHWADDR, r) < 0) throw new TunpipeError(`cannot set the Ethernet address of ${dev} to ${mac}: ${libc.errnoName(libc.errno())}`);
  } finally {
    libc.close(sock);
  }
}

/**
 * The device's TX drop counter (frames the kernel did not hand to the reader: a kernel filter's rejections,
 * a full queue), from /proc/thread-self/net/dev, which follows the calling thread's network namespace
 * (sysfs would show the one it was mounted in). Null when the device is not listed there.
 */
export function txDropped(dev: string): number | null {
  let text: string;
  try {
    text = readFileSync('/proc/thread-self/net/dev', 'latin1');
  } catch {
    return null;
  }
  for (const line of text.split('\n')) {
    const colon = line.indexOf(':');
    if (colon < 0 || line.slice(0, colon).trim() !== dev) continue;
    // Receive: bytes packets errs drop fifo frame compressed multicast; transmit: bytes packets errs drop ...
    const fields = line.slice(colon + 1).trim().split(/\s+/).map(Number);
    return fields.length >= 12 ? fields[11] : null;
  }
  return null;
}
