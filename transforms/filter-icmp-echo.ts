/**
 * filter-icmp-echo: passes the ICMP and ICMPv6 echo requests a host should answer, drops everything else.
 *
 * Arguments: none.
 * In: parsed packets (after `parse`). Out: echo requests (IPv4 ICMP type 8, IPv6 ICMPv6 type 128, any code:
 * Linux answers every code and copies it into the reply) that are whole, unfragmented, with a valid checksum,
 * from a unicast source.
 * Drops, like the kernel's own echo (RFC 1122 3.2.2.6; net/ipv4/icmp.c, net/ipv6/icmp.c, ip6_rcv):
 * not parsed, not ICMP/ICMPv6, not an echo request, shorter than 8 bytes, bad checksum (ICMPv6: over the
 * pseudo-header), a fragment (reassemble first).
 * IPv4: a source that is unspecified, loopback, broadcast or multicast, a destination that is one of those
 * (Linux ignores broadcast and multicast pings by default), a source-routed request.
 * IPv6: a source that is unspecified, multicast, loopback or IPv4-mapped (ip6_rcv drops those, and there is
 * nowhere to answer ::); a loopback, unspecified or IPv4-mapped destination; a routing header with segments
 * left (the packet is for a later hop); a multicast destination: Linux answers those by default
 * (echo_ignore_multicast=0) from an address of its own, but a pipeline stands for every peer behind the
 * device and has no address of its own to answer from, so it declines (counted under its own reason).
 * The kernel's own IPv6 chatter on a new device is named: router solicitations and MLD listener reports.
 */
import { defineStage } from '../src/pipeline/stage.js';
import { checksumIsValid } from '../src/packet/checksum.js';
import { hasSourceRoute } from '../src/packet/ipv4-options.js';
import { FLAG_MF, FRAGMENT_OFFSET_MASK, isUnanswerableDestination, isUnanswerableSource, OFF_DST, OFF_FLAGS_FRAGMENT, OFF_SRC, PROTO_ICMP, readAddress } from '../src/packet/ipv4.js';
import {
  ICMPV6_ECHO_REQUEST,
  ICMPV6_MLD2_REPORT,
  ICMPV6_MLD_DONE,
  ICMPV6_MLD_REPORT,
  ICMPV6_ROUTER_SOLICITATION,
  isIPv6Fragment,
  isLoopback6,
  isMulticast6,
  isUnspecified6,
  isV4Mapped6,
  NH_ICMPV6,
  OFF6_DST,
  OFF6_SRC,
  pseudoHeaderSum6,
  routingSegmentsLeft,
  unanswerableSource6,
} from '../src/packet/ipv6.js';
import { ICMP_ECHO_REQUEST, ICMP_HEADER } from '../src/packet/icmp.js';
import type { Packet } from '../src/packet/packet.js';
import { isParsedArp } from '../src/packet/arp.js';

export const ECHO_DROP = {
  unparsed: 'not parsed (put parse first)',
  arp: 'ARP, not IP',
  notIcmp: 'not ICMP',
  short: 'ICMP shorter than 8 bytes',
  notEcho: 'not an ICMP echo request',
  checksum: 'bad ICMP checksum',
  fragment: 'fragment (reassemble first)',
  source: 'source is unspecified, broadcast or multicast',
  destination: 'destination is unspecified, loopback, broadcast or multicast',
  sourceRoute: 'source-routed (LSRR/SSRR option)',
  notIcmp6: 'not ICMPv6',
  short6: 'ICMPv6 shorter than 8 bytes',
  notEcho6: 'not an ICMPv6 echo request',
  checksum6: 'bad ICMPv6 checksum',
  source6: 'IPv6 source is unspecified, multicast, loopback or IPv4-mapped',
  destination6: 'IPv6 destination is unspecified, loopback or IPv4-mapped',
  multicast6: 'IPv6 multicast destination (no address of our own to answer from)',
  routing6: 'IPv6 routing header with segments left (for a later hop)',
  routerSolicitation: "ICMPv6 router solicitation (the kernel's own, sent when a device comes up)",
  mldReport: "ICMPv6 MLD listener report (the kernel's own, for the groups the device joins)",
} as const;

function checkEchoRequest6(p: Packet): Packet | string {
  const b = p.data;
  const l3 = p.l3;
  const l4 = p.l4;
  if (p.proto !== NH_ICMPV6) return ECHO_DROP.notIcmp6;
  if (isIPv6Fragment(b, p.frag)) return ECHO_DROP.fragment;
  if (p.end - l4 < ICMP_HEADER) return ECHO_DROP.short6;
  const type = b[l4];
  if (type !== ICMPV6_ECHO_REQUEST) {
    if (type === ICMPV6_ROUTER_SOLICITATION) return ECHO_DROP.routerSolicitation;
    if (type === ICMPV6_MLD_REPORT || type === ICMPV6_MLD2_REPORT || type === ICMPV6_MLD_DONE) return ECHO_DROP.mldReport;
    return ECHO_DROP.notEcho6;
  }
  if (unanswerableSource6(b, l3 + OFF6_SRC)) return ECHO_DROP.source6;
  const dst = l3 + OFF6_DST;
  if (isMulticast6(b, dst)) return ECHO_DROP.multicast6;
  if (isUnspecified6(b, dst) || isLoopback6(b, dst) || isV4Mapped6(b, dst)) return ECHO_DROP.destination6;
  if (l4 - l3 > 40 && routingSegmentsLeft(b, l3, l4) !== 0) return ECHO_DROP.routing6;
  if (!checksumIsValid(b, l4, p.end - l4, pseudoHeaderSum6(b, l3, p.end - l4, NH_ICMPV6))) return ECHO_DROP.checksum6;
  return p;
}

/** Returns the packet if it is an echo request to answer, else the drop reason. */
export function checkEchoRequest(p: Packet): Packet | string {
  if (p.version !== 4) return p.version === 6 ? checkEchoRequest6(p) : isParsedArp(p) ? ECHO_DROP.arp : ECHO_DROP.unparsed;
  if (p.proto !== PROTO_ICMP) return ECHO_DROP.notIcmp;
  const b = p.data;
  const l3 = p.l3;
  if (((b[l3 + OFF_FLAGS_FRAGMENT] << 8) | b[l3 + OFF_FLAGS_FRAGMENT + 1]) & (FLAG_MF | FRAGMENT_OFFSET_MASK)) return ECHO_DROP.fragment;
  const l4 = p.l4;
  if (p.end - l4 < ICMP_HEADER) return ECHO_DROP.short;
  // Any code: Linux's icmp_echo answers them all and copies the code into the reply.
  if (b[l4] !== ICMP_ECHO_REQUEST) return ECHO_DROP.notEcho;
  if (isUnanswerableSource(readAddress(b, l3 + OFF_SRC))) return ECHO_DROP.source;
  // A reply would carry this address as its source, which no host may send from.
  if (isUnanswerableDestination(readAddress(b, l3 + OFF_DST))) return ECHO_DROP.destination;
  // Linux drops source-routed datagrams (accept_source_route is 0 by default).
  if (l4 - l3 > 20 && hasSourceRoute(b, l3, l4 - l3)) return ECHO_DROP.sourceRoute;
  if (!checksumIsValid(b, l4, p.end - l4)) return ECHO_DROP.checksum;
  return p;
}

const filterIcmpEcho = defineStage({
  name: 'filter-icmp-echo',
  keepsPackets: false,
  recordsChanges: true,
  summary: 'pass the ICMP/ICMPv6 echo requests to answer; drop the rest, counted by reason',
  args: [],
  create: () => ({ process: checkEchoRequest }),
});
export default filterIcmpEcho;
