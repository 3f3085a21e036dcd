/** transforms/checksum.ts: the three modes, IPv4 header + ICMP/UDP/TCP checksums against the RFC oracles. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Dirty, Packet } from '../../src/packet/packet.js';
import { CHECKSUM_DROP, fixChecksums } from '../../transforms/checksum.js';
import { makeEchoReply } from '../../transforms/to-reply.js';
import { swapPacketAddresses } from '../../transforms/swap-addrs.js';
import { echoRequest, pseudoHeader6And, referenceChecksum } from '../helpers/packets.js';
import { ipv4Packet, ipv6Packet, parsed, pseudoHeaderAnd, tcpSegment, udpSegment } from './builders.js';
import { withSeed } from './seeded-random.js';

type Mode = 'auto' | 'full' | 'incremental';
const MODES: Mode[] = ['auto', 'full', 'incremental'];

/** The reply to `request` after swap-addrs, to-reply and the checksum stage in `mode`. */
function replyIn(mode: Mode, request: Buffer): Buffer {
  const p = parsed(Buffer.from(request));
  swapPacketAddresses(p);
  assert.equal(makeEchoReply(p), p);
  assert.equal(fixChecksums(p, mode), p);
  assert.equal(p.dirty, 0);
  assert.equal(p.ipSumAdj, 0);
  assert.equal(p.l4SumAdj, 0);
  return p.data;
}

function assertValidIcmp(b: Buffer, ihl = 20): void {
  assert.equal(referenceChecksum(b.subarray(0, ihl)), 0, 'IP header checksum');
  const total = b.readUInt16BE(2);
  assert.equal(referenceChecksum(b.subarray(ihl, total)), 0, 'ICMP checksum');
}

test('after to-reply every mode gives valid checksums, byte for byte the same', () =>
  withSeed((rng) => {
    for (let i = 0; i < 300; i++) {
      const options = rng.chance(0.3) ? Buffer.alloc(4 * rng.range(1, 10), 1) : undefined;
      const req = echoRequest({ id: rng.int(0x10000), seq: rng.int(0x10000), ttl: rng.range(1, 255), payload: rng.bytes(rng.int(100)), options });
      const [auto, full, incremental] = MODES.map((m) => replyIn(m, req));
      assertValidIcmp(full, (full[0] & 0x0f) * 4);
      assert.deepEqual(auto, full);
      assert.deepEqual(incremental, full);
    }
  }));

test('the 0x0000/0xFFFF corner: reply with id 0, seq 0, no payload gets 0xFFFF in every mode', () => {
  for (const mode of MODES) {
    const reply = replyIn(mode, echoRequest({ id: 0, seq: 0, payload: Buffer.alloc(0) }));
    assert.deepEqual([...reply.subarray(20)], [0, 0, 0xff, 0xff, 0, 0, 0, 0], mode);
    assertValidIcmp(reply);
  }
});

test('the 0x0000/0xFFFF corner: reply data summing to ones-complement zero, not all zero, gets 0x0000 in every mode', () => {
  for (const [id, seq, payload] of [
    [0xffff, 0, Buffer.alloc(0)],
    [0x1234, 0xedcb, Buffer.alloc(0)],
    [0, 0, Buffer.from([0xff, 0xff])],
    [0x8000, 0x7fff, Buffer.alloc(6)],
  ] as Array<[number, number, Buffer]>) {
    for (const mode of MODES) {
      const reply = replyIn(mode, echoRequest({ id, seq, payload }));
      assert.equal(reply.readUInt16BE(22), 0x0000, `${mode} id ${id} seq ${seq}`);
      assertValidIcmp(reply);
    }
  }
});

test('full mode repairs wrong IP header and ICMP checksums; the datagram ends at the total length', () => {
  const buf = Buffer.concat([echoRequest({ payload: Buffer.alloc(33, 0x5a) }), Buffer.alloc(7, 0xee)]);
  const p = parsed(buf);
  buf.writeUInt16BE(0x1111, 10);
  buf.writeUInt16BE(0x2222, 22);
  assert.equal(fixChecksums(p, 'full'), p);
  assertValidIcmp(buf);
  assert.deepEqual(buf.subarray(buf.length - 7), Buffer.alloc(7, 0xee), 'link padding not touched, not summed');
});

test('auto mode recomputes a packet edited without recorded changes; incremental mode leaves it', () => {
  for (const mode of ['auto', 'incremental'] as Mode[]) {
    const p = parsed(echoRequest());
    // A stage that edits bytes directly (no setIpWord/setL4Word): TTL and a payload byte.
    p.data[8] = 9;
    p.data[40] ^= 0xff;
    const edited = Buffer.from(p.data);
    fixChecksums(p, mode);
    if (mode === 'auto') {
      assertValidIcmp(p.data);
    } else {
      assert.deepEqual(p.data, edited, 'incremental touches nothing without recorded changes');
    }
  }
});

test('stale flags force a full recomputation even in incremental mode', () => {
  for (const flag of [Dirty.IpStale, Dirty.L4Stale]) {
    const p = parsed(echoRequest());
    p.data[8] = 1;
    p.data[30] ^= 1;
    p.setL4Word(p.l4, 0x0000);
    p.dirty |= flag;
    fixChecksums(p, 'incremental');
    assertValidIcmp(p.data);
    assert.equal(p.dirty, 0);
  }
});

test('UDP and TCP checksums include the pseudo-header (RFC 768, RFC 793), odd lengths too', () =>
  withSeed((rng) => {
    for (let i = 0; i < 200; i++) {
      const udp = rng.chance(0.5);
      const proto = udp ? 17 : 6;
      const seg = udp ? udpSegment(rng.bytes(rng.int(60))) : tcpSegment(rng.bytes(rng.int(60)));
      const src = `198.18.${rng.int(256)}.${rng.int(256)}`;
      const dst = `198.19.${rng.int(256)}.${rng.int(256)}`;
      const options = rng.chance(0.3) ? Buffer.alloc(8, 1) : undefined;
      const buf = ipv4Packet({ proto, payload: seg, src, dst, options, padding: rng.int(3) });
      const ihl = 20 + (options?.length ?? 0);
      const p = parsed(buf);
      fixChecksums(p, 'full');
      const at = ihl + (udp ? 6 : 16);
      const got = buf.readUInt16BE(at);
      const zeroed = Buffer.from(buf.subarray(ihl, ihl + seg.length));
      zeroed.writeUInt16BE(0, udp ? 6 : 16);
      let want = referenceChecksum(pseudoHeaderAnd(src, dst, proto, zeroed));
      if (udp && want === 0) want = 0xffff;
      assert.equal(got, want, `${udp ? 'UDP' : 'TCP'} length ${seg.length}`);
      assert.equal(referenceChecksum(buf.subarray(0, ihl)), 0);
    }
  }));

test('UDP: a checksum that computes to 0 is sent as 0xFFFF', () => {
  // Choose two payload bytes so that pseudo-header + segment sum to 0xFFFF: the computed checksum is 0.
  const src = '198.18.0.2';
  const dst = '198.18.0.1';
  const seg = udpSegment(Buffer.alloc(2));
  const sumOfRest = ~referenceChecksum(pseudoHeaderAnd(src, dst, 17, seg)) & 0xffff;
  seg.writeUInt16BE(0xffff - sumOfRest, 8);
  assert.equal(referenceChecksum(pseudoHeaderAnd(src, dst, 17, seg)), 0, 'oracle: computed checksum is 0');
  const buf = ipv4Packet({ proto: 17, payload: seg, src, dst });
  fixChecksums(parsed(buf), 'full');
  assert.equal(buf.readUInt16BE(26), 0xffff);
});

test('a fragment gets its IP header checksum only; unknown protocols and short transports too', () => {
  const frag = echoRequest({ frag: 0x2000 });
  const p = parsed(frag);
  frag.writeUInt16BE(0xabcd, 22);
  p.data[8] = 17;
  fixChecksums(p, 'full');
  assert.equal(referenceChecksum(frag.subarray(0, 20)), 0);
  assert.equal(frag.readUInt16BE(22), 0xabcd, 'ICMP checksum of a fragment left alone');

  const gre = ipv4Packet({ proto: 47, payload: Buffer.from([1, 2, 3, 4, 5, 6, 7, 8]) });
  const g = parsed(gre);
  gre[8] = 5;
  fixChecksums(g, 'auto');
  assert.equal(referenceChecksum(gre.subarray(0, 20)), 0);
  assert.deepEqual([...gre.subarray(20)], [1, 2, 3, 4, 5, 6, 7, 8]);

  const shortUdp = ipv4Packet({ proto: 17, payload: Buffer.from([1, 2, 3, 4, 5, 6, 7]) });
  fixChecksums(parsed(shortUdp), 'full');
  assert.deepEqual([...shortUdp.subarray(20)], [1, 2, 3, 4, 5, 6, 7], 'a 7-byte UDP header has no checksum field to write');
});

test('unparsed packets are dropped; an IPv6 ICMPv6 message gets its pseudo-header checksum', () => {
  assert.equal(fixChecksums(new Packet(echoRequest()), 'auto'), CHECKSUM_DROP.unparsed);
  for (const mode of ['auto', 'full'] as Mode[]) {
    const v6 = ipv6Packet(58, Buffer.alloc(9, 1));
    const p = parsed(v6);
    assert.equal(fixChecksums(p, mode), p);
    assert.equal(referenceChecksum(pseudoHeader6And(v6.subarray(8, 24), v6.subarray(24, 40), 58, v6.subarray(40))), 0, mode);
  }
});
