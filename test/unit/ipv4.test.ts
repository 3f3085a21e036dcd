/** src/packet/ipv4.ts: header checks (one per drop reason), address text, unanswerable sources. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { checkIPv4Header, formatIPv4, IPV4_DROP, isUnanswerableSource, parseIPv4Address } from '../../src/packet/ipv4.js';
import { echoRequest } from '../helpers/packets.js';
import { fixIpHeaderChecksum } from './builders.js';
import { withSeed } from './seeded-random.js';

test('checkIPv4Header accepts a sound header, with options, with link padding, and at an offset', () => {
  assert.equal(checkIPv4Header(echoRequest(), 0), null);
  const withOptions = echoRequest({ options: Buffer.from([0x01, 0x01, 0x01, 0x00, 0x94, 0x04, 0x00, 0x00]) });
  assert.equal(withOptions[0] & 0x0f, 7);
  assert.equal(checkIPv4Header(withOptions, 0), null);
  const maxOptions = echoRequest({ options: Buffer.alloc(40, 0x01) });
  assert.equal(maxOptions[0], 0x4f);
  assert.equal(checkIPv4Header(maxOptions, 0), null);
  assert.equal(checkIPv4Header(Buffer.concat([echoRequest(), Buffer.alloc(17, 0xee)]), 0), null, 'padding past the total length');
  assert.equal(checkIPv4Header(Buffer.concat([Buffer.alloc(14, 0xaa), echoRequest()]), 14), null, 'header after an Ethernet header');
  // The smallest datagram: a bare 20-byte header.
  const bare = Buffer.from(echoRequest().subarray(0, 20));
  bare.writeUInt16BE(20, 2);
  assert.equal(checkIPv4Header(fixIpHeaderChecksum(bare), 0), null);
});

test('checkIPv4Header gives each drop reason', () => {
  const cases: Array<[string, Buffer, string, number?]> = [];
  cases.push(['empty', Buffer.alloc(0), IPV4_DROP.short]);
  cases.push(['19 bytes', echoRequest().subarray(0, 19), IPV4_DROP.short]);
  cases.push(['19 bytes past the offset', Buffer.concat([Buffer.alloc(14), echoRequest().subarray(0, 19)]), IPV4_DROP.short, 14]);
  const v6 = echoRequest();
  v6[0] = 0x65;
  cases.push(['version 6', fixIpHeaderChecksum(v6), IPV4_DROP.version]);
  const v0 = echoRequest();
  v0[0] = 0x05;
  cases.push(['version 0', v0, IPV4_DROP.version]);
  for (const ihl of [0, 1, 4]) {
    const b = echoRequest();
    b[0] = 0x40 | ihl;
    cases.push([`IHL ${ihl}`, b, IPV4_DROP.ihl]);
  }
  const ihlPast = echoRequest().subarray(0, 40);
  ihlPast[0] = 0x4f;
  cases.push(['IHL 15 in 40 bytes', ihlPast, IPV4_DROP.headerPastEnd]);
  const totalBelow = echoRequest();
  totalBelow.writeUInt16BE(19, 2);
  cases.push(['total length 19', fixIpHeaderChecksum(totalBelow), IPV4_DROP.totalLength]);
  const totalBelowOptions = echoRequest({ options: Buffer.alloc(8, 1) });
  totalBelowOptions.writeUInt16BE(24, 2);
  cases.push(['total length 24 with a 28-byte header', fixIpHeaderChecksum(totalBelowOptions), IPV4_DROP.totalLength]);
  const totalPast = echoRequest();
  totalPast.writeUInt16BE(totalPast.length + 1, 2);
  cases.push(['total length one past the buffer', fixIpHeaderChecksum(totalPast), IPV4_DROP.truncated]);
  const cut = echoRequest().subarray(0, 50);
  cases.push(['packet cut after 50 bytes', cut, IPV4_DROP.truncated]);
  const badSum = echoRequest();
  badSum[10] ^= 0x01;
  cases.push(['header checksum off by one bit', badSum, IPV4_DROP.checksum]);
  const badOption = echoRequest({ options: Buffer.alloc(4, 1) });
  badOption[22] = 7;
  cases.push(['option byte changed after the checksum', badOption, IPV4_DROP.checksum]);
  for (const [name, buf, reason, l3] of cases) assert.equal(checkIPv4Header(buf, l3 ?? 0), reason, name);
});

test('checkIPv4Header: a changed payload does not concern the header', () => {
  const b = echoRequest();
  b[b.length - 1] ^= 0xff;
  assert.equal(checkIPv4Header(b, 0), null);
});

test('parseIPv4Address reads dotted quads and refuses anything else', () => {
  assert.equal(parseIPv4Address('198.18.0.1'), 198 * 2 ** 24 + 18 * 2 ** 16 + 1);
  assert.equal(parseIPv4Address('0.0.0.0'), 0);
  assert.equal(parseIPv4Address('255.255.255.255'), 2 ** 32 - 1);
  assert.equal(parseIPv4Address('1.2.3.4'), 0x01020304);
  for (const bad of ['', '1.2.3', '1.2.3.4.5', '256.0.0.1', '1.2.3.256', '1..2.3', '-1.2.3.4', ' 1.2.3.4', '1.2.3.4 ', '1.2.3.4\n', 'a.b.c.d', '1.2.3.4/24', '1234.1.1.1', '0x1.2.3.4', '::1']) {
    assert.equal(parseIPv4Address(bad), null, JSON.stringify(bad));
  }
});

test('formatIPv4 writes dotted quads and round-trips through parseIPv4Address', () =>
  withSeed((rng) => {
    assert.equal(formatIPv4(0xc6120001), '198.18.0.1');
    assert.equal(formatIPv4(0), '0.0.0.0');
    assert.equal(formatIPv4(0xffffffff), '255.255.255.255');
    for (let i = 0; i < 1000; i++) {
      const a = rng.int(2 ** 32);
      const text = formatIPv4(a);
      assert.equal(text, [a >>> 24, (a >>> 16) & 255, (a >>> 8) & 255, a & 255].join('.'));
      assert.equal(parseIPv4Address(text), a);
    }
  }));

test('isUnanswerableSource: 0/8, multicast 224/4, reserved 240/4 and broadcast, but not unicast', () => {
  for (const a of ['0.0.0.0', '0.1.2.3', '0.255.255.255', '224.0.0.1', '239.255.255.255', '240.0.0.1', '255.255.255.255']) {
    assert.equal(isUnanswerableSource(parseIPv4Address(a)!), true, a);
  }
  for (const a of ['1.0.0.0', '10.0.0.1', '198.18.0.2', '198.19.255.254', '223.255.255.255']) {
    assert.equal(isUnanswerableSource(parseIPv4Address(a)!), false, a);
  }
});
