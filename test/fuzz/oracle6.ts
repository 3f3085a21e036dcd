/**
 * The IPv6 half of the independent model of Linux's ping handling (./oracle.ts has IPv4), written from
 * RFC 8200, RFC 4443, RFC 5722, RFC 6946, RFC 7112 and the kernel's receive path (ip6_rcv_core,
 * ip6_parse_tlv, ipv6_frag_rcv, icmpv6_rcv, icmpv6_echo_reply), sharing no code with tunpipe.
 */
import { referenceChecksum } from '../helpers/packets.js';
import { duplicateIn, runFor } from './oracle.js';

export type Answer6 = 'must' | 'never' | 'either';

const u16 = (b: Uint8Array, o: number): number => (b[o] << 8) | b[o + 1];

/** Where the chain of an IPv6 packet ends, as a receiver walks it. */
export interface Chain6 {
  /** Offset of the upper-layer header (from the IPv6 header). */
  l4: number;
  proto: number;
  /** Offset of the fragment header, or -1. */
  frag: number;
  /** Fragment offset in bytes and M flag (when frag >= 0). */
  fragOffset: number;
  more: boolean;
  id: number;
  /** Segments left of a routing header (0 without one). */
  segmentsLeft: number;
}

/** TLV options as ip6_parse_tlv accepts them, or why not. */
function options6(d: Uint8Array, from: number, to: number): string | null {
  let pad = 0;
  for (let i = from; i < to; ) {
    if (d[i] === 0) {
      pad++;
      if (pad > 7) return 'more than 7 bytes of padding';
      i++;
      continue;
    }
    if (i + 1 >= to) return 'option without its length';
    const len = d[i + 1];
    if (i + 2 + len > to) return 'option longer than its header';
    if (d[i] === 1) {
      pad += len + 2;
      if (pad > 7) return 'more than 7 bytes of padding';
      for (let k = 0; k < len; k++) if (d[i + 2 + k] !== 0) return 'PadN with data in it';
    } else {
      pad = 0;
      const action = d[i] >> 6;
      if (d[i] !== 5 && action !== 0) return `unknown option 0x${d[i].toString(16)} whose type asks for a discard`;
    }
    i += 2 + len;
  }
  return null;
}

/** The chain walk of a receiver: the end of the chain, or why the packet is dropped. */
export function chain6(d: Uint8Array): Chain6 | string {
  if (d.length < 40) return 'shorter than an IPv6 header';
  if (d[0] >> 4 !== 6) return 'not IPv6';
  const end = 40 + u16(d, 4);
  if (end > d.length) return 'payload length past the end of the packet';
  const c: Chain6 = { l4: 40, proto: d[6], frag: -1, fragOffset: 0, more: false, id: 0, segmentsLeft: 0 };
  let count = 0;
  for (;;) {
    const nh = c.proto;
    const at = c.l4;
    if (nh !== 0 && nh !== 43 && nh !== 44 && nh !== 60 && nh !== 51) return c;
    if (++count > 8) return 'more than 8 extension headers';
    if (nh === 0 && at !== 40) return 'hop-by-hop options not first';
    if (at + 2 > end) return c.frag >= 0 ? 'first fragment without the whole header chain' : 'extension header past the end';
    if (nh === 44) {
      if (c.frag >= 0) return 'two fragment headers';
      if (at + 8 > end) return 'fragment header past the end';
      c.frag = at;
      c.fragOffset = u16(d, at + 2) & 0xfff8;
      c.more = (d[at + 3] & 1) === 1;
      c.id = ((d[at + 4] << 24) | (d[at + 5] << 16) | (d[at + 6] << 8) | d[at + 7]) >>> 0;
      c.proto = d[at];
      c.l4 = at + 8;
      if (c.fragOffset !== 0) return c;
      continue;
    }
    const len = nh === 51 ? (d[at + 1] + 2) * 4 : (d[at + 1] + 1) * 8;
    if (at + len > end) return c.frag >= 0 ? 'first fragment without the whole header chain' : 'extension header past the end';
    if (nh === 0 || nh === 60) {
      const bad = options6(d, at + 2, at + len);
      if (bad) return `IPv6 options: ${bad}`;
    }
    if (nh === 43) c.segmentsLeft = d[at + 3];
    c.proto = d[at];
    c.l4 = at + len;
  }
}

const zeros = (d: Uint8Array, at: number, n: number) => d.subarray(at, at + n).every((x) => x === 0);

/** Linux's refusals for an address (ip6_rcv_core; nowhere to answer ::). */
function sourceVerdict(d: Uint8Array): string | null {
  if (d[8] === 0xff) return 'multicast source';
  if (zeros(d, 8, 16)) return 'unspecified source';
  if (zeros(d, 8, 15) && d[23] === 1) return 'loopback source';
  if (zeros(d, 8, 10) && d[18] === 0xff && d[19] === 0xff) return 'IPv4-mapped source';
  return null;
}

function destinationVerdict(d: Uint8Array): [Answer6, string] | null {
  if (d[24] === 0xff) return ['either', 'multicast destination (Linux answers from an address of its own; a pipeline has none)'];
  if (zeros(d, 24, 16)) return ['never', 'unspecified destination'];
  if (zeros(d, 24, 15) && d[39] === 1) return ['never', 'loopback destination'];
  if (zeros(d, 24, 10) && d[34] === 0xff && d[35] === 0xff) return ['never', 'IPv4-mapped destination'];
  return null;
}

/** The checksum over the pseudo-header (RFC 8200 8.1) of the upper-layer message `m` of packet `d`. */
export function upperChecksumOk(d: Uint8Array, m: Uint8Array, next: number): boolean {
  const ph = Buffer.alloc(40);
  ph.set(d.subarray(8, 40), 0);
  ph.writeUInt32BE(m.length, 32);
  ph[39] = next;
  return referenceChecksum(Buffer.concat([ph, m])) === 0;
}

export interface Judgement6 {
  answer: Answer6;
  why: string;
  /** The request (the whole datagram), when it is shaped like an ICMPv6 echo request. */
  request: Buffer | null;
}

/** Judges a whole (unfragmented, atomic or reassembled) IPv6 datagram whose chain walked to `c`. */
export function judgeDatagram6(d: Uint8Array, c: Chain6): Judgement6 {
  const end = 40 + u16(d, 4);
  if (c.proto !== 58) return { answer: 'never', why: `upper layer ${c.proto}, not ICMPv6`, request: null };
  const m = d.subarray(c.l4, end);
  if (m.length < 8) return { answer: 'never', why: 'ICMPv6 shorter than 8 bytes', request: null };
  if (m[0] !== 128) return { answer: 'never', why: `ICMPv6 type ${m[0]}, not an echo request`, request: null };
  const request = Buffer.from(d.subarray(0, end));
  const s = sourceVerdict(d);
  if (s) return { answer: 'never', why: s, request };
  if (!upperChecksumOk(d, m, 58)) return { answer: 'never', why: 'bad ICMPv6 checksum', request };
  if (c.segmentsLeft !== 0) return { answer: 'never', why: 'routing header with segments left (for a later hop)', request };
  const t = destinationVerdict(d);
  if (t) return { answer: t[0], why: t[1], request };
  return { answer: 'must', why: 'a valid ICMPv6 echo request', request };
}

/** The ICMPv6 message of a datagram whose chain is sound. */
function messageOf(d: Uint8Array): Uint8Array {
  const c = chain6(d) as Chain6;
  return d.subarray(c.l4, 40 + u16(d, 4));
}

/** Why `reply` is not the echo reply Linux sends to `request`, or null. `weak`: check it on its own only. */
export function replyProblem6(reply: Uint8Array, request: Uint8Array, weak = false): string | null {
  if (reply.length < 40 || reply[0] >> 4 !== 6) return 'reply is not IPv6';
  const plen = u16(reply, 4);
  if (40 + plen !== reply.length) return `reply payload length ${plen} for ${reply.length - 40} bytes`;
  if (reply[6] !== 58) return `reply next header ${reply[6]}: Linux's reply has no extension headers`;
  if (reply[7] !== 64) return `reply hop limit ${reply[7]}, not 64`;
  if (!Buffer.from(reply.subarray(8, 24)).equals(Buffer.from(request.subarray(24, 40))) || !Buffer.from(reply.subarray(24, 40)).equals(Buffer.from(request.subarray(8, 24)))) {
    return 'reply addresses are not the request\'s swapped';
  }
  const m = reply.subarray(40);
  if (m.length < 8) return 'reply ICMPv6 shorter than 8 bytes';
  if (m[0] !== 129) return `reply ICMPv6 type ${m[0]}, not 129`;
  if (!upperChecksumOk(reply, m, 58)) return `reply ICMPv6 checksum 0x${u16(m, 2).toString(16).padStart(4, '0')} is wrong`;
  if (((reply[0] & 0x0f) << 4 | reply[1] >> 4) !== ((request[0] & 0x0f) << 4 | request[1] >> 4)) return 'reply traffic class differs from the request\'s';
  if (weak) return null;
  const q = messageOf(request);
  if (m.length !== q.length) return `reply ICMPv6 length ${m.length}, request ${q.length}`;
  if (m[1] !== q[1]) return `reply ICMPv6 code ${m[1]}, request ${q[1]}`;
  if (!Buffer.from(m.subarray(4)).equals(Buffer.from(q.subarray(4)))) return 'reply identifier, sequence or data differ from the request';
  return null;
}

/** Addresses swapped and the ICMPv6 body the same: a reply to this request, for pairing replies in order. */
export function looksLikeReplyTo6(reply: Uint8Array, request: Uint8Array): boolean {
  if (reply.length < 48 || reply[0] >> 4 !== 6 || request.length < 48) return false;
  if (!Buffer.from(reply.subarray(8, 24)).equals(Buffer.from(request.subarray(24, 40)))) return false;
  const c = chain6(request);
  if (typeof c === 'string') return false;
  const q = request.subarray(c.l4, 40 + u16(request, 4));
  const m = reply.subarray(40, 40 + u16(reply, 4));
  return m.length === q.length && Buffer.from(m.subarray(4)).equals(Buffer.from(q.subarray(4)));
}

interface Queue6 {
  pieces: { off: number; data: Buffer; run: number }[];
  head: Buffer | null;
  /** The fragment header's next header, from the first fragment. */
  next: number;
  lastEnd: number | null;
  uncertain: boolean;
}

/**
 * IPv6 reassembly as a model (RFC 8200 4.5): keyed by source, destination and identification; the
 * unfragmentable part comes from the first fragment. Overlaps (RFC 5722: the datagram is discarded),
 * duplicates, non-final fragments that are not multiples of 8, and conflicting ends make the datagram
 * uncertain: the harness then only checks that a reply to it is valid on its own.
 */
export class ReassemblyModel6 {
  private readonly queues = new Map<string, Queue6>();

  add(d: Uint8Array, c: Chain6): { datagram: Buffer; uncertain: boolean } | null {
    const key = Buffer.from(d.subarray(8, 40)).toString('hex') + c.id;
    let q = this.queues.get(key);
    if (!q) {
      q = { pieces: [], head: null, next: -1, lastEnd: null, uncertain: false };
      this.queues.set(key, q);
    }
    const end = 40 + u16(d, 4);
    const data = Buffer.from(d.subarray(c.frag + 8, end));
    const off = c.fragOffset;
    const stop = off + data.length;
    if (data.length === 0 || (c.more && data.length % 8 !== 0)) q.uncertain = true;
    if (!c.more) {
      if (q.lastEnd !== null && q.lastEnd !== stop) q.uncertain = true;
      q.lastEnd = stop;
    }
    if (q.lastEnd !== null && stop > q.lastEnd) q.uncertain = true;
    if (duplicateIn(q.pieces, off, stop)) return null; // dropped alone, the datagram kept (RFC 8200 4.5)
    for (const p of q.pieces) if (off < p.off + p.data.length && p.off < stop) q.uncertain = true;
    if (off === 0 && q.head === null) {
      q.head = Buffer.from(d.subarray(0, c.frag));
      q.next = d[c.frag];
    }
    q.pieces.push({ off, data, run: runFor(q.pieces, off) });
    if (q.lastEnd === null || q.head === null) return null;
    const sorted = [...q.pieces].sort((a, b) => a.off - b.off);
    let reach = 0;
    for (const p of sorted) {
      if (p.off > reach) return null;
      reach = Math.max(reach, p.off + p.data.length);
    }
    if (reach < q.lastEnd) return null;
    this.queues.delete(key);
    if (q.head.length - 40 + q.lastEnd > 65535) return null;
    const out = Buffer.alloc(q.head.length + q.lastEnd);
    q.head.copy(out, 0);
    for (const p of [...q.pieces].reverse()) if (p.off < q.lastEnd) p.data.copy(out, q.head.length + p.off, 0, Math.min(p.data.length, q.lastEnd - p.off));
    out.writeUInt16BE(out.length - 40, 4);
    // The header that named the fragment header names what followed it.
    let field = 6;
    let at = 40;
    while (at < q.head.length) {
      const nh = out[field];
      field = at;
      at += nh === 51 ? (out[at + 1] + 2) * 4 : (out[at + 1] + 1) * 8;
    }
    out[field] = q.next;
    return { datagram: out, uncertain: q.uncertain };
  }
}
