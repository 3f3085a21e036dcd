/**
 * reassemble: puts fragmented IPv4 (RFC 791 3.2, RFC 815) and IPv6 (RFC 8200 4.5) datagrams back together,
 * so the stages after it see whole datagrams. Unfragmented packets pass straight through, and so do IPv6
 * atomic fragments (offset 0 without M: whole datagrams, RFC 6946).
 *
 * Arguments:
 *   timeout=S     seconds a datagram may take to complete before its fragments are discarded (default 30)
 *   max=N         datagrams being reassembled at once (default 64)
 *   memory=SIZE   bytes the fragments held may take, all datagrams together (default 4MiB, Linux's
 *                 ipfrag_high_thresh); each fragment is counted with 64 bytes of bookkeeping, so a flood
 *                 of tiny fragments is bounded too
 * In: parsed packets. Out: unfragmented packets, and each datagram once its last missing fragment arrives
 * (a new buffer: the first fragment's headers; IPv4: MF and offset cleared, header checksum right; IPv6:
 * the fragment header removed, payload length right).
 * Held, not dropped: fragments waiting for the rest (counted as "held").
 * Robust under a flood of fragments that never complete: when the table is full (max datagrams or memory),
 * the oldest incomplete datagram is evicted to make room, as FreeBSD does, so a new datagram always gets in;
 * and one source (one address) may hold at most half of the table, in datagrams and in memory: beyond that
 * its own oldest datagram is evicted, so a flood from one source cannot push out everyone else's.
 * Drops: a fragment that overlaps one already received (the whole datagram is discarded, as Linux does and
 * RFC 5722 requires for IPv6); a duplicate, wholly inside bytes already received, is dropped alone and the
 * datagram kept (RFC 8200 4.5 allows it, Linux does it); fragments that disagree on where the datagram ends (discarded too, as Linux
 * does), a datagram longer than 65535 bytes, an IPv6 fragment that is not the last whose length is not a
 * multiple of 8 (RFC 8200). Fragments are kept sorted, so a datagram of thousands of tiny fragments costs
 * a binary search per fragment, not a scan. Fragments of
 * datagrams that time out or are evicted are reported on exit. No timers: expiry is checked as packets
 * arrive, on the pipeline's clock (the file's time offline).
 */
import { defineStage, HELD, type StageResult } from '../src/pipeline/stage.js';
import { FLAG_MF, FRAGMENT_OFFSET_MASK, OFF_FLAGS_FRAGMENT, OFF_HEADER_CHECKSUM, OFF_ID, OFF_TOTAL_LENGTH, OFF_PROTOCOL } from '../src/packet/ipv4.js';
import { FRAG6_MF, FRAG6_OFFSET_MASK, FRAGMENT_HEADER, fragmentWord, IPV6_HEADER, NH_AH, NH_FRAGMENT, OFF6_NEXT_HEADER, OFF6_PAYLOAD_LENGTH } from '../src/packet/ipv6.js';
import { writeChecksumAt } from '../src/packet/checksum.js';
import { Packet } from '../src/packet/packet.js';
import { parsePacket } from './parse.js';

export const REASSEMBLE_DROP = {
  overlap: 'overlapping fragment (datagram discarded)',
  duplicate: 'duplicate fragment (bytes already received; dropped, the datagram kept)',
  tooLong: 'reassembled datagram longer than 65535 bytes',
  tooMany: 'datagram of more than 8192 fragments (discarded)',
  inconsistentEnd: 'fragment past the end of its datagram, or two different ends (datagram discarded)',
  notMultipleOf8: 'IPv6 fragment (not the last) whose length is not a multiple of 8',
  tooBig: 'fragment larger than the reassembly memory',
  badDatagram: 'reassembled datagram is malformed',
} as const;

/** Bookkeeping a held fragment is charged with beside its bytes, so many tiny fragments count too. */
export const FRAGMENT_OVERHEAD = 64;
/** Most fragments one datagram may have: 65535 bytes in 8-byte pieces; more can only be overlaps. */
export const MAX_FRAGMENTS = 8192;

interface Piece {
  offset: number;
  bytes: Buffer;
  /**
   * Pieces that arrived in order, each starting where the last one ended, form a run (Linux's frag_run): a
   * duplicate is a fragment wholly inside one run.
   */
  run: number;
}

interface Pending {
  key: string;
  source: string;
  started: number;
  /** Sorted by offset, never overlapping. */
  pieces: Piece[];
  /** Bytes the pieces hold (complete when it reaches `total`). */
  covered: number;
  /** The furthest any piece reaches. */
  reach: number;
  /** Runs started so far. */
  runs: number;
  /** Payload length, known once the last fragment (no MF) has arrived; -1 before. */
  total: number;
  /** The fragment at offset 0: its link header and IP headers (IPv6: up to the fragment header) head the datagram. */
  first: Packet | null;
  /** Bytes charged against the memory bound. */
  charge: number;
}

/** Limits of the table; see the stage's header. */
export interface ReassemblyLimits {
  timeoutMs: number;
  max: number;
  memory: number;
}

/** Counters of a reassembler, for its exit report and for tests. */
export interface ReassemblyCounters {
  reassembled: number;
  /** Fragments discarded because their datagram timed out. */
  expired: number;
  /** Fragments discarded with a datagram evicted to make room. */
  evicted: number;
  /** Fragments discarded with a datagram that had an overlap or too many fragments. */
  discarded: number;
}

function key4(b: Buffer, l3: number): string {
  // Source, destination, protocol, identification (RFC 791): 11 bytes as latin1 text.
  return '4' + b.toString('latin1', l3 + 12, l3 + 20) + String.fromCharCode(b[l3 + OFF_PROTOCOL], b[l3 + OFF_ID], b[l3 + OFF_ID + 1]);
}

function key6(b: Buffer, l3: number, frag: number): string {
  // Source, destination and the 32-bit identification (RFC 8200 4.5).
  return '6' + b.toString('latin1', l3 + 8, l3 + 40) + b.toString('latin1', frag + 4, frag + 8);
}

export function createReassembler(limits: ReassemblyLimits, now: () => number = Date.now) {
  const { timeoutMs, max, memory } = limits;
  const shareDatagrams = Math.max(1, Math.floor(max / 2));
  const shareMemory = Math.floor(memory / 2);
  const table = new Map<string, Pending>();
  const bySource = new Map<string, { datagrams: number; bytes: number }>();
  let used = 0;
  const counters: ReassemblyCounters = { reassembled: 0, expired: 0, evicted: 0, discarded: 0 };

  function remove(d: Pending): void {
    table.delete(d.key);
    used -= d.charge;
    const s = bySource.get(d.source)!;
    s.datagrams--;
    s.bytes -= d.charge;
    if (s.datagrams === 0) bySource.delete(d.source);
  }

  function expire(t: number): void {
    for (const d of table.values()) {
      if (t - d.started < timeoutMs) break;
      counters.expired += d.pieces.length;
      remove(d);
    }
  }

  /** Evicts the oldest datagram (of `source`, when given) other than `keep`; false when there is none. */
  function evictOldest(keep: Pending | null, source: string | null): boolean {
    for (const d of table.values()) {
      if (d === keep || (source !== null && d.source !== source)) continue;
      counters.evicted += d.pieces.length;
      remove(d);
      return true;
    }
    return false;
  }

  function build4(d: Pending): Packet {
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

  /** IPv6: the unfragmentable part (headers before the fragment header), then the pieces; parsed again. */
  function build6(d: Pending): Packet | string {
    const first = d.first!;
    const head = first.data;
    // `first` holds the headers up to the fragment header; its l4 marks where the fragment header began,
    // and `proto` the fragment header's own next header.
    const unfrag = first.l4;
    const out = Buffer.allocUnsafe(unfrag + d.total);
    head.copy(out, 0, 0, unfrag);
    for (const piece of d.pieces) piece.bytes.copy(out, unfrag + piece.offset);
    const l3 = first.l3;
    out.writeUInt16BE(unfrag - l3 - IPV6_HEADER + d.total, l3 + OFF6_PAYLOAD_LENGTH);
    // The header that named the fragment header now names what followed it.
    out[nextHeaderField(out, l3, unfrag)] = first.proto;
    const p = new Packet(out, first.sec, first.nsec);
    p.l3 = l3;
    const r = parsePacket(p);
    return typeof r === 'string' ? `${REASSEMBLE_DROP.badDatagram}: ${r}` : p;
  }

  /** Index in `d.pieces` (sorted by offset) where a piece at `offset` belongs. */
  function slot(d: Pending, offset: number): number {
    let lo = 0;
    let hi = d.pieces.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (d.pieces[mid].offset < offset) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }

  /**
   * True when [offset, stop) lies inside one run of received pieces (what Linux calls a duplicate). The walk
   * along the run is bounded: a longer one counts as an overlap.
   */
  function containedInRun(d: Pending, at: number, offset: number, stop: number): boolean {
    const j0 = d.pieces[at]?.offset === offset ? at : at - 1;
    if (j0 < 0) return false;
    let j = j0;
    let end = d.pieces[j].offset + d.pieces[j].bytes.length;
    if (d.pieces[j].offset > offset || end <= offset) return false;
    for (let steps = 0; end < stop && steps < 64; steps++) {
      const next = d.pieces[j + 1];
      if (!next || next.run !== d.pieces[j].run) return false;
      j++;
      end += next.bytes.length;
    }
    return end >= stop;
  }

  function discard(d: Pending, reason: string): string {
    counters.discarded += d.pieces.length;
    remove(d);
    return reason;
  }

  function process(p: Packet): StageResult {
    const b = p.data;
    const l3 = p.l3;
    let offset: number;
    let more: boolean;
    let headEnd: number;
    let key: string;
    let source: string;
    if (p.version === 4) {
      const word = (b[l3 + OFF_FLAGS_FRAGMENT] << 8) | b[l3 + OFF_FLAGS_FRAGMENT + 1];
      if ((word & (FLAG_MF | FRAGMENT_OFFSET_MASK)) === 0) return p;
      offset = (word & FRAGMENT_OFFSET_MASK) * 8;
      more = (word & FLAG_MF) !== 0;
      headEnd = p.l4;
      key = key4(b, l3);
      source = b.toString('latin1', l3 + 12, l3 + 16);
    } else if (p.version === 6) {
      if (p.frag === 0) return p;
      const word = fragmentWord(b, p.frag);
      if ((word & (FRAG6_OFFSET_MASK | FRAG6_MF)) === 0) return p;
      offset = word & FRAG6_OFFSET_MASK;
      more = (word & FRAG6_MF) !== 0;
      headEnd = p.frag;
      key = key6(b, l3, p.frag);
      source = b.toString('latin1', l3 + 8, l3 + 24);
    } else {
      return p;
    }
    const t = now();
    expire(t);
    const dataStart = p.version === 4 ? p.l4 : p.frag + FRAGMENT_HEADER;
    const bytes = b.subarray(dataStart, p.end);
    if (headEnd - l3 + offset + bytes.length > 65535 + (p.version === 6 ? IPV6_HEADER : 0)) return REASSEMBLE_DROP.tooLong;
    if (p.version === 6 && more && bytes.length % 8 !== 0) return REASSEMBLE_DROP.notMultipleOf8;
    const charge = bytes.length + FRAGMENT_OVERHEAD + (offset === 0 ? headEnd : 0);
    if (charge > shareMemory) return REASSEMBLE_DROP.tooBig;
    let d = table.get(key);
    let at = 0;
    if (d) {
      // As Linux: a piece past a known end, a last piece short of what arrived, or a second, different end.
      const stop = offset + bytes.length;
      if ((d.total >= 0 && (stop > d.total || (!more && stop !== d.total))) || (!more && stop < d.reach)) return discard(d, REASSEMBLE_DROP.inconsistentEnd);
      // Sorted and never overlapping: only the neighbours of the new piece can overlap it.
      at = slot(d, offset);
      const before = d.pieces[at - 1];
      const after = d.pieces[at];
      if ((before && before.offset + before.bytes.length > offset) || (after && after.offset < stop)) {
        // Wholly inside bytes already received: a duplicate, dropped alone (RFC 8200 4.5, as Linux does);
        // any other overlap discards the datagram (RFC 5722).
        return containedInRun(d, at, offset, stop) ? REASSEMBLE_DROP.duplicate : discard(d, REASSEMBLE_DROP.overlap);
      }
      if (d.pieces.length >= MAX_FRAGMENTS) return discard(d, REASSEMBLE_DROP.tooMany);
    } else {
      // A source at its share makes room from its own datagrams; otherwise a full table from the oldest.
      const mine = bySource.get(source);
      if (mine !== undefined && mine.datagrams >= shareDatagrams) evictOldest(null, source);
      if (table.size >= max) evictOldest(null, null);
      d = { key, source, started: t, pieces: [], covered: 0, reach: 0, runs: 0, total: -1, first: null, charge: 0 };
      table.set(key, d);
      const s = bySource.get(source);
      if (s) s.datagrams++;
      else bySource.set(source, { datagrams: 1, bytes: 0 });
    }
    const s = bySource.get(source)!;
    while (s.bytes + charge > shareMemory && evictOldest(d, source));
    while (used + charge > memory && evictOldest(d, null));
    if (s.bytes + charge > shareMemory || used + charge > memory) return discard(d, REASSEMBLE_DROP.tooBig);
    // Copy: the packet's buffer may be a view into a slab or a file chunk that is reused.
    const last = d.pieces[d.pieces.length - 1];
    const run = last !== undefined && at === d.pieces.length && last.offset + last.bytes.length === offset ? last.run : ++d.runs;
    d.pieces.splice(at, 0, { offset, bytes: Buffer.from(bytes), run });
    d.covered += bytes.length;
    d.reach = Math.max(d.reach, offset + bytes.length);
    d.charge += charge;
    used += charge;
    s.bytes += charge;
    if (offset === 0 && d.first === null) {
      const f = new Packet(Buffer.from(b.subarray(0, headEnd)), p.sec, p.nsec);
      f.l3 = l3;
      f.l4 = headEnd;
      // IPv6: what the fragment header says follows it.
      f.proto = p.version === 4 ? p.proto : b[p.frag];
      d.first = f;
    }
    if (!more) d.total = offset + bytes.length;
    if (d.total < 0 || d.first === null || d.covered !== d.total) return HELD;
    remove(d);
    counters.reassembled++;
    return p.version === 4 ? build4(d) : build6(d);
  }

  return {
    process,
    flush: () => expire(now()),
    counters,
    /** Datagrams in progress, and the bytes charged for them. */
    usage: () => ({ datagrams: table.size, bytes: used }),
    report: () => {
      const { reassembled, expired, evicted, discarded } = counters;
      if (reassembled + expired + evicted + discarded + table.size === 0) return '';
      return `${reassembled} datagrams reassembled, ${table.size} in progress, fragments discarded: ${expired} timed out, ${evicted} evicted (table full), ${discarded} overlap or too many`;
    },
  };
}

/** Offset of the next-header byte that names the header starting at `at` (the IPv6 header's, or an extension's). */
function nextHeaderField(b: Buffer, l3: number, at: number): number {
  let field = l3 + OFF6_NEXT_HEADER;
  let h = l3 + IPV6_HEADER;
  let nh = b[field];
  while (h < at) {
    field = h;
    const len = nh === NH_FRAGMENT ? FRAGMENT_HEADER : nh === NH_AH ? (b[h + 1] + 2) * 4 : (b[h + 1] + 1) * 8;
    nh = b[h];
    h += len;
  }
  return field;
}

const reassembleStage = defineStage({
  name: 'reassemble',
  keepsPackets: false,
  recordsChanges: true,
  summary: 'put fragmented IPv4 and IPv6 datagrams back together (bounded, with a timeout; the oldest evicted when full)',
  help: 'A full table evicts its oldest incomplete datagram; one source holds at most half of it (datagrams and memory).',
  args: [
    { name: 'timeout', type: 'number', default: 30, min: 0.001, description: 'seconds to wait for missing fragments' },
    { name: 'max', type: 'number', integer: true, default: 64, min: 1, max: 65536, description: 'datagrams in progress at once' },
    { name: 'memory', type: 'size', integer: true, default: 4 * 1024 * 1024, min: 256 * 1024, max: 1024 * 1024 * 1024, description: 'bytes all held fragments may take' },
  ],
  create: (args, ctx) =>
    createReassembler({ timeoutMs: (args.timeout as number) * 1000, max: args.max as number, memory: args.memory as number }, () => ctx.now()),
});
export default reassembleStage;
