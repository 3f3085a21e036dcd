/**
 * filter-icmp-echo: passes the ICMP echo requests a host should answer, drops everything else.
 *
 * Arguments: none.
 * In: parsed packets (after `parse`). Out: IPv4 ICMP echo requests (type 8, code 0) that are whole,
 * unfragmented, with a valid ICMP checksum, from a unicast source.
 * Drops, like the kernel's own echo (RFC 1122 3.2.2.6): not parsed, not ICMP, not an echo request, ICMP
 * shorter than 8 bytes, bad ICMP checksum, a fragment (reassemble first), a source that is unspecified,
 * loopback, broadcast or multicast, a destination that is one of those, a source-routed request.
 */
import { defineStage } from '../src/pipeline/stage.js';
import { stageTransform, type PacketTransform } from '../src/pipeline/transform.js';
import { checksumIsValid } from '../src/packet/checksum.js';
import { hasSourceRoute } from '../src/packet/ipv4-options.js';
import { FLAG_MF, FRAGMENT_OFFSET_MASK, isUnanswerableDestination, isUnanswerableSource, OFF_DST, OFF_FLAGS_FRAGMENT, OFF_SRC, PROTO_ICMP, readAddress } from '../src/packet/ipv4.js';
import { ICMP_ECHO_REQUEST, ICMP_HEADER } from '../src/packet/icmp.js';
import type { Packet } from '../src/packet/packet.js';

export const ECHO_DROP = {
  unparsed: 'not parsed (put parse first)',
  notIPv4: 'not IPv4',
  notIcmp: 'not ICMP',
  short: 'ICMP shorter than 8 bytes',
  notEcho: 'not an ICMP echo request',
  checksum: 'bad ICMP checksum',
  fragment: 'fragment (reassemble first)',
  source: 'source is unspecified, broadcast or multicast',
  destination: 'destination is unspecified, loopback, broadcast or multicast',
  sourceRoute: 'source-routed (LSRR/SSRR option)',
} as const;

/** Returns the packet if it is an echo request to answer, else the drop reason. */
export function checkEchoRequest(p: Packet): Packet | string {
  if (p.version === 0) return ECHO_DROP.unparsed;
  if (p.version !== 4) return ECHO_DROP.notIPv4;
  if (p.proto !== PROTO_ICMP) return ECHO_DROP.notIcmp;
  const b = p.data;
  const l3 = p.l3;
  if (((b[l3 + OFF_FLAGS_FRAGMENT] << 8) | b[l3 + OFF_FLAGS_FRAGMENT + 1]) & (FLAG_MF | FRAGMENT_OFFSET_MASK)) return ECHO_DROP.fragment;
  const l4 = p.l4;
  if (p.end - l4 < ICMP_HEADER) return ECHO_DROP.short;
  if (b[l4] !== ICMP_ECHO_REQUEST || b[l4 + 1] !== 0) return ECHO_DROP.notEcho;
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
  summary: 'pass the ICMP echo requests to answer; drop the rest, counted by reason',
  args: [],
  create: () => ({ process: checkEchoRequest }),
});
export default filterIcmpEcho;

/** it-pipe transform / pipeline stage: `filter-icmp-echo`. */
export function filterICMPEcho(): PacketTransform {
  return stageTransform(filterIcmpEcho);
}
