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
 * IPv6 (RFC 8200): the fixed header (payload length within the buffer), then the extension-header chain is
 * walked with a bounds check on every header: hop-by-hop (only first), routing, fragment, destination
 * options, AH; the walk ends at the upper-layer protocol, ESP or "no next header", and after the fragment
 * header of a fragment that is not the first. `l4` and `proto` then name the upper layer, and `frag` the
 * fragment header's offset (0: none). Dropped: a header past the end, hop-by-hop later in the chain, more
 * than 8 extension headers, two fragment headers, a first fragment without the whole chain (RFC 7112), and
 * options Linux refuses on receipt (an option past its header, an unknown option whose type says discard,
 * padding longer than 7 bytes or not zero).
 * Ethernet (a TAP device, an Ethernet capture: ctx.linkType 1): the frame's Ethernet II header and up to two
 * VLAN tags (802.1Q, 802.1ad outer) are read first and `l3` set past them; the EtherType decides: IPv4 and
 * IPv6 are parsed as above (a header whose version disagrees with the EtherType is dropped, as Linux drops
 * it), ARP (IPv4 over Ethernet, 28 bytes) passes with `version` 0 and `l3` at the ARP message, for
 * `neighbor`; any other EtherType, an 802.3 length field, a frame shorter than its header or its tags are
 * dropped with their reason, so a frame nobody understands is never answered. Which parser runs is decided
 * once, when the stage is created: a TUN pipeline does no Ethernet work at all.
 */
import { defineStage } from '../src/pipeline/stage.js';
import { checkIPv4Header, ipv4HeaderLength, OFF_PROTOCOL } from '../src/packet/ipv4.js';
import { checkIPv4Options } from '../src/packet/ipv4-options.js';
import { IPV6_DROP, IPV6_HEADER, walkExtensionHeaders, type ChainEnd } from '../src/packet/ipv6.js';
import type { Packet } from '../src/packet/packet.js';
import { ETH_DROP, ETHERTYPE_ARP, ETHERTYPE_IPV4, ETHERTYPE_IPV6, ETHERTYPE_MIN, etherTypeBefore, ethernetPayload } from '../src/packet/ethernet.js';
import { ARP_BODY, checkArp } from '../src/packet/arp.js';
import { LINKTYPE_ETHERNET } from '../src/pcap/format.js';

export const PARSE_DROP = {
  empty: 'empty packet',
  version: 'not IP (version is neither 4 nor 6)',
  ipv6Short: IPV6_DROP.short,
  ipv6Length: IPV6_DROP.payloadLength,
  notV4: 'EtherType IPv4 but the header is not version 4',
  notV6: 'EtherType IPv6 but the header is not version 6',
  ...ETH_DROP,
} as const;

/** Where the chain walk leaves its result: one object for every packet, so the walk allocates nothing. */
const chain: ChainEnd = { l4: 0, proto: 0, frag: 0 };

function parseV6(p: Packet): Packet | string {
  const b = p.data;
  const l3 = p.l3;
  if (b.length - l3 < IPV6_HEADER) return PARSE_DROP.ipv6Short;
  const payload = (b[l3 + 4] << 8) | b[l3 + 5];
  if (IPV6_HEADER + payload > b.length - l3) return PARSE_DROP.ipv6Length;
  const end = l3 + IPV6_HEADER + payload;
  const bad = walkExtensionHeaders(b, l3, end, chain);
  if (bad !== null) return bad;
  p.version = 6;
  p.l4 = chain.l4;
  p.end = end;
  p.proto = chain.proto;
  p.frag = chain.frag;
  return p;
}

/** Validates and parses one IP packet (from `l3`); returns it, or a drop reason. Exported for library users and tests. */
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

/**
 * Validates and parses one Ethernet frame (from its first byte): the link header and VLAN tags, then by
 * EtherType the IP packet or the ARP message; returns it, or a drop reason.
 */
export function parseFrame(p: Packet): Packet | string {
  const b = p.data;
  const l3 = ethernetPayload(b);
  if (typeof l3 === 'string') return l3;
  const type = etherTypeBefore(b, l3);
  p.l3 = l3;
  if (type === ETHERTYPE_IPV4) {
    if (b.length <= l3) return PARSE_DROP.empty;
    return b[l3] >> 4 === 4 ? parsePacket(p) : PARSE_DROP.notV4;
  }
  if (type === ETHERTYPE_IPV6) {
    if (b.length <= l3) return PARSE_DROP.empty;
    return b[l3] >> 4 === 6 ? parseV6(p) : PARSE_DROP.notV6;
  }
  if (type === ETHERTYPE_ARP) {
    const bad = checkArp(b, l3);
    if (bad !== null) return bad;
    p.version = 0;
    // l4 at the message marks a parsed ARP message (isParsedArp).
    p.l4 = l3;
    p.end = l3 + ARP_BODY;
    p.proto = 0;
    return p;
  }
  return type < ETHERTYPE_MIN ? PARSE_DROP.llc : PARSE_DROP.unknown;
}

const parse = defineStage({
  name: 'parse',
  keepsPackets: false,
  summary: 'check the IPv4/IPv6 header (and IPv6 extension headers; on TAP the Ethernet header and VLAN tags first); parse it for later stages',
  help: 'Drops malformed packets, counted by reason. IPv4: header and options checked as Linux does on receipt.\nIPv6: payload length, and the extension-header chain walked with bounds checks (l4/proto name the upper layer).\nEthernet (TAP): Ethernet II and up to two VLAN tags first; the EtherType decides (IPv4, IPv6, ARP pass on;\nany other EtherType is dropped with its reason).',
  recordsChanges: true,
  superPackets: true,
  args: [],
  create: (_args, ctx) => ({ process: ctx.linkType === LINKTYPE_ETHERNET ? parseFrame : parsePacket }),
});
export default parse;
