/** transforms/parse.ts: each drop reason, and the parsed view (version, l4, end, proto) for IPv4 and IPv6. */
import { standaloneContext } from '../../src/pipeline/standalone.js';
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Packet } from '../../src/packet/packet.js';
import { IPV4_DROP } from '../../src/packet/ipv4.js';
import { parsePacket, PARSE_DROP } from '../../transforms/parse.js';
import { echoRequest } from '../helpers/packets.js';
import { fixIpHeaderChecksum, ipv4Packet, ipv6Packet, udpSegment } from './builders.js';

function parseOf(buf: Buffer, l3 = 0): Packet | string {
  const p = new Packet(buf);
  p.l3 = l3;
  return parsePacket(p);
}

test('IPv4 without options: l4 after 20 bytes, end at the total length, proto from the header', () => {
  const buf = echoRequest({ payload: Buffer.alloc(10) });
  const p = parseOf(buf) as Packet;
  assert.ok(p instanceof Packet);
  assert.deepEqual({ version: p.version, l3: p.l3, l4: p.l4, end: p.end, proto: p.proto, length: p.length }, { version: 4, l3: 0, l4: 20, end: 38, proto: 1, length: 38 });
});

test('IPv4 with options and link padding: l4 after the options, end before the padding', () => {
  const buf = ipv4Packet({ proto: 17, payload: udpSegment(Buffer.alloc(5)), options: Buffer.alloc(12, 1), padding: 9 });
  const p = parseOf(buf) as Packet;
  assert.ok(p instanceof Packet);
  assert.deepEqual({ version: p.version, l4: p.l4, end: p.end, proto: p.proto }, { version: 4, l4: 32, end: 32 + 13, proto: 17 });
  assert.equal(p.data.length, 32 + 13 + 9, 'the bytes are not cut');
});

test('IPv4 behind a 14-byte link header: offsets are absolute', () => {
  const buf = Buffer.concat([Buffer.alloc(14, 0xaa), echoRequest({ payload: Buffer.alloc(4), options: Buffer.alloc(4, 1) })]);
  const p = parseOf(buf, 14) as Packet;
  assert.ok(p instanceof Packet);
  assert.deepEqual({ l3: p.l3, l4: p.l4, end: p.end, length: p.length }, { l3: 14, l4: 14 + 24, end: 14 + 24 + 12, length: 36 });
});

test('IPv6: l4 after the 40-byte header, end from the payload length, proto from next header', () => {
  const p = parseOf(ipv6Packet(58, Buffer.alloc(16, 7), 6)) as Packet;
  assert.ok(p instanceof Packet);
  assert.deepEqual({ version: p.version, l4: p.l4, end: p.end, proto: p.proto }, { version: 6, l4: 40, end: 56, proto: 58 });
  const empty = parseOf(ipv6Packet(59, Buffer.alloc(0))) as Packet;
  assert.deepEqual({ version: empty.version, l4: empty.l4, end: empty.end, proto: empty.proto }, { version: 6, l4: 40, end: 40, proto: 59 });
});

test('parse drops each malformed packet with its reason and leaves it unparsed', () => {
  const badVersion = echoRequest();
  badVersion[0] = 0x55;
  const badIhl = echoRequest();
  badIhl[0] = 0x43;
  const ihlPast = Buffer.from(echoRequest().subarray(0, 30));
  ihlPast[0] = 0x48;
  const totalBelow = echoRequest();
  totalBelow.writeUInt16BE(10, 2);
  const totalPast = echoRequest();
  totalPast.writeUInt16BE(totalPast.length + 4, 2);
  const badSum = echoRequest();
  badSum[11] ^= 0x80;
  const v6Short = ipv6Packet(58, Buffer.alloc(0)).subarray(0, 39);
  const v6Long = ipv6Packet(58, Buffer.alloc(8)).subarray(0, 47);
  const cases: Array<[string, Buffer, string, number?]> = [
    ['empty', Buffer.alloc(0), PARSE_DROP.empty],
    ['empty past the link header', Buffer.alloc(14), PARSE_DROP.empty, 14],
    ['version 5', badVersion, PARSE_DROP.version],
    ['version 0', Buffer.alloc(40), PARSE_DROP.version],
    ['one byte of IPv4', Buffer.from([0x45]), IPV4_DROP.short],
    ['19 bytes of IPv4', echoRequest().subarray(0, 19), IPV4_DROP.short],
    ['IHL 3', badIhl, IPV4_DROP.ihl],
    ['IHL 8 in 30 bytes', ihlPast, IPV4_DROP.headerPastEnd],
    ['total length 10', fixIpHeaderChecksum(totalBelow), IPV4_DROP.totalLength],
    ['total length past the buffer', fixIpHeaderChecksum(totalPast), IPV4_DROP.truncated],
    ['bad header checksum', badSum, IPV4_DROP.checksum],
    ['39 bytes of IPv6', v6Short, PARSE_DROP.ipv6Short],
    ['IPv6 payload length past the buffer', v6Long, PARSE_DROP.ipv6Length],
  ];
  for (const [name, buf, reason, l3] of cases) {
    const p = new Packet(buf);
    p.l3 = l3 ?? 0;
    assert.equal(parsePacket(p), reason, name);
    assert.equal(p.version, 0, `${name}: not marked parsed`);
  }
});

test('the parse stage reached through the pipeline is the same function', async () => {
  const { resolvePipeline } = await import('../../src/pipeline/resolve.js');
  const [s] = await resolvePipeline('parse');
  const inst = s.def.create(s.args, standaloneContext({ name: 'parse' }));
  assert.equal(inst.process(new Packet(Buffer.alloc(0))), PARSE_DROP.empty);
  const ok = new Packet(echoRequest());
  assert.equal(inst.process(ok), ok);
});
