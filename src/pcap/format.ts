/**
 * The classic pcap file format (what `tcpdump -w` writes): a 24-byte global header, then per packet a
 * 16-byte record header (seconds, micro- or nanoseconds, captured length, original length) and the bytes.
 */

export const PCAP_MAGIC_MICROS = 0xa1b2c3d4;
export const PCAP_MAGIC_NANOS = 0xa1b23c4d;
export const PCAPNG_MAGIC = 0x0a0d0d0a;
export const GLOBAL_HEADER_SIZE = 24;
export const RECORD_HEADER_SIZE = 16;

/** LINKTYPE_RAW: the packet starts with an IPv4 or IPv6 header, as a TUN device gives it. (DLT_RAW is 12 in
 * the API, but files carry 101.) */
export const LINKTYPE_RAW = 101;
export const LINKTYPE_ETHERNET = 1;
export const LINKTYPE_IPV4 = 228;
export const LINKTYPE_IPV6 = 229;

export const DEFAULT_SNAPLEN = 262144;

/** Writes a global header (little-endian, as written by this machine) into a new Buffer. */
export function globalHeader(linkType: number, nanos: boolean, snaplen = DEFAULT_SNAPLEN): Buffer {
  const h = Buffer.alloc(GLOBAL_HEADER_SIZE);
  h.writeUInt32LE(nanos ? PCAP_MAGIC_NANOS : PCAP_MAGIC_MICROS, 0);
  h.writeUInt16LE(2, 4);
  h.writeUInt16LE(4, 6);
  h.writeInt32LE(0, 8);
  h.writeUInt32LE(0, 12);
  h.writeUInt32LE(snaplen, 16);
  h.writeUInt32LE(linkType, 20);
  return h;
}
