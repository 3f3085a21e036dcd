/**
 * fragment: splits IPv4 packets longer than the MTU into fragments that fit (RFC 791 3.2), as the kernel
 * does before a packet leaves on a link. Put it last, after `checksum`: the transport checksum covers the
 * whole datagram and must be right before the split.
 *
 * Arguments: `mtu=N` (68..65535, default 1500): the largest packet passed, IP header included.
 * In: parsed packets. Out: packets that fit pass unchanged; longer ones leave as fragments (the first keeps
 * all IP options, later ones only options with the "copied" flag; each header checksum computed).
 * Drops: a packet longer than the MTU with Don't Fragment set (a router would answer with ICMP
 * "fragmentation needed"; tunpipe counts it).
 */
import { defineStage, type StageContext, type StageResult } from '../src/pipeline/stage.js';
import { stageTransform, type PacketTransform } from '../src/pipeline/transform.js';
import { FLAG_DF, FLAG_MF, FRAGMENT_OFFSET_MASK, OFF_FLAGS_FRAGMENT, OFF_HEADER_CHECKSUM, OFF_TOTAL_LENGTH } from '../src/packet/ipv4.js';
import { writeChecksumAt } from '../src/packet/checksum.js';
import { copiedOptions } from '../src/packet/ipv4-options.js';
import { Packet } from '../src/packet/packet.js';

export const FRAGMENT_DROP = { df: 'longer than the MTU with Don\'t Fragment set' } as const;

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
  if (p.version !== 4 || p.end - p.l3 <= mtu) return p;
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
  summary: 'split IPv4 packets longer than the MTU into fragments (put it after checksum)',
  args: [{ name: 'mtu', type: 'number', integer: true, positional: true, default: 1500, min: 68, max: 65535, description: 'largest packet passed, in bytes' }],
  create: (args, ctx) => {
    const mtu = args.mtu as number;
    return { process: (p: Packet) => splitToMtu(p, mtu, ctx) };
  },
});
export default fragmentStage;

/** it-pipe transform / pipeline stage: `fragment [mtu=N]`. */
export function fragment(args: { mtu?: number } = {}): PacketTransform {
  return stageTransform(fragmentStage, args);
}
