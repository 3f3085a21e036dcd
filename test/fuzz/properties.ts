/**
 * What single built-in stages must do, checked with reference code of our own:
 * - parse passes exactly the packets whose IP header (options included) is sound, and its view is right;
 * - after checksum, the IPv4 header checksum and the ICMP/TCP/UDP checksum of a whole datagram verify;
 * - swap-addrs exchanges source and destination and nothing else in the addresses.
 */
import { referenceChecksum } from '../helpers/packets.js';
import type { Packet } from '../../src/packet/packet.js';
import { checkOptions, ipv4Header, isFragment, ReassemblyModel } from './oracle.js';
import { chain6, ReassemblyModel6, upperChecksumOk } from './oracle6.js';

export interface ParsedReference {
  version: 4 | 6;
  l4: number;
  end: number;
  proto: number;
}

/** The reference parse of bytes starting at the IP header: the view, or null when the packet must be dropped. */
export function referenceParse(d: Uint8Array): ParsedReference | null {
  if (d.length === 0) return null;
  if (d[0] >> 4 === 6) {
    // The extension-header chain as a receiver walks it (./oracle6.ts).
    const c = chain6(d);
    if (typeof c === 'string') return null;
    return { version: 6, l4: c.l4, end: 40 + ((d[4] << 8) | d[5]), proto: c.proto };
  }
  const v = ipv4Header(d);
  if (typeof v === 'string') return null;
  // Malformed options make a receiver drop the packet (ip_options_compile), as parse does.
  const opts = checkOptions(d.subarray(20, v.ihl));
  if (!opts.ok && opts.why.startsWith('malformed')) return null;
  return { version: 4, l4: v.ihl, end: v.total, proto: v.proto };
}

/** Compares what parse did with one input (bytes from its IP header) against the reference. */
export function parseProblem(input: Uint8Array, outputs: Packet[]): string | null {
  const ref = referenceParse(input);
  if (ref === null) return outputs.length === 0 ? null : 'parse passed a packet the reference header check rejects';
  if (outputs.length !== 1) return `parse dropped a packet whose ${ref.version === 4 ? 'IPv4' : 'IPv6'} header is sound`;
  const p = outputs[0];
  if (p.version !== ref.version || p.l4 - p.l3 !== ref.l4 || p.end - p.l3 !== ref.end || p.proto !== ref.proto) {
    return `parse view version ${p.version} l4 ${p.l4 - p.l3} end ${p.end - p.l3} proto ${p.proto}; expected ${ref.version}/${ref.l4}/${ref.end}/${ref.proto}`;
  }
  return null;
}

function pseudoHeader(d: Uint8Array, l3: number, proto: number, len: number): Buffer {
  const h = Buffer.alloc(12);
  Buffer.from(d.subarray(l3 + 12, l3 + 20)).copy(h, 0);
  h[9] = proto;
  h.writeUInt16BE(len, 10);
  return h;
}

/** Why the checksums of a packet that left `parse | checksum` do not verify, or null. */
export function checksumProblem(p: Packet): string | null {
  if (p.version === 6) return checksumProblem6(p);
  if (p.version !== 4) return null;
  const d = p.data;
  if (referenceChecksum(d.subarray(p.l3, p.l4)) !== 0) return 'IPv4 header checksum does not verify after checksum';
  const v = ipv4Header(d.subarray(p.l3));
  if (typeof v === 'string') return `the header is no longer sound after checksum: ${v}`;
  if (isFragment(v)) return null;
  const seg = d.subarray(p.l4, p.end);
  if (p.proto === 1 && seg.length >= 4 && referenceChecksum(seg) !== 0) return 'ICMP checksum does not verify after checksum';
  if ((p.proto === 6 && seg.length >= 18) || (p.proto === 17 && seg.length >= 8)) {
    const sum = referenceChecksum(Buffer.concat([pseudoHeader(d, p.l3, p.proto, seg.length), seg]));
    if (sum !== 0) return `${p.proto === 6 ? 'TCP' : 'UDP'} checksum does not verify after checksum`;
    if (p.proto === 17 && seg[6] === 0 && seg[7] === 0) return 'UDP checksum 0 (means "none") after checksum';
  }
  return null;
}

/** IPv6: the ICMPv6, TCP or UDP checksum over the pseudo-header of a whole datagram (not a fragment). */
function checksumProblem6(p: Packet): string | null {
  const d = p.data.subarray(p.l3, p.end);
  const c = chain6(d);
  if (typeof c === 'string') return `the IPv6 chain is no longer sound after checksum: ${c}`;
  if (c.frag >= 0 && (c.fragOffset !== 0 || c.more)) return null;
  const seg = d.subarray(c.l4);
  const need = c.proto === 58 ? 4 : c.proto === 6 ? 18 : c.proto === 17 ? 8 : -1;
  if (need < 0 || seg.length < need) return null;
  if (!upperChecksumOk(d, seg, c.proto)) return `${c.proto === 58 ? 'ICMPv6' : c.proto === 6 ? 'TCP' : 'UDP'} checksum over the IPv6 pseudo-header does not verify after checksum`;
  if (c.proto === 17 && seg[6] === 0 && seg[7] === 0) return 'UDP checksum 0 over IPv6 after checksum (not allowed)';
  return null;
}

/** Why a packet that left `parse | swap-addrs` does not have the input's addresses swapped, or null. */
export function swapProblem(input: Uint8Array, p: Packet): string | null {
  const out = p.data.subarray(p.l3);
  const [a, b, n] = p.version === 4 ? [12, 16, 4] : p.version === 6 ? [8, 24, 16] : [0, 0, 0];
  if (n === 0) return null;
  const same = (x: number, y: number) => Buffer.from(out.subarray(x, x + n)).equals(Buffer.from(input.subarray(y, y + n)));
  return same(a, b) && same(b, a) ? null : 'addresses are not the input\'s swapped';
}

/**
 * Why what left `parse | fragment mtu=N` for one input is wrong, or null: a packet that fits passes
 * unchanged; a longer one with DF is dropped; a longer one without DF leaves as fragments that each fit, each
 * with a sound header, which put back together (by the reference reassembly) give the input datagram.
 */
export function fragmentProblem(input: Uint8Array, outs: Packet[], mtu: number): string | null {
  const ref = referenceParse(input);
  if (ref === null) return outs.length ? 'fragment passed an unparsed packet' : null;
  const datagram = Buffer.from(input.subarray(0, ref.end));
  if (ref.version === 6 && ref.end > mtu) return fragmentProblem6(datagram, outs, mtu);
  if (ref.end <= mtu) {
    if (outs.length !== 1) return `a packet that fits (${ref.end} <= ${mtu}) did not pass exactly once`;
    return Buffer.from(outs[0].data.subarray(outs[0].l3, outs[0].end)).equals(datagram) ? null : 'a packet that fits was changed';
  }
  const v = ipv4Header(datagram);
  if (typeof v === 'string') return `reference header check failed after parse: ${v}`;
  if (v.frag & 0x4000) return outs.length === 0 ? null : 'a packet longer than the MTU with DF set was passed';
  if (outs.length === 0) return 'a packet longer than the MTU without DF was dropped';
  const model = new ReassemblyModel();
  let done = null;
  for (const [i, o] of outs.entries()) {
    const f = o.data.subarray(o.l3);
    const fv = ipv4Header(f);
    if (typeof fv === 'string') return `fragment ${i}: ${fv}`;
    if (fv.total > mtu) return `fragment ${i} is ${fv.total} bytes, over the MTU ${mtu}`;
    if (fv.src !== v.src || fv.dst !== v.dst || fv.id !== v.id || fv.proto !== v.proto) return `fragment ${i} does not carry the datagram's addresses, id and protocol`;
    if (isFragment(v)) continue; // re-fragmenting a fragment: sizes and headers only
    if (!isFragment(fv)) return `piece ${i} of a split datagram is not marked as a fragment`;
    if (done) return 'pieces after the datagram was already complete';
    done = model.add(f, fv);
  }
  if (isFragment(v)) return null;
  if (!done) return 'the fragments do not make up the whole datagram';
  if (done.uncertain) return 'the fragments overlap or have sizes that are not multiples of 8';
  if (!done.datagram.subarray(done.datagram.length - (ref.end - ref.l4)).equals(datagram.subarray(ref.l4))) return 'the reassembled payload differs from the input';
  if (!done.datagram.subarray(20, (done.datagram[0] & 15) * 4).equals(datagram.subarray(20, ref.l4))) return 'the first fragment does not carry the IP options';
  return null;
}

/** IPv6 longer than the MTU: a fragment is dropped; otherwise fragments that fit and reassemble to the input. */
function fragmentProblem6(datagram: Buffer, outs: Packet[], mtu: number): string | null {
  const c = chain6(datagram);
  if (typeof c === 'string') return `reference chain walk failed after parse: ${c}`;
  if (c.frag >= 0) return outs.length === 0 ? null : 'an IPv6 fragment longer than the MTU was passed';
  if (outs.length === 0) {
    // Only headers that leave no room for 8 bytes may stop it.
    return c.l4 + 16 > mtu ? null : 'an IPv6 packet longer than the MTU was dropped';
  }
  const model = new ReassemblyModel6();
  let done = null;
  for (const [i, o] of outs.entries()) {
    const f = o.data.subarray(o.l3, o.end);
    if (f.length > mtu) return `IPv6 fragment ${i} is ${f.length} bytes, over the MTU ${mtu}`;
    const fc = chain6(f);
    if (typeof fc === 'string') return `IPv6 fragment ${i}: ${fc}`;
    if (fc.frag < 0) return `piece ${i} of a split IPv6 datagram has no fragment header`;
    if (done) return 'pieces after the datagram was already complete';
    done = model.add(f, fc);
  }
  if (!done) return 'the IPv6 fragments do not make up the whole datagram';
  if (done.uncertain) return 'the IPv6 fragments overlap or have sizes that are not multiples of 8';
  if (!done.datagram.equals(datagram)) return 'the reassembled IPv6 datagram differs from the input';
  return null;
}
