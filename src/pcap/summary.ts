/**
 * One line per packet, in the manner of `tcpdump -n` (not its exact text): the protocol stack decoded
 * from the bytes alone, every read bounds-checked, so junk gives what could be read followed by
 * `[truncated]` (or `[bad ...]`), never an exception. Used by the `print` stage.
 *
 *   IP 198.18.0.2 > 198.18.0.1: ICMP echo request, id 4660, seq 1, length 64
 *   IP 198.18.0.2.40000 > 198.18.0.1.80: TCP Flags [S], seq 1000, win 64240, length 0
 *   IP6 2001:db8::2 > 2001:db8::1: ICMP6 neighbor solicitation, who has 2001:db8::1, length 32
 *   ARP, Request who-has 198.18.0.1 tell 198.18.0.2, length 28
 *   IP 198.18.0.2 > 198.18.0.1: ICMP (frag id 16962, offset 1480, last), length 1028
 */
import { LINKTYPE_ETHERNET, LINKTYPE_IPV4, LINKTYPE_IPV6, LINKTYPE_RAW } from './format.js';

const TRUNC = ' [truncated]';

function u16(b: Buffer, o: number): number {
  return (b[o] << 8) | b[o + 1];
}

function u32(b: Buffer, o: number): number {
  return b[o] * 0x1000000 + ((b[o + 1] << 16) | (b[o + 2] << 8) | b[o + 3]);
}

export function ipv4Text(b: Buffer, o: number): string {
  return `${b[o]}.${b[o + 1]}.${b[o + 2]}.${b[o + 3]}`;
}

/** RFC 5952 text: lower case, leading zeros dropped, the longest run (2+) of zero groups as `::`. */
export function ipv6Text(b: Buffer, o: number): string {
  const g: number[] = [];
  for (let i = 0; i < 8; i++) g.push(u16(b, o + 2 * i));
  let best = -1;
  let bestLen = 1;
  for (let i = 0; i < 8; ) {
    if (g[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && g[j] === 0) j++;
    if (j - i > bestLen) {
      best = i;
      bestLen = j - i;
    }
    i = j;
  }
  const hex = (a: number[]) => a.map((x) => x.toString(16)).join(':');
  if (best < 0) return hex(g);
  return `${hex(g.slice(0, best))}::${hex(g.slice(best + bestLen))}`;
}

function macText(b: Buffer, o: number): string {
  const h: string[] = [];
  for (let i = 0; i < 6; i++) h.push(b[o + i].toString(16).padStart(2, '0'));
  return h.join(':');
}

const ICMP_TYPES: Record<number, string> = {
  0: 'echo reply',
  3: 'destination unreachable',
  4: 'source quench',
  5: 'redirect',
  8: 'echo request',
  11: 'time exceeded',
  12: 'parameter problem',
  13: 'timestamp request',
  14: 'timestamp reply',
};

const ICMP6_TYPES: Record<number, string> = {
  1: 'destination unreachable',
  2: 'packet too big',
  3: 'time exceeded',
  4: 'parameter problem',
  128: 'echo request',
  129: 'echo reply',
  133: 'router solicitation',
  134: 'router advertisement',
  135: 'neighbor solicitation',
  136: 'neighbor advertisement',
  137: 'redirect',
  143: 'multicast listener report v2',
};

function icmp(b: Buffer, o: number, end: number): string {
  if (end - o < 4) return `ICMP${TRUNC}`;
  const type = b[o];
  const code = b[o + 1];
  const name = ICMP_TYPES[type] ?? `type ${type}`;
  let s = `ICMP ${name}`;
  if (type === 0 || type === 8 || type === 13 || type === 14) {
    if (end - o < 8) return `${s}${TRUNC}`;
    s += `, id ${u16(b, o + 4)}, seq ${u16(b, o + 6)}`;
  } else if (code !== 0 || !(type in ICMP_TYPES)) s += `, code ${code}`;
  return `${s}, length ${end - o}`;
}

function icmp6(b: Buffer, o: number, end: number): string {
  if (end - o < 4) return `ICMP6${TRUNC}`;
  const type = b[o];
  const code = b[o + 1];
  let s = `ICMP6 ${ICMP6_TYPES[type] ?? `type ${type}`}`;
  if (type === 128 || type === 129) {
    if (end - o < 8) return `${s}${TRUNC}`;
    s += `, id ${u16(b, o + 4)}, seq ${u16(b, o + 6)}`;
  } else if (type === 135 || type === 136) {
    if (end - o < 24) return `${s}${TRUNC}`;
    const target = ipv6Text(b, o + 8);
    if (type === 135) s += `, who has ${target}`;
    else {
      const f = b[o + 4];
      const flags = `${f & 0x80 ? 'R' : ''}${f & 0x40 ? 'S' : ''}${f & 0x20 ? 'O' : ''}`;
      s += `, tgt is ${target}${flags ? `, flags [${flags}]` : ''}`;
    }
    // Link-layer address options (source 1, target 2), each length in units of 8 bytes.
    for (let p = o + 24; p + 8 <= end; ) {
      const olen = b[p + 1] * 8;
      if (olen === 0 || p + olen > end) break;
      if ((b[p] === 1 || b[p] === 2) && olen >= 8) s += `, ${b[p] === 1 ? 'source' : 'target'} link-address ${macText(b, p + 2)}`;
      p += olen;
    }
  } else if (code !== 0 || !(type in ICMP6_TYPES)) s += `, code ${code}`;
  return `${s}, length ${end - o}`;
}

const TCP_FLAGS: Array<[number, string]> = [
  [0x02, 'S'],
  [0x01, 'F'],
  [0x04, 'R'],
  [0x08, 'P'],
  [0x20, 'U'],
  [0x40, 'E'],
  [0x80, 'W'],
];

/** `src.port > dst.port: TCP ...` or `UDP ...`; `src`/`dst` already as text. */
function transport(proto: number, b: Buffer, o: number, end: number, src: string, dst: string): string {
  if (proto !== 6 && proto !== 17) return '';
  const name = proto === 6 ? 'TCP' : 'UDP';
  if (end - o < 4) return `${src} > ${dst}: ${name}${TRUNC}`;
  const head = `${src}.${u16(b, o)} > ${dst}.${u16(b, o + 2)}: `;
  if (proto === 17) {
    if (end - o < 8) return `${head}UDP${TRUNC}`;
    const len = u16(b, o + 4);
    return `${head}UDP, length ${len >= 8 ? len - 8 : len}${len > end - o ? TRUNC : len < 8 ? ' [bad length]' : ''}`;
  }
  if (end - o < 20) return `${head}TCP${TRUNC}`;
  const flagsByte = b[o + 13];
  let flags = '';
  for (const [bit, letter] of TCP_FLAGS) if (flagsByte & bit) flags += letter;
  if (flagsByte & 0x10) flags += '.';
  const doff = (b[o + 12] >> 4) * 4;
  let s = `${head}TCP Flags [${flags || 'none'}], seq ${u32(b, o + 4)}`;
  if (flagsByte & 0x10) s += `, ack ${u32(b, o + 8)}`;
  s += `, win ${u16(b, o + 14)}`;
  if (doff < 20) return `${s} [bad header length ${doff}]`;
  if (doff > end - o) return `${s}${TRUNC}`;
  return `${s}, length ${end - o - doff}`;
}

function upper(proto: number, b: Buffer, o: number, end: number, src: string, dst: string, v6: boolean): string {
  const t = transport(proto, b, o, end, src, dst);
  if (t) return t;
  const head = `${src} > ${dst}: `;
  if (proto === 1) return head + icmp(b, o, end);
  if (proto === 58) return head + icmp6(b, o, end);
  return `${head}${v6 ? 'next header' : 'protocol'} ${proto}, length ${end - o}`;
}

function ipv4(b: Buffer, o: number, caplen: number): string {
  if (caplen - o < 20) return `IP${TRUNC}`;
  const ihl = (b[o] & 0x0f) * 4;
  if (ihl < 20) return `IP ${ipv4Text(b, o + 12)} > ${ipv4Text(b, o + 16)}: [bad header length ${ihl}]`;
  const total = u16(b, o + 2);
  const src = ipv4Text(b, o + 12);
  const dst = ipv4Text(b, o + 16);
  const proto = b[o + 9];
  const frag = u16(b, o + 6);
  const offset = (frag & 0x1fff) * 8;
  const more = (frag & 0x2000) !== 0;
  // What the header says is the datagram, cut to what was captured.
  let end = o + total;
  let cut = '';
  if (total < ihl) return `IP ${src} > ${dst}: [bad total length ${total}]`;
  if (end > caplen) {
    end = caplen;
    cut = TRUNC;
  }
  if (o + ihl > end) return `IP ${src} > ${dst}:${TRUNC}`;
  const fragText = offset !== 0 || more ? ` (frag id ${u16(b, o + 4)}, offset ${offset}, ${more ? 'more' : 'last'})` : '';
  if (offset !== 0) {
    const name = proto === 1 ? 'ICMP' : proto === 6 ? 'TCP' : proto === 17 ? 'UDP' : `protocol ${proto}`;
    return `IP ${src} > ${dst}: ${name}${fragText}, length ${end - o - ihl}${cut}`;
  }
  const line = upper(proto, b, o + ihl, end, src, dst, false);
  return `IP ${line}${fragText}${line.endsWith(TRUNC) ? '' : cut}`;
}

function ipv6(b: Buffer, o: number, caplen: number): string {
  if (caplen - o < 40) return `IP6${TRUNC}`;
  const src = ipv6Text(b, o + 8);
  const dst = ipv6Text(b, o + 24);
  let end = o + 40 + u16(b, o + 4);
  let cut = '';
  if (end > caplen) {
    end = caplen;
    cut = TRUNC;
  }
  let next = b[o + 6];
  let p = o + 40;
  let fragText = '';
  // Extension headers: hop-by-hop 0, routing 43, fragment 44, destination options 60 (at most 8 of them).
  for (let n = 0; n < 8 && (next === 0 || next === 43 || next === 44 || next === 60); n++) {
    if (p + 8 > end) return `IP6 ${src} > ${dst}:${TRUNC}`;
    if (next === 44) {
      const word = u16(b, p + 2);
      const offset = word & 0xfff8;
      fragText = ` (frag id ${u32(b, p + 4)}, offset ${offset}, ${word & 1 ? 'more' : 'last'})`;
      next = b[p];
      p += 8;
      if (offset !== 0) return `IP6 ${src} > ${dst}: next header ${next}${fragText}, length ${end - p}${cut}`;
      continue;
    }
    next = b[p];
    p += (b[p + 1] + 1) * 8;
  }
  if (p > end) return `IP6 ${src} > ${dst}:${TRUNC}`;
  const line = upper(next, b, p, end, src, dst, true);
  return `IP6 ${line}${fragText}${line.endsWith(TRUNC) ? '' : cut}`;
}

function arp(b: Buffer, o: number, caplen: number): string {
  if (caplen - o < 8) return `ARP${TRUNC}`;
  const hlen = b[o + 4];
  const plen = b[o + 5];
  const op = u16(b, o + 6);
  if (u16(b, o) !== 1 || u16(b, o + 2) !== 0x0800 || hlen !== 6 || plen !== 4) return `ARP, hardware ${u16(b, o)}, protocol 0x${u16(b, o + 2).toString(16).padStart(4, '0')}, op ${op}, length ${caplen - o}`;
  if (caplen - o < 28) return `ARP${TRUNC}`;
  const sha = macText(b, o + 8);
  const spa = ipv4Text(b, o + 14);
  const tpa = ipv4Text(b, o + 24);
  if (op === 1) return `ARP, Request who-has ${tpa} tell ${spa}, length 28`;
  if (op === 2) return `ARP, Reply ${spa} is-at ${sha}, length 28`;
  return `ARP, op ${op}, ${spa} > ${tpa}, length 28`;
}

/** The network layer from `o` on: IPv4 or IPv6 by the version nibble. */
function ip(b: Buffer, o: number, caplen: number): string {
  if (o >= caplen) return `IP${TRUNC}`;
  const v = b[o] >> 4;
  if (v === 4) return ipv4(b, o, caplen);
  if (v === 6) return ipv6(b, o, caplen);
  return `not IP (version ${v}), length ${caplen - o}`;
}

/** One packet's summary, without its time, from the bytes of a packet of the given pcap link type. */
export function summarize(b: Buffer, linkType: number): string {
  const caplen = b.length;
  if (linkType === LINKTYPE_RAW || linkType === LINKTYPE_IPV4 || linkType === LINKTYPE_IPV6) return ip(b, 0, caplen);
  if (linkType !== LINKTYPE_ETHERNET) return `link type ${linkType}, length ${caplen}`;
  if (caplen < 14) return `Ethernet${TRUNC}`;
  let type = u16(b, 12);
  let o = 14;
  let vlan = '';
  // 802.1Q and 802.1ad tags, at most two.
  for (let n = 0; n < 2 && (type === 0x8100 || type === 0x88a8); n++) {
    if (caplen < o + 4) return `Ethernet, vlan${TRUNC}`;
    vlan += `vlan ${u16(b, o) & 0xfff}, `;
    type = u16(b, o + 2);
    o += 4;
  }
  if (type === 0x0800 || type === 0x86dd) return vlan + ip(b, o, caplen);
  if (type === 0x0806) return vlan + arp(b, o, caplen);
  return `${vlan}${macText(b, 6)} > ${macText(b, 0)}, ethertype 0x${type.toString(16).padStart(4, '0')}, length ${caplen}`;
}

/** `HH:MM:SS.uuuuuu` (local time; nanoseconds when `nanos`). */
export function timeText(sec: number, nsec: number, nanos = false): string {
  const d = new Date(sec * 1000);
  const two = (n: number) => String(n).padStart(2, '0');
  const frac = nanos ? String(nsec).padStart(9, '0') : String(Math.floor(nsec / 1000)).padStart(6, '0');
  return `${two(d.getHours())}:${two(d.getMinutes())}:${two(d.getSeconds())}.${frac}`;
}

/** Lines of `\t0x0000:  4500 0054 ...`, 16 bytes a line, as tcpdump -x writes them. */
export function hexDump(b: Buffer): string {
  let out = '';
  for (let o = 0; o < b.length; o += 16) {
    let line = `\t0x${o.toString(16).padStart(4, '0')}: `;
    for (let i = o; i < o + 16 && i < b.length; i += 2) {
      line += ' ' + b[i].toString(16).padStart(2, '0') + (i + 1 < b.length ? b[i + 1].toString(16).padStart(2, '0') : '');
    }
    out += line + '\n';
  }
  return out;
}
