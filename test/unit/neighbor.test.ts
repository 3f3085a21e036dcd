/**
 * transforms/neighbor.ts: ARP replies (RFC 826) and neighbour advertisements (RFC 4861) checked field by
 * field against requests built here byte by byte; what is ignored, what passes on; the answers leave past the
 * later stages of a pipeline (EXIT).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { Packet } from '../../src/packet/packet.js';
import { EXIT, type PortInfo, type StageArgs } from '../../src/pipeline/stage.js';
import { standaloneContext } from '../../src/pipeline/standalone.js';
import { Engine } from '../../src/pipeline/engine.js';
import { resolvePipeline } from '../../src/pipeline/resolve.js';
import { parseFrame } from '../../transforms/parse.js';
import neighborStage, { defaultNeighborMac, NEIGHBOR_DROP } from '../../transforms/neighbor.js';
import { echoRequest, ipv6Bytes, ipv6Datagram, pseudoHeader6And, referenceChecksum } from '../helpers/packets.js';
import { frame, TAP_MAC } from '../helpers/frames.js';
import { withSeed } from './seeded-random.js';

const OUR_MAC = Buffer.from([0x02, 0, 0, 0, 0, 0x02]);
const TAP: PortInfo = { name: 'tap0', linkType: 1, kind: 'device', addresses: ['198.18.0.1/24', '2001:db8::1/64'] };

function instance(args: StageArgs = { mac: '02:00:00:00:00:02' }, input: PortInfo | undefined = TAP) {
  const ctx = standaloneContext({ linkType: 1, input, name: 'neighbor' });
  return { inst: neighborStage.create({ mac: undefined, for: undefined, ...args }, ctx), ctx };
}

function arp(op: number, sha: Buffer, spa: number[], tha: Buffer, tpa: number[]): Buffer {
  const a = Buffer.alloc(28);
  a.writeUInt16BE(1, 0);
  a.writeUInt16BE(0x0800, 2);
  a[4] = 6;
  a[5] = 4;
  a.writeUInt16BE(op, 6);
  sha.copy(a, 8);
  Buffer.from(spa).copy(a, 14);
  tha.copy(a, 18);
  Buffer.from(tpa).copy(a, 24);
  return a;
}

const BROADCAST = Buffer.alloc(6, 0xff);

function parsedFrame(buf: Buffer): Packet {
  const p = new Packet(buf);
  assert.equal(parseFrame(p), p);
  return p;
}

test('ARP request for a peer: a reply from our MAC, every field as RFC 826 says', () => {
  const { inst } = instance();
  const req = frame(0x0806, arp(1, TAP_MAC, [198, 18, 0, 1], Buffer.alloc(6), [198, 18, 0, 2]), [], BROADCAST, TAP_MAC);
  const p = parsedFrame(req);
  assert.equal(inst.process(p), EXIT);
  const b = p.data;
  assert.equal(b.length, 42);
  assert.deepEqual(b.subarray(0, 6), TAP_MAC, 'Ethernet destination: the requester');
  assert.deepEqual(b.subarray(6, 12), OUR_MAC, 'Ethernet source: us');
  assert.equal(b.readUInt16BE(12), 0x0806);
  assert.equal(b.readUInt16BE(14), 1, 'hardware type Ethernet');
  assert.equal(b.readUInt16BE(16), 0x0800, 'protocol IPv4');
  assert.equal(b[18], 6);
  assert.equal(b[19], 4);
  assert.equal(b.readUInt16BE(20), 2, 'op: reply');
  assert.deepEqual(b.subarray(22, 28), OUR_MAC, 'sender hardware: us');
  assert.deepEqual([...b.subarray(28, 32)], [198, 18, 0, 2], 'sender protocol: the address asked for');
  assert.deepEqual(b.subarray(32, 38), TAP_MAC, 'target hardware: the requester');
  assert.deepEqual([...b.subarray(38, 42)], [198, 18, 0, 1], 'target protocol: the requester');
  assert.match(inst.report!(), /answered 1 ARP requests/);
});

test('ARP behind a VLAN tag: answered, the tag kept', () => {
  const { inst } = instance();
  const p = parsedFrame(frame(0x0806, arp(1, TAP_MAC, [198, 18, 0, 1], Buffer.alloc(6), [198, 18, 0, 77]), [[0x8100, 9]], BROADCAST, TAP_MAC));
  assert.equal(inst.process(p), EXIT);
  assert.equal(p.data.readUInt16BE(12), 0x8100);
  assert.equal(p.data.readUInt16BE(14), 9);
  assert.equal(p.data.readUInt16BE(18 + 6), 2);
  assert.deepEqual([...p.data.subarray(18 + 14, 18 + 18)], [198, 18, 0, 77]);
});

test('ARP probe (sender 0.0.0.0) for a peer is answered (defended); what passes on unchanged', () => {
  const { inst } = instance();
  const probe = parsedFrame(frame(0x0806, arp(1, TAP_MAC, [0, 0, 0, 0], Buffer.alloc(6), [198, 18, 0, 9]), [], BROADCAST, TAP_MAC));
  assert.equal(inst.process(probe), EXIT);
  assert.deepEqual([...probe.data.subarray(38, 42)], [0, 0, 0, 0]);
  const passes: [string, Buffer][] = [
    ['the device itself', arp(1, TAP_MAC, [198, 18, 0, 2], Buffer.alloc(6), [198, 18, 0, 1])],
    ['another subnet', arp(1, TAP_MAC, [198, 18, 0, 1], Buffer.alloc(6), [198, 18, 1, 2])],
    ['the broadcast address', arp(1, TAP_MAC, [198, 18, 0, 1], Buffer.alloc(6), [198, 18, 0, 255])],
    ['the network address', arp(1, TAP_MAC, [198, 18, 0, 1], Buffer.alloc(6), [198, 18, 0, 0])],
    ['a reply', arp(2, TAP_MAC, [198, 18, 0, 1], OUR_MAC, [198, 18, 0, 2])],
    ['an announcement', arp(1, TAP_MAC, [198, 18, 0, 5], Buffer.alloc(6), [198, 18, 0, 5])],
  ];
  for (const [what, body] of passes) {
    const p = parsedFrame(frame(0x0806, body, [], BROADCAST, TAP_MAC));
    const before = Buffer.from(p.data);
    assert.equal(inst.process(p), p, what);
    assert.deepEqual(p.data, before, `${what}: unchanged`);
  }
  const ip = parsedFrame(frame(0x0800, echoRequest()));
  assert.equal(inst.process(ip), ip, 'IP passes on');
});

/** A neighbour solicitation for `target` (with a source link-layer option unless `sll` is null). */
function solicitation(o: { src?: string; dst?: string; target: string; hopLimit?: number; code?: number; sll?: Buffer | null; extra?: Buffer; badSum?: boolean }): Buffer {
  const opts = o.sll === null ? Buffer.alloc(0) : Buffer.concat([Buffer.from([1, 1]), o.sll ?? TAP_MAC]);
  const icmp = Buffer.concat([Buffer.alloc(8), ipv6Bytes(o.target), opts, o.extra ?? Buffer.alloc(0)]);
  icmp[0] = 135;
  icmp[1] = o.code ?? 0;
  const src = o.src ?? '2001:db8::1';
  const dst = o.dst ?? '2001:db8::1:ff00:2'.replace('2001:db8::1:', 'ff02::1:');
  icmp.writeUInt16BE(referenceChecksum(pseudoHeader6And(ipv6Bytes(src), ipv6Bytes(dst), 58, icmp)) ^ (o.badSum ? 1 : 0), 2);
  return ipv6Datagram({ src, dst, hopLimit: o.hopLimit ?? 255, flowLabel: 0 }, 58, icmp);
}

function checkAdvertisement(b: Buffer, l3: number, o: { dstMac: Buffer; dst: string; target: string; solicited: boolean }): void {
  assert.equal(b.length, l3 + 40 + 32, 'IPv6 header and a 32-byte advertisement');
  assert.deepEqual(b.subarray(0, 6), o.dstMac, 'Ethernet destination');
  assert.deepEqual(b.subarray(6, 12), OUR_MAC, 'Ethernet source: us');
  assert.equal(b.readUInt16BE(l3 - 2), 0x86dd);
  assert.equal(b.readUInt32BE(l3), 0x60000000, 'version 6, traffic class and flow label 0');
  assert.equal(b.readUInt16BE(l3 + 4), 32, 'payload length');
  assert.equal(b[l3 + 6], 58, 'next header ICMPv6');
  assert.equal(b[l3 + 7], 255, 'hop limit 255 (RFC 4861 7.1.2)');
  assert.deepEqual(b.subarray(l3 + 8, l3 + 24), ipv6Bytes(o.target), 'source: the target address');
  assert.deepEqual(b.subarray(l3 + 24, l3 + 40), ipv6Bytes(o.dst), 'destination');
  const m = b.subarray(l3 + 40);
  assert.equal(m[0], 136, 'type: neighbour advertisement');
  assert.equal(m[1], 0, 'code 0');
  assert.equal(m[4], (o.solicited ? 0x40 : 0) | 0x20, 'flags: R clear, S as solicited, O set');
  assert.deepEqual([...m.subarray(5, 8)], [0, 0, 0], 'reserved');
  assert.deepEqual(m.subarray(8, 24), ipv6Bytes(o.target), 'target');
  assert.deepEqual([...m.subarray(24, 26)], [2, 1], 'target link-layer address option, 8 bytes');
  assert.deepEqual(m.subarray(26, 32), OUR_MAC);
  assert.equal(referenceChecksum(pseudoHeader6And(ipv6Bytes(o.target), ipv6Bytes(o.dst), 58, Buffer.from(m))), 0, 'ICMPv6 checksum over the pseudo-header');
}

test('neighbour solicitation for a peer: an advertisement, every field as RFC 4861 says', () => {
  const { inst } = instance();
  const p = parsedFrame(frame(0x86dd, solicitation({ target: '2001:db8::2' }), [], Buffer.from([0x33, 0x33, 0xff, 0, 0, 2]), TAP_MAC));
  assert.equal(inst.process(p), EXIT);
  checkAdvertisement(p.data, 14, { dstMac: TAP_MAC, dst: '2001:db8::1', target: '2001:db8::2', solicited: true });
  assert.equal(p.version, 6);
  assert.equal(p.l4, 54);
  assert.equal(p.end, 86);
  assert.equal(p.dirty, 0);
});

test('solicitation without options (shorter than the advertisement) and one with more options; the link-layer option wins over the frame source', () => {
  const { inst } = instance();
  const other = Buffer.from([0x02, 0xaa, 0xbb, 0xcc, 0xdd, 0xee]);
  const bare = parsedFrame(frame(0x86dd, solicitation({ target: '2001:db8::2', sll: null, dst: '2001:db8::2' }), [[0x8100, 3]], OUR_MAC, TAP_MAC));
  assert.equal(inst.process(bare), EXIT);
  checkAdvertisement(bare.data, 18, { dstMac: TAP_MAC, dst: '2001:db8::1', target: '2001:db8::2', solicited: true });
  assert.equal(bare.data.readUInt16BE(14), 3, 'VLAN tag kept');
  const nonce = Buffer.from([14, 1, 1, 2, 3, 4, 5, 6]);
  const more = parsedFrame(frame(0x86dd, solicitation({ target: '2001:db8::abcd', sll: other, extra: nonce }), [], BROADCAST, TAP_MAC));
  assert.equal(inst.process(more), EXIT);
  checkAdvertisement(more.data, 14, { dstMac: other, dst: '2001:db8::1', target: '2001:db8::abcd', solicited: true });
});

test('DAD probe (source ::) for a peer: defended to ff02::1, Solicited clear; the kernel\'s own DAD passes', () => {
  const { inst } = instance();
  const dad = parsedFrame(frame(0x86dd, solicitation({ src: '::', dst: 'ff02::1:ff00:2', target: '2001:db8::2', sll: null }), [], Buffer.from([0x33, 0x33, 0xff, 0, 0, 2]), TAP_MAC));
  assert.equal(inst.process(dad), EXIT);
  checkAdvertisement(dad.data, 14, { dstMac: Buffer.from([0x33, 0x33, 0, 0, 0, 1]), dst: 'ff02::1', target: '2001:db8::2', solicited: false });
  const own = parsedFrame(frame(0x86dd, solicitation({ src: '::', dst: 'ff02::1:ff00:1', target: '2001:db8::1', sll: null })));
  assert.equal(inst.process(own), own, "the device's own address is never defended");
  assert.match(inst.report!(), /defended 1 DAD/);
  const { inst: wide } = instance({ mac: '02:00:00:00:00:02', for: 'fe80::/64' });
  const linkLocal = parsedFrame(frame(0x86dd, solicitation({ src: '::', dst: 'ff02::1:ff00:1', target: 'fe80::1', sll: null })));
  assert.equal(wide.process(linkLocal), linkLocal, 'a link-local DAD probe may be the kernel\'s own: never defended');
  assert.equal(wide.process(parsedFrame(frame(0x86dd, solicitation({ src: 'fe80::1', dst: 'ff02::1:ff00:2', target: 'fe80::2' })))), EXIT, 'an ordinary link-local solicitation is answered');
});

test('solicitations Linux ignores are dropped with their reason; others for addresses not ours pass on', () => {
  const { inst } = instance();
  const cases: [Buffer, string][] = [
    [solicitation({ target: '2001:db8::2', hopLimit: 254 }), NEIGHBOR_DROP.hopLimit],
    [solicitation({ target: '2001:db8::2', code: 1 }), NEIGHBOR_DROP.code],
    [solicitation({ target: '2001:db8::2', badSum: true }), NEIGHBOR_DROP.checksum],
    [solicitation({ target: 'ff02::1' }), NEIGHBOR_DROP.multicastTarget],
    [solicitation({ target: '2001:db8::2', extra: Buffer.from([5, 0, 0, 0, 0, 0, 0, 0]) }), NEIGHBOR_DROP.option],
    [solicitation({ src: '::', target: '2001:db8::2' }), NEIGHBOR_DROP.dadOption],
    [solicitation({ src: '::', dst: 'ff02::1', target: '2001:db8::2', sll: null }), NEIGHBOR_DROP.dadDestination],
  ];
  for (const [ip, reason] of cases) assert.equal(inst.process(parsedFrame(frame(0x86dd, ip))), reason, reason);
  for (const target of ['2001:db8::1', '2001:db8:1::2', 'fe80::2']) {
    const p = parsedFrame(frame(0x86dd, solicitation({ target })));
    assert.equal(inst.process(p), p, `${target} passes on`);
  }
});

test('for= replaces the default set (never the device\'s own address); without known addresses for= is required', () => {
  const { inst, ctx } = instance({ mac: '02:00:00:00:00:02', for: '198.18.5.0/30,2001:db8::1,2001:db8:9::/64' });
  assert.equal(inst.process(parsedFrame(frame(0x0806, arp(1, TAP_MAC, [198, 18, 0, 1], Buffer.alloc(6), [198, 18, 5, 3]), [], BROADCAST, TAP_MAC))), EXIT);
  const notListed = parsedFrame(frame(0x0806, arp(1, TAP_MAC, [198, 18, 0, 1], Buffer.alloc(6), [198, 18, 0, 2]), [], BROADCAST, TAP_MAC));
  assert.equal(inst.process(notListed), notListed);
  const own = parsedFrame(frame(0x86dd, solicitation({ target: '2001:db8::1', src: '2001:db8::5' })));
  assert.equal(inst.process(own), own);
  assert.match(ctx.warnings.join('\n'), /address of the device itself/);
  assert.equal(inst.process(parsedFrame(frame(0x86dd, solicitation({ target: '2001:db8:9::42' })))), EXIT);
  assert.throws(() => instance({}, { name: 'tap9', linkType: 1, kind: 'device' }), /no addresses to answer for: device tap9 was given no --addr; name them with for=/);
  assert.equal(neighborStage.checkArgs!({ for: '198.18.0.0/33' }), "for=: '198.18.0.0/33' is not an address or prefix (198.18.0.2, 198.18.0.0/24, 2001:db8::/64)");
  assert.match(String(neighborStage.checkArgs!({ mac: '03:00:00:00:00:01' })), /group \(multicast\) address/);
});

test('the default MAC: locally administered unicast, fixed for a device name, SHA-256 of "tunpipe neighbor NAME"', () => {
  const h = createHash('sha256').update('tunpipe neighbor tap0').digest();
  assert.deepEqual(defaultNeighborMac('tap0'), Buffer.from([0x02, ...h.subarray(0, 5)]));
  assert.notDeepEqual(defaultNeighborMac('tap0'), defaultNeighborMac('tap1'));
  const { inst } = instance({});
  const p = parsedFrame(frame(0x0806, arp(1, TAP_MAC, [198, 18, 0, 1], Buffer.alloc(6), [198, 18, 0, 2]), [], BROADCAST, TAP_MAC));
  assert.equal(inst.process(p), EXIT);
  assert.deepEqual(p.data.subarray(6, 12), defaultNeighborMac('tap0'));
});

test('in a pipeline, answers leave past the later stages; an echo request gets its MACs swapped', async () => {
  const stages = await resolvePipeline('parse | neighbor mac=02:00:00:00:00:02 | icmp-echo | checksum');
  const out: Packet[] = [];
  const engine = new Engine(stages, { sink: (p) => out.push(new Packet(Buffer.from(p.data))), linkType: 1, input: TAP, output: TAP });
  engine.push(new Packet(frame(0x0806, arp(1, TAP_MAC, [198, 18, 0, 1], Buffer.alloc(6), [198, 18, 0, 2]), [], BROADCAST, TAP_MAC)));
  engine.push(new Packet(frame(0x0800, echoRequest({ src: '198.18.0.1', dst: '198.18.0.2' }), [], OUR_MAC, TAP_MAC)));
  assert.equal(out.length, 2);
  assert.equal(out[0].data.readUInt16BE(20), 2, 'the ARP reply reached the exit');
  const echo = engine.stats.find((s) => s.name === 'icmp-echo/filter-icmp-echo')!;
  assert.equal(echo.packetsIn, 1, 'the answer skipped icmp-echo');
  const reply = out[1].data;
  assert.deepEqual(reply.subarray(0, 6), TAP_MAC, 'the reply goes to the tap');
  assert.deepEqual(reply.subarray(6, 12), OUR_MAC);
  assert.equal(reply[14 + 20], 0, 'echo reply');
  assert.equal(referenceChecksum(reply.subarray(14, 34)), 0);
  assert.equal(referenceChecksum(reply.subarray(34)), 0);
  const row = engine.stats.find((s) => s.name === 'neighbor')!;
  assert.equal(row.packetsIn, 2);
  assert.equal(row.packetsOut, 2);
  assert.equal(row.dropped, 0);
});

test('mutated and truncated ARP and NDP frames: never a throw; every answer is a well-formed reply with a valid checksum', async () => {
  await withSeed((rng) => {
    const { inst } = instance();
    const seeds = [
      frame(0x0806, arp(1, TAP_MAC, [198, 18, 0, 1], Buffer.alloc(6), [198, 18, 0, 2]), [], BROADCAST, TAP_MAC),
      frame(0x86dd, solicitation({ target: '2001:db8::2' }), [], BROADCAST, TAP_MAC),
      frame(0x86dd, solicitation({ target: '2001:db8::2', sll: null }), [[0x8100, 1]]),
      frame(0x86dd, solicitation({ src: '::', dst: 'ff02::1:ff00:2', target: '2001:db8::2', sll: null })),
    ];
    let answered = 0;
    for (let i = 0; i < 20_000; i++) {
      const buf = Buffer.from(seeds[rng.int(seeds.length)]);
      for (let k = rng.int(3); k > 0; k--) buf[rng.int(buf.length)] ^= 1 << rng.int(8);
      const p = new Packet(rng.chance(0.2) ? buf.subarray(0, rng.int(buf.length)) : buf);
      if (typeof parseFrame(p) === 'string') continue;
      const r = inst.process(p);
      if (r !== EXIT) continue;
      answered++;
      const b = p.data;
      assert.deepEqual(b.subarray(6, 12), OUR_MAC);
      if (b.readUInt16BE(p.l3 - 2) === 0x0806) {
        assert.equal(b.readUInt16BE(p.l3 + 6), 2);
        assert.deepEqual(b.subarray(p.l3 + 8, p.l3 + 14), OUR_MAC);
      } else {
        assert.equal(b.length, p.l3 + 72);
        assert.equal(b[p.l3 + 7], 255);
        assert.equal(b[p.l3 + 40], 136);
        const src = b.subarray(p.l3 + 8, p.l3 + 24);
        const dst = b.subarray(p.l3 + 24, p.l3 + 40);
        assert.equal(referenceChecksum(pseudoHeader6And(Buffer.from(src), Buffer.from(dst), 58, Buffer.from(b.subarray(p.l3 + 40)))), 0);
      }
    }
    assert.ok(answered > 1000, `some mutants are still answered (${answered})`);
  });
});
