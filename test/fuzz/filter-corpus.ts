/**
 * Expressions and packets for the filter differential (libpcap's interpreter against the translated
 * JavaScript): expressions from every primitive family of pcap-filter(7), and seeded packets that exercise
 * them: crafted IPv4 (options, fragments, every transport), IPv6 with extension headers, ARP and RARP,
 * VLAN-tagged and double-tagged frames, truncations, byte mutations and random bytes, on RAW IP and on
 * Ethernet.
 */
import type { Rng } from './rng.js';
import {
  BPF_ABS, BPF_ADD, BPF_ALU, BPF_AND, BPF_B, BPF_DIV, BPF_H, BPF_IMM, BPF_IND, BPF_JA, BPF_JEQ, BPF_JGE, BPF_JGT, BPF_JMP,
  BPF_JSET, BPF_K, BPF_LD, BPF_LDX, BPF_LEN, BPF_LSH, BPF_MEM, BPF_MISC, BPF_MOD, BPF_MSH, BPF_MUL, BPF_NEG, BPF_OR,
  BPF_RET, BPF_RSH, BPF_ST, BPF_STX, BPF_SUB, BPF_TAX, BPF_TXA, BPF_W, BPF_X, BPF_XOR, BPF_A, type BpfInsn,
} from '../../src/filter/bpf.js';

/** Expressions valid on both RAW IP and Ethernet. */
export const IP_EXPRESSIONS: readonly string[] = [
  // protocols
  'ip', 'ip6', 'icmp', 'icmp6', 'tcp', 'udp', 'sctp', 'igmp', 'ip proto 47', 'ip proto \\udp', 'ip6 proto 17',
  'ip6 and tcp', 'tcp or udp or icmp', 'not icmp', 'ip and not udp',
  // hosts and networks
  'host 198.18.0.2', 'src host 198.18.0.1', 'dst host 198.18.0.2', 'src or dst host 198.18.0.1',
  'src and dst net 198.18.0.0/24', 'net 198.18.0.0/24', 'src net 10.0.0.0/8', 'dst net 198.18.0.0 mask 255.255.255.0',
  'ip host 198.18.0.1 and ip host 198.18.0.2', 'host 2001:db8::1', 'ip6 net 2001:db8::/32', 'ip6 src host 2001:db8::2',
  'dst net 2001:db8:0:1::/64', 'ip multicast', 'ip6 multicast', 'dst host 224.0.0.251',
  // ports
  'port 53', 'src port 80', 'dst port 5353', 'tcp port 80', 'udp dst port 53', 'portrange 1000-2000',
  'tcp portrange 20-25', 'udp src portrange 5000-6000', 'udp port 53 or udp port 5353', 'ip6 and udp port 53',
  // named fields and flags
  'tcp[tcpflags] & tcp-syn != 0', 'tcp[tcpflags] & (tcp-syn|tcp-ack) == tcp-syn', 'tcp[tcpflags] & (tcp-fin|tcp-rst) != 0',
  'icmp[icmptype] == icmp-echo', 'icmp[icmptype] != icmp-echo and icmp[icmptype] != icmp-echoreply', 'icmp[icmpcode] = 3',
  'icmp6 and ip6[40] == 128', 'icmp6[icmp6type] == icmp6-echo', 'ip6 protochain 6', 'ip6 protochain 17', 'ip protochain 1',
  // loads, arithmetic, indirection
  'ip[8] > 64', 'ip[2:2] - 20 > 100', 'ip[0] & 0xf != 5', 'ip[6:2] & 0x1fff != 0', 'ip[6] & 0x20 != 0', 'tcp[13] = 2',
  'tcp[2:2] > 1023', 'udp[8:4] = 0xdeadbeef', 'ip[12:4] = 0xc6120001', 'ip[9] = 1 and ip[20] = 8',
  'ip[2:2] * 2 > 1000', 'ip[2:2] / 3 > 10', 'ip[2:2] % 7 = 3', 'ip[8] ^ 0xff > 0x80', '(ip[2:2] << 2) & 0xffff > 400',
  'ip[2:2] >> 1 > 100', 'ip[2:2] | 0x8000 = 0x8054', '-ip[8] & 0xff > 100', 'len - 20 > ip[2:2]', 'ip[ip[0] & 0xf] = 0',
  'tcp[(tcp[12] >> 4) * 4] = 0x47', 'ip[2:2] / (ip[8] - 64) > 0', 'ip[2:2] % ip[8] = 0', 'ip[2:2] << ip[8] = 0',
  'ip[2:2] >> (ip[8] - 60) = 1', 'ip6[4:2] > 20', 'ip[(ip[0] & 0xf) * 4 : 4] = 0x08000000',
  // lengths
  'len > 100', 'less 64', 'greater 200', 'len = 84 or len = 98',
  // compounds
  'icmp and src host 198.18.0.2', 'udp and (port 53 or port 5353) and not src host 198.18.0.1',
  '(tcp and port 80) or (udp and not port 53)', 'not (ip6 or icmp) and len < 1000', 'ip and (ip[6:2] & 0x3fff) = 0 and udp',
];

/** Expressions only valid on Ethernet (link-level primitives). */
export const ETHERNET_EXPRESSIONS: readonly string[] = [
  'ether host 02:00:00:00:00:01', 'ether src 02:00:00:00:00:02', 'ether dst ff:ff:ff:ff:ff:ff', 'ether broadcast',
  'ether multicast', 'broadcast', 'multicast', 'arp', 'rarp', 'vlan', 'vlan 100', 'vlan and ip', 'vlan 100 and udp port 53',
  'vlan and vlan 200', 'ether proto 0x88cc', 'ether[12:2] = 0x0806', 'arp and arp[6:2] = 2', 'arp host 198.18.0.1',
  'ether proto \\ip6', 'ip and ether src 02:00:00:00:00:02', 'not ether broadcast and ip6 multicast', 'mpls', 'pppoes',
  'llc', 'vlan and icmp and src host 198.18.0.2', 'not vlan and not arp', 'ether[0] & 1 != 0',
];

/** The expressions for a link type as files declare it (101 RAW, 1 Ethernet). */
export function expressionsFor(linkType: number): readonly string[] {
  return linkType === 1 ? [...IP_EXPRESSIONS, ...ETHERNET_EXPRESSIONS] : IP_EXPRESSIONS;
}

const V4 = ['198.18.0.1', '198.18.0.2', '198.18.0.77', '10.1.2.3', '224.0.0.251', '255.255.255.255', '192.0.2.9'];
const V6 = ['2001:db8::1', '2001:db8::2', '2001:db8:0:1::5', 'ff02::1', 'fe80::1', '2001:db9::1'];
const PORTS = [53, 53, 80, 80, 5353, 22, 25, 1023, 1024, 1500, 2000, 5500, 65535, 0];
const MACS = ['02:00:00:00:00:01', '02:00:00:00:00:02', 'ff:ff:ff:ff:ff:ff', '01:00:5e:00:00:fb', '33:33:00:00:00:01', '0a:0b:0c:0d:0e:0f'];

const v4 = (a: string) => Buffer.from(a.split('.').map(Number));
function v6(a: string): Buffer {
  const [head, tail] = a.split('::');
  const h = head ? head.split(':') : [];
  const t = tail !== undefined && tail ? tail.split(':') : [];
  const groups = [...h, ...Array(8 - h.length - t.length).fill('0'), ...t];
  const b = Buffer.alloc(16);
  groups.forEach((g, i) => b.writeUInt16BE(parseInt(g, 16), i * 2));
  return b;
}
const mac = (m: string) => Buffer.from(m.split(':').map((x) => parseInt(x, 16)));

function transport(rng: Rng, proto: number, icmpTypes: number[]): Buffer {
  const payload = rng.bytes(rng.pick([0, 0, 4, 8, 20, 56, 200]));
  // A payload that starts like an HTTP request, for expressions that look past the transport header.
  if (payload.length && rng.chance(0.2)) payload[0] = 0x47;
  if (proto === 6) {
    const h = Buffer.alloc(rng.chance(0.2) ? 32 : 20);
    h.writeUInt16BE(rng.pick(PORTS), 0);
    h.writeUInt16BE(rng.pick(PORTS), 2);
    h.writeUInt32BE(rng.u32(), 4);
    h[12] = ((h.length / 4) << 4) | (rng.chance(0.1) ? rng.int(16) : 0);
    h[13] = rng.pick([0x02, 0x12, 0x10, 0x18, 0x01, 0x04, 0x11, rng.int(256)]);
    if (rng.chance(0.1)) h[12] = rng.int(256);
    return Buffer.concat([h, payload]);
  }
  if (proto === 17) {
    const h = Buffer.alloc(8);
    h.writeUInt16BE(rng.pick(PORTS), 0);
    h.writeUInt16BE(rng.pick(PORTS), 2);
    h.writeUInt16BE(8 + payload.length, 4);
    if (rng.chance(0.1) && payload.length >= 4) payload.writeUInt32BE(0xdeadbeef, 0);
    return Buffer.concat([h, payload]);
  }
  if (proto === 1 || proto === 58) {
    const h = Buffer.alloc(8);
    h[0] = rng.pick(icmpTypes);
    h[1] = rng.pick([0, 0, 1, 3]);
    h.writeUInt32BE(rng.u32(), 4);
    return Buffer.concat([h, payload]);
  }
  return payload;
}

function ipv4Packet(rng: Rng): Buffer {
  const proto = rng.pick([1, 6, 17, 6, 17, 2, 47, 132, rng.int(256)]);
  const optWords = rng.chance(0.2) ? rng.range(1, 10) : 0;
  const body = transport(rng, proto, [8, 0, 3, 11, 13, rng.int(256)]);
  const h = Buffer.alloc(20 + optWords * 4);
  h[0] = 0x45 + optWords;
  h[1] = rng.int(4) << 2;
  h.writeUInt16BE(rng.chance(0.9) ? h.length + body.length : rng.int(65536), 2);
  h.writeUInt16BE(rng.u32() & 0xffff, 4);
  // Fragments: a first fragment (MF), a later one (offset), or neither (DF or nothing).
  const frag = rng.pick([0, 0, 0x4000, 0x2000, 0x2000 | rng.int(0x2000), rng.int(0x2000), rng.int(65536)]);
  h.writeUInt16BE(frag, 6);
  h[8] = rng.pick([1, 30, 64, 65, 128, 255]);
  h[9] = proto;
  v4(rng.pick(V4)).copy(h, 12);
  v4(rng.pick(V4)).copy(h, 16);
  for (let i = 20; i < h.length; i++) h[i] = rng.pick([0, 1, 7, 0x44, 0x94, rng.int(256)]);
  return Buffer.concat([h, body]);
}

function ipv6Packet(rng: Rng): Buffer {
  const last = rng.pick([6, 17, 58, 6, 17, 58, 132, 59, rng.int(256)]);
  // Extension headers: hop-by-hop (0), routing (43), fragment (44), destination options (60), AH (51).
  const chain: number[] = [];
  const nExt = rng.chance(0.4) ? rng.range(1, 3) : 0;
  for (let i = 0; i < nExt; i++) chain.push(rng.pick([0, 43, 44, 60, 51]));
  chain.push(last);
  let payload = transport(rng, last, [128, 129, 1, 135, 136, rng.int(256)]);
  for (let i = nExt - 1; i >= 0; i--) {
    const kind = chain[i];
    const len8 = kind === 44 ? 0 : rng.int(3);
    const ext = Buffer.alloc(kind === 51 ? (len8 + 2) * 4 : (len8 + 1) * 8);
    ext[0] = chain[i + 1];
    ext[1] = kind === 44 ? 0 : len8;
    if (kind === 44) ext.writeUInt16BE(rng.pick([0, 1, 8, rng.int(65536)]), 2);
    payload = Buffer.concat([ext, payload]);
  }
  const h = Buffer.alloc(40);
  h.writeUInt32BE((6 << 28) | (rng.int(256) << 20) | rng.int(1 << 20), 0);
  h.writeUInt16BE(rng.chance(0.9) ? payload.length : rng.int(65536), 4);
  h[6] = chain[0];
  h[7] = rng.pick([1, 64, 255]);
  v6(rng.pick(V6)).copy(h, 8);
  v6(rng.pick(V6)).copy(h, 24);
  return Buffer.concat([h, payload]);
}

function arpPayload(rng: Rng): Buffer {
  const b = Buffer.alloc(28);
  b.writeUInt16BE(1, 0);
  b.writeUInt16BE(0x0800, 2);
  b[4] = 6;
  b[5] = 4;
  b.writeUInt16BE(rng.pick([1, 2, 3, 4]), 6);
  mac(rng.pick(MACS)).copy(b, 8);
  v4(rng.pick(V4)).copy(b, 14);
  mac(rng.pick(MACS)).copy(b, 18);
  v4(rng.pick(V4)).copy(b, 24);
  return b;
}

function ethernetFrame(rng: Rng): Buffer {
  const head = Buffer.alloc(12);
  mac(rng.pick(MACS)).copy(head, 0);
  mac(rng.pick(MACS)).copy(head, 6);
  const kind = rng.pick(['ip', 'ip', 'ip', 'ip', 'ip6', 'ip6', 'ip6', 'vlan', 'arp', 'rarp', 'vlan', 'qinq', 'lldp', 'mpls', 'pppoe', 'llc', 'other']);
  const et = (v: number) => Buffer.from([v >> 8, v & 0xff]);
  const tag = (tpid: number) => Buffer.concat([et(tpid), et((rng.int(8) << 13) | rng.pick([100, 200, 1, rng.int(4096)]))]);
  const inner = (): Buffer => {
    const r = rng.int(3);
    return r === 0 ? Buffer.concat([et(0x0800), ipv4Packet(rng)]) : r === 1 ? Buffer.concat([et(0x86dd), ipv6Packet(rng)]) : Buffer.concat([et(0x0806), arpPayload(rng)]);
  };
  let rest: Buffer;
  switch (kind) {
    case 'ip': rest = Buffer.concat([et(0x0800), ipv4Packet(rng)]); break;
    case 'ip6': rest = Buffer.concat([et(0x86dd), ipv6Packet(rng)]); break;
    case 'arp': rest = Buffer.concat([et(0x0806), arpPayload(rng)]); break;
    case 'rarp': rest = Buffer.concat([et(0x8035), arpPayload(rng)]); break;
    case 'vlan': rest = Buffer.concat([tag(0x8100), inner()]); break;
    case 'qinq': rest = Buffer.concat([tag(rng.pick([0x88a8, 0x8100, 0x9100])), tag(0x8100), inner()]); break;
    case 'lldp': rest = Buffer.concat([et(0x88cc), rng.bytes(30)]); break;
    case 'mpls': rest = Buffer.concat([et(0x8847), Buffer.from([0, 0, 0x11, 64]), ipv4Packet(rng)]); break;
    case 'pppoe': rest = Buffer.concat([et(0x8864), Buffer.from([0x11, 0, 0, 1, 0, 0x20, 0, 0x21]), ipv4Packet(rng)]); break;
    case 'llc': rest = Buffer.concat([et(rng.int(1501)), Buffer.from([0xaa, 0xaa, 3, 0, 0, 0, 8, 0]), ipv4Packet(rng)]); break;
    default: rest = Buffer.concat([et(rng.int(65536)), rng.bytes(rng.int(60))]);
  }
  return Buffer.concat([head, rest]);
}

/** Flips, overwrites or cuts a few bytes: headers that almost parse. */
function mutate(rng: Rng, p: Buffer): Buffer {
  const b = Buffer.from(p);
  const n = rng.range(1, 3);
  for (let i = 0; i < n && b.length; i++) b[rng.int(b.length)] = rng.chance(0.5) ? rng.int(256) : b[rng.int(b.length)] ^ (1 << rng.int(8));
  return b;
}

/**
 * One packet for a link type (101 RAW or 1 Ethernet): mostly well-formed, some truncated anywhere
 * (including inside the first header), some mutated, some random bytes.
 */
export function filterPacket(rng: Rng, linkType: number): Buffer {
  const r = rng.int(100);
  if (r < 5) return rng.bytes(rng.int(80));
  let p = linkType === 1 ? ethernetFrame(rng) : rng.chance(0.6) ? ipv4Packet(rng) : ipv6Packet(rng);
  if (r < 25) p = p.subarray(0, rng.int(p.length + 1));
  else if (r < 40) p = mutate(rng, p);
  return p;
}

const ALU_OPS = [BPF_ADD, BPF_SUB, BPF_MUL, BPF_DIV, BPF_MOD, BPF_AND, BPF_OR, BPF_XOR, BPF_LSH, BPF_RSH];
const JUMPS = [BPF_JEQ, BPF_JGT, BPF_JGE, BPF_JSET];

/**
 * A random valid program using every instruction libpcap's interpreter runs (pcap_compile makes only some
 * of them): loads of every size and mode at offsets near and past the packet's end, ALU operations by
 * constants and by X (division and modulo by a zero X, shifts by 32 and more), scratch memory (written
 * first: libpcap's is uninitialised), forward jumps, and returns of constants and of A.
 */
export function randomProgram(rng: Rng): BpfInsn[] {
  const prog: BpfInsn[] = [];
  const ins = (code: number, k = 0, jt = 0, jf = 0) => prog.push({ code, jt, jf, k: k >>> 0 });
  for (let m = 0; m < 16; m++) {
    ins(BPF_LD | BPF_IMM, rng.chance(0.5) ? rng.int(100) : rng.u32());
    ins(BPF_ST, m);
  }
  const body = rng.range(1, 40);
  const offset = () => (rng.chance(0.9) ? rng.int(90) : rng.pick([0xffffffff, 0xfffffffe, 0x80000000, rng.u32()]));
  const small = () => rng.pick([0, 1, 2, 3, 4, 7, 8, 31, 32, 33, 64, 0xff, 0xffff, 0x7fffffff, 0x80000000, 0xffffffff, rng.u32(), rng.int(100)]);
  const start = prog.length;
  const total = start + body;
  for (let i = start; i < total; i++) {
    const left = total - i; // instructions after this one before the final return block
    const r = rng.int(14);
    if (r === 0) ins(BPF_LD | rng.pick([BPF_W, BPF_H, BPF_B]) | BPF_ABS, offset());
    else if (r === 1) ins(BPF_LD | rng.pick([BPF_W, BPF_H, BPF_B]) | BPF_IND, offset());
    else if (r === 2) ins(BPF_LDX | BPF_MSH | BPF_B, offset());
    else if (r === 3) ins(rng.pick([BPF_LD | BPF_W | BPF_LEN, BPF_LDX | BPF_W | BPF_LEN, BPF_LD | BPF_IMM, BPF_LDX | BPF_IMM]), small());
    else if (r === 4) ins(rng.pick([BPF_LD | BPF_MEM, BPF_LDX | BPF_MEM, BPF_ST, BPF_STX]), rng.int(16));
    else if (r === 5) ins(rng.pick([BPF_MISC | BPF_TAX, BPF_MISC | BPF_TXA, BPF_ALU | BPF_NEG]));
    else if (r <= 8) {
      const op = rng.pick(ALU_OPS);
      if (rng.chance(0.5)) ins(BPF_ALU | op | BPF_X);
      else {
        let k = small();
        if ((op === BPF_DIV || op === BPF_MOD) && k === 0) k = 3;
        ins(BPF_ALU | op | BPF_K, k);
      }
    } else if (r <= 12) {
      const span = Math.min(left, 255);
      const jt = rng.int(span + 1);
      const jf = rng.int(span + 1);
      if (rng.chance(0.15)) ins(BPF_JMP | BPF_JA, rng.int(span + 1));
      else ins(BPF_JMP | rng.pick(JUMPS) | rng.pick([BPF_K, BPF_X]), small(), jt, jf);
    } else ins(rng.chance(0.5) ? BPF_RET | BPF_A : BPF_RET | BPF_K, small());
  }
  // Jumps reach at most `total`; a return is there, and one more after it.
  ins(BPF_RET | BPF_A);
  ins(BPF_RET | BPF_K, rng.pick([0, 262144, 0xffffffff, 1]));
  return prog;
}
