/** bench/lib/impair-analysis.ts: ping output read right, and the statistics of the accuracy table. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { binomialInterval99, jitterDeviation, lossBursts, parsePing, percentile, reordered, robustDeviation, tcpGoodput, udpGoodput } from '../../bench/lib/impair-analysis.js';
import { GaussianSource } from '../../src/impair/distributions.js';
import { SeededRandom } from '../../src/impair/random.js';

// What iputils ping 20221126 printed on this machine through a wire (three replies, one missing, one late).
const SAMPLE = `PING 198.18.0.2 (198.18.0.2) 56(84) bytes of data.
64 bytes from 198.18.0.2: icmp_seq=1 ttl=64 time=20.7 ms
64 bytes from 198.18.0.2: icmp_seq=3 ttl=64 time=21.2 ms
64 bytes from 198.18.0.2: icmp_seq=2 ttl=64 time=24.4 ms

--- 198.18.0.2 ping statistics ---
4 packets transmitted, 3 received, 25% packet loss, time 3004ms
rtt min/avg/max/mdev = 20.713/22.110/24.499/1.650 ms
`;

test('parsePing: counts, sequence order, per-reply times and the summary to the microsecond', () => {
  const r = parsePing(SAMPLE);
  assert.deepEqual([r.transmitted, r.received], [4, 3]);
  assert.deepEqual(r.seqs, [1, 3, 2]);
  assert.deepEqual(r.rtts, [20.7, 21.2, 24.4]);
  assert.deepEqual([r.avg, r.mdev], [22.11, 1.65]);
  assert.throws(() => parsePing('ping: connect: Network is unreachable'), /no ping summary/);
});

test('reordered counts replies that came after a higher sequence number', () => {
  assert.equal(reordered([1, 2, 3, 4]), 0);
  assert.equal(reordered([1, 3, 2, 4]), 1);
  assert.equal(reordered([4, 1, 2, 3]), 3);
});

test('lossBursts: runs of missing sequence numbers, the end included', () => {
  assert.deepEqual(lossBursts([1, 2, 5, 6, 8], 10), [2, 1, 2]);
  assert.deepEqual(lossBursts([], 3), [3]);
});

test('binomialInterval99 and percentile', () => {
  const [lo, hi] = binomialInterval99(20_000, 0.05);
  assert.ok(Math.abs(lo - (1000 - 79.39)) < 0.01 && Math.abs(hi - (1000 + 79.39)) < 0.01, `${lo}..${hi}`);
  assert.equal(percentile([5, 1, 4, 2, 3], 99), 5);
  assert.equal(percentile([5, 1, 4, 2, 3], 50), 3);
});

test('jitter from RTT spreads; goodput from IP-byte rates', () => {
  assert.equal(jitterDeviation(5, 3), 4);
  assert.equal(jitterDeviation(1, 2), 0);
  assert.equal(tcpGoodput(20e6, 1448), (20e6 * 1448) / 1500);
  assert.equal(udpGoodput(20e6, 1400), (20e6 * 1400) / 1428);
});

test('robustDeviation: the deviation of a normal sample, and blind to a few wild outliers', () => {
  const g = new GaussianSource(new SeededRandom(1));
  const xs = Array.from({ length: 20_000 }, () => 10 + 2 * g.next());
  assert.ok(Math.abs(robustDeviation(xs) - 2) < 0.05, `${robustDeviation(xs)}`);
  for (let i = 0; i < 100; i++) xs[i * 7] = 90; // late wake-ups
  assert.ok(Math.abs(robustDeviation(xs) - 2) < 0.08, `${robustDeviation(xs)}`);
});
