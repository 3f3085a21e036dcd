/**
 * The fuzz case generator: valid echo requests and every way of getting them wrong. Packets are built here
 * byte by byte (checksums with the reference checksum of test/helpers), never with tunpipe's own code.
 */
import { referenceChecksum } from '../helpers/packets.js';
import type { Rng } from './rng.js';

export interface FuzzCase {
  /** What the generator meant to make (for the report; the oracle judges the bytes, not the label). */
  kind: string;
  /** The bytes handed to the pipeline. */
  data: Buffer;
  /** Offset of the IP header in `data` (14 for a case with a link-layer header in front). */
  l3: number;
}

interface IpFields {
  src: number;
  dst: number;
  id: number;
  ttl: number;
  tos: number;
  frag: number;
  proto: number;
  options: Buffer;
}

/**
 * An Ethernet II header for an IP packet: random MAC addresses and the EtherType its version nibble names
 * (IPv4 0x0800, IPv6 0x86dd), as a TAP device gives it; anything else gets a random EtherType, which parse
 * on Ethernet never takes for IP.
 */
export function ethernetHeaderFor(rng: Rng, ip: Buffer): Buffer {
  const h = rng.bytes(14);
  const v = ip.length > 0 ? ip[0] >> 4 : 0;
  if (v === 4) h.writeUInt16BE(0x0800, 12);
  else if (v === 6) h.writeUInt16BE(0x86dd, 12);
  else if (h.readUInt16BE(12) === 0x0800 || h.readUInt16BE(12) === 0x86dd) h.writeUInt16BE(0x88b5, 12);
  return h;
}

function writeAddr(b: Buffer, at: number, a: number): void {
  b.writeUInt32BE(a >>> 0, at);
}

/** An IPv4 header (with options) followed by `payload`, checksum right. */
export function ipv4(f: IpFields, payload: Buffer): Buffer {
  const ihl = 20 + f.options.length;
  const b = Buffer.alloc(ihl + payload.length);
  b[0] = 0x40 | (ihl / 4);
  b[1] = f.tos;
  b.writeUInt16BE(Math.min(ihl + payload.length, 0xffff), 2);
  b.writeUInt16BE(f.id, 4);
  b.writeUInt16BE(f.frag, 6);
  b[8] = f.ttl;
  b[9] = f.proto;
  writeAddr(b, 12, f.src);
  writeAddr(b, 16, f.dst);
  f.options.copy(b, 20);
  b.writeUInt16BE(referenceChecksum(b.subarray(0, ihl)), 10);
  payload.copy(b, ihl);
  return b;
}

/** An ICMP message with a right checksum. */
export function icmpMessage(type: number, code: number, id: number, seq: number, data: Buffer): Buffer {
  const m = Buffer.alloc(8 + data.length);
  m[0] = type;
  m[1] = code;
  m.writeUInt16BE(id, 4);
  m.writeUInt16BE(seq, 6);
  data.copy(m, 8);
  m.writeUInt16BE(referenceChecksum(m), 2);
  return m;
}

/** Rewrites the IPv4 header checksum of `b` (header at `l3`) after the header was edited. */
export function fixHeaderChecksum(b: Buffer, l3 = 0): void {
  const ihl = (b[l3] & 15) * 4;
  if (ihl < 20 || l3 + ihl > b.length) return;
  b.writeUInt16BE(0, l3 + 10);
  b.writeUInt16BE(referenceChecksum(b.subarray(l3, l3 + ihl)), l3 + 10);
}

const a4 = (x: number, y: number, z: number, w: number): number => ((x << 24) | (y << 16) | (z << 8) | w) >>> 0;

/** A unicast address from the benchmarking range 198.18.0.0/15. */
function testAddress(rng: Rng): number {
  return a4(198, 18 + rng.int(2), rng.int(256), rng.range(1, 254));
}

/** Addresses of every class the receive path treats differently. */
function specialAddress(rng: Rng): number {
  return rng.pick([
    a4(0, 0, 0, 0),
    a4(0, rng.int(256), rng.int(256), rng.int(256)),
    a4(127, 0, 0, 1),
    a4(127, rng.int(256), rng.int(256), rng.int(256)),
    a4(224, 0, 0, 1),
    a4(224 + rng.int(16), rng.int(256), rng.int(256), rng.int(256)),
    a4(240 + rng.int(15), rng.int(256), rng.int(256), rng.int(256)),
    0xffffffff,
    a4(10, rng.int(256), rng.int(256), rng.int(256)),
    a4(198, 18, 0, 255),
    a4(rng.int(256), rng.int(256), rng.int(256), rng.int(256)),
  ]);
}

function payloadSize(rng: Rng): number {
  const r = rng.int(1000);
  if (r < 500) return rng.int(65);
  if (r < 850) return rng.range(65, 1472);
  if (r < 990) return rng.range(1473, 9000);
  return rng.range(9001, 65507 - 40);
}

/** IP options that Linux accepts: record route, timestamps, router alert, no-ops; padded to 4 bytes. */
function validOptions(rng: Rng): Buffer {
  const parts: Buffer[] = [];
  let room = 40;
  const add = (b: Buffer) => {
    if (b.length <= room) {
      parts.push(b);
      room -= b.length;
    }
  };
  for (let n = rng.range(1, 3); n > 0 && room > 0; n--) {
    const which = rng.int(5);
    if (which === 0 && !parts.some((p) => p[0] === 7)) {
      const slots = rng.range(1, Math.max(1, Math.floor((room - 3) / 4)));
      const len = 3 + 4 * slots;
      const o = Buffer.alloc(len);
      o[0] = 7;
      o[1] = len;
      o[2] = 4 + 4 * rng.int(slots + 1); // empty, part filled, or full (pointer past the end)
      for (let i = 3; i < o[2] - 1; i++) o[i] = rng.int(256);
      add(o);
    } else if (which === 1 && !parts.some((p) => p[0] === 68)) {
      const flags = rng.pick([0, 1, 3]);
      const unit = flags === 0 ? 4 : 8;
      const slots = rng.range(1, Math.max(1, Math.floor((room - 4) / unit)));
      const len = 4 + unit * slots;
      const o = Buffer.alloc(len);
      o[0] = 68;
      o[1] = len;
      const filled = rng.int(slots + 1);
      o[2] = 5 + unit * filled;
      o[3] = (filled === slots ? rng.int(15) << 4 : 0) | flags;
      for (let i = 4; i < o[2] - 1; i++) o[i] = rng.int(256);
      add(o);
    } else if (which === 2) {
      add(Buffer.from([148, 4, 0, 0]));
    } else {
      add(Buffer.from([1]));
    }
  }
  let opts = Buffer.concat(parts);
  const pad = (4 - (opts.length % 4)) % 4;
  opts = Buffer.concat([opts, Buffer.alloc(pad)]);
  return opts.length === 0 ? Buffer.from([1, 1, 1, 0]) : opts;
}

interface EchoShape {
  fields: IpFields;
  icmp: Buffer;
}

function echoShape(rng: Rng, opts: { options?: Buffer; size?: number } = {}): EchoShape {
  const fields: IpFields = {
    src: testAddress(rng),
    dst: testAddress(rng),
    id: rng.int(65536),
    ttl: rng.chance(0.1) ? rng.int(256) : 64,
    tos: rng.chance(0.1) ? rng.int(256) : 0,
    frag: rng.chance(0.5) ? 0x4000 : 0,
    proto: 1,
    options: opts.options ?? Buffer.alloc(0),
  };
  const size = Math.min(opts.size ?? payloadSize(rng), 65535 - 28 - fields.options.length);
  return { fields, icmp: icmpMessage(8, 0, rng.int(65536), rng.int(65536), rng.bytes(size)) };
}

function validEcho(rng: Rng, opts: { options?: Buffer; size?: number } = {}): Buffer {
  const s = echoShape(rng, opts);
  return ipv4(s.fields, s.icmp);
}

function flipBits(rng: Rng, b: Buffer, n: number): Buffer {
  for (let i = 0; i < n && b.length > 0; i++) {
    // Mostly in the headers, where flips change how the packet is judged.
    const at = rng.chance(0.7) ? rng.int(Math.min(b.length, 48)) : rng.int(b.length);
    b[at] ^= 1 << rng.int(8);
  }
  return b;
}

/** An echo request whose reply's ICMP checksum (or IP header checksum) lands on the 0x0000/0xFFFF corner. */
function checksumCorner(rng: Rng): Buffer {
  if (rng.chance(0.3)) {
    // All-zero reply: id 0, seq 0, no data; its checksum must be 0xFFFF, never 0x0000.
    return ipv4({ ...echoShape(rng).fields, frag: 0 }, icmpMessage(8, 0, 0, 0, Buffer.alloc(0)));
  }
  const size = 2 * rng.int(16);
  const data = rng.bytes(size);
  const id = rng.int(65536);
  // Choose seq so that the reply (type 0) sums to 0xFFFF: its checksum is then 0x0000.
  let sum = id;
  for (let i = 0; i < size; i += 2) sum += (data[i] << 8) | data[i + 1];
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
  const seq = (0xffff - sum) & 0xffff;
  const fields = echoShape(rng).fields;
  const icmp = icmpMessage(8, 0, id, seq, data);
  if (rng.chance(0.5)) {
    // Also choose the IP id so that the reply's header checksum (TTL 64, addresses swapped: same sum) is 0.
    fields.ttl = 64;
    fields.options = Buffer.alloc(0);
    const probe = ipv4({ ...fields, id: 0 }, icmp);
    probe.writeUInt16BE(0, 10);
    let s = 0;
    for (let i = 0; i < 20; i += 2) s += probe.readUInt16BE(i);
    while (s > 0xffff) s = (s & 0xffff) + (s >>> 16);
    fields.id = (0xffff - s) & 0xffff;
  }
  return ipv4(fields, icmp);
}

/** The fragments of one valid echo request, in one of several orders (the whole group is one "case"). */
function fragmentGroup(rng: Rng): FuzzCase[] {
  const options = rng.chance(0.2) ? validOptions(rng) : Buffer.alloc(0);
  const s = echoShape(rng, { options, size: rng.range(8, rng.chance(0.9) ? 4000 : 20000) });
  s.fields.frag = 0;
  const unit = 8 * rng.range(1, 185);
  const pieces: Buffer[] = [];
  for (let off = 0; off < s.icmp.length; off += unit) {
    const last = off + unit >= s.icmp.length;
    const f: IpFields = { ...s.fields, options: off === 0 ? options : Buffer.alloc(0), frag: (last ? 0 : 0x2000) | (off / 8) };
    pieces.push(ipv4(f, s.icmp.subarray(off, off + unit)));
  }
  let order = pieces.map((_, i) => i);
  const how = rng.int(100);
  let kind = 'fragments in order';
  if (how < 15) {
    order.reverse();
    kind = 'fragments reversed';
  } else if (how < 30) {
    rng.shuffle(order);
    kind = 'fragments shuffled';
  } else if (how < 40 && order.length > 1) {
    order.splice(rng.int(order.length), 1);
    kind = 'fragments, one missing';
  } else if (how < 47) {
    order.splice(rng.int(order.length + 1), 0, order[rng.int(order.length)]);
    kind = 'fragments, one duplicated';
  }
  const out = order.map((i) => ({ kind, data: Buffer.from(pieces[i]), l3: 0 }));
  if (how >= 47 && how < 57) {
    const victim = out[rng.int(out.length)];
    flipBits(rng, victim.data, 1);
    for (const c of out) c.kind = 'fragments, one bit-flipped';
  }
  return out;
}

/** IPv6 pieces: a fixed header for `body` whose first header is `next`. */
function ipv6(next: number, body: Buffer, rng: Rng, src?: Buffer, dst?: Buffer): Buffer {
  const h = Buffer.alloc(40);
  h.writeUInt32BE(((6 << 28) | (rng.chance(0.3) ? rng.int(256) << 20 : 0) | rng.int(0x100000)) >>> 0, 0);
  h.writeUInt16BE(body.length, 4);
  h[6] = next;
  h[7] = rng.chance(0.1) ? rng.int(256) : 64;
  (src ?? testAddress6(rng)).copy(h, 8);
  (dst ?? testAddress6(rng)).copy(h, 24);
  return Buffer.concat([h, body]);
}

/** A unicast address in 2001:db8::/32 (sometimes link-local). */
function testAddress6(rng: Rng): Buffer {
  const b = rng.bytes(16);
  if (rng.chance(0.15)) {
    b.set([0xfe, 0x80, 0, 0, 0, 0, 0, 0], 0);
  } else {
    b.set([0x20, 0x01, 0x0d, 0xb8], 0);
  }
  return b;
}

function specialAddress6(rng: Rng): Buffer {
  const b = Buffer.alloc(16);
  switch (rng.int(7)) {
    case 0:
      return b; // ::
    case 1:
      b[15] = 1; // ::1
      return b;
    case 2:
      b.set([0xff, 0x02], 0);
      b[15] = rng.pick([1, 2, 0x16]);
      return b;
    case 3:
      b.set([0xff, rng.int(256)], 0);
      return Buffer.concat([b.subarray(0, 2), rng.bytes(14)]);
    case 4:
      b[10] = b[11] = 0xff; // ::ffff:a.b.c.d
      b.set(rng.bytes(4), 12);
      return b;
    default:
      return testAddress6(rng);
  }
}

/** ICMPv6 message with the checksum over the pseudo-header of `src`/`dst`. */
function icmp6(type: number, code: number, id: number, seq: number, data: Buffer, src: Buffer, dst: Buffer): Buffer {
  const m = Buffer.alloc(8 + data.length);
  m[0] = type;
  m[1] = code;
  m.writeUInt16BE(id, 4);
  m.writeUInt16BE(seq, 6);
  data.copy(m, 8);
  const ph = Buffer.alloc(40);
  src.copy(ph, 0);
  dst.copy(ph, 16);
  ph.writeUInt32BE(m.length, 32);
  ph[39] = 58;
  m.writeUInt16BE(referenceChecksum(Buffer.concat([ph, m])), 2);
  return m;
}

/** A random extension header of kind `type` (its next-header byte filled in by `chain`). */
function extension(rng: Rng, type: number): Buffer {
  if (type === 44) {
    const f = Buffer.alloc(8);
    f.writeUInt32BE(rng.int(0x100000000) >>> 0, 4);
    return f; // atomic fragment
  }
  if (type === 43) {
    const n = rng.int(3);
    const r = Buffer.concat([Buffer.alloc(8), rng.bytes(16 * n)]);
    r[1] = 2 * n;
    r[2] = rng.pick([0, 2, 3, 4]);
    r[3] = rng.chance(0.8) ? 0 : rng.range(1, 255);
    return r;
  }
  // Hop-by-hop or destination options: padding, router alert, unknown options of each action.
  const units = rng.range(1, 3);
  const o = Buffer.alloc(8 * units);
  o[1] = units - 1;
  let i = 2;
  while (i < o.length) {
    const left = o.length - i;
    const what = rng.int(6);
    if (left === 1 || what === 0) {
      o[i++] = 0;
    } else if (what === 1 && left >= 4 && type === 0) {
      o.set([5, 2, 0, 0], i);
      i += 4;
    } else if (what === 2 && left >= 3) {
      const len = rng.int(Math.min(left - 2, 8));
      o[i] = rng.pick([0x1e, 0x3e, 0x5e, 0x9e, 0xde, rng.int(256)]);
      o[i + 1] = len;
      o.set(rng.bytes(len), i + 2);
      i += 2 + len;
    } else {
      const len = Math.min(left - 2, rng.chance(0.9) ? 5 : 8);
      o[i] = 1;
      o[i + 1] = len;
      i += 2 + len;
    }
  }
  return o;
}

/** Chains extension headers in front of an upper-layer message `next`. */
function chain(types: number[], parts: Buffer[], next: number, tail: Buffer): { first: number; body: Buffer } {
  parts.forEach((p, i) => (p[0] = i + 1 < types.length ? types[i + 1] : next));
  return { first: types.length ? types[0] : next, body: Buffer.concat([...parts, tail]) };
}

function echo6(rng: Rng, opts: { ext?: boolean; size?: number; src?: Buffer; dst?: Buffer; type?: number; code?: number } = {}): Buffer {
  const src = opts.src ?? testAddress6(rng);
  const dst = opts.dst ?? testAddress6(rng);
  const types = opts.ext ? rng.pick([[0], [60], [0, 60], [43], [44], [0, 43, 60], [60, 43, 44, 60]]) : [];
  const size = Math.min(opts.size ?? payloadSize(rng), 65535 - 8 - 64);
  const msg = icmp6(opts.type ?? 128, opts.code ?? (rng.chance(0.1) ? rng.int(256) : 0), rng.int(65536), rng.int(65536), rng.bytes(size), src, dst);
  const c = chain(types, types.map((t) => extension(rng, t)), 58, msg);
  return ipv6(c.first, c.body, rng, src, dst);
}

/** The fragments of one valid IPv6 echo request (with an unfragmentable hop-by-hop header sometimes). */
function fragmentGroup6(rng: Rng): FuzzCase[] {
  const src = testAddress6(rng);
  const dst = testAddress6(rng);
  const msg = icmp6(128, 0, rng.int(65536), rng.int(65536), rng.bytes(rng.range(8, rng.chance(0.9) ? 4000 : 20000)), src, dst);
  const hbh = rng.chance(0.2) ? extension(rng, 0) : null;
  const id = rng.int(0x100000000) >>> 0;
  const unit = 8 * rng.range(1, 180);
  const pieces: Buffer[] = [];
  for (let off = 0; off < msg.length; off += unit) {
    const last = off + unit >= msg.length;
    const f = Buffer.alloc(8);
    f[0] = 58;
    f.writeUInt16BE(off | (last ? 0 : 1), 2);
    f.writeUInt32BE(id, 4);
    const types = hbh ? [0, 44] : [44];
    const parts = hbh ? [Buffer.from(hbh), f] : [f];
    if (hbh) parts[0][0] = 44;
    const body = Buffer.concat([...parts, msg.subarray(off, off + unit)]);
    pieces.push(ipv6(types[0], body, rng, src, dst));
  }
  let order = pieces.map((_, i) => i);
  const how = rng.int(100);
  let kind = 'IPv6 fragments in order';
  if (how < 20) {
    order.reverse();
    kind = 'IPv6 fragments reversed';
  } else if (how < 35) {
    rng.shuffle(order);
    kind = 'IPv6 fragments shuffled';
  } else if (how < 45 && order.length > 1) {
    order.splice(rng.int(order.length), 1);
    kind = 'IPv6 fragments, one missing';
  } else if (how < 52) {
    order.splice(rng.int(order.length + 1), 0, order[rng.int(order.length)]);
    kind = 'IPv6 fragments, one duplicated';
  }
  const out = order.map((i) => ({ kind, data: Buffer.from(pieces[i]), l3: 0 }));
  if (how >= 52 && how < 60) {
    const victim = out[rng.int(out.length)];
    flipBits(rng, victim.data, 1);
    for (const c of out) c.kind = 'IPv6 fragments, one bit-flipped';
  }
  return out;
}

type Maker = (rng: Rng) => Buffer | FuzzCase[];

/** Case kinds and their weights. */
const MAKERS: [string, number, Maker][] = [
  ['echo', 20, (r) => validEcho(r)],
  ['echo with valid IP options', 6, (r) => validEcho(r, { options: validOptions(r) })],
  ['echo with garbage IP options', 5, (r) => validEcho(r, { options: r.bytes(4 * r.range(1, 10)) })],
  ['echo with a source route option', 1, (r) => {
    // Loose or strict source route with 1-9 addresses: well formed, yet Linux drops it (accept_source_route=0).
    const n = r.range(1, 9);
    const o = Buffer.concat([Buffer.from([r.pick([131, 137]), 3 + 4 * n, 4 + 4 * r.int(n + 1)]), r.bytes(4 * n)]);
    return validEcho(r, { options: Buffer.concat([o, Buffer.alloc((4 - (o.length % 4)) % 4)]) });
  }],
  ['bit flips of an echo request', 12, (r) => flipBits(r, validEcho(r, { options: r.chance(0.2) ? validOptions(r) : undefined }), r.range(1, 4))],
  ['truncated echo request', 6, (r) => { const b = validEcho(r); return b.subarray(0, r.int(b.length)); }],
  ['echo with trailing bytes', 3, (r) => Buffer.concat([validEcho(r), r.bytes(r.range(1, 64))])],
  ['total length wrong', 5, (r) => {
    const b = validEcho(r);
    const total = b.readUInt16BE(2);
    b.writeUInt16BE(r.chance(0.5) ? Math.min(0xffff, total + r.range(1, 100)) : Math.max(0, total - r.range(1, 40)), 2);
    if (r.chance(0.8)) fixHeaderChecksum(b);
    return b;
  }],
  ['bad IHL', 4, (r) => {
    const b = validEcho(r, { options: r.chance(0.3) ? validOptions(r) : undefined });
    b[0] = 0x40 | r.int(16);
    if (r.chance(0.7)) fixHeaderChecksum(b);
    return b;
  }],
  ['bad IP header checksum', 3, (r) => { const b = validEcho(r); b.writeUInt16BE(b.readUInt16BE(10) ^ (1 + r.int(0xffff)), 10); return b; }],
  ['bad ICMP checksum', 3, (r) => { const b = validEcho(r); const at = ((b[0] & 15) * 4) + 2; b.writeUInt16BE(b.readUInt16BE(at) ^ (1 + r.int(0xffff)), at); return b; }],
  ['ICMP shorter than 8 bytes', 4, (r) => ipv4({ ...echoShape(r).fields }, Buffer.from([8, 0, ...r.bytes(r.int(6))]))],
  ['other ICMP type or code', 4, (r) => ipv4(echoShape(r).fields, icmpMessage(r.pick([0, 3, 5, 8, 11, 13, 17, r.int(256)]), r.chance(0.5) ? 0 : r.int(256), r.int(65536), r.int(65536), r.bytes(r.int(64))))],
  ['special addresses', 5, (r) => { const s = echoShape(r, { size: r.int(64) }); if (r.chance(0.6)) s.fields.src = specialAddress(r); if (r.chance(0.6)) s.fields.dst = specialAddress(r); return ipv4(s.fields, s.icmp); }],
  ['fragment group', 6, fragmentGroup],
  ['single random fragment', 3, (r) => { const s = echoShape(r); s.fields.frag = r.int(0x10000) & 0x3fff || 0x2000; return ipv4(s.fields, r.chance(0.5) ? s.icmp : r.bytes(r.int(1500))); }],
  ['IPv6 echo', 8, (r) => echo6(r)],
  ['IPv6 echo with extension headers', 5, (r) => echo6(r, { ext: true })],
  ['IPv6 echo, special addresses', 3, (r) => echo6(r, { size: r.int(64), src: r.chance(0.6) ? specialAddress6(r) : undefined, dst: r.chance(0.6) ? specialAddress6(r) : undefined })],
  ['IPv6 other ICMPv6 type', 3, (r) => echo6(r, { size: r.int(64), type: r.pick([129, 133, 134, 135, 136, 143, 1, 3, r.int(256)]) })],
  ['IPv6 bit flips', 6, (r) => flipBits(r, echo6(r, { ext: r.chance(0.5) }), r.range(1, 4))],
  ['IPv6 truncated', 3, (r) => { const b = echo6(r, { ext: r.chance(0.5) }); return b.subarray(0, r.int(b.length)); }],
  ['IPv6 payload length wrong', 2, (r) => { const b = echo6(r, { ext: r.chance(0.5) }); b.writeUInt16BE(Math.max(0, Math.min(0xffff, b.readUInt16BE(4) + r.range(-60, 60))), 4); return b; }],
  ['IPv6 fragment group', 5, fragmentGroup6],
  ['IPv6', 4, (r) => {
    const plen = r.int(1500);
    const b = Buffer.concat([Buffer.alloc(40), r.bytes(plen)]);
    b[0] = 0x60;
    b.writeUInt16BE(r.chance(0.8) ? plen : r.int(0x10000), 4);
    b[6] = r.pick([58, 17, 6, 0, 44, r.int(256)]);
    b[7] = 64;
    r.bytes(32).copy(b, 8);
    return r.chance(0.2) ? b.subarray(0, r.int(b.length)) : b;
  }],
  ['not IP', 3, (r) => { const b = r.bytes(r.range(1, 200)); b[0] = (r.pick([0, 1, 2, 3, 5, 7, 8, 15]) << 4) | (b[0] & 15); return b; }],
  ['empty or tiny', 3, (r) => { const b = r.bytes(r.int(20)); if (b.length && r.chance(0.7)) b[0] = 0x45; return b; }],
  ['other protocol', 4, (r) => {
    const s = echoShape(r);
    s.fields.proto = r.pick([6, 17, 17, 6, 2, 47, 58, r.int(256)]);
    return ipv4(s.fields, r.bytes(r.chance(0.2) ? r.int(8) : r.range(8, 1500)));
  }],
  ['checksum corner', 3, checksumCorner],
  ['random bytes', 3, (r) => r.bytes(r.int(r.chance(0.9) ? 120 : 70000))],
  ['huge', 1, (r) => { const b = validEcho(r, { size: 65507 }); return r.chance(0.5) ? b : Buffer.concat([b, r.bytes(r.range(1, 5000))]); }],
];

const TOTAL_WEIGHT = MAKERS.reduce((n, m) => n + m[1], 0);

/** Names of the case kinds, for reports. */
export const CASE_KINDS = MAKERS.map((m) => m[0]);

/**
 * Generates at least `n` cases (a fragment group counts as one, but adds all its fragments). Some cases get
 * 14 bytes of link-layer junk in front of the IP header, as an Ethernet capture would.
 */
export function generateCases(rng: Rng, n: number): FuzzCase[] {
  const out: FuzzCase[] = [];
  for (let i = 0; i < n; i++) {
    let w = rng.int(TOTAL_WEIGHT);
    let m = MAKERS[0];
    for (const candidate of MAKERS) {
      if (w < candidate[1]) {
        m = candidate;
        break;
      }
      w -= candidate[1];
    }
    const made = m[2](rng);
    const cases = Array.isArray(made) ? made : [{ kind: m[0], data: made, l3: 0 }];
    const framed = rng.chance(0.08);
    for (const c of cases) out.push(framed ? { kind: c.kind, data: Buffer.concat([ethernetHeaderFor(rng, c.data), c.data]), l3: 14 } : c);
  }
  return out;
}
