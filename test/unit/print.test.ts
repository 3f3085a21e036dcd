/**
 * The print stage and its decoder (src/pcap/summary.ts): a line per protocol against our own expected
 * text, RAW and Ethernet, fragments, truncated and random junk (never an exception), the hex dump, and the
 * stage's buffering, its file and stderr outputs.
 */
process.env.TZ = 'UTC';
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Packet } from '../../src/packet/packet.js';
import { hexDump, summarize } from '../../src/pcap/summary.js';
import { echoRequest } from '../helpers/packets.js';
import { ipv4Packet, ipv6Packet, tcpSegment, udpSegment } from './builders.js';
import { stageAlone } from '../helpers/capture-tools.js';
import { withSeed } from './seeded-random.js';

let dir = '';
before(() => {
  dir = mkdtempSync(join(tmpdir(), 'tunpipe-unit-print-'));
});
after(() => {
  if (dir) rmSync(dir, { recursive: true, force: true });
});

const MAC1 = Buffer.from('020000000001', 'hex');
const MAC2 = Buffer.from('020000000002', 'hex');
const V6_1 = Buffer.from('20010db8000000000000000000000001', 'hex');

function ether(type: number, payload: Buffer, dst = MAC1, src = MAC2): Buffer {
  const h = Buffer.alloc(14);
  dst.copy(h, 0);
  src.copy(h, 6);
  h.writeUInt16BE(type, 12);
  return Buffer.concat([h, payload]);
}

function arp(op: number, spa: string, tpa: string, sha = MAC2): Buffer {
  const a = Buffer.alloc(28);
  a.writeUInt16BE(1, 0);
  a.writeUInt16BE(0x0800, 2);
  a[4] = 6;
  a[5] = 4;
  a.writeUInt16BE(op, 6);
  sha.copy(a, 8);
  Buffer.from(spa.split('.').map(Number)).copy(a, 14);
  Buffer.from(tpa.split('.').map(Number)).copy(a, 24);
  return a;
}

function icmp6(type: number, rest: Buffer): Buffer {
  return Buffer.concat([Buffer.from([type, 0, 0, 0]), rest]);
}

test('one line per protocol, RAW IP', () => {
  const syn = tcpSegment(Buffer.alloc(0));
  syn[13] = 0x02;
  const finAck = tcpSegment(Buffer.alloc(0));
  finAck[13] = 0x11;
  const unreach = Buffer.concat([Buffer.from([3, 1, 0, 0, 0, 0, 0, 0]), echoRequest().subarray(0, 28)]);
  const echo6 = icmp6(128, Buffer.from([0, 1, 0, 2, 0xaa, 0xbb, 0xcc, 0xdd, 1, 2, 3, 4]));
  const ns = icmp6(135, Buffer.concat([Buffer.alloc(4), V6_1, Buffer.from([1, 1]), MAC2]));
  const na = icmp6(136, Buffer.concat([Buffer.from([0x60, 0, 0, 0]), V6_1, Buffer.from([2, 1]), MAC1]));
  const cases: Array<[Buffer, string]> = [
    [echoRequest({ seq: 7 }), 'IP 198.18.0.2 > 198.18.0.1: ICMP echo request, id 4660, seq 7, length 61'],
    [echoRequest({ seq: 7, type: 0 }), 'IP 198.18.0.2 > 198.18.0.1: ICMP echo reply, id 4660, seq 7, length 61'],
    [ipv4Packet({ proto: 1, payload: unreach }), 'IP 198.18.0.2 > 198.18.0.1: ICMP destination unreachable, code 1, length 36'],
    [ipv4Packet({ proto: 6, payload: tcpSegment(Buffer.from('hello')) }), 'IP 198.18.0.2.40001 > 198.18.0.1.80: TCP Flags [P.], seq 16909060, ack 168496141, win 64240, length 5'],
    [ipv4Packet({ proto: 6, payload: syn }), 'IP 198.18.0.2.40001 > 198.18.0.1.80: TCP Flags [S], seq 16909060, win 64240, length 0'],
    [ipv4Packet({ proto: 6, payload: finAck }), 'IP 198.18.0.2.40001 > 198.18.0.1.80: TCP Flags [F.], seq 16909060, ack 168496141, win 64240, length 0'],
    [ipv4Packet({ proto: 17, payload: udpSegment(Buffer.alloc(10)) }), 'IP 198.18.0.2.40000 > 198.18.0.1.53: UDP, length 10'],
    [ipv4Packet({ proto: 47, payload: Buffer.alloc(12) }), 'IP 198.18.0.2 > 198.18.0.1: protocol 47, length 12'],
    [ipv6Packet(58, echo6), 'IP6 2001:db8::2 > 2001:db8::1: ICMP6 echo request, id 1, seq 2, length 16'],
    [ipv6Packet(58, ns), 'IP6 2001:db8::2 > 2001:db8::1: ICMP6 neighbor solicitation, who has 2001:db8::1, source link-address 02:00:00:00:00:02, length 32'],
    [ipv6Packet(58, na), 'IP6 2001:db8::2 > 2001:db8::1: ICMP6 neighbor advertisement, tgt is 2001:db8::1, flags [SO], target link-address 02:00:00:00:00:01, length 32'],
    [ipv6Packet(17, udpSegment(Buffer.alloc(3))), 'IP6 2001:db8::2.40000 > 2001:db8::1.53: UDP, length 3'],
    [ipv6Packet(58, echo6, 0, Buffer.from('fe800000000000000001000000000000', 'hex'), Buffer.from('ff020000000000000000000000000001', 'hex')), 'IP6 fe80::1:0:0:0 > ff02::1: ICMP6 echo request, id 1, seq 2, length 16'],
  ];
  for (const [bytes, line] of cases) assert.equal(summarize(bytes, 101), line);
});

test('fragments: IPv4 first and later fragments, an IPv6 fragment header', () => {
  const icmp = echoRequest({ seq: 1, payload: Buffer.alloc(1472) }).subarray(20);
  const first = ipv4Packet({ proto: 1, payload: icmp.subarray(0, 1480), frag: 0x2000 });
  const last = ipv4Packet({ proto: 1, payload: icmp.subarray(1480), frag: 1480 / 8 });
  assert.equal(summarize(first, 101), 'IP 198.18.0.2 > 198.18.0.1: ICMP echo request, id 4660, seq 1, length 1480 (frag id 4951, offset 0, more)');
  assert.equal(summarize(last, 101), 'IP 198.18.0.2 > 198.18.0.1: ICMP (frag id 4951, offset 1480, last), length 0');
  const fh = Buffer.from([58, 0, 0x00, 0x01, 0x00, 0xab, 0xcd, 0xef]);
  const echo6 = icmp6(128, Buffer.from([0, 9, 0, 3]));
  assert.equal(summarize(ipv6Packet(44, Buffer.concat([fh, echo6])), 101), 'IP6 2001:db8::2 > 2001:db8::1: ICMP6 echo request, id 9, seq 3, length 8 (frag id 11259375, offset 0, more)');
  const later = Buffer.from([58, 0, 0x05, 0xc8, 0x00, 0xab, 0xcd, 0xef]);
  assert.equal(summarize(ipv6Packet(44, Buffer.concat([later, Buffer.alloc(24)])), 101), 'IP6 2001:db8::2 > 2001:db8::1: next header 58 (frag id 11259375, offset 1480, last), length 24');
});

test('Ethernet: IP, ARP who-has and is-at, a VLAN tag, another ethertype', () => {
  assert.equal(summarize(ether(0x0800, echoRequest({ seq: 2 })), 1), 'IP 198.18.0.2 > 198.18.0.1: ICMP echo request, id 4660, seq 2, length 61');
  assert.equal(summarize(ether(0x0806, arp(1, '198.18.0.2', '198.18.0.1')), 1), 'ARP, Request who-has 198.18.0.1 tell 198.18.0.2, length 28');
  assert.equal(summarize(ether(0x0806, arp(2, '198.18.0.1', '198.18.0.2', MAC1)), 1), 'ARP, Reply 198.18.0.1 is-at 02:00:00:00:00:01, length 28');
  const tagged = ether(0x8100, Buffer.concat([Buffer.from([0x00, 0x05, 0x86, 0xdd]), ipv6Packet(58, icmp6(129, Buffer.from([0, 1, 0, 1])))]));
  assert.equal(summarize(tagged, 1), 'vlan 5, IP6 2001:db8::2 > 2001:db8::1: ICMP6 echo reply, id 1, seq 1, length 8');
  assert.equal(summarize(ether(0x88cc, Buffer.alloc(46)), 1), '02:00:00:00:00:02 > 02:00:00:00:00:01, ethertype 0x88cc, length 60');
  assert.equal(summarize(Buffer.alloc(20), 147), 'link type 147, length 20');
});

test('short and malformed packets: what could be read, then [truncated] or [bad ...]', () => {
  const echo = echoRequest({ seq: 7 });
  const cases: Array<[Buffer, number, string]> = [
    [Buffer.alloc(0), 101, 'IP [truncated]'],
    [echo.subarray(0, 12), 101, 'IP [truncated]'],
    [echo.subarray(0, 30), 101, 'IP 198.18.0.2 > 198.18.0.1: ICMP echo request, id 4660, seq 7, length 10 [truncated]'],
    [echo.subarray(0, 22), 101, 'IP 198.18.0.2 > 198.18.0.1: ICMP [truncated]'],
    [Buffer.from([0x50, 0, 0, 0]), 101, 'not IP (version 5), length 4'],
    [Buffer.concat([Buffer.from([0x41]), echo.subarray(1)]), 101, 'IP 198.18.0.2 > 198.18.0.1: [bad header length 4]'],
    [ipv4Packet({ proto: 6, payload: tcpSegment(Buffer.alloc(0)) }).subarray(0, 30), 101, 'IP 198.18.0.2.40001 > 198.18.0.1.80: TCP [truncated]'],
    [ipv6Packet(58, icmp6(135, Buffer.alloc(8))), 101, 'IP6 2001:db8::2 > 2001:db8::1: ICMP6 neighbor solicitation [truncated]'],
    [ether(0x0806, arp(1, '1.2.3.4', '5.6.7.8')).subarray(0, 30), 1, 'ARP [truncated]'],
    [Buffer.alloc(10), 1, 'Ethernet [truncated]'],
  ];
  for (const [bytes, lt, line] of cases) assert.equal(summarize(bytes, lt), line);
});

test('random bytes and cut packets never throw', async () => {
  const seeds = [echoRequest(), ipv4Packet({ proto: 6, payload: tcpSegment(Buffer.alloc(9)) }), ipv6Packet(44, Buffer.alloc(40)), ether(0x0806, arp(1, '1.1.1.1', '2.2.2.2'))];
  await withSeed((rng) => {
    for (let i = 0; i < 20000; i++) {
      let b: Buffer;
      if (rng.chance(0.5)) b = rng.bytes(rng.int(120));
      else {
        b = Buffer.from(seeds[rng.int(seeds.length)]);
        for (let k = rng.int(6); k > 0; k--) b[rng.int(b.length)] = rng.int(256);
        b = b.subarray(0, rng.int(b.length + 1));
      }
      const line = summarize(b, rng.chance(0.5) ? 101 : 1);
      assert.equal(typeof line, 'string');
      assert.ok(!line.includes('undefined') && !line.includes('NaN'), line);
    }
  });
});

test('hex dump: 16 bytes a line, in 2-byte groups, an odd byte at the end', () => {
  const b = Buffer.from(Array.from({ length: 19 }, (_, i) => i));
  assert.equal(hexDump(b), '\t0x0000:  0001 0203 0405 0607 0809 0a0b 0c0d 0e0f\n\t0x0010:  1011 12\n');
});

test('the stage: lines with the time go to FILE at the end of the batch, packets pass on unchanged, hex=true adds the dump', async () => {
  const file = join(dir, 'lines.txt');
  const { stage } = await stageAlone(`print ${file} hex=true`);
  const p = new Packet(echoRequest({ seq: 3 }), 1_700_000_001, 250_000_000);
  const copy = Buffer.from(p.data);
  assert.equal(stage.process(p), p);
  assert.deepEqual(p.data, copy);
  assert.equal(readFileSync(file, 'utf8'), '');
  assert.equal(stage.pending!(), true);
  stage.flush!();
  const text = readFileSync(file, 'utf8');
  assert.equal(text, `22:13:21.250000 IP 198.18.0.2 > 198.18.0.1: ICMP echo request, id 4660, seq 3, length 61\n${hexDump(copy)}`);
  await stage.close!();
  assert.equal(stage.report!(), `1 lines printed to ${file}`);
  const { stage: ns } = await stageAlone(`print ${join(dir, 'ns.txt')} nanos=true`, { linkType: 1 });
  ns.process(new Packet(ether(0x0806, arp(1, '198.18.0.2', '198.18.0.1')), 1_700_000_001, 7));
  await ns.close!();
  assert.equal(readFileSync(join(dir, 'ns.txt'), 'utf8'), '22:13:21.000000007 ARP, Request who-has 198.18.0.1 tell 198.18.0.2, length 28\n');
});

test('when stdout carries a capture: the default is stderr, and print - is refused', async () => {
  await assert.rejects(stageAlone('print -', { stdoutTaken: true }), /print -: stdout carries a capture in this run/);
  const script = join(dir, 'taken.mjs');
  const helper = new URL('../helpers/capture-tools.js', import.meta.url).href;
  const packet = new URL('../../src/packet/packet.js', import.meta.url).href;
  writeFileSync(
    script,
    `import { stageAlone } from ${JSON.stringify(helper)};
import { Packet } from ${JSON.stringify(packet)};
for (const taken of [true, false]) {
  const { stage } = await stageAlone('print', { stdoutTaken: taken });
  stage.process(new Packet(Buffer.from([0x50]), 1, 0));
  await stage.close();
}
`,
  );
  const r = execFileSync(process.execPath, [script], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, TZ: 'UTC' } });
  assert.equal(r, '00:00:01.000000 not IP (version 5), length 1\n', 'stdout: only the line printed while stdout was free');
});
