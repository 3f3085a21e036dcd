/**
 * ARP for IPv4 over Ethernet (RFC 826): the 28-byte body that follows the Ethernet header.
 */

export const ARP_BODY = 28;
export const OFF_ARP_HTYPE = 0;
export const OFF_ARP_PTYPE = 2;
export const OFF_ARP_HLEN = 4;
export const OFF_ARP_PLEN = 5;
export const OFF_ARP_OP = 6;
export const OFF_ARP_SHA = 8;
export const OFF_ARP_SPA = 14;
export const OFF_ARP_THA = 18;
export const OFF_ARP_TPA = 24;

export const ARP_HTYPE_ETHERNET = 1;
export const ARP_OP_REQUEST = 1;
export const ARP_OP_REPLY = 2;

export const ARP_DROP = {
  short: 'ARP shorter than its 28 bytes',
  notEthernetIPv4: 'ARP not for Ethernet and IPv4 (hardware type 1, protocol 0x0800, lengths 6 and 4)',
} as const;

/**
 * True for an ARP message as `parse` passes it on an Ethernet link: IP version 0, with its transport offset
 * set to where the message starts (parse's mark; an unparsed packet has 0 there), so stages that work on
 * IP can tell "not IP" from "not parsed".
 */
export function isParsedArp(p: { version: number; l3: number; l4: number; end: number }): boolean {
  return p.version === 0 && p.l3 > 0 && p.l4 === p.l3 && p.end - p.l3 === ARP_BODY;
}

/** Why the ARP message at `at` is not one for IPv4 over Ethernet, or null when it is (Linux's arp_rcv checks the same). */
export function checkArp(b: Uint8Array, at: number): string | null {
  if (b.length - at < ARP_BODY) return ARP_DROP.short;
  if (((b[at] << 8) | b[at + 1]) !== ARP_HTYPE_ETHERNET || ((b[at + 2] << 8) | b[at + 3]) !== 0x0800 || b[at + OFF_ARP_HLEN] !== 6 || b[at + OFF_ARP_PLEN] !== 4) {
    return ARP_DROP.notEthernetIPv4;
  }
  return null;
}
