/**
 * neighbor: answers the kernel's "who has this address?" on a TAP device, for the peers a pipeline stands
 * for: ARP requests (RFC 826) and IPv6 neighbour solicitations (RFC 4861), so that the kernel can send IP
 * packets to those peers at all. Everything else passes on unchanged.
 *
 * Arguments:
 * - `mac=MAC`: the Ethernet address the peers answer with. Default: a fixed locally administered unicast
 *   address derived from the device's name (02 and the first five bytes of SHA-256 of "tunpipe neighbor "
 *   + name), so that it stays the same from run to run and the kernel's neighbour entries stay valid.
 * - `for=ADDRESSES`: the addresses answered for, comma-separated addresses or prefixes, IPv4 and IPv6
 *   (`198.18.0.2,198.18.0.10/31,2001:db8::/64`). Default: every address in the subnets of the device's
 *   addresses (those `--addr` gave it), except the device's own, and for IPv4 the network and broadcast
 *   addresses. Required when the device's addresses are not known (a persistent device configured before,
 *   a capture): the stage then says so at start. The device's own addresses are never answered for, even
 *   when `for=` names them: the kernel would take the answer for an address conflict.
 *
 * In: frames after `parse` on Ethernet (ctx.linkType 1). Out: the answers, sent straight back to the device
 * (`EXIT`: past the stages after this one, which never see them), and every other packet, unchanged.
 * - ARP: a request (op 1) whose target address is one we stand for gets a reply (op 2) from our MAC: the
 *   sender becomes the target, the asked-for address the sender, sent to the requester's hardware address.
 *   An ARP probe (sender 0.0.0.0, RFC 5227) is answered too, as Linux defends its own addresses; an
 *   announcement (sender = target) is no question and passes on.
 * - IPv6: a neighbour solicitation whose target we stand for gets an advertisement from the target address:
 *   hop limit 255, Solicited and Override set, our MAC in a target link-layer address option, sent to the
 *   solicitation's source (at the MAC of its source link-layer option, else the frame's source). A
 *   duplicate address detection probe (source ::) for an address we stand for is defended as RFC 4861 7.2.4
 *   says: to all-nodes ff02::1 (MAC 33:33:00:00:00:01), Solicited clear; the kernel's own probes are for its
 *   own addresses, which we never stand for, so its addresses never fail DAD. DAD probes for link-local
 *   targets (fe80::/10) are never defended, even under a `for=` that covers them: the device's own
 *   link-local address is not known to the stage.
 * Dropped (counted), as Linux's ndisc_rcv drops them: solicitations with a hop limit other than 255, an
 * ICMPv6 code other than 0, a bad checksum, in fragments, shorter than 24 bytes, for a multicast target, with
 * a malformed option; a DAD probe with a source link-layer option or not sent to the solicited-node group.
 * Solicitations and ARP requests for addresses we do not stand for pass on.
 */
import { lazyRequire } from '../src/lazy-require.js';
import { defineStage, EXIT, type StageArgs, type StageContext, type StageResult } from '../src/pipeline/stage.js';
import type { Packet } from '../src/packet/packet.js';
import { ETH_ALEN, ETHERTYPE_ARP, etherTypeBefore, OFF_ETH_DST, OFF_ETH_SRC, formatMac, parseMac } from '../src/packet/ethernet.js';
import { ARP_OP_REPLY, ARP_OP_REQUEST, OFF_ARP_OP, OFF_ARP_SHA, OFF_ARP_SPA, OFF_ARP_THA, OFF_ARP_TPA } from '../src/packet/arp.js';
import { IPV6_HEADER, NH_ICMPV6, OFF6_DST, OFF6_HOP_LIMIT, OFF6_SRC, isMulticast6, isUnspecified6, pseudoHeaderSum6 } from '../src/packet/ipv6.js';
import { checksumIsValid, internetChecksum } from '../src/packet/checksum.js';
import { AddressSet, networkAndBroadcast, parsePrefix, type Prefix } from '../src/packet/address-set.js';
import { LINKTYPE_ETHERNET } from '../src/pcap/format.js';
import { TunpipeError } from '../src/errors.js';

export const ICMPV6_NEIGHBOR_SOLICITATION = 135;
export const ICMPV6_NEIGHBOR_ADVERTISEMENT = 136;
/** RFC 4861 4.4 flags, in the first byte after the checksum. */
export const NA_FLAG_ROUTER = 0x80;
export const NA_FLAG_SOLICITED = 0x40;
export const NA_FLAG_OVERRIDE = 0x20;
export const ND_OPT_SOURCE_LL = 1;
export const ND_OPT_TARGET_LL = 2;
/** Type, code, checksum, flags/reserved, target. */
const ND_FIXED = 24;
/** The advertisement: fixed part and one target link-layer address option (8 bytes on Ethernet). */
const NA_LENGTH = ND_FIXED + 8;
const ALL_NODES = Buffer.from([0xff, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
const ALL_NODES_MAC = Buffer.from([0x33, 0x33, 0, 0, 0, 1]);

export const NEIGHBOR_DROP = {
  hopLimit: 'neighbour solicitation with a hop limit other than 255 (ignored, as Linux does)',
  code: 'neighbour solicitation with an ICMPv6 code other than 0',
  checksum: 'neighbour solicitation with a bad ICMPv6 checksum',
  fragment: 'neighbour solicitation in a fragment',
  short: 'neighbour solicitation shorter than 24 bytes',
  multicastTarget: 'neighbour solicitation for a multicast target',
  option: 'neighbour solicitation with a malformed option',
  dadOption: 'DAD probe (source ::) with a source link-layer address option',
  dadDestination: 'DAD probe (source ::) not sent to the solicited-node group',
} as const;

/** The default MAC for a device name (see the header). */
export function defaultNeighborMac(device: string): Buffer {
  const { createHash } = lazyRequire('node:crypto') as typeof import('node:crypto');
  const h = createHash('sha256').update(`tunpipe neighbor ${device}`).digest();
  return Buffer.from([0x02, h[0], h[1], h[2], h[3], h[4]]);
}

/** Parses `for=` into prefixes; a message for the first item that is not an address or prefix. */
function parseFor(text: string): Prefix[] | string {
  const out: Prefix[] = [];
  for (const item of text.split(',').map((s) => s.trim())) {
    const p = item === '' ? null : parsePrefix(item);
    if (p === null) return `'${item}' is not an address or prefix (198.18.0.2, 198.18.0.0/24, 2001:db8::/64)`;
    out.push(p);
  }
  return out;
}

/** The set answered for: `for=` or the device's subnets, never the device's own addresses. */
function addressesAnswered(args: StageArgs, ctx: StageContext): AddressSet {
  const own = (ctx.input?.addresses ?? []).map((a) => parsePrefix(a)).filter((p): p is Prefix => p !== null);
  const ownBytes = own.map((p) => p.bytes);
  if (args.for !== undefined) {
    const include = parseFor(String(args.for));
    if (typeof include === 'string') throw new TunpipeError(`stage '${ctx.name}': for=: ${include}`);
    if (include.some((p) => p.length === p.bytes.length * 8 && ownBytes.some((b) => b.equals(p.bytes)))) {
      ctx.warn('for= names an address of the device itself: it is not answered for (the kernel would see a conflict)');
    }
    return new AddressSet(include, ownBytes);
  }
  if (own.length === 0) {
    const where = ctx.input?.kind === 'device' ? `device ${ctx.input.name || '(unnamed)'} was given no --addr` : 'the input is not a device';
    throw new TunpipeError(`stage '${ctx.name}': no addresses to answer for: ${where}; name them with for=ADDRESSES (e.g. for=198.18.0.0/24,2001:db8::/64)`);
  }
  return new AddressSet(own, [...ownBytes, ...own.flatMap(networkAndBroadcast)]);
}

/** Where option parsing leaves the source link-layer address: its offset, 0 for none, -1 for malformed. */
function sourceLinkOption(b: Uint8Array, from: number, end: number): number {
  let found = 0;
  for (let at = from; at < end; ) {
    if (end - at < 2) return -1;
    const len = b[at + 1] * 8;
    if (len === 0 || at + len > end) return -1;
    if (b[at] === ND_OPT_SOURCE_LL && len >= 8) found = at + 2;
    at += len;
  }
  return found;
}

function isSolicitedNode(b: Uint8Array, at: number): boolean {
  // ff02::1:ffXX:XXXX
  if (b[at] !== 0xff || b[at + 1] !== 0x02) return false;
  for (let i = 2; i < 11; i++) if (b[at + i] !== 0) return false;
  return b[at + 11] === 1 && b[at + 12] === 0xff;
}

interface Counts {
  arp: number;
  ns: number;
  dad: number;
}

function answerer(mac: Buffer, set: AddressSet, counts: Counts) {
  // The fields of a solicitation, read before the frame is rewritten in place.
  const target = Buffer.alloc(16);
  const asker = Buffer.alloc(16);
  const askerMac = Buffer.alloc(ETH_ALEN);

  function answerArp(p: Packet): StageResult {
    const b = p.data;
    const a = p.l3;
    if (((b[a + OFF_ARP_OP] << 8) | b[a + OFF_ARP_OP + 1]) !== ARP_OP_REQUEST) return p;
    if (!set.has4(b, a + OFF_ARP_TPA)) return p;
    if (b.compare(b, a + OFF_ARP_SPA, a + OFF_ARP_SPA + 4, a + OFF_ARP_TPA, a + OFF_ARP_TPA + 4) === 0) return p;
    b[a + OFF_ARP_OP] = 0;
    b[a + OFF_ARP_OP + 1] = ARP_OP_REPLY;
    // Target <- the requester; sender <- us, with the address that was asked for.
    b.copy(target, 0, a + OFF_ARP_TPA, a + OFF_ARP_TPA + 4);
    b.copy(b, a + OFF_ARP_THA, a + OFF_ARP_SHA, a + OFF_ARP_SHA + 10);
    mac.copy(b, a + OFF_ARP_SHA);
    target.copy(b, a + OFF_ARP_SPA, 0, 4);
    b.copy(b, OFF_ETH_DST, a + OFF_ARP_THA, a + OFF_ARP_THA + ETH_ALEN);
    mac.copy(b, OFF_ETH_SRC);
    counts.arp++;
    return EXIT;
  }

  function answerSolicitation(p: Packet): StageResult {
    let b = p.data;
    const l3 = p.l3;
    const icmp = p.l4;
    const len = p.end - icmp;
    if (b[l3 + OFF6_HOP_LIMIT] !== 255) return NEIGHBOR_DROP.hopLimit;
    if (b[icmp + 1] !== 0) return NEIGHBOR_DROP.code;
    if (p.frag !== 0) return NEIGHBOR_DROP.fragment;
    if (len < ND_FIXED) return NEIGHBOR_DROP.short;
    if (!checksumIsValid(b, icmp, len, pseudoHeaderSum6(b, l3, len, NH_ICMPV6))) return NEIGHBOR_DROP.checksum;
    if (isMulticast6(b, icmp + 8)) return NEIGHBOR_DROP.multicastTarget;
    const sll = sourceLinkOption(b, icmp + ND_FIXED, p.end);
    if (sll < 0) return NEIGHBOR_DROP.option;
    const dad = isUnspecified6(b, l3 + OFF6_SRC);
    if (dad && sll !== 0) return NEIGHBOR_DROP.dadOption;
    if (dad && !isSolicitedNode(b, l3 + OFF6_DST)) return NEIGHBOR_DROP.dadDestination;
    if (!set.has6(b, icmp + 8)) return p;
    // The kernel's own link-local address is not known here: its DAD probe must never be taken for a rival's.
    if (dad && b[icmp + 8] === 0xfe && (b[icmp + 9] & 0xc0) === 0x80) return p;
    b.copy(target, 0, icmp + 8, icmp + 24);
    if (dad) {
      ALL_NODES.copy(asker);
      ALL_NODES_MAC.copy(askerMac);
    } else {
      b.copy(asker, 0, l3 + OFF6_SRC, l3 + OFF6_SRC + 16);
      b.copy(askerMac, 0, sll !== 0 ? sll : OFF_ETH_SRC, (sll !== 0 ? sll : OFF_ETH_SRC) + ETH_ALEN);
    }
    const end = l3 + IPV6_HEADER + NA_LENGTH;
    if (b.length >= end) {
      b = b.subarray(0, end);
    } else {
      // A solicitation without options is shorter than the advertisement: a frame of its own (rare).
      const grown = Buffer.alloc(end);
      b.copy(grown, 0, 0, l3);
      b = grown;
    }
    p.data = b;
    askerMac.copy(b, OFF_ETH_DST);
    mac.copy(b, OFF_ETH_SRC);
    // IPv6 header: version 6, traffic class and flow label 0, as Linux's ndisc sends.
    b[l3] = 0x60;
    b[l3 + 1] = 0;
    b[l3 + 2] = 0;
    b[l3 + 3] = 0;
    b[l3 + 4] = 0;
    b[l3 + 5] = NA_LENGTH;
    b[l3 + 6] = NH_ICMPV6;
    b[l3 + OFF6_HOP_LIMIT] = 255;
    target.copy(b, l3 + OFF6_SRC);
    asker.copy(b, l3 + OFF6_DST);
    const m = l3 + IPV6_HEADER;
    b.fill(0, m, end);
    b[m] = ICMPV6_NEIGHBOR_ADVERTISEMENT;
    b[m + 4] = (dad ? 0 : NA_FLAG_SOLICITED) | NA_FLAG_OVERRIDE;
    target.copy(b, m + 8);
    b[m + ND_FIXED] = ND_OPT_TARGET_LL;
    b[m + ND_FIXED + 1] = 1;
    mac.copy(b, m + ND_FIXED + 2);
    const sum = internetChecksum(b, m, NA_LENGTH, pseudoHeaderSum6(b, l3, NA_LENGTH, NH_ICMPV6));
    b[m + 2] = sum >> 8;
    b[m + 3] = sum & 0xff;
    p.l4 = m;
    p.end = end;
    p.proto = NH_ICMPV6;
    p.frag = 0;
    p.dirty = 0;
    p.ipSumAdj = 0;
    p.l4SumAdj = 0;
    if (dad) counts.dad++;
    else counts.ns++;
    return EXIT;
  }

  return (p: Packet): StageResult => {
    if (p.version === 6) return p.proto === NH_ICMPV6 && p.end > p.l4 && p.data[p.l4] === ICMPV6_NEIGHBOR_SOLICITATION ? answerSolicitation(p) : p;
    if (p.version === 0 && p.l3 >= 14 && etherTypeBefore(p.data, p.l3) === ETHERTYPE_ARP && p.end - p.l3 >= 28) return answerArp(p);
    return p;
  };
}

const MAC_PATTERN = /^[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}$/;

const neighborStage = defineStage({
  name: 'neighbor',
  keepsPackets: false,
  answersDirectly: true,
  recordsChanges: true,
  summary: "answer ARP requests and IPv6 neighbour solicitations for the device's peers (TAP)",
  help: [
    'Put it after parse on a TAP device: parse | neighbor | icmp-echo | checksum.',
    'ARP requests and neighbour solicitations for the addresses it stands for are answered with mac=',
    '(replies go straight back to the device, past the later stages); everything else passes on.',
    "Default for=: every address of the device's subnets (from --addr) except the device's own.",
    'Solicitations with a hop limit other than 255, a code other than 0 or a bad checksum are dropped, as',
    'Linux drops them; DAD probes (source ::) for our addresses are defended to ff02::1.',
    'Example: parse | neighbor for=198.18.0.2,2001:db8::2 mac=02:00:00:00:00:02 | icmp-echo | checksum',
  ].join('\n'),
  args: [
    { name: 'mac', type: 'string', placeholder: 'MAC', description: 'Ethernet address the peers answer with (default: derived from the device name)', pattern: { regex: MAC_PATTERN, expected: 'an Ethernet address such as 02:00:00:00:00:02' } },
    { name: 'for', type: 'string', placeholder: 'ADDRESSES', description: "addresses or prefixes answered for, comma-separated (default: the device's subnets but its own addresses)" },
  ],
  checkArgs(args: StageArgs): string | null {
    if (args.mac !== undefined && (parseMac(String(args.mac))![0] & 1) === 1) return `mac=${args.mac} is a group (multicast) address: give a unicast one (first byte even)`;
    if (args.for !== undefined) {
      const r = parseFor(String(args.for));
      if (typeof r === 'string') return `for=: ${r}`;
    }
    return null;
  },
  create(args, ctx) {
    const counts: Counts = { arp: 0, ns: 0, dad: 0 };
    if (ctx.linkType !== LINKTYPE_ETHERNET) {
      ctx.warn('nothing to answer: the packets carry no link layer (neighbor works on TAP devices and Ethernet captures); everything passes on');
      return { process: (p: Packet) => p };
    }
    const mac = args.mac !== undefined ? parseMac(String(args.mac))! : defaultNeighborMac(ctx.input?.name ?? '');
    const process = answerer(mac, addressesAnswered(args, ctx), counts);
    return {
      process,
      report: () => `answered ${counts.arp} ARP requests, ${counts.ns} neighbour solicitations${counts.dad ? `, defended ${counts.dad} DAD probes` : ''} (as ${formatMac(mac)})`,
    };
  },
});
export default neighborStage;
