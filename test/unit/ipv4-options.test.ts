/**
 * The IPv4 options code (src/packet/ipv4-options.ts) on its own: the walk, the checks Linux's
 * ip_options_compile makes, the options copied into later fragments, recording our address and time in record
 * route and timestamp options, and the options a reply keeps (ip_options_echo).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  checkIPv4Options,
  copiedOptions,
  echoOptions,
  forEachOption,
  hasSourceRoute,
  ipTimestamp,
  OPTION_DROP,
  recordInOptions,
} from '../../src/packet/ipv4-options.js';
import { echoRequest } from '../helpers/packets.js';

/** An IPv4 echo request carrying `options` (padded by the caller to a multiple of 4), at offset `l3`. */
function withOptions(options: number[], l3 = 0): { b: Buffer; l3: number; ihl: number } {
  const p = echoRequest({ options: Buffer.from(options) });
  return { b: Buffer.concat([Buffer.alloc(l3, 0xee), p]), l3, ihl: 20 + options.length };
}

const RR9 = [7, 39, 4, ...Array(36).fill(0)]; // record route with 9 empty slots: 39 bytes
const US = Buffer.from([198, 18, 0, 1]);

test('forEachOption walks options past no-ops, stops at End of Options, refuses lengths outside the header', () => {
  const seen: [number, number, number][] = [];
  const { b, l3, ihl } = withOptions([1, 148, 4, 0, 0, 1, 7, 7, 4, 0, 0, 0, 0, 0, 0, 0], 6);
  assert.equal(forEachOption(b, l3, ihl, (type, at, len) => seen.push([type, at - l3, len])), true);
  assert.deepEqual(seen, [[148, 21, 4], [7, 26, 7]]);
  const cut = withOptions([7, 9, 4, 0, 0, 0, 0, 0]); // claims 9 bytes, 8 there
  assert.equal(forEachOption(cut.b, cut.l3, cut.ihl, () => {}), false);
  const tiny = withOptions([7, 1, 0, 0]); // length below 2
  assert.equal(forEachOption(tiny.b, tiny.l3, tiny.ihl, () => {}), false);
  const lone = withOptions([1, 1, 1, 7]); // a type byte with no length byte
  assert.equal(forEachOption(lone.b, lone.l3, lone.ihl, () => {}), false);
});

test('checkIPv4Options accepts what Linux accepts and names what it drops', () => {
  const ok = (o: number[]) => {
    const h = withOptions(o);
    return checkIPv4Options(h.b, h.l3, h.ihl);
  };
  assert.equal(ok([1, 1, 1, 0]), null, 'no-ops');
  assert.equal(ok(RR9.concat([0])), null, 'empty record route');
  assert.equal(ok([7, 7, 8, 1, 2, 3, 4, 0]), null, 'full record route (pointer past the end)');
  assert.equal(ok([68, 12, 5, 0, 0, 0, 0, 0, 0, 0, 0, 0]), null, 'timestamps only');
  assert.equal(ok([68, 12, 5, 1, 0, 0, 0, 0, 0, 0, 0, 0]), null, 'addresses and timestamps');
  assert.equal(ok([148, 4, 0, 0]), null, 'router alert');
  assert.equal(ok([136, 4, 0x12, 0x34]), null, 'an option the kernel does not know (stream id)');
  assert.equal(ok([68, 8, 9, 0xe0, 0, 0, 0, 0]), null, 'full timestamps, overflow 14: one more fits');
  const drop = OPTION_DROP.malformed;
  assert.equal(ok([7, 7, 3, 0, 0, 0, 0, 0]), drop, 'record route pointer below 4');
  assert.equal(ok([7, 8, 6, 0, 0, 0, 0, 0]), drop, 'record route pointer inside a slot');
  assert.equal(ok([7, 3, 4, 7, 3, 4, 0, 0]), drop, 'record route twice');
  assert.equal(ok([68, 8, 4, 0, 0, 0, 0, 0]), drop, 'timestamp pointer below 5');
  assert.equal(ok([68, 8, 5, 1, 0, 0, 0, 0]), drop, 'room for a time but not for address and time');
  assert.equal(ok([68, 8, 9, 0xf0, 0, 0, 0, 0]), drop, 'full timestamps, overflow already 15');
  assert.equal(ok([131, 7, 3, 0, 0, 0, 0, 0]), drop, 'source route pointer below 4');
  assert.equal(ok([131, 3, 4, 137, 3, 4, 0, 0]), drop, 'loose and strict source route together');
  assert.equal(ok([148, 2, 0, 0]), drop, 'router alert shorter than 4');
  assert.equal(ok([7, 9, 4, 0, 0, 0, 0, 0]), drop, 'length past the header');
});

test('hasSourceRoute sees loose and strict source routes only', () => {
  for (const [o, want] of [
    [[131, 7, 4, 0, 0, 0, 0, 0], true],
    [[137, 7, 4, 0, 0, 0, 0, 0], true],
    [RR9.concat([0]), false],
    [[1, 1, 1, 0], false],
  ] as const) {
    const h = withOptions([...o]);
    assert.equal(hasSourceRoute(h.b, h.l3, h.ihl), want, JSON.stringify(o));
  }
});

test('copiedOptions keeps the options with the copied flag (source route, security), padded, in order', () => {
  const { b, l3, ihl } = withOptions([1, 131, 7, 4, 9, 9, 9, 9, 7, 3, 4, 130, 4, 5, 6, 0]);
  assert.deepEqual([...copiedOptions(b, l3, ihl)], [131, 7, 4, 9, 9, 9, 9, 130, 4, 5, 6, 0]);
  const none = withOptions([7, 3, 4, 1]);
  assert.equal(copiedOptions(none.b, none.l3, none.ihl).length, 0);
});

test('recordInOptions: our address in record route, once per pass, never into a full option', () => {
  const { b, l3, ihl } = withOptions(RR9.concat([0]));
  assert.equal(recordInOptions(b, l3, ihl, US, 2), true);
  assert.equal(b[l3 + 22], 12, 'pointer moved by two entries');
  assert.deepEqual([...b.subarray(l3 + 23, l3 + 31)], [...US, ...US]);
  const full = withOptions([7, 7, 8, 1, 2, 3, 4, 0]);
  const copy = Buffer.from(full.b);
  assert.equal(recordInOptions(full.b, full.l3, full.ihl, US, 2), false);
  assert.deepEqual(full.b, copy, 'a full record route is left as it came');
});

test('recordInOptions: timestamps (time only, address and time), the overflow count of a full option', () => {
  const noon = 12 * 3600 * 1000;
  assert.equal(ipTimestamp(86_400_000 * 3 + noon), noon);
  const only = withOptions([68, 12, 5, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
  assert.equal(recordInOptions(only.b, only.l3, only.ihl, US, 2, noon), true);
  assert.equal(only.b[22], 13);
  assert.equal(only.b.readUInt32BE(24), noon);
  assert.equal(only.b.readUInt32BE(28), noon);
  const both = withOptions([68, 12, 5, 1, 0, 0, 0, 0, 0, 0, 0, 0]);
  assert.equal(recordInOptions(both.b, both.l3, both.ihl, US, 2, noon), true);
  assert.equal(both.b[22], 13, 'one entry of 8 bytes fits, the second pass finds it full');
  assert.deepEqual([...both.b.subarray(24, 28)], [...US]);
  assert.equal(both.b.readUInt32BE(28), noon);
  assert.equal(both.b[23] >> 4, 0, 'no overflow counted: only a receiver counts one, for an option already full');
  const full = withOptions([68, 8, 9, 0xd0, 0, 0, 0, 0]);
  recordInOptions(full.b, full.l3, full.ihl, US, 2, noon);
  assert.equal(full.b[23] >> 4, 14, 'overflow counted once, up to 14');
  recordInOptions(full.b, full.l3, full.ihl, US, 2, noon);
  assert.equal(full.b[23] >> 4, 14, 'never to 15: the pinging host would drop the reply');
});

test('echoOptions keeps record route, timestamp and CIPSO in that order, drops the rest, pads to 4', () => {
  const { b, l3, ihl } = withOptions([148, 4, 0, 0, 1, 68, 8, 5, 0, 0, 0, 0, 0, 7, 3, 4, 136, 4, 1, 2], 2);
  const n = echoOptions(b, l3, ihl);
  assert.equal(n, 12);
  assert.deepEqual([...b.subarray(l3 + 20, l3 + 20 + n)], [7, 3, 4, 68, 8, 5, 0, 0, 0, 0, 0, 0]);
  const only = withOptions([1, 1, 148, 4, 0, 0, 0, 0]);
  assert.equal(echoOptions(only.b, only.l3, only.ihl), 0, 'no-ops and router alert: a reply without options');
});
