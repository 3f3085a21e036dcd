/**
 * Hand-built IPv4 and IPv6 packets for the offline echo tests: echo requests a host must answer (odd payload
 * lengths, IP options, codes other than 0, extension headers, checksum corner cases) with the reply each one
 * must get as Linux sends it, built here independently of the code under test; and packets that must not be
 * answered (malformed, not echo requests), with where they drop.
 */
import { echoRequest, echoRequest6, fragmentHeader, ipv6Bytes, optionsHeader, pseudoHeader6And, referenceChecksum, routingHeader } from './packets.js';

/** Where a packet that gets no reply is dropped: by `parse`, or by a later stage of the echo pipeline. */
export type DropPlace = 'parse' | 'after-parse';

export interface AnswerableRequest {
  name: string;
  packet: Buffer;
  /** The reply a host sends: addresses swapped, type 0, TTL 64, both checksums recomputed from scratch. */
  reply: Buffer;
}

export interface UnanswerablePacket {
  name: string;
  packet: Buffer;
  dropped: DropPlace;
}

function ihlOf(p: Buffer): number {
  return (p[0] & 0x0f) * 4;
}

/** Recomputes the IPv4 header checksum after a header was edited by hand. */
function fixIpChecksum(p: Buffer): Buffer {
  const ihl = Math.min(ihlOf(p), p.length);
  p.writeUInt16BE(0, 10);
  p.writeUInt16BE(referenceChecksum(p.subarray(0, ihl)), 10);
  return p;
}

/** Recomputes the ICMP checksum of a whole, unpadded IPv4 ICMP packet. */
function fixIcmpChecksum(p: Buffer): Buffer {
  const l4 = ihlOf(p);
  p.writeUInt16BE(0, l4 + 2);
  p.writeUInt16BE(referenceChecksum(p.subarray(l4)), l4 + 2);
  return p;
}

/**
 * The reply to an IPv4 echo request, built by hand: the oracle the output is compared against byte for
 * byte. The corpus's options are no-ops, which Linux does not echo (ip_options_echo keeps record route,
 * timestamp and CIPSO only): the reply has none, and a 20-byte header.
 */
export function expectedReply(request: Buffer, ttl = 64): Buffer {
  if (ihlOf(request) > 20) {
    const stripped = Buffer.concat([request.subarray(0, 20), request.subarray(ihlOf(request))]);
    stripped[0] = 0x45;
    stripped.writeUInt16BE(stripped.length, 2);
    return expectedReply(stripped, ttl);
  }
  const r = Buffer.from(request);
  const src = Buffer.from(r.subarray(12, 16));
  r.copy(r, 12, 16, 20);
  src.copy(r, 16);
  r[8] = ttl;
  r[6] &= ~0x40; // DF cleared, as in Linux's own replies
  r[ihlOf(r)] = 0; // type 0: echo reply, the code kept
  return fixIcmpChecksum(fixIpChecksum(r));
}

/** An IPv4 echo request with ICMP code `code` (Linux answers every code and copies it). */
function withCode(code: number, seq: number): Buffer {
  const p = echoRequest({ seq });
  p[21] = code;
  return fixIcmpChecksum(p);
}

/**
 * The reply Linux sends to an IPv6 echo request (net/ipv6/icmp.c): addresses swapped, hop limit 64, traffic
 * class kept, no extension headers, type 129, the code, id, sequence and data kept, the checksum over the
 * new pseudo-header. The flow label is kept (Linux would put a hash of its own there; see to-reply).
 */
export function expectedReply6(request: Buffer): Buffer {
  let at = 40;
  let nh = request[6];
  while (nh !== 58) {
    const len = nh === 44 ? 8 : (request[at + 1] + 1) * 8;
    nh = request[at];
    at += len;
  }
  const msg = Buffer.from(request.subarray(at));
  const r = Buffer.alloc(40 + msg.length);
  request.copy(r, 0, 0, 4);
  r.writeUInt16BE(msg.length, 4);
  r[6] = 58;
  r[7] = 64;
  request.copy(r, 8, 24, 40);
  request.copy(r, 24, 8, 24);
  msg[0] = 129;
  msg.writeUInt16BE(0, 2);
  msg.writeUInt16BE(referenceChecksum(pseudoHeader6And(r.subarray(8, 24), r.subarray(24, 40), 58, msg)), 2);
  msg.copy(r, 40);
  return r;
}

/** IPv6 echo requests a host must answer, each with its reply. */
export function answerableRequests6(): AnswerableRequest[] {
  const reqs: [string, Buffer][] = [
    ['IPv6: default payload', echoRequest6({ seq: 1 })],
    ...[0, 1, 7, 1001, 1452].map((n, i): [string, Buffer] => [`IPv6: payload of ${n} bytes`, echoRequest6({ seq: 10 + i, payload: payload(n) })]),
    ['IPv6: code 1', echoRequest6({ seq: 20, code: 1 })],
    ['IPv6: code 255', echoRequest6({ seq: 21, code: 255 })],
    ['IPv6: traffic class 0xb8, flow label 0xabcde, hop limit 1', echoRequest6({ seq: 22, trafficClass: 0xb8, flowLabel: 0xabcde, hopLimit: 1 })],
    ['IPv6: id 0, seq 0, no payload', echoRequest6({ id: 0, seq: 0, payload: Buffer.alloc(0) })],
    ['IPv6: hop-by-hop router alert (stripped in the reply)', echoRequest6({ seq: 23, ext: [optionsHeader(0, Buffer.from([5, 2, 0, 0]))] })],
    ['IPv6: destination options, routing header with no segments left, atomic fragment', echoRequest6({ seq: 24, ext: [optionsHeader(60), routingHeader(0, [ipv6Bytes('2001:db8::7')]), fragmentHeader(0, false, 0x1234)] })],
    ['IPv6: link-local addresses', echoRequest6({ seq: 25, src: 'fe80::1', dst: 'fe80::2' })],
  ];
  return reqs.map(([name, packet]) => ({ name, packet, reply: expectedReply6(packet) }));
}

function payload(n: number): Buffer {
  const b = Buffer.alloc(n);
  for (let i = 0; i < n; i++) b[i] = (i * 31 + 7) & 0xff;
  return b;
}

function nops(n: number): Buffer {
  const b = Buffer.alloc(n, 1); // NOP
  b[n - 1] = 0; // end of option list
  return b;
}

/** Ones'-complement sum folded to 16 bits (the sum the checksum is the complement of). */
function foldedSum(bytes: Uint8Array): number {
  return ~referenceChecksum(bytes) & 0xffff;
}

/**
 * A request whose reply's IPv4 header sums to 0xFFFF, so the reply's header checksum is exactly 0x0000: the
 * corner of the incremental update (RFC 1624). The IP identification is chosen to get there.
 */
function requestWithZeroReplyHeaderChecksum(ttl: number, seq: number): Buffer {
  const req = echoRequest({ ttl, seq });
  req.writeUInt16BE(0, 4);
  const reply = expectedReply(fixIcmpChecksum(fixIpChecksum(req)));
  reply.writeUInt16BE(0, 10);
  const s = foldedSum(reply.subarray(0, 20));
  req.writeUInt16BE(0xffff - s, 4);
  return fixIpChecksum(req);
}

/** Echo requests a host must answer, each with its reply. */
export function answerableRequests(): AnswerableRequest[] {
  const reqs: [string, Buffer][] = [
    ['default 53-byte payload', echoRequest({ seq: 1 })],
    ...[0, 1, 2, 3, 7, 64, 1001, 1472, 9001].map((n, i): [string, Buffer] => [`payload of ${n} bytes`, echoRequest({ seq: 10 + i, payload: payload(n) })]),
    ['4 bytes of IP options', echoRequest({ seq: 30, options: nops(4) })],
    ['8 bytes of IP options, odd payload', echoRequest({ seq: 31, options: nops(8), payload: payload(3) })],
    ['40 bytes of IP options (IHL 15)', echoRequest({ seq: 32, options: nops(40), payload: payload(101) })],
    ['id 0, seq 0, no payload: the reply ICMP message is all zeros (checksum 0xFFFF)', echoRequest({ id: 0, seq: 0, payload: Buffer.alloc(0) })],
    ['id 0xFFFF, seq 0, no payload: reply ICMP checksum 0x0000', echoRequest({ id: 0xffff, seq: 0, payload: Buffer.alloc(0) })],
    ['reply IP header checksum 0x0000, TTL unchanged', requestWithZeroReplyHeaderChecksum(64, 40)],
    ['reply IP header checksum 0x0000, TTL 1 -> 64', requestWithZeroReplyHeaderChecksum(1, 41)],
    ['TTL 1', echoRequest({ seq: 42, ttl: 1 })],
    ['no DF flag', echoRequest({ seq: 43, frag: 0 })],
    ['other source in 198.18.0.0/15', echoRequest({ seq: 44, src: '198.19.255.254' })],
    ['code 1 (answered with code 1, as Linux)', withCode(1, 45)],
    ['code 255 (answered with code 255, as Linux)', withCode(255, 46)],
  ];
  return reqs.map(([name, packet]) => ({ name, packet, reply: expectedReply(packet) }));
}

function udpPacket(): Buffer {
  const p = Buffer.alloc(28);
  p[0] = 0x45;
  p.writeUInt16BE(28, 2);
  p[8] = 64;
  p[9] = 17;
  Buffer.from([198, 18, 0, 2, 198, 18, 0, 1]).copy(p, 12);
  p.writeUInt16BE(5353, 20);
  p.writeUInt16BE(53, 22);
  p.writeUInt16BE(8, 24);
  return fixIpChecksum(p);
}

function ipv6EchoRequest(): Buffer {
  const p = Buffer.alloc(48);
  p[0] = 0x60;
  p.writeUInt16BE(8, 4);
  p[6] = 58; // ICMPv6
  p[7] = 64;
  p[8] = 0x20; p[9] = 0x01; p[10] = 0x0d; p[11] = 0xb8; p[23] = 2; // 2001:db8::2
  p[24] = 0x20; p[25] = 0x01; p[26] = 0x0d; p[27] = 0xb8; p[39] = 1; // 2001:db8::1
  p[40] = 128; // echo request
  return p;
}

/** Packets that must get no reply, and where the echo pipeline drops them. */
export function unanswerablePackets(): UnanswerablePacket[] {
  const edit = (f: (p: Buffer) => Buffer | void, o: Parameters<typeof echoRequest>[0] = {}): Buffer => {
    const p = echoRequest({ seq: 100, ...o });
    return f(p) ?? p;
  };
  return [
    { name: 'empty packet', packet: Buffer.alloc(0), dropped: 'parse' },
    { name: '10 bytes: shorter than an IPv4 header', packet: echoRequest().subarray(0, 10), dropped: 'parse' },
    { name: 'bad IPv4 header checksum', packet: edit((p) => void (p[10] ^= 0x5a)), dropped: 'parse' },
    { name: 'total length past the end (cut short)', packet: echoRequest({ seq: 101 }).subarray(0, 60), dropped: 'parse' },
    { name: 'total length below the header', packet: edit((p) => (p.writeUInt16BE(12, 2), fixIpChecksum(p))), dropped: 'parse' },
    { name: 'IHL 4', packet: edit((p) => ((p[0] = 0x44), fixIpChecksum(p))), dropped: 'parse' },
    { name: 'IP version 5', packet: edit((p) => ((p[0] = 0x55), fixIpChecksum(p))), dropped: 'parse' },
    { name: 'echo reply, not request', packet: echoRequest({ seq: 102, type: 0 }), dropped: 'after-parse' },
    { name: 'bad ICMP checksum', packet: edit((p) => void (p[22] ^= 0x21)), dropped: 'after-parse' },
    { name: 'ICMP of 4 bytes', packet: edit((p) => (p.writeUInt16BE(24, 2), fixIpChecksum(p.subarray(0, 24))), { payload: Buffer.alloc(0) }), dropped: 'after-parse' },
    { name: 'UDP', packet: udpPacket(), dropped: 'after-parse' },
    { name: 'IPv6 echo request with a bad checksum', packet: ipv6EchoRequest(), dropped: 'after-parse' },
    { name: 'IPv6 echo request to a multicast address', packet: echoRequest6({ dst: 'ff02::1' }), dropped: 'after-parse' },
    { name: 'IPv6 echo request from a multicast source', packet: echoRequest6({ src: 'ff02::1' }), dropped: 'after-parse' },
    { name: 'IPv6 echo request with a routing header with segments left', packet: echoRequest6({ ext: [routingHeader(1, [ipv6Bytes('2001:db8::7')])] }), dropped: 'after-parse' },
    { name: 'IPv6 hop-by-hop not first', packet: echoRequest6({ ext: [optionsHeader(60), optionsHeader(0)] }), dropped: 'parse' },
    { name: 'IPv6 extension header past the end', packet: (() => { const b = echoRequest6({ ext: [optionsHeader(60, Buffer.alloc(0), 3)] }); b[41] = 200; return b; })(), dropped: 'parse' },
    { name: 'multicast source', packet: echoRequest({ seq: 103, src: '224.0.0.5' }), dropped: 'after-parse' },
    { name: 'broadcast source', packet: echoRequest({ seq: 104, src: '255.255.255.255' }), dropped: 'after-parse' },
    { name: 'unspecified source', packet: echoRequest({ seq: 105, src: '0.0.0.0' }), dropped: 'after-parse' },
    { name: 'first fragment (MF set)', packet: echoRequest({ seq: 106, frag: 0x2000 }), dropped: 'after-parse' },
  ];
}
