/**
 * fragment: splits IPv4 (RFC 791 3.2) and IPv6 (RFC 8200 4.5) packets longer than the MTU into fragments
 * that fit, as the kernel does before a packet leaves on a link. Put it last, after `checksum`: the
 * transport checksum covers the whole datagram and must be right before the split.
 *
 * Arguments: `mtu=N` (68..65535, default 1500): the largest packet passed, IP header included.
 * In: parsed packets. Out: packets that fit pass unchanged; longer ones leave as fragments.
 * - IPv4: the first keeps all IP options, later ones only options with the "copied" flag; each header
 *   checksum computed.
 * - IPv6: each fragment carries the unfragmentable part (the fixed header, hop-by-hop and routing headers,
 *   and destination options before a routing header), then a fragment header with a random identification
 *   (RFC 7739: not predictable), then its share of the rest, a multiple of 8 bytes but for the last.
 * Drops: an IPv4 packet longer than the MTU with Don't Fragment set (a router would answer with ICMP
 * "fragmentation needed"; tunpipe counts it); an IPv6 packet that already is a fragment, or whose headers
 * leave no room for 8 bytes of data in the MTU.
 */
import { defineStage, type StageContext, type StageResult } from '../src/pipeline/stage.js';
import { FLAG_DF, FLAG_MF, FRAGMENT_OFFSET_MASK, OFF_FLAGS_FRAGMENT, OFF_HEADER_CHECKSUM, OFF_TOTAL_LENGTH } from '../src/packet/ipv4.js';
import { writeChecksumAt } from '../src/packet/checksum.js';
import { copiedOptions } from '../src/packet/ipv4-options.js';
import { FRAGMENT_HEADER, IPV6_HEADER, NH_DEST_OPTS, NH_FRAGMENT, NH_HOP_BY_HOP, NH_ROUTING, OFF6_NEXT_HEADER, OFF6_PAYLOAD_LENGTH } from '../src/packet/ipv6.js';
import { Packet } from '../src/packet/packet.js';
import { parsePacket } from './parse.js';
import { lazyRequire } from '../src/lazy-require.js';

export const FRAGMENT_DROP = {
  df: 'longer than the MTU with Don\'t Fragment set',
  ipv6Fragment: 'IPv6 fragment longer than the MTU (fragments are not fragmented again)',
  ipv6NoRoom: 'IPv6 headers leave no room for a fragment in the MTU',
} as const;

/**
 * End of the unfragmentable part of an IPv6 packet (RFC 8200 4.5): past hop-by-hop, routing, and
 * destination options followed by a routing header; also the offset of the next-header byte that names what
 * comes after it.
 */
function unfragmentableEnd(b: Buffer, l3: number, l4: number): { end: number; field: number } {
  let at = l3 + IPV6_HEADER;
  let nh = b[l3 + OFF6_NEXT_HEADER];
  let end = at;
  let field = l3 + OFF6_NEXT_HEADER;
  while (at < l4 && (nh === NH_HOP_BY_HOP || nh === NH_ROUTING || nh === NH_DEST_OPTS)) {
    const kind = nh;
    const here = at;
    nh = b[at];
    at += (b[at + 1] + 1) * 8;
    // Destination options belong to the unfragmentable part only when a routing header follows them.
    if (kind !== NH_DEST_OPTS) {
      end = at;
      field = here;
    }
  }
  return { end, field };
}

/** IPv6 identifications: random (RFC 7739), drawn in blocks so that not every datagram asks the kernel. */
const ids = { pool: Buffer.alloc(0), next: 0 };
function nextIdentification(): number {
  if (ids.next + 4 > ids.pool.length) {
    ids.pool = (lazyRequire('node:crypto') as typeof import('node:crypto')).randomBytes(1024);
    ids.next = 0;
  }
  const v = ids.pool.readUInt32BE(ids.next);
  ids.next += 4;
  return v;
}

function split6(p: Packet, mtu: number, ctx: Pick<StageContext, 'emit'>): StageResult {
  const b = p.data;
  const l3 = p.l3;
  if (p.frag !== 0) return FRAGMENT_DROP.ipv6Fragment;
  const { end: unfrag, field } = unfragmentableEnd(b, l3, p.l4);
  const headLen = unfrag - l3;
  const room = Math.floor((mtu - headLen - FRAGMENT_HEADER) / 8) * 8;
  if (room < 8) return FRAGMENT_DROP.ipv6NoRoom;
  const rest = p.end - unfrag;
  const id = nextIdentification();
  const pieces: Packet[] = [];
  for (let offset = 0; offset < rest; offset += room) {
    const len = Math.min(room, rest - offset);
    const more = offset + len < rest;
    const out = Buffer.allocUnsafe(unfrag + FRAGMENT_HEADER + len);
    b.copy(out, 0, 0, unfrag);
    const fh = unfrag;
    out[fh] = b[field];
    out[fh + 1] = 0;
    out.writeUInt16BE(offset | (more ? 1 : 0), fh + 2);
    out.writeUInt32BE(id, fh + 4);
    b.copy(out, fh + FRAGMENT_HEADER, unfrag + offset, unfrag + offset + len);
    out[field] = NH_FRAGMENT;
    out.writeUInt16BE(headLen - IPV6_HEADER + FRAGMENT_HEADER + len, l3 + OFF6_PAYLOAD_LENGTH);
    const f = new Packet(out, p.sec, p.nsec);
    f.l3 = l3;
    const r = parsePacket(f);
    if (typeof r === 'string') return r;
    pieces.push(f);
  }
  for (let i = 0; i < pieces.length - 1; i++) ctx.emit(pieces[i]);
  return pieces[pieces.length - 1];
}

function fragmentPacket(p: Packet, header: Buffer, offset: number, len: number, last: boolean, baseWord: number): Packet {
  const l3 = p.l3;
  const out = Buffer.allocUnsafe(l3 + header.length + len);
  p.data.copy(out, 0, 0, l3);
  header.copy(out, l3);
  p.data.copy(out, l3 + header.length, p.l4 + offset, p.l4 + offset + len);
  out[l3] = 0x40 | (header.length / 4);
  out.writeUInt16BE(header.length + len, l3 + OFF_TOTAL_LENGTH);
  const origOffset = (baseWord & FRAGMENT_OFFSET_MASK) * 8;
  const mf = last ? baseWord & FLAG_MF : FLAG_MF;
  out.writeUInt16BE((baseWord & FLAG_DF) | mf | ((origOffset + offset) / 8), l3 + OFF_FLAGS_FRAGMENT);
  writeChecksumAt(out, l3, header.length, l3 + OFF_HEADER_CHECKSUM);
  const f = new Packet(out, p.sec, p.nsec);
  f.l3 = l3;
  f.version = 4;
  f.l4 = l3 + header.length;
  f.end = out.length;
  f.proto = p.proto;
  return f;
}

/** Splits `p` if it is longer than `mtu`: emits all fragments but the last through ctx, returns the last. */
export function splitToMtu(p: Packet, mtu: number, ctx: Pick<StageContext, 'emit'>): StageResult {
  if (p.end - p.l3 <= mtu) return p;
  if (p.version !== 4) return p.version === 6 ? split6(p, mtu, ctx) : p;
  const b = p.data;
  const baseWord = (b[p.l3 + OFF_FLAGS_FRAGMENT] << 8) | b[p.l3 + OFF_FLAGS_FRAGMENT + 1];
  if (baseWord & FLAG_DF) return FRAGMENT_DROP.df;
  const ihl = p.l4 - p.l3;
  const firstHeader = Buffer.from(b.subarray(p.l3, p.l4));
  const laterOptions = copiedOptions(b, p.l3, ihl);
  const laterHeader = Buffer.concat([firstHeader.subarray(0, 20), laterOptions]);
  const payload = p.end - p.l4;
  let offset = 0;
  let header = firstHeader;
  const pieces: Packet[] = [];
  while (offset < payload) {
    const room = Math.floor((mtu - header.length) / 8) * 8;
    if (room <= 0) return FRAGMENT_DROP.df;
    const len = Math.min(room, payload - offset);
    const last = offset + len >= payload;
    pieces.push(fragmentPacket(p, header, offset, len, last, baseWord));
    offset += len;
    header = laterHeader;
  }
  for (let i = 0; i < pieces.length - 1; i++) ctx.emit(pieces[i]);
  return pieces[pieces.length - 1];
}

const fragmentStage = defineStage({
  name: 'fragment',
  keepsPackets: false,
  recordsChanges: true,
  summary: 'split IPv4 and IPv6 packets longer than the MTU into fragments (put it after checksum)',
  args: [{ name: 'mtu', type: 'number', integer: true, positional: true, default: 1500, min: 68, max: 65535, description: 'largest packet passed, in bytes' }],
  create: (args, ctx) => {
    const mtu = args.mtu as number;
    return { process: (p: Packet) => splitToMtu(p, mtu, ctx) };
  },
});
export default fragmentStage;
