/** src/device/ifconfig.ts parseCidr: what --addr accepts, and the usage errors for everything it will not guess. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseCidr } from '../../src/device/ifconfig.js';
import { TunpipeError, UsageError } from '../../src/errors.js';

test('parseCidr reads IPv4 and IPv6 CIDR text', () => {
  const a = parseCidr('198.18.0.1/24');
  assert.deepEqual([a.family, [...a.bytes], a.prefix], [4, [198, 18, 0, 1], 24]);
  const b = parseCidr('2001:db8::1/64');
  assert.deepEqual([b.family, b.bytes.toString('hex'), b.prefix], [6, '20010db8000000000000000000000001', 64]);
  assert.equal(parseCidr('198.18.0.1/32').prefix, 32);
  assert.equal(parseCidr('198.18.0.0/0').prefix, 0);
  assert.equal(parseCidr('2001:db8::1/128').prefix, 128);
  assert.equal(parseCidr('::ffff:198.18.0.1/96').family, 6);
});

test('parseCidr refuses guesses with a UsageError (code EUSAGE) that says what to write', () => {
  const bad: Array<[string, RegExp]> = [
    ['198.18.0.1', /no prefix length: write 198\.18\.0\.1\/24/],
    ['2001:db8::1', /no prefix length: write 2001:db8::1\/64/],
    ['198.18.0.1/0x10', /decimal number 0\.\.32/],
    ['198.18.0.1/1e1', /decimal number 0\.\.32/],
    ['198.18.0.1/024', /decimal number/],
    ['198.18.0.1/+24', /decimal number/],
    ['198.18.0.1/ 24', /decimal number/],
    ['198.18.0.1/', /decimal number/],
    ['198.18.0.1/33', /decimal number 0\.\.32/],
    ['2001:db8::1/129', /decimal number 0\.\.128/],
    ['198.18.0.1/24/8', /decimal number/],
    ['198.18.0.010/24', /without leading zeros/],
    ['198.018.0.1/24', /without leading zeros/],
    ['198.18.0.256/24', /expected an IPv4 or IPv6 address/],
    ['198.18.1/24', /expected an IPv4 or IPv6 address/],
    ['0x7f.0.0.1/8', /expected an IPv4 or IPv6 address/],
    ['fe80::1%tpt0/64', /expected an IPv4 or IPv6 address/],
    [' 198.18.0.1/24', /expected an IPv4 or IPv6 address/],
    ['', /expected an IPv4 or IPv6 address/],
  ];
  for (const [text, re] of bad) {
    assert.throws(
      () => parseCidr(text),
      (err: unknown) => err instanceof UsageError && err instanceof TunpipeError && err.code === 'EUSAGE' && re.test(err.message),
      JSON.stringify(text),
    );
  }
});
