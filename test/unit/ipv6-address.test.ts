/** src/packet/ipv6-address.ts: IPv6 text to 16 bytes, checked against bytes written out by hand. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseIPv6Address } from '../../src/packet/ipv6-address.js';

const hex = (h: string) => Buffer.from(h.replace(/ /g, ''), 'hex');

test('parseIPv6Address reads the compressed, full and embedded-IPv4 forms', () => {
  const cases: Array<[string, string]> = [
    ['::', '0000 0000 0000 0000 0000 0000 0000 0000'],
    ['::1', '0000 0000 0000 0000 0000 0000 0000 0001'],
    ['2001:db8::1', '2001 0db8 0000 0000 0000 0000 0000 0001'],
    ['2001:0db8:0000:0000:0000:ff00:0042:8329', '2001 0db8 0000 0000 0000 ff00 0042 8329'],
    ['2001:db8:0:0:1:0:0:1', '2001 0db8 0000 0000 0001 0000 0000 0001'],
    ['2001:DB8::ABCD', '2001 0db8 0000 0000 0000 0000 0000 abcd'],
    ['1:2:3:4:5:6:7::', '0001 0002 0003 0004 0005 0006 0007 0000'],
    ['::2:3:4:5:6:7:8', '0000 0002 0003 0004 0005 0006 0007 0008'],
    ['fe80::', 'fe80 0000 0000 0000 0000 0000 0000 0000'],
    ['::ffff:198.18.0.1', '0000 0000 0000 0000 0000 ffff c612 0001'],
    ['64:ff9b::192.0.2.33', '0064 ff9b 0000 0000 0000 0000 c000 0221'],
    ['1:2:3:4:5:6:255.255.255.255', '0001 0002 0003 0004 0005 0006 ffff ffff'],
  ];
  for (const [text, bytes] of cases) assert.deepEqual(parseIPv6Address(text), hex(bytes), text);
});

test('parseIPv6Address refuses invalid text', () => {
  for (const bad of ['', ':', ':::', '1:2:3:4:5:6:7', '1:2:3:4:5:6:7:8:9', '2001:db8::1::2', 'g::1', '12345::', '198.18.0.1', 'fe80::1%eth0', '::ffff:256.1.1.1', '::ffff:1.2.3', ' ::1', '::1 ', '[::1]', '2001:db8::/32']) {
    assert.equal(parseIPv6Address(bad), null, JSON.stringify(bad));
  }
});
