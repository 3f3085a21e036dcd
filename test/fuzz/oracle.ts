/**
 * An independent model of what Linux does with an incoming IPv4 packet when it comes to answering pings,
 * written from RFC 791/792/1122 and the kernel's receive path (ip_rcv, ip_options_compile, ip_defrag,
 * icmp_echo), and sharing no code with tunpipe: the fuzz harness judges tunpipe's output against it.
 *
 * For every input the model says whether the kernel answers it ('must'), drops it ('never'), or whether the
 * case is too close to configuration or policy to insist either way ('either'). It also checks that a reply
 * is a valid echo reply to a given request.
 */
import { referenceChecksum } from '../helpers/packets.js';
import { chain6, judgeDatagram6, looksLikeReplyTo6, ReassemblyModel6, replyProblem6, type Chain6 } from './oracle6.js';

export type Answer = 'must' | 'never' | 'either';

const u16 = (b: Uint8Array, o: number): number => (b[o] << 8) | b[o + 1];
const u32 = (b: Uint8Array, o: number): number => ((b[o] << 24) | (b[o + 1] << 16) | (b[o + 2] << 8) | b[o + 3]) >>> 0;

export const dotted = (a: number): string => `${a >>> 24}.${(a >>> 16) & 255}.${(a >>> 8) & 255}.${a & 255}`;

/** The fields of a sound IPv4 header. */
export interface Ipv4View {
  ihl: number;
  total: number;
  proto: number;
  ttl: number;
  /** Flags and fragment offset word. */
  frag: number;
  id: number;
  src: number;
  dst: number;
}

export const MF = 0x2000;
export const OFFSET_MASK = 0x1fff;

/** The header checks of ip_rcv: a view of the header, or why the kernel drops the packet. */
export function ipv4Header(d: Uint8Array): Ipv4View | string {
  if (d.length < 20) return 'shorter than an IPv4 header';
  if (d[0] >> 4 !== 4) return 'not IPv4';
  const ihl = (d[0] & 15) * 4;
  if (ihl < 20) return 'IHL below 5';
  if (ihl > d.length) return 'IHL past the end of the packet';
  const total = u16(d, 2);
  if (total < ihl) return 'total length below the header length';
  if (total > d.length) return 'total length past the end of the packet';
  if (referenceChecksum(d.subarray(0, ihl)) !== 0) return 'bad IPv4 header checksum';
  return { ihl, total, proto: d[9], ttl: d[8], frag: u16(d, 6), id: u16(d, 4), src: u32(d, 12), dst: u32(d, 16) };
}

export function isFragment(v: Ipv4View): boolean {
  return (v.frag & (MF | OFFSET_MASK)) !== 0;
}

export type OptionsVerdict = { ok: true } | { ok: false; answer: Answer; why: string };

/**
 * IP options as ip_options_compile sees them on an incoming packet. Malformed options make the kernel drop
 * the packet (with a parameter problem); a source route is dropped with accept_source_route=0 (the default);
 * CIPSO depends on configuration; other options are ignored.
 */
export function checkOptions(opts: Uint8Array): OptionsVerdict {
  const malformed = (why: string): OptionsVerdict => ({ ok: false, answer: 'never', why: `malformed IP options: ${why}` });
  let rr = false;
  let ts = false;
  let srr = false;
  let cipso = false;
  let i = 0;
  while (i < opts.length) {
    const type = opts[i];
    if (type === 0) break; // end of options list: the rest is padding
    if (type === 1) {
      i++;
      continue;
    }
    const left = opts.length - i;
    if (left < 2) return malformed(`option ${type} has no length byte`);
    const len = opts[i + 1];
    if (len < 2 || len > left) return malformed(`option ${type} has length ${len} with ${left} bytes left`);
    const ptr = len > 2 ? opts[i + 2] : 0;
    switch (type) {
      case 7: // record route
        if (rr) return malformed('two record-route options');
        if (len < 3) return malformed('record route shorter than 3');
        if (ptr < 4) return malformed('record route pointer below 4');
        if (ptr <= len && ptr + 3 > len) return malformed('record route pointer leaves no room for an address');
        rr = true;
        break;
      case 68: {
        // timestamp
        if (ts) return malformed('two timestamp options');
        if (len < 4) return malformed('timestamp shorter than 4');
        if (ptr < 5) return malformed('timestamp pointer below 5');
        const flags = opts[i + 3] & 15;
        if (ptr <= len) {
          if (ptr + 3 > len) return malformed('timestamp pointer leaves no room');
          if ((flags === 1 || flags === 3) && ptr + 7 > len) return malformed('timestamp pointer leaves no room for address and time');
        } else if (flags !== 3 && opts[i + 3] >> 4 === 15) {
          return malformed('timestamp overflow counter already 15');
        }
        ts = true;
        break;
      }
      case 131: // loose source route
      case 137: // strict source route
        if (len < 3) return malformed('source route shorter than 3');
        if (ptr < 4) return malformed('source route pointer below 4');
        if (srr) return malformed('two source-route options');
        srr = true;
        break;
      case 148: // router alert
        if (len < 4) return malformed('router alert shorter than 4');
        break;
      case 134:
        cipso = true;
        break;
      default:
        break; // unknown options are ignored on input
    }
    i += len;
  }
  if (srr) return { ok: false, answer: 'never', why: 'source-routed (Linux drops it: accept_source_route=0; RFC 1122 would need the route reversed)' };
  if (cipso) return { ok: false, answer: 'either', why: 'CIPSO option (depends on the host configuration)' };
  return { ok: true };
}

/** Worst of two answers: never beats either beats must. */
function worse(a: Answer, b: Answer): Answer {
  if (a === 'never' || b === 'never') return 'never';
  if (a === 'either' || b === 'either') return 'either';
  return 'must';
}

/** Source addresses a host discards (RFC 1122 3.2.1.3, Linux martians) or may treat either way. */
function sourceAnswer(a: number): [Answer, string] | null {
  const first = a >>> 24;
  if (first === 0) return ['never', 'source in 0/8'];
  if (first === 127) return ['never', 'loopback source 127/8 (a martian on any other device; RFC 1122 3.2.1.3: discard)'];
  if (a === 0xffffffff) return ['never', 'source is the limited broadcast address'];
  if (first >= 224 && first < 240) return ['never', 'multicast source'];
  if (first >= 240) return ['either', 'source in the reserved 240/4'];
  return null;
}

/** Destinations a reply must not be sent from (it would leave with that address as its source). */
function destinationAnswer(a: number): [Answer, string] | null {
  const first = a >>> 24;
  if (first === 0) return ['never', 'destination in 0/8 (a martian destination; the reply would have source 0/8, RFC 1122 3.2.1.3)'];
  if (first === 127) return ['never', 'loopback destination 127/8 (a martian destination; the reply would leave with a 127/8 source)'];
  if (a === 0xffffffff) return ['never', 'destination is the limited broadcast (icmp_echo_ignore_broadcasts; a reply may not come from a broadcast address)'];
  if (first >= 224 && first < 240) return ['never', 'multicast destination (icmp_echo_ignore_broadcasts; RFC 1122 3.2.1.3: no multicast source in a reply)'];
  if (first >= 240) return ['either', 'destination in the reserved 240/4'];
  return null;
}

/** What the model says about one whole (unfragmented or reassembled) IPv4 datagram. */
export interface Judgement {
  answer: Answer;
  why: string;
  /** The datagram exactly (total length), when it is an ICMP echo request a reply could be compared with. */
  request: Buffer | null;
}

/**
 * Judges a whole datagram with a sound header (`v` from ipv4Header). `d` starts at the IP header and may
 * run past the total length (link padding).
 */
export function judgeDatagram(d: Uint8Array, v: Ipv4View): Judgement {
  const icmpLen = v.total - v.ihl;
  if (v.proto !== 1) return { answer: 'never', why: 'not ICMP', request: null };
  if (icmpLen < 8) return { answer: 'never', why: 'ICMP shorter than 8 bytes', request: null };
  const icmp = d.subarray(v.ihl, v.total);
  if (icmp[0] !== 8) return { answer: 'never', why: `ICMP type ${icmp[0]}, not an echo request`, request: null };
  // Shaped like an echo request: keep it, so that a reply to it can be recognised even where none is due.
  const request = Buffer.from(d.subarray(0, v.total));
  let answer: Answer = 'must';
  let why = 'a valid echo request';
  const note = (a: Answer, w: string) => {
    const next = worse(answer, a);
    if (next !== answer) {
      answer = next;
      why = w;
    }
  };
  if (v.ihl > 20) {
    const o = checkOptions(d.subarray(20, v.ihl));
    if (!o.ok) note(o.answer, o.why);
  }
  if (referenceChecksum(icmp) !== 0) note('never', 'bad ICMP checksum');
  const s = sourceAnswer(v.src);
  if (s) note(s[0], s[1]);
  const t = destinationAnswer(v.dst);
  if (t) note(t[0], t[1]);
  // Any code is answered: Linux's icmp_echo does not look at it, and copies it into the reply.
  return { answer, why, request };
}

/** True when `reply` (from its IP header) has the addresses and ICMP body of a reply to `request`. */
export function looksLikeReplyTo(reply: Uint8Array, request: Uint8Array): boolean {
  if (request.length > 0 && request[0] >> 4 === 6) return looksLikeReplyTo6(reply, request);
  if (reply.length < 20 || request.length < 20 || reply[0] >> 4 !== 4) return false;
  const rIhl = (reply[0] & 15) * 4;
  const qIhl = (request[0] & 15) * 4;
  const rTotal = Math.min(u16(reply, 2), reply.length);
  const qTotal = u16(request, 2);
  if (rTotal - rIhl !== qTotal - qIhl || rTotal - rIhl < 8) return false;
  if (u32(reply, 12) !== u32(request, 16) || u32(reply, 16) !== u32(request, 12)) return false;
  return Buffer.from(reply.subarray(rIhl + 4, rTotal)).equals(Buffer.from(request.subarray(qIhl + 4, qTotal)));
}

/**
 * Why `reply` (bytes from its IP header on) is not a valid echo reply to `request` (a datagram), or null.
 * `weak`: the request's bytes are uncertain (an ambiguous reassembly); check the reply on its own and its
 * addresses only.
 */
export function replyProblem(reply: Uint8Array, request: Uint8Array, weak = false): string | null {
  if (request.length > 0 && request[0] >> 4 === 6) return replyProblem6(reply, request, weak);
  const v = ipv4Header(reply);
  if (typeof v === 'string') return `reply header: ${v}`;
  if (v.ihl > 20) {
    const o = checkOptions(reply.subarray(20, v.ihl));
    if (!o.ok && o.answer === 'never') return `reply has IP options a receiver drops (${o.why})`;
  }
  if (isFragment(v)) return 'reply is a fragment';
  // Linux's replies leave DF clear (ip_send_unicast_reply / icmp_push_reply set no DF for echo replies).
  if (v.frag & 0x4000) return 'reply has DF set (Linux clears it)';
  if (v.proto !== 1) return `reply protocol ${v.proto}, not ICMP`;
  if (v.ttl !== 64) return `reply TTL ${v.ttl}, not 64`;
  const q = ipv4Header(request) as Ipv4View;
  if (v.src !== q.dst || v.dst !== q.src) {
    return `reply addresses ${dotted(v.src)} > ${dotted(v.dst)} are not the request's ${dotted(q.src)} > ${dotted(q.dst)} swapped`;
  }
  const icmp = reply.subarray(v.ihl, v.total);
  const reqIcmp = request.subarray(q.ihl, q.total);
  if (icmp.length < 8) return 'reply ICMP shorter than 8 bytes';
  if (icmp[0] !== 0) return `reply ICMP type ${icmp[0]}, not 0`;
  if (referenceChecksum(icmp) !== 0) return `reply ICMP checksum 0x${u16(icmp, 2).toString(16).padStart(4, '0')} is wrong`;
  if (weak) return null;
  if (icmp.length !== reqIcmp.length) return `reply ICMP length ${icmp.length}, request ${reqIcmp.length}`;
  const opts = optionsProblem(reply.subarray(20, v.ihl), request.subarray(20, q.ihl), q.dst);
  if (opts) return opts;
  if (icmp[1] !== reqIcmp[1]) return `reply ICMP code ${icmp[1]}, request ${reqIcmp[1]}`;
  if (!Buffer.from(icmp.subarray(4)).equals(Buffer.from(reqIcmp.subarray(4)))) return 'reply identifier, sequence or data differ from the request';
  return null;
}

/**
 * The run a new piece at `off` joins, as Linux forms them: the run of the highest piece when the new one
 * starts exactly at its end, a new run otherwise.
 */
export function runFor(pieces: { off: number; data: Buffer; run: number }[], off: number): number {
  let top: { off: number; data: Buffer; run: number } | null = null;
  for (const p of pieces) if (!top || p.off > top.off) top = p;
  const fresh = pieces.reduce((m, p) => Math.max(m, p.run), 0) + 1;
  return top && top.off + top.data.length === off ? top.run : fresh;
}

/** True when [off, end) lies wholly inside one run of the pieces received: a duplicate to Linux. */
export function duplicateIn(pieces: { off: number; data: Buffer; run: number }[], off: number, end: number): boolean {
  const byRun = new Map<number, { from: number; to: number }>();
  for (const p of pieces) {
    const r = byRun.get(p.run);
    const to = p.off + p.data.length;
    if (!r) byRun.set(p.run, { from: p.off, to });
    else byRun.set(p.run, { from: Math.min(r.from, p.off), to: Math.max(r.to, to) });
  }
  for (const r of byRun.values()) if (off >= r.from && end <= r.to) return true;
  return false;
}

interface FragQueue {
  /** Pieces in arrival order; `run` as Linux forms runs (pieces appended in order at the end). */
  pieces: { off: number; data: Buffer; run: number }[];
  first: Buffer | null;
  lastEnd: number | null;
  uncertain: boolean;
}

/** A completed reassembly: the datagram, and whether the fragments were ambiguous (overlap, duplicate, ...). */
export interface Reassembled {
  datagram: Buffer;
  uncertain: boolean;
}

/**
 * IPv4 reassembly (RFC 791, RFC 815) as a model: fragments are keyed by (src, dst, id, protocol); the
 * datagram is complete when the last fragment is known and the pieces cover it. Anything Linux handles by a
 * policy the model does not copy (overlaps, duplicates, odd fragment sizes, conflicting ends) marks the
 * datagram uncertain, and the harness then only checks that a reply to it is valid on its own.
 */
export class ReassemblyModel {
  private readonly queues = new Map<string, FragQueue>();

  /** Feeds one fragment with a sound header; returns the datagram it completes, if any. */
  add(d: Uint8Array, v: Ipv4View): Reassembled | null {
    const key = `${v.src}/${v.dst}/${v.id}/${v.proto}`;
    let q = this.queues.get(key);
    if (!q) {
      q = { pieces: [], first: null, lastEnd: null, uncertain: false };
      this.queues.set(key, q);
    }
    const off = (v.frag & OFFSET_MASK) * 8;
    const more = (v.frag & MF) !== 0;
    const data = Buffer.from(d.subarray(v.ihl, v.total));
    const end = off + data.length;
    if (data.length === 0 || (more && data.length % 8 !== 0) || end + v.ihl > 65535) q.uncertain = true;
    if (!more) {
      if (q.lastEnd !== null && q.lastEnd !== end) q.uncertain = true;
      q.lastEnd = end;
    }
    if (q.lastEnd !== null && end > q.lastEnd) q.uncertain = true;
    const dup = duplicateIn(q.pieces, off, end);
    if (dup) return null; // Linux drops a duplicate alone and keeps the datagram (inet_frag_queue_insert)
    for (const p of q.pieces) if (off < p.off + p.data.length && p.off < end) q.uncertain = true;
    if (off === 0 && q.first === null) q.first = Buffer.from(d.subarray(0, v.ihl));
    q.pieces.push({ off, data, run: runFor(q.pieces, off) });
    if (q.lastEnd === null || q.first === null) return null;
    // Covered from 0 to the last fragment's end?
    const sorted = [...q.pieces].sort((a, b) => a.off - b.off);
    let reach = 0;
    for (const p of sorted) {
      if (p.off > reach) return null;
      reach = Math.max(reach, p.off + p.data.length);
    }
    if (reach < q.lastEnd) return null;
    this.queues.delete(key);
    const total = q.first.length + q.lastEnd;
    if (total > 65535) return null;
    const out = Buffer.alloc(total);
    q.first.copy(out, 0);
    // The first piece written wins where pieces overlap (Linux keeps the first copy of a duplicate).
    for (const p of [...q.pieces].reverse()) {
      if (p.off < q.lastEnd) p.data.copy(out, q.first.length + p.off, 0, Math.min(p.data.length, q.lastEnd - p.off));
    }
    out.writeUInt16BE(total, 2);
    out.writeUInt16BE(0, 6);
    out.writeUInt16BE(0, 10);
    out.writeUInt16BE(referenceChecksum(out.subarray(0, q.first.length)), 10);
    return { datagram: out, uncertain: q.uncertain };
  }
}

/** What the model expects for one input packet. */
export interface Expectation extends Judgement {
  /** The request's bytes are uncertain: check only that a reply is valid on its own. */
  weak: boolean;
  /** The input was a fragment. */
  fragment: boolean;
}

/**
 * The model of a whole echo responder: feed it every input in order (bytes from the IP header on) and it
 * says what should come out for that input. `reassembles`: whether the pipeline under test reassembles
 * fragments; when it does not, answering a fragmented request is not insisted on.
 */
export class EchoModel {
  private readonly reassembly = new ReassemblyModel();
  private readonly reassembly6 = new ReassemblyModel6();
  constructor(private readonly reassembles: boolean) {}

  private input6(d: Uint8Array): Expectation {
    const c = chain6(d);
    if (typeof c === 'string') return { answer: 'never', why: c, request: null, weak: false, fragment: false };
    if (c.frag < 0 || (c.fragOffset === 0 && !c.more)) return { ...judgeDatagram6(d, c), weak: false, fragment: false };
    const done = this.reassembly6.add(d, c);
    if (!done) return { answer: 'never', why: 'IPv6 fragment of an incomplete datagram', request: null, weak: false, fragment: true };
    const whole = chain6(done.datagram);
    if (typeof whole === 'string') return { answer: 'never', why: `reassembled: ${whole}`, request: null, weak: false, fragment: true };
    const j = judgeDatagram6(done.datagram, whole as Chain6);
    let answer = j.answer;
    let why = `reassembled: ${j.why}`;
    if (answer === 'must' && done.uncertain) {
      answer = 'either';
      why = 'reassembled from ambiguous IPv6 fragments (overlap, duplicate or odd sizes)';
    } else if (answer === 'must' && !this.reassembles) {
      answer = 'either';
      why = 'a fragmented request, and the pipeline has no reassemble stage';
    }
    return { answer, why, request: j.request, weak: done.uncertain, fragment: true };
  }

  input(d: Uint8Array): Expectation {
    if (d.length > 0 && d[0] >> 4 === 6) return this.input6(d);
    const v = ipv4Header(d);
    if (typeof v === 'string') return { answer: 'never', why: v, request: null, weak: false, fragment: false };
    if (!isFragment(v)) return { ...judgeDatagram(d, v), weak: false, fragment: false };
    if (v.ihl > 20) {
      const o = checkOptions(d.subarray(20, v.ihl));
      if (!o.ok && o.answer === 'never') return { answer: 'never', why: `fragment with ${o.why}`, request: null, weak: false, fragment: true };
    }
    const done = this.reassembly.add(d, v);
    if (!done) return { answer: 'never', why: 'fragment of an incomplete datagram', request: null, weak: false, fragment: true };
    const whole = ipv4Header(done.datagram) as Ipv4View;
    const j = judgeDatagram(done.datagram, whole);
    let answer = j.answer;
    let why = `reassembled: ${j.why}`;
    if (answer === 'must' && done.uncertain) {
      answer = 'either';
      why = 'reassembled from ambiguous fragments (overlap, duplicate or odd sizes)';
    } else if (answer === 'must' && !this.reassembles) {
      answer = 'either';
      why = 'a fragmented request, and the pipeline has no reassemble stage';
    }
    return { answer, why, request: j.request, weak: done.uncertain, fragment: true };
  }
}

/** A problem found with what left the echo pipeline for one input: a category to group by, and details. */
export interface EchoProblem {
  category: string;
  detail: string;
}

/** Compares what left the pipeline for one input with what the model expects. */
export function judgeOutputs(e: Expectation, outputs: Uint8Array[]): EchoProblem[] {
  const problems: EchoProblem[] = [];
  if (outputs.length > 1) problems.push({ category: 'more than one packet left the echo pipeline for one input', detail: `${outputs.length} packets` });
  if (outputs.length === 0) {
    if (e.answer === 'must') problems.push({ category: `not answered: ${e.fragment ? 'a fragmented ' : 'a '}valid echo request`, detail: e.why });
    return problems;
  }
  const out = outputs[0];
  if (e.request === null) {
    problems.push({ category: 'a packet left the echo pipeline that answers no echo request', detail: `input: ${e.why}` });
    return problems;
  }
  if (e.answer === 'never') {
    problems.push({ category: `answered where the kernel does not: ${stableWhy(e.why)}`, detail: e.why });
    return problems;
  }
  const bad = replyProblem(out, e.request, e.weak);
  if (bad) problems.push({ category: `invalid reply: ${genericWhy(bad)}`, detail: bad });
  return problems;
}

/** A model reason without its details after ': ' (malformed options say which option). */
function stableWhy(why: string): string {
  const colon = why.indexOf(': ');
  return why.startsWith('malformed IP options') ? why.slice(0, colon) : why;
}

/** A reply problem without the packet-specific numbers, so that findings group into categories. */
export function genericWhy(why: string): string {
  if (why.startsWith('reply has IP options')) return 'reply has IP options a receiver drops';
  return why.replace(/\b\d+\.\d+\.\d+\.\d+\b/g, 'A.B.C.D').replace(/0x[0-9a-f]+/gi, '0x…').replace(/\b\d+\b/g, 'N');
}

/**
 * The options Linux puts in its reply (ip_options_echo): record route and timestamp are echoed with this
 * host's entries (once on receipt, once when sending, where there is room), every other option is left out,
 * and the list is padded with End of Options. Why the reply's options differ from that, or null. Timestamp
 * values are not compared (they are the host's clock); their slots must be filled where Linux fills them.
 */
export function optionsProblem(reply: Uint8Array, request: Uint8Array, us: number): string | null {
  const expected: number[] = [];
  const masks: boolean[] = [];
  // Linux writes record route first, then the timestamp, whatever their order in the request.
  for (const wanted of [7, 68]) {
    let i = 0;
    while (i < request.length) {
      const type = request[i];
      if (type === 0) break;
      if (type === 1) {
        i++;
        continue;
      }
      const len = request[i + 1];
      if (type === wanted) {
        const o = Array.from(request.subarray(i, i + len));
        const mask = o.map(() => true);
        // Lengths that leave a partial slot: Linux refuses to echo them (EINVAL, no reply) where tunpipe leaves
        // them unrecorded; only their length is compared.
        const unit = type === 7 ? 4 : (o[3] & 15) === 0 ? 4 : 8;
        if ((len - (type === 7 ? 3 : 4)) % unit !== 0) {
          expected.push(...o);
          masks.push(...o.map(() => false));
          i += len;
          continue;
        }
        for (let k = 0; k < 2; k++) {
          const ptr = o[2];
          if (type === 7) {
            if (ptr + 3 > len) break;
            o[ptr - 1] = us >>> 24;
            o[ptr] = (us >>> 16) & 255;
            o[ptr + 1] = (us >>> 8) & 255;
            o[ptr + 2] = us & 255;
            o[2] = ptr + 4;
          } else {
            const flags = o[3] & 15;
            const entry = flags === 0 ? 4 : 8;
            if (flags !== 0 && flags !== 1 && flags !== 3) break;
            if (ptr + entry - 1 > len) {
              if (k === 0 && flags !== 3) {
                // Linux counts up to 15 (and its own ping then drops the reply); tunpipe stops at 14.
                if (o[3] >> 4 >= 14) mask[3] = false;
                else o[3] = (((o[3] >> 4) + 1) << 4) | flags;
              }
              break;
            }
            let at = ptr - 1;
            if (flags === 3) {
              const named = ((o[at] << 24) | (o[at + 1] << 16) | (o[at + 2] << 8) | o[at + 3]) >>> 0;
              if (named !== us) break;
            }
            if (flags === 1) {
              o[at] = us >>> 24;
              o[at + 1] = (us >>> 16) & 255;
              o[at + 2] = (us >>> 8) & 255;
              o[at + 3] = us & 255;
            }
            if (flags !== 0) at += 4;
            for (let b = 0; b < 4; b++) mask[at + b] = false;
            o[2] = ptr + entry;
          }
        }
        expected.push(...o);
        masks.push(...mask);
      }
      i += len;
    }
  }
  while (expected.length % 4) {
    expected.push(0);
    masks.push(true);
  }
  if (reply.length !== expected.length) return `reply IP options are ${reply.length} bytes, Linux's would be ${expected.length} (record route and timestamp echoed, the rest left out)`;
  for (let k = 0; k < expected.length; k++) {
    if (masks[k] && reply[k] !== expected[k]) return `reply IP options differ from Linux's at byte ${k}: 0x${reply[k].toString(16)}, expected 0x${expected[k].toString(16)}`;
  }
  return null;
}
