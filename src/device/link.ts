/** Link-layer settings of an interface through the socket ioctls: a TAP device's Ethernet address. */
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
