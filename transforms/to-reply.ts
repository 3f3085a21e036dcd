/**
 * to-reply: turns an ICMP echo request into its echo reply, as Linux answers: type 8 becomes 0, the TTL a
 * fresh 64 (not the request's), DF cleared. Identifier, sequence number and payload are kept (RFC 792);
 * IP options are kept, with our address and time recorded in record route and timestamp options
 * (RFC 1122 3.2.2.6). Put it after swap-addrs.
 *
 * Arguments: `ttl=N` (1..255, default 64).
 * In: echo requests (after filter-icmp-echo and swap-addrs). Out: echo replies whose checksum changes are
 * recorded for the `checksum` stage to apply incrementally (RFC 1624).
 * Drops: packets that are not parsed IPv4 echo requests.
 */
import { defineStage } from '../src/pipeline/stage.js';
import { stageTransform, type PacketTransform } from '../src/pipeline/transform.js';
import { FLAG_DF, OFF_FLAGS_FRAGMENT, OFF_SRC, OFF_TTL } from '../src/packet/ipv4.js';
import { recordInOptions } from '../src/packet/ipv4-options.js';
import { ICMP_ECHO_REPLY, ICMP_ECHO_REQUEST, REPLY_TTL } from '../src/packet/icmp.js';
import { Dirty, type Packet } from '../src/packet/packet.js';

export const REPLY_DROP = { notRequest: 'not a parsed IPv4 ICMP echo request' } as const;

/** Rewrites a request into a reply in place, with the given TTL. */
export function makeEchoReply(p: Packet, ttl = REPLY_TTL): Packet | string {
  const b = p.data;
  const l3 = p.l3;
  if (p.version !== 4 || p.proto !== 1 || p.end - p.l4 < 8 || b[p.l4] !== ICMP_ECHO_REQUEST) return REPLY_DROP.notRequest;
  p.setL4Word(p.l4, (ICMP_ECHO_REPLY << 8) | b[p.l4 + 1]);
  p.setIpWord(l3 + OFF_TTL, (ttl << 8) | p.proto);
  // Like Linux's own replies: DF clear, so a reply larger than a link's MTU can still be fragmented.
  const flags = p.word(l3 + OFF_FLAGS_FRAGMENT);
  if (flags & FLAG_DF) p.setIpWord(l3 + OFF_FLAGS_FRAGMENT, flags & ~FLAG_DF);
  // Record route and timestamp options get our entries, once as receiver and once as sender (RFC 1122
  // 3.2.2.6). Our address is the reply's source: swap-addrs ran before.
  const ihl = p.l4 - l3;
  if (ihl > 20 && recordInOptions(b, l3, ihl, b.subarray(l3 + OFF_SRC, l3 + OFF_SRC + 4), 2)) p.dirty |= Dirty.IpStale;
  return p;
}

const toReplyStage = defineStage({
  name: 'to-reply',
  keepsPackets: false,
  turnsAround: true,
  summary: 'turn an echo request into its reply (type 0, TTL 64); then checksum',
  args: [{ name: 'ttl', type: 'number', integer: true, default: REPLY_TTL, min: 1, max: 255, description: 'TTL of the reply' }],
  create: (args) => {
    const ttl = args.ttl as number;
    return { process: (p: Packet) => makeEchoReply(p, ttl) };
  },
});
export default toReplyStage;

/** it-pipe transform / pipeline stage: `to-reply`. */
export function toReply(args: { ttl?: number } = {}): PacketTransform {
  return stageTransform(toReplyStage, args);
}
