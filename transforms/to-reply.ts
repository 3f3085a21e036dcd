/**
 * to-reply: turns an echo request into its echo reply, as Linux answers (net/ipv4/icmp.c, net/ipv6/icmp.c).
 * Identifier, sequence number, payload and the request's code are kept (Linux copies the code: a request
 * with code 1 gets a reply with code 1). Put it after swap-addrs.
 * - IPv4: type 8 becomes 0, the TTL a fresh 64 (not the request's), DF cleared; IP options as Linux echoes
 *   them (ip_options_echo, RFC 1122 3.2.2.6): record route and timestamp with our address and time recorded
 *   (as receiver and as sender), CIPSO, and nothing else (no-ops, router alert and other options are left
 *   out, the header gets shorter and the message moves up).
 * - IPv6: type 128 becomes 129, the hop limit a fresh 64, the traffic class kept; the flow label is kept
 *   too (Linux by default gives its reply a label of its own, a hash of the flow that no other host can
 *   reproduce; keeping the request's is what Linux does with net.ipv6.flowlabel_reflect, and keeps one label
 *   per flow as RFC 6437 asks). Extension headers are removed (the kernel consumes them and its reply has
 *   none): the ICMPv6 message moves up to follow the fixed header, and the packet gets shorter.
 *
 * Arguments: `ttl=N` (1..255, default 64): TTL or hop limit of the reply.
 * In: echo requests (after filter-icmp-echo and swap-addrs). Out: echo replies whose checksum changes are
 * recorded for the `checksum` stage to apply incrementally (RFC 1624).
 * Drops: packets that are not parsed echo requests.
 */
import { defineStage } from '../src/pipeline/stage.js';
import { FLAG_DF, OFF_FLAGS_FRAGMENT, OFF_SRC, OFF_TOTAL_LENGTH, OFF_TTL } from '../src/packet/ipv4.js';
import { echoOptions, recordInOptions } from '../src/packet/ipv4-options.js';
import { ICMP_ECHO_REPLY, ICMP_ECHO_REQUEST, REPLY_TTL } from '../src/packet/icmp.js';
import { ICMPV6_ECHO_REPLY, ICMPV6_ECHO_REQUEST, IPV6_HEADER, NH_ICMPV6, OFF6_HOP_LIMIT, OFF6_NEXT_HEADER, OFF6_PAYLOAD_LENGTH } from '../src/packet/ipv6.js';
import { DirtyFlag, type Packet } from '../src/packet/packet.js';

export const REPLY_DROP = { notRequest: 'not a parsed ICMP or ICMPv6 echo request' } as const;

function makeEchoReply6(p: Packet, hopLimit: number): Packet | string {
  const b = p.data;
  const l3 = p.l3;
  if (p.proto !== NH_ICMPV6 || p.end - p.l4 < 8 || b[p.l4] !== ICMPV6_ECHO_REQUEST) return REPLY_DROP.notRequest;
  const top = l3 + IPV6_HEADER;
  if (p.l4 !== top) {
    // No extension headers in the reply. Moving the message keeps its bytes, and the pseudo-header keeps its
    // sum (same addresses, same length), so the checksum is still right for the checksum stage to adjust.
    const len = p.end - p.l4;
    b.copy(b, top, p.l4, p.end);
    b[l3 + OFF6_NEXT_HEADER] = NH_ICMPV6;
    b[l3 + OFF6_PAYLOAD_LENGTH] = len >> 8;
    b[l3 + OFF6_PAYLOAD_LENGTH + 1] = len & 0xff;
    p.l4 = top;
    p.end = top + len;
    p.frag = 0;
    if (p.data.length !== p.end) p.data = b.subarray(0, p.end);
  }
  p.setL4Word(p.l4, (ICMPV6_ECHO_REPLY << 8) | b[p.l4 + 1]);
  b[l3 + OFF6_HOP_LIMIT] = hopLimit;
  return p;
}

/** The reply's IPv4 options as Linux's: recorded into, reduced to what Linux echoes, the message moved up. */
function replyOptions(p: Packet, ihl: number): void {
  const b = p.data;
  const l3 = p.l3;
  recordInOptions(b, l3, ihl, b.subarray(l3 + OFF_SRC, l3 + OFF_SRC + 4), 2);
  const newIhl = 20 + echoOptions(b, l3, ihl);
  if (newIhl !== ihl) {
    const len = p.end - p.l4;
    b.copy(b, l3 + newIhl, p.l4, p.end);
    b[l3] = 0x40 | (newIhl >> 2);
    b[l3 + OFF_TOTAL_LENGTH] = (newIhl + len) >> 8;
    b[l3 + OFF_TOTAL_LENGTH + 1] = (newIhl + len) & 0xff;
    p.l4 = l3 + newIhl;
    p.end = p.l4 + len;
    if (p.data.length !== p.end) p.data = b.subarray(0, p.end);
  }
  p.dirty |= DirtyFlag.IpStale;
}

/** Rewrites a request into a reply in place, with the given TTL (hop limit for IPv6). */
export function makeEchoReply(p: Packet, ttl = REPLY_TTL): Packet | string {
  if (p.version !== 4) return p.version === 6 ? makeEchoReply6(p, ttl) : REPLY_DROP.notRequest;
  const b = p.data;
  const l3 = p.l3;
  if (p.proto !== 1 || p.end - p.l4 < 8 || b[p.l4] !== ICMP_ECHO_REQUEST) return REPLY_DROP.notRequest;
  p.setL4Word(p.l4, (ICMP_ECHO_REPLY << 8) | b[p.l4 + 1]);
  p.setIpWord(l3 + OFF_TTL, (ttl << 8) | p.proto);
  // Like Linux's own replies: DF clear, so a reply larger than a link's MTU can still be fragmented.
  const flags = p.word(l3 + OFF_FLAGS_FRAGMENT);
  if (flags & FLAG_DF) p.setIpWord(l3 + OFF_FLAGS_FRAGMENT, flags & ~FLAG_DF);
  // Record route and timestamp options get our entries, once as receiver and once as sender (RFC 1122
  // 3.2.2.6). Our address is the reply's source: swap-addrs ran before.
  const ihl = p.l4 - l3;
  if (ihl > 20) replyOptions(p, ihl);
  return p;
}

const toReplyStage = defineStage({
  name: 'to-reply',
  keepsPackets: false,
  turnsAround: true,
  recordsChanges: true,
  summary: 'turn an echo request into its reply (type 0 / 129, TTL or hop limit 64); then checksum',
  args: [{ name: 'ttl', type: 'number', integer: true, default: REPLY_TTL, min: 1, max: 255, description: 'TTL (IPv6: hop limit) of the reply' }],
  create: (args) => {
    const ttl = args.ttl as number;
    return { process: (p: Packet) => makeEchoReply(p, ttl) };
  },
});
export default toReplyStage;
