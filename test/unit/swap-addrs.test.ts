/** transforms/swap-addrs.ts: addresses exchanged in place for IPv4 and IPv6; header checksum still right. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Packet } from '../../src/packet/packet.js';
import { swapPacketAddresses, SWAP_DROP } from '../../transforms/swap-addrs.js';
import { echoRequest, referenceChecksum } from '../helpers/packets.js';
import { ipv4Packet, ipv6Packet, parsed, pseudoHeaderAnd, udpSegment } from './builders.js';

test('IPv4: source and destination exchanged, nothing else changed, checksums still valid', () => {
  const buf = echoRequest({ src: '198.18.0.2', dst: '198.19.7.9', options: Buffer.alloc(4, 1) });
  const before = Buffer.from(buf);
  const p = parsed(buf);
  assert.equal(swapPacketAddresses(p), p);
  assert.deepEqual([...p.data.subarray(12, 16)], [198, 19, 7, 9]);
  assert.deepEqual([...p.data.subarray(16, 20)], [198, 18, 0, 2]);
  assert.deepEqual(p.data.subarray(0, 12), before.subarray(0, 12));
  assert.deepEqual(p.data.subarray(20), before.subarray(20));
  assert.equal(referenceChecksum(p.data.subarray(0, 24)), 0, 'header checksum unchanged and valid');
  assert.equal(p.dirty, 0, 'nothing for the checksum stage to do');
});

test('IPv4 UDP: the pseudo-header checksum stays valid after the swap', () => {
  const seg = udpSegment(Buffer.from('hello'));
  seg.writeUInt16BE(referenceChecksum(pseudoHeaderAnd('198.18.0.2', '198.18.5.6', 17, seg)), 6);
  const p = parsed(ipv4Packet({ proto: 17, payload: seg, src: '198.18.0.2', dst: '198.18.5.6' }));
  swapPacketAddresses(p);
  assert.equal(referenceChecksum(pseudoHeaderAnd('198.18.5.6', '198.18.0.2', 17, p.data.subarray(20))), 0);
});

test('IPv6 with a link header before it: the 16-byte addresses are exchanged', () => {
  const src = Buffer.from('20010db8000000000000000000000abc', 'hex');
  const dst = Buffer.from('20010db8ffff00000000000000000001', 'hex');
  const buf = Buffer.concat([Buffer.alloc(14, 0xee), ipv6Packet(17, Buffer.alloc(12, 3), 0, src, dst)]);
  const p = parsed(buf, 14);
  assert.equal(swapPacketAddresses(p), p);
  assert.deepEqual(p.data.subarray(14 + 8, 14 + 24), dst);
  assert.deepEqual(p.data.subarray(14 + 24, 14 + 40), src);
  assert.deepEqual(p.data.subarray(0, 14), Buffer.alloc(14, 0xee));
});

test('an unparsed packet is dropped and left alone', () => {
  const buf = echoRequest();
  const before = Buffer.from(buf);
  assert.equal(swapPacketAddresses(new Packet(buf)), SWAP_DROP.unparsed);
  assert.deepEqual(buf, before);
});
