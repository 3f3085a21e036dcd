/**
 * A set of IPv4 and IPv6 addresses given as prefixes (`198.18.0.0/24`, `2001:db8::7`), with exceptions: the
 * addresses a `neighbor` stage stands for. Looked up only for the few packets that ask about an address
 * (ARP requests, neighbour solicitations), so a plain list is enough.
 */
import { parseIPv4Address } from './ipv4.js';
import { parseIPv6Address } from './ipv6-address.js';

export interface Prefix {
  readonly family: 4 | 6;
  readonly bytes: Buffer;
  readonly length: number;
}

/** Parses `ADDR` or `ADDR/LEN` (IPv4 or IPv6); null when it is neither. */
export function parsePrefix(text: string): Prefix | null {
  const slash = text.indexOf('/');
  const host = slash < 0 ? text : text.slice(0, slash);
  const v4 = parseIPv4Address(host);
  const bytes = v4 !== null ? Buffer.alloc(4) : parseIPv6Address(host);
  if (bytes === null) return null;
  if (v4 !== null) bytes.writeUInt32BE(v4 >>> 0);
  const max = bytes.length * 8;
  let length = max;
  if (slash >= 0) {
    const t = text.slice(slash + 1);
    if (!/^(0|[1-9]\d{0,2})$/.test(t) || Number(t) > max) return null;
    length = Number(t);
  }
  return { family: v4 !== null ? 4 : 6, bytes, length };
}

/** True when the address of `prefix.bytes.length` bytes at `b[at]` lies inside `prefix`. */
export function inPrefix(prefix: Prefix, b: Uint8Array, at: number): boolean {
  const full = prefix.length >> 3;
  for (let i = 0; i < full; i++) if (b[at + i] !== prefix.bytes[i]) return false;
  const rest = prefix.length & 7;
  if (rest === 0) return true;
  const mask = (0xff << (8 - rest)) & 0xff;
  return (b[at + full] & mask) === (prefix.bytes[full] & mask);
}

function sameAddress(a: Uint8Array, b: Uint8Array, at: number): boolean {
  for (let i = 0; i < a.length; i++) if (a[i] !== b[at + i]) return false;
  return true;
}

/** Addresses inside any of `include`, except those equal to one of `exclude`. */
export class AddressSet {
  private readonly v4: Prefix[];
  private readonly v6: Prefix[];
  private readonly not4: Buffer[];
  private readonly not6: Buffer[];

  constructor(include: readonly Prefix[], exclude: readonly Buffer[] = []) {
    this.v4 = include.filter((p) => p.family === 4);
    this.v6 = include.filter((p) => p.family === 6);
    this.not4 = exclude.filter((b) => b.length === 4);
    this.not6 = exclude.filter((b) => b.length === 16);
  }

  get empty(): boolean {
    return this.v4.length === 0 && this.v6.length === 0;
  }

  /** True for the IPv4 address at `b[at]`. */
  has4(b: Uint8Array, at: number): boolean {
    return this.v4.some((p) => inPrefix(p, b, at)) && !this.not4.some((x) => sameAddress(x, b, at));
  }

  /** True for the IPv6 address at `b[at]`. */
  has6(b: Uint8Array, at: number): boolean {
    return this.v6.some((p) => inPrefix(p, b, at)) && !this.not6.some((x) => sameAddress(x, b, at));
  }
}

/**
 * The IPv4 network and broadcast addresses of a prefix shorter than /31: no host is asked about them.
 */
export function networkAndBroadcast(p: Prefix): Buffer[] {
  if (p.family !== 4 || p.length >= 31) return [];
  const base = p.bytes.readUInt32BE(0);
  const mask = p.length === 0 ? 0 : (0xffffffff << (32 - p.length)) >>> 0;
  const net = Buffer.alloc(4);
  net.writeUInt32BE((base & mask) >>> 0);
  const bcast = Buffer.alloc(4);
  bcast.writeUInt32BE(((base & mask) | ~mask) >>> 0);
  return [net, bcast];
}
