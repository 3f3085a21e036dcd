/**
 * parse: validates the IP header and gives later stages a parsed view (Packet.version, l4, end, proto)
 * without copying.
 *
 * Arguments: none.
 * In: raw packets from a TUN device or a RAW pcap. Out: packets whose header is sound.
 * Drops (counted by reason): truncated packets, wrong version, IHL below 5 or past the end, total length
 * below the header or past the buffer, bad IPv4 header checksum, malformed IP options (checked as Linux
 * checks them on receipt: lengths, record route / timestamp / source route pointers, no option twice). Trailing bytes past the total length are
 * allowed and ignored (`end` marks the datagram's end).
 * IPv6: the fixed header is checked (version, payload length within the buffer) and `l4` points past it;
 * extension headers are left to the stages that need them.
 */
import { defineStage } from '../src/pipeline/stage.js';
import { stageTransform, type PacketTransform } from '../src/pipeline/transform.js';
import { checkIPv4Header, ipv4HeaderLength, OFF_PROTOCOL } from '../src/packet/ipv4.js';
import { checkIPv4Options } from '../src/packet/ipv4-options.js';
import type { Packet } from '../src/packet/packet.js';

const IPV6_HEADER = 40;

export const PARSE_DROP = {
  empty: 'empty packet',
  version: 'not IP (version is neither 4 nor 6)',
  ipv6Short: 'truncated: shorter than an IPv6 header',
  ipv6Length: 'truncated: IPv6 payload length longer than the packet',
} as const;

function parseV6(p: Packet): Packet | string {
  const b = p.data;
  const l3 = p.l3;
  if (b.length - l3 < IPV6_HEADER) return PARSE_DROP.ipv6Short;
  const payload = (b[l3 + 4] << 8) | b[l3 + 5];
  if (IPV6_HEADER + payload > b.length - l3) return PARSE_DROP.ipv6Length;
  p.version = 6;
  p.l4 = l3 + IPV6_HEADER;
  p.end = l3 + IPV6_HEADER + payload;
  p.proto = b[l3 + 6];
  return p;
}

/** Validates and parses one packet; returns it, or a drop reason. Exported for library users and tests. */
export function parsePacket(p: Packet): Packet | string {
  const b = p.data;
  const l3 = p.l3;
  if (b.length <= l3) return PARSE_DROP.empty;
  const v = b[l3] >> 4;
  if (v === 6) return parseV6(p);
  if (v !== 4) return PARSE_DROP.version;
  const bad = checkIPv4Header(b, l3);
  if (bad !== null) return bad;
  const hlen = ipv4HeaderLength(b, l3);
  if (hlen > 20) {
    const badOptions = checkIPv4Options(b, l3, hlen);
    if (badOptions !== null) return badOptions;
  }
  p.version = 4;
  p.l4 = l3 + hlen;
  p.end = l3 + ((b[l3 + 2] << 8) | b[l3 + 3]);
  p.proto = b[l3 + OFF_PROTOCOL];
  return p;
}

const parse = defineStage({
  name: 'parse',
  keepsPackets: false,
  summary: 'check the IP header (version, IHL, length, checksum); parse it for later stages',
  help: 'Drops malformed packets, counted by reason. IPv4 fully checked; IPv6 fixed header checked.',
  args: [],
  create: () => ({ process: parsePacket }),
});
export default parse;

/** it-pipe transform / pipeline stage: `parse`. */
export function parseIPv4(): PacketTransform {
  return stageTransform(parse);
}
