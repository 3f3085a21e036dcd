/**
 * Ethernet II frames as a TAP device gives them (no preamble, no FCS): destination and source MAC, then an
 * EtherType, with up to two VLAN tags (802.1Q, or an 802.1ad outer tag) in between. The payload starts
 * right after the last EtherType, so the two bytes before `l3` always hold the frame's inner EtherType.
 */

export const ETH_HEADER = 14;
export const ETH_ALEN = 6;
export const OFF_ETH_DST = 0;
export const OFF_ETH_SRC = 6;
export const OFF_ETH_TYPE = 12;
export const VLAN_TAG = 4;

export const ETHERTYPE_IPV4 = 0x0800;
export const ETHERTYPE_ARP = 0x0806;
export const ETHERTYPE_IPV6 = 0x86dd;
export const ETHERTYPE_VLAN = 0x8100;
export const ETHERTYPE_QINQ = 0x88a8;
/** Below this the field is an 802.3 length, not an EtherType (LLC frames: STP, ...). */
export const ETHERTYPE_MIN = 0x0600;
/** Tags read before giving up: an outer (802.1ad or 802.1Q) and an inner 802.1Q tag. */
export const MAX_VLAN_TAGS = 2;

export const ETH_DROP = {
  short: 'Ethernet frame shorter than its header',
  vlanShort: 'VLAN tag past the end of the frame',
  vlanDepth: `more than ${MAX_VLAN_TAGS} VLAN tags`,
  llc: '802.3 frame (a length, not an EtherType: LLC, STP)',
  unknown: 'EtherType neither IPv4, IPv6 nor ARP',
} as const;

/**
 * Offset of the payload of the Ethernet frame in `b` (past any VLAN tags), or a drop reason. The EtherType
 * of the payload is then `etherTypeBefore(b, offset)`.
 */
export function ethernetPayload(b: Uint8Array): number | string {
  if (b.length < ETH_HEADER) return ETH_DROP.short;
  let at = OFF_ETH_TYPE;
  let type = (b[at] << 8) | b[at + 1];
  for (let tags = 0; type === ETHERTYPE_VLAN || type === ETHERTYPE_QINQ; tags++) {
    if (tags === MAX_VLAN_TAGS) return ETH_DROP.vlanDepth;
    at += VLAN_TAG;
    if (b.length < at + 2) return ETH_DROP.vlanShort;
    type = (b[at] << 8) | b[at + 1];
  }
  return at + 2;
}

/** The EtherType stored in the two bytes before `payload` (the frame's innermost EtherType). */
export function etherTypeBefore(b: Uint8Array, payload: number): number {
  return (b[payload - 2] << 8) | b[payload - 1];
}

/** Exchanges the destination and source MAC addresses of a frame in place. */
export function swapMacs(b: Uint8Array): void {
  for (let i = 0; i < ETH_ALEN; i++) {
    const t = b[i];
    b[i] = b[OFF_ETH_SRC + i];
    b[OFF_ETH_SRC + i] = t;
  }
}

const MAC_TEXT = /^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/i;

/** Parses "02:00:00:00:00:01" into 6 bytes; null when it is not such an address. */
export function parseMac(text: string): Buffer | null {
  if (!MAC_TEXT.test(text)) return null;
  return Buffer.from(text.split(':').map((h) => parseInt(h, 16)));
}

/** Formats 6 bytes at `at` as "02:00:00:00:00:01". */
export function formatMac(b: Uint8Array, at = 0): string {
  const parts: string[] = [];
  for (let i = 0; i < ETH_ALEN; i++) parts.push(b[at + i].toString(16).padStart(2, '0'));
  return parts.join(':');
}

/** True for a group (multicast or broadcast) address: the I/G bit of the first byte. */
export function isGroupMac(b: Uint8Array, at: number): boolean {
  return (b[at] & 1) === 1;
}
