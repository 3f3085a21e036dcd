/**
 * reassemble: puts fragmented IPv4 datagrams back together (RFC 791 3.2, RFC 815), so the stages after it
 * see whole datagrams. Unfragmented packets pass straight through.
 *
 * Arguments:
 *   timeout=S   seconds a datagram may take to complete before its fragments are discarded (default 30)
 *   max=N       datagrams being reassembled at once (default 64); beyond that, new ones are refused
 * In: parsed packets. Out: unfragmented packets, and each datagram once its last missing fragment arrives
 * (a new buffer: the first fragment's header and options, MF and offset cleared, header checksum right).
 * Held, not dropped: fragments waiting for the rest (counted as "held").
 * Drops: a fragment that overlaps one already received (the whole datagram is discarded, as Linux does),
 * a datagram longer than 65535 bytes, a full table. Fragments of datagrams that time out are reported on
 * exit. Memory is bounded by max × 64 KiB. No timers: expiry is checked as packets arrive.
 */
import { defineStage, HELD, type StageResult } from '../src/pipeline/stage.js';
import { stageTransform, type PacketTransform } from '../src/pipeline/transform.js';
import { FLAG_MF, FRAGMENT_OFFSET_MASK, OFF_FLAGS_FRAGMENT, OFF_HEADER_CHECKSUM, OFF_ID, OFF_TOTAL_LENGTH, OFF_PROTOCOL } from '../src/packet/ipv4.js';
import { writeChecksumAt } from '../src/packet/checksum.js';
import { Packet } from '../src/packet/packet.js';

export const REASSEMBLE_DROP = {
  overlap: 'overlapping fragment (datagram discarded)',
  tooLong: 'reassembled datagram longer than 65535 bytes',
  full: 'reassembly table full',
} as const;

interface Piece {
  offset: number;
  bytes: Buffer;
}

interface Pending {
  started: number;
  pieces: Piece[];
  /** Payload length, known once the fragment without MF has arrived; -1 before. */
  total: number;
  /** The fragment at offset 0 (its link header, IP header and options head the datagram). */
  first: Packet | null;
  count: number;
}

function keyOf(p: Packet): string {
  const b = p.data;
  const l3 = p.l3;
  // Source, destination, protocol, identification (RFC 791): 11 bytes as latin1 text.
  return b.toString('latin1', l3 + 12, l3 + 20) + String.fromCharCode(b[l3 + OFF_PROTOCOL], b[l3 + OFF_ID], b[l3 + OFF_ID + 1]);
}

export function createReassembler(timeoutMs: number, max: number, now: () => number = Date.now) {
  const table = new Map<string, Pending>();
  let reassembled = 0;
  let expired = 0;

  function expire(t: number): void {
    for (const [k, d] of table) {
      if (t - d.started < timeoutMs) break;
      expired += d.count;
      table.delete(k);
    }
  }

  function build(d: Pending): Packet {
    const first = d.first!;
    const fb = first.data;
    const hlen = first.l4 - first.l3;
    const out = Buffer.allocUnsafe(first.l4 + d.total);
    fb.copy(out, 0, 0, first.l4);
    for (const piece of d.pieces) piece.bytes.copy(out, first.l4 + piece.offset);
    const l3 = first.l3;
    out.writeUInt16BE(hlen + d.total, l3 + OFF_TOTAL_LENGTH);
    out.writeUInt16BE(out.readUInt16BE(l3 + OFF_FLAGS_FRAGMENT) & ~(FLAG_MF | FRAGMENT_OFFSET_MASK), l3 + OFF_FLAGS_FRAGMENT);
    writeChecksumAt(out, l3, hlen, l3 + OFF_HEADER_CHECKSUM);
    const p = new Packet(out, first.sec, first.nsec);
    p.l3 = l3;
    p.version = 4;
    p.l4 = first.l4;
    p.end = out.length;
    p.proto = first.proto;
    return p;
  }

  function complete(d: Pending): boolean {
    if (d.total < 0 || d.first === null) return false;
    d.pieces.sort((a, b) => a.offset - b.offset);
    let covered = 0;
    for (const piece of d.pieces) {
      if (piece.offset > covered) return false;
      covered = Math.max(covered, piece.offset + piece.bytes.length);
    }
    return covered >= d.total;
  }

  function process(p: Packet): StageResult {
    if (p.version !== 4) return p;
    const b = p.data;
    const word = (b[p.l3 + OFF_FLAGS_FRAGMENT] << 8) | b[p.l3 + OFF_FLAGS_FRAGMENT + 1];
    if ((word & (FLAG_MF | FRAGMENT_OFFSET_MASK)) === 0) return p;
    const t = now();
    expire(t);
    const offset = (word & FRAGMENT_OFFSET_MASK) * 8;
    const bytes = b.subarray(p.l4, p.end);
    const more = (word & FLAG_MF) !== 0;
    if (p.l4 - p.l3 + offset + bytes.length > 65535) return REASSEMBLE_DROP.tooLong;
    const key = keyOf(p);
    let d = table.get(key);
    if (!d) {
      if (table.size >= max) return REASSEMBLE_DROP.full;
      d = { started: t, pieces: [], total: -1, first: null, count: 0 };
      table.set(key, d);
    }
    for (const piece of d.pieces) {
      if (offset < piece.offset + piece.bytes.length && piece.offset < offset + bytes.length) {
        table.delete(key);
        expired += d.count;
        return REASSEMBLE_DROP.overlap;
      }
    }
    // Copy: the packet's buffer may be a view into a slab or a file chunk that is reused.
    d.pieces.push({ offset, bytes: Buffer.from(bytes) });
    d.count++;
    if (offset === 0) {
      const head = Buffer.from(b.subarray(0, p.l4));
      const f = new Packet(head, p.sec, p.nsec);
      f.l3 = p.l3;
      f.l4 = p.l4;
      f.proto = p.proto;
      d.first = f;
    }
    if (!more) d.total = offset + bytes.length;
    if (!complete(d)) return HELD;
    table.delete(key);
    reassembled++;
    return build(d);
  }

  return {
    process,
    flush: () => expire(now()),
    report: () =>
      reassembled + expired + table.size === 0
        ? ''
        : `${reassembled} datagrams reassembled, ${table.size} in progress, ${expired} fragments discarded (timeout or overlap)`,
  };
}

const reassembleStage = defineStage({
  name: 'reassemble',
  keepsPackets: false,
  summary: 'put fragmented IPv4 datagrams back together (bounded, with a timeout)',
  args: [
    { name: 'timeout', type: 'number', default: 30, min: 0.001, description: 'seconds to wait for missing fragments' },
    { name: 'max', type: 'number', integer: true, default: 64, min: 1, max: 65536, description: 'datagrams in progress at once' },
  ],
  create: (args) => createReassembler((args.timeout as number) * 1000, args.max as number),
});
export default reassembleStage;

/** it-pipe transform / pipeline stage: `reassemble`. */
export function reassemble(args: { timeout?: number; max?: number } = {}): PacketTransform {
  return stageTransform(reassembleStage, args);
}
