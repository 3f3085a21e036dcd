/** Ethernet frames for tests, built byte by byte, independently of src/packet/ethernet.ts. */

export const TAP_MAC = Buffer.from([0x2a, 0x60, 0x86, 0xba, 0xbb, 0xa9]);
export const PEER_MAC = Buffer.from([0x02, 0x11, 0x22, 0x33, 0x44, 0x55]);

/** An Ethernet II frame: destination, source, optional tags (TPID, TCI), EtherType, payload. */
export function frame(type: number, payload: Buffer, tags: [number, number][] = [], dst = PEER_MAC, src = TAP_MAC): Buffer {
  const head = Buffer.alloc(14 + tags.length * 4);
  dst.copy(head, 0);
  src.copy(head, 6);
  tags.forEach(([tpid, tci], i) => {
    head.writeUInt16BE(tpid, 12 + i * 4);
    head.writeUInt16BE(tci, 14 + i * 4);
  });
  head.writeUInt16BE(type, 12 + tags.length * 4);
  return Buffer.concat([head, payload]);
}
