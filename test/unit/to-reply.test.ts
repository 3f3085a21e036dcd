/** transforms/to-reply.ts: request rewritten into a reply, changes recorded for the checksum stage. */
import { standaloneContext } from '../../src/pipeline/standalone.js';
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Dirty, Packet } from '../../src/packet/packet.js';
import { swapPacketAddresses } from '../../transforms/swap-addrs.js';
import { makeEchoReply, REPLY_DROP } from '../../transforms/to-reply.js';
import { fixChecksums } from '../../transforms/checksum.js';
import { resolvePipeline } from '../../src/pipeline/resolve.js';
import { echoRequest, referenceChecksum } from '../helpers/packets.js';
import { ipv4Packet, ipv6Packet, parsed, udpSegment } from './builders.js';

test('type 8 becomes 0, TTL 64, id/seq/payload kept, changes recorded', () => {
  const payload = Buffer.from('0123456789abcdefXYZ');
  const buf = echoRequest({ id: 0xbeef, seq: 0x0102, ttl: 3, payload });
  const before = Buffer.from(buf);
  const p = parsed(buf);
  assert.equal(makeEchoReply(p), p);
  const b = p.data;
  assert.equal(b[20], 0, 'ICMP type');
  assert.equal(b[21], 0, 'ICMP code');
  assert.equal(b[8], 64, 'TTL');
  assert.equal(b[9], 1, 'protocol kept');
  assert.equal(b.readUInt16BE(24), 0xbeef);
  assert.equal(b.readUInt16BE(26), 0x0102);
  assert.deepEqual(b.subarray(28), payload);
  assert.deepEqual(b.subarray(10, 20), before.subarray(10, 20), 'checksum field and addresses untouched here');
  assert.ok(p.dirty & Dirty.IpAdjust && p.dirty & Dirty.L4Adjust);
  fixChecksums(p, 'incremental');
  assert.equal(referenceChecksum(b.subarray(0, 20)), 0);
  assert.equal(referenceChecksum(b.subarray(20)), 0);
});

test('IP options as Linux echoes them: record route kept (with our address twice), others left out', () => {
  const payload = Buffer.from('abcdefgh');
  // Router alert, then record route with 3 empty slots, then a no-op and end.
  const rr = [7, 15, 4, ...new Array(12).fill(0)];
  const options = Buffer.from([0x94, 4, 0, 0, ...rr, 1, 1, 1, 1, 0]);
  const p = parsed(echoRequest({ src: '198.18.0.2', dst: '198.18.0.1', payload, options }));
  swapPacketAddresses(p);
  assert.equal(makeEchoReply(p), p);
  fixChecksums(p, 'auto');
  const b = p.data;
  assert.equal(b[0], 0x45 + 4, 'IHL 9: 16 bytes of options (record route, padded)');
  assert.equal(b.readUInt16BE(2), 36 + 8 + payload.length);
  assert.deepEqual([...b.subarray(20, 36)], [7, 15, 12, 198, 18, 0, 1, 198, 18, 0, 1, 0, 0, 0, 0, 0], 'our address recorded as receiver and sender');
  assert.equal(referenceChecksum(b.subarray(0, 36)), 0);
  assert.equal(b[36], 0, 'echo reply');
  assert.equal(referenceChecksum(b.subarray(36)), 0);
  assert.deepEqual(b.subarray(44), payload);
});

test('ttl=N through the pipeline text', async () => {
  const [s] = await resolvePipeline('to-reply ttl=1');
  const inst = s.def.create(s.args, standaloneContext({ name: 'to-reply' }));
  const p = parsed(echoRequest({ ttl: 200 }));
  assert.equal(inst.process(p), p);
  assert.equal(p.data[8], 1);
  const q = parsed(echoRequest());
  makeEchoReply(q, 255);
  assert.equal(q.data[8], 255);
});

test('anything but a parsed echo request is dropped untouched', () => {
  const short = ipv4Packet({ proto: 1, payload: Buffer.from([8, 0, 0xf7, 0xff]) });
  const cases: Array<[string, Packet]> = [
    ['unparsed', new Packet(echoRequest())],
    ['IPv6 echo reply', parsed(ipv6Packet(58, Buffer.from([129, 0, 0, 0, 0, 0, 0, 0])))],
    ['IPv6 UDP', parsed(ipv6Packet(17, udpSegment(Buffer.from([128, 0, 0, 0]))))],
    ['UDP', parsed(ipv4Packet({ proto: 17, payload: udpSegment(Buffer.from([8, 0, 0, 0])) }))],
    ['echo reply', parsed(echoRequest({ type: 0 }))],
    ['ICMP of 4 bytes', parsed(short)],
  ];
  for (const [name, p] of cases) {
    const before = Buffer.from(p.data);
    assert.equal(makeEchoReply(p), REPLY_DROP.notRequest, name);
    assert.deepEqual(p.data, before, name);
    assert.equal(p.dirty, 0, name);
  }
});
