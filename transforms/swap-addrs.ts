/**
 * swap-addrs: exchanges the source and destination addresses, so the packet goes back where it came from.
 *
 * Arguments: none.
 * In: parsed IPv4 or IPv6 packets. Out: the same packets, addresses swapped in place.
 * Checksums stay valid: the IPv4 header checksum and the TCP/UDP pseudo-header sums are sums of the same
 * words in another order, so nothing needs recomputing.
 * On Ethernet (TAP: ctx.linkType 1) the destination and source MAC addresses are exchanged too, so the frame
 * goes back to the host that sent it from the address it was sent to (VLAN tags stay); decided when the stage
 * is created, so a TUN pipeline does no Ethernet work.
 * Drops: packets that were not parsed.
 */
import { defineStage } from '../src/pipeline/stage.js';
import { OFF_DST, OFF_SRC } from '../src/packet/ipv4.js';
import type { Packet } from '../src/packet/packet.js';
import { isParsedArp } from '../src/packet/arp.js';
import { ETH_HEADER, swapMacs } from '../src/packet/ethernet.js';
import { LINKTYPE_ETHERNET } from '../src/pcap/format.js';

export const SWAP_DROP = { unparsed: 'not parsed (put parse first)', arp: 'ARP, not IP (neighbor answers ARP)' } as const;

function swapBytes(b: Buffer, a: number, c: number, n: number): void {
  for (let i = 0; i < n; i++) {
    const t = b[a + i];
    b[a + i] = b[c + i];
    b[c + i] = t;
  }
}

/** Swaps the addresses of a parsed packet in place. */
export function swapPacketAddresses(p: Packet): Packet | string {
  if (p.version === 4) swapBytes(p.data, p.l3 + OFF_SRC, p.l3 + OFF_DST, 4);
  else if (p.version === 6) swapBytes(p.data, p.l3 + 8, p.l3 + 24, 16);
  else return isParsedArp(p) ? SWAP_DROP.arp : SWAP_DROP.unparsed;
  return p;
}

/** Swaps the MAC and IP addresses of a parsed Ethernet frame in place. */
export function swapFrameAddresses(p: Packet): Packet | string {
  if (p.version === 0 || p.l3 < ETH_HEADER) return isParsedArp(p) ? SWAP_DROP.arp : SWAP_DROP.unparsed;
  swapMacs(p.data);
  return swapPacketAddresses(p);
}

const swapAddrsStage = defineStage({
  name: 'swap-addrs',
  keepsPackets: false,
  turnsAround: true,
  recordsChanges: true,
  summary: 'exchange source and destination addresses, IP and (on Ethernet) MAC; checksums stay valid',
  args: [],
  create: (_args, ctx) => ({ process: ctx.linkType === LINKTYPE_ETHERNET ? swapFrameAddresses : swapPacketAddresses }),
});
export default swapAddrsStage;
