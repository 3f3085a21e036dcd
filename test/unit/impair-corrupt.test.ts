/** transforms/corrupt.ts: exactly one payload bit flipped, headers and checksum fields untouched. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import corruptStage, { CorruptStage, payloadStart } from '../../transforms/corrupt.js';
import { Packet } from '../../src/packet/packet.js';
import { standaloneContext } from '../../src/pipeline/standalone.js';
import { echoRequest, referenceChecksum } from '../helpers/packets.js';
import { ipv4Packet, ipv6Packet, parsed, pseudoHeaderAnd, tcpSegment, udpSegment } from './builders.js';

/** Offsets of the bits that differ between two buffers of the same length. */
function flippedBits(a: Buffer, b: Buffer): number[] {
  assert.equal(a.length, b.length);
  const bits: number[] = [];
  for (let i = 0; i < a.length; i++) {
    const x = a[i] ^ b[i];
    for (let k = 0; k < 8; k++) if (x & (0x80 >> k)) bits.push(i * 8 + k);
  }
  return bits;
}

const cases: [string, () => Buffer, number][] = [
  ['ICMP echo', () => echoRequest(), 28],
  ['UDP', () => ipv4Packet({ proto: 17, payload: udpSegment(Buffer.from('datagram payload')) }), 28],
  ['TCP', () => ipv4Packet({ proto: 6, payload: tcpSegment(Buffer.from('segment payload!')) }), 40],
  ['IPv4 options and TCP', () => ipv4Packet({ proto: 6, payload: tcpSegment(Buffer.from('xyz')), options: Buffer.from([1, 1, 1, 0]) }), 44],
  ['IPv6 UDP', () => ipv6Packet(17, udpSegment(Buffer.from('six payload'))), 48],
];

test('corrupt 100%: exactly one bit flipped, past the IP and transport headers', () => {
  for (const [name, make, start] of cases) {
    for (let seed = 0; seed < 200; seed++) {
      const before = make();
      const p = parsed(Buffer.from(before));
      assert.equal(payloadStart(p), start, `${name}: payload start`);
      const stage = corruptStage.create({ p: 1, seed }, standaloneContext());
      assert.equal(stage.process(p), p);
      const bits = flippedBits(before, p.data);
      assert.equal(bits.length, 1, `${name} seed ${seed}: one bit`);
      assert.ok(bits[0] >= start * 8 && bits[0] < before.length * 8, `${name}: bit ${bits[0]} in the payload`);
      assert.equal(p.dirty, 0, 'no checksum change recorded: the damage stays');
    }
  }
});

test('corrupt: over many packets every payload byte and every bit position gets hit (the choice is uniform)', () => {
  const stage = corruptStage.create({ p: 1, seed: 12 }, standaloneContext());
  const hits = new Map<number, number>();
  for (let i = 0; i < 20_000; i++) {
    const before = echoRequest();
    const p = parsed(Buffer.from(before));
    stage.process(p);
    const [bit] = flippedBits(before, p.data);
    hits.set(bit, (hits.get(bit) ?? 0) + 1);
  }
  const payloadBits = (echoRequest().length - 28) * 8;
  assert.equal(hits.size, payloadBits, 'each payload bit chosen at some point');
  const each = 20_000 / payloadBits;
  for (const [, n] of hits) assert.ok(n > each / 3 && n < each * 2, `about ${each} hits each, got ${n}`);
});

test('corrupt: the receiver sees a bad checksum (ICMP, UDP)', () => {
  const icmp = parsed(echoRequest());
  corruptStage.create({ p: 1, seed: 5 }, standaloneContext()).process(icmp);
  assert.notEqual(referenceChecksum(icmp.data.subarray(20)), 0, 'ICMP checksum no longer verifies');
  const seg = udpSegment(Buffer.from('datagram payload'));
  seg.writeUInt16BE(referenceChecksum(pseudoHeaderAnd('198.18.0.2', '198.18.0.1', 17, seg)), 6);
  const udp = parsed(ipv4Packet({ proto: 17, payload: seg }));
  corruptStage.create({ p: 1, seed: 6 }, standaloneContext()).process(udp);
  assert.notEqual(referenceChecksum(pseudoHeaderAnd('198.18.0.2', '198.18.0.1', 17, udp.data.subarray(20))), 0);
  assert.equal(referenceChecksum(udp.data.subarray(0, 20)), 0, 'the IP header is intact');
});

test('corrupt 5%: the count of corrupted packets is within the 99% binomial interval; same seed, same packets', () => {
  const run = (seed: number) => {
    const stage = corruptStage.create({ p: 0.05, seed }, standaloneContext()) as CorruptStage;
    const which: number[] = [];
    for (let i = 0; i < 20_000; i++) {
      const before = echoRequest({ seq: i });
      const p = parsed(Buffer.from(before));
      stage.process(p);
      if (!p.data.equals(before)) which.push(i);
    }
    assert.equal(stage.corrupted, which.length);
    return which;
  };
  const a = run(31);
  assert.ok(Math.abs(a.length - 1000) <= 2.5758 * Math.sqrt(20_000 * 0.05 * 0.95), `${a.length} corrupted`);
  assert.deepEqual(run(31), a);
});

test('corrupt: a packet with no payload (bare TCP ACK) and an unparsed one pass unchanged, counted', () => {
  const ctx = standaloneContext();
  const stage = corruptStage.create({ p: 1, seed: 1 }, ctx) as CorruptStage;
  const ack = ipv4Packet({ proto: 6, payload: tcpSegment(Buffer.alloc(0)) });
  const p = parsed(Buffer.from(ack));
  stage.process(p);
  assert.deepEqual(p.data, ack);
  const raw = echoRequest();
  const unparsed = new Packet(Buffer.from(raw));
  stage.process(unparsed);
  assert.deepEqual(unparsed.data, raw);
  assert.equal(stage.noPayload, 1);
  assert.equal(stage.unparsed, 1);
  assert.match(ctx.warnings[0], /put parse before corrupt/);
});
