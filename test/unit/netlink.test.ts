/**
 * src/device/netlink.ts without changing anything: RTM_GETADDR lists the loopback device's addresses (read
 * only, in whatever namespace the test runs), and a device that does not exist is a clear error before any
 * request is sent.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { addAddressNetlink, interfaceIndex, listAddresses } from '../../src/device/netlink.js';
import { TunpipeError } from '../../src/errors.js';

test('listAddresses(lo) reports 127.0.0.1/8 (and ::1/128 where IPv6 is on), IPv4 first', () => {
  const list = listAddresses('lo');
  assert.ok(list.some((a) => a.family === 4 && a.text === '127.0.0.1/8' && a.prefix === 8 && a.scope === 254), JSON.stringify(list));
  const v6 = list.filter((a) => a.family === 6);
  for (const a of v6) assert.match(a.text, /^[0-9a-f:]+\/\d+$/);
  if (v6.length) assert.ok(v6.some((a) => a.text === '::1/128'), JSON.stringify(v6));
  const firstV6 = list.findIndex((a) => a.family === 6);
  if (firstV6 >= 0) assert.ok(list.slice(firstV6).every((a) => a.family === 6));
});

test('a device that does not exist: index 0, and a TunpipeError (ENODEV) for list and add', () => {
  const name = 'tpnone-' + process.pid;
  assert.equal(interfaceIndex(name), 0);
  assert.throws(() => listAddresses(name), (e: unknown) => e instanceof TunpipeError && e.code === 'ENODEV' && e.message.includes(name));
  assert.throws(() => addAddressNetlink(name, 4, Buffer.from([198, 18, 0, 1]), 24, '198.18.0.1/24'), (e: unknown) => e instanceof TunpipeError && e.code === 'ENODEV');
});
