/**
 * Crafted packets sent from inside a test namespace with python3 raw sockets, for what ping cannot send:
 * echo requests with any ICMP code (and the replies they get, as the receiving host sees them), and floods
 * of IP fragments that never complete.
 */
import type { Netns } from './netns.js';

/** One echo reply as the pinging host received it. */
export interface ReceivedReply {
  /** The address that answered. */
  from: string;
  type: number;
  code: number;
  id: number;
  seq: number;
  /** Payload, hex. */
  data: string;
  /** TTL (IPv4) or hop limit (IPv6) of the reply. */
  ttl: number;
  /** IPv4: the flags/fragment word; IPv6: the traffic class. */
  flags: number;
  /** IPv4 only: the header length in bytes (20 without options). */
  ihl: number;
  /** IPv4 only: the reply's options as received (the receiving host has recorded into them too), hex. */
  options: string;
}

const ECHO_SCRIPT = String.raw`
import json, os, select, socket, struct, sys, time
family, code, ident, seq, options = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), bytes.fromhex(sys.argv[5])
targets = sys.argv[6:]
payload = bytes((i * 7 + code) & 255 for i in range(40))
def csum(b):
    if len(b) % 2: b += b'\0'
    s = sum(struct.unpack('!%dH' % (len(b) // 2), b))
    while s >> 16: s = (s & 0xffff) + (s >> 16)
    return ~s & 0xffff
if family == '4':
    s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
    if options: s.setsockopt(socket.IPPROTO_IP, socket.IP_OPTIONS, options)
    msg = struct.pack('!BBHHH', 8, code, 0, ident, seq) + payload
    msg = msg[:2] + struct.pack('!H', csum(msg)) + msg[4:]
else:
    s = socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6)
    s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_RECVHOPLIMIT, 1)
    s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_RECVTCLASS, 1)
    # The kernel computes the ICMPv6 checksum of raw ICMPv6 sockets itself.
    msg = struct.pack('!BBHHH', 128, code, 0, ident, seq) + payload
for t in targets:
    s.sendto(msg, (t, 0))
out, deadline = [], time.time() + 3
while len(out) < len(targets) and time.time() < deadline:
    if not select.select([s], [], [], 0.2)[0]: continue
    if family == '4':
        pkt, addr = s.recvfrom(65535)
        ihl = (pkt[0] & 15) * 4
        m = pkt[ihl:]
        if m[0] != 0 or struct.unpack('!H', m[4:6])[0] != ident: continue
        out.append(dict(frm=addr[0], type=m[0], code=m[1], id=ident, seq=struct.unpack('!H', m[6:8])[0], data=m[8:].hex(), ttl=pkt[8], flags=struct.unpack('!H', pkt[6:8])[0], ihl=ihl, options=pkt[20:ihl].hex()))
    else:
        m, anc, _, addr = s.recvmsg(65535, 256)
        if m[0] != 129 or struct.unpack('!H', m[4:6])[0] != ident: continue
        hl, tc = -1, -1
        for level, kind, val in anc:
            if kind == socket.IPV6_HOPLIMIT: hl = struct.unpack('i', val[:4])[0]
            if kind == socket.IPV6_TCLASS: tc = struct.unpack('i', val[:4])[0]
        out.append(dict(frm=addr[0], type=m[0], code=m[1], id=ident, seq=struct.unpack('!H', m[6:8])[0], data=m[8:].hex(), ttl=hl, flags=tc, ihl=0, options=''))
print(json.dumps(out))
`;

/**
 * Sends one echo request with ICMP code `code` to each target from inside the namespace (a raw socket,
 * checksums right; IPv4 options `ipOptions`, hex, set with IP_OPTIONS) and returns the echo replies received
 * within 3 s, one per answering target at most.
 */
export function echoWithCode(ns: Netns, family: 4 | 6, code: number, id: number, seq: number, targets: string[], ipOptions = ''): ReceivedReply[] {
  const out = ns.run('python3', ['-c', ECHO_SCRIPT, String(family), String(code), String(id), String(seq), ipOptions, ...targets], 20_000);
  return (JSON.parse(out) as Array<ReceivedReply & { frm: string }>).map(({ frm, ...r }) => ({ ...r, from: frm }));
}

const FLOOD_SCRIPT = String.raw`
import os, socket, struct, sys, time
family, count, src, dst = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
sent = 0
if family == '4':
    s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
    sa, da = socket.inet_aton(src), socket.inet_aton(dst)
    for i in range(count):
        data = os.urandom(64)
        # A first fragment (offset 0, MF) of a datagram whose other fragments never come; checksum and
        # total length are filled in by the kernel (IP_HDRINCL).
        hdr = struct.pack('!BBHHHBBH4s4s', 0x45, 0, 20 + len(data), (i % 65535) + 1, 0x2000, 64, 1, 0, sa, da)
        s.sendto(hdr + data, (dst, 0))
        sent += 1
        if i % 200 == 199: time.sleep(0.002)
else:
    s = socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_RAW)
    sa, da = socket.inet_pton(socket.AF_INET6, src), socket.inet_pton(socket.AF_INET6, dst)
    for i in range(count):
        data = os.urandom(64)
        frag = struct.pack('!BBHI', 58, 0, 1, i + 1)
        hdr = struct.pack('!IHBB16s16s', 0x60000000, len(frag) + len(data), 44, 64, sa, da)
        s.sendto(hdr + frag + data, (dst, 0))
        sent += 1
        if i % 200 == 199: time.sleep(0.002)
print(sent)
`;

/**
 * Sends `count` first fragments of datagrams that never complete, from `src` to `dst`, through the
 * namespace's routes (so into the device when `dst` is a peer behind it). Returns how many were sent.
 */
export function junkFragments(ns: Netns, family: 4 | 6, count: number, src: string, dst: string): number {
  return Number(ns.run('python3', ['-c', FLOOD_SCRIPT, String(family), String(count), src, dst], 120_000).trim());
}

const DECLINED_SCRIPT = String.raw`
import socket, struct, sys
def csum(b):
    if len(b) % 2: b += b'\0'
    s = sum(struct.unpack('!%dH' % (len(b) // 2), b))
    while s >> 16: s = (s & 0xffff) + (s >> 16)
    return ~s & 0xffff
own, dst = sys.argv[1], sys.argv[2]
s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
# (source, checksum broken): a bad ICMP checksum, then sources no reply may go to. Not 0.0.0.0: with
# IP_HDRINCL the kernel fills in a zero source itself.
for i, (src, bad) in enumerate([(own, True), ('224.0.0.5', False), ('255.255.255.255', False), ('127.0.0.1', False)]):
    msg = struct.pack('!BBHHH', 8, 0, 0, 0x5151, i) + bytes(range(32))
    c = csum(msg) ^ (0x0101 if bad else 0)
    msg = msg[:2] + struct.pack('!H', c) + msg[4:]
    hdr = struct.pack('!BBHHHBBH4s4s', 0x45, 0, 20 + len(msg), 0x100 + i, 0, 64, 1, 0, socket.inet_aton(src), socket.inet_aton(dst))
    s.sendto(hdr + msg, (dst, 0))
print(4)
`;

/**
 * Sends, through the namespace's routes to `dst`, the IPv4 echo requests Linux declines: one with a bad ICMP
 * checksum (from `own`), and one each from a multicast, the broadcast and a loopback source. Returns how many.
 */
export function declinedEchoRequests(ns: Netns, own: string, dst: string): number {
  return Number(ns.run('python3', ['-c', DECLINED_SCRIPT, own, dst], 20_000).trim());
}
