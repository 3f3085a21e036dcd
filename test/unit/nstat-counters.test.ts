/** The tests' nstat readings: a counter nstat did not print is an error, never a silent 0. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { requireCounters } from '../helpers/netns.js';

test('a missing counter throws; present ones read, and the object still prints, spreads and awaits', async () => {
  const c = requireCounters({ IcmpInEchoReps: 5, IcmpInCsumErrors: 0 });
  assert.equal(c.IcmpInEchoReps, 5);
  assert.equal(c.IcmpInCsumErrors, 0);
  assert.throws(() => c.IcmpInEchoRep, /nstat printed no counter IcmpInEchoRep .*not 0/);
  assert.throws(() => (c.Icmp6InEchoReplies ?? 0) - 1, /Icmp6InEchoReplies/, '`?? 0` cannot hide it');
  assert.deepEqual({ ...c }, { IcmpInEchoReps: 5, IcmpInCsumErrors: 0 });
  assert.equal(JSON.stringify(c), '{"IcmpInEchoReps":5,"IcmpInCsumErrors":0}');
  assert.equal(await Promise.resolve(c), c);
});
