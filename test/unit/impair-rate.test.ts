/**
 * transforms/rate.ts on the file clock. The expected departures come from the token bucket's closed form,
 * computed here independently of the stage's recursion: packet i (IP length L, arrival a) leaves at
 *   d_i = max(a_i, d_{i-1}, max over j < i of d_j + (L_j + ... + L_i - burst) / rate)
 * (the bucket, full at the start and capped at `burst`, must hold L_i at d_i).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import rateStage, { RATE_DROP, RateStage } from '../../transforms/rate.js';
import { runStage, type In } from './impair-run.js';

const NS = 1e-6;

interface Expected {
  seq: number;
  t: number;
}

/** Departures by the closed form; packets that would wait longer than `maxWait` are dropped (not sent). */
function bucketDepartures(inputs: In[], bitsPerSecond: number, burst: number, maxWait = Infinity): Expected[] {
  const perMs = bitsPerSecond / 8 / 1000;
  const sent: { d: number; len: number }[] = [];
  const out: Expected[] = [];
  for (const input of inputs) {
    const len = 28 + (input.payload ?? 56);
    let d = input.t;
    if (sent.length > 0) d = Math.max(d, sent[sent.length - 1].d);
    let sum = len;
    for (let j = sent.length - 1; j >= 0; j--) {
      sum += sent[j].len;
      d = Math.max(d, sent[j].d + (sum - burst) / perMs);
    }
    if (d - input.t > maxWait) continue;
    sent.push({ d, len });
    out.push({ seq: input.seq, t: d });
  }
  return out;
}

/** Bursts of back-to-back packets of mixed sizes, with pauses that let the bucket refill in part or in full. */
function burstyInputs(n: number): In[] {
  const inputs: In[] = [];
  let t = 3.25;
  for (let i = 0; i < n; i++) {
    if (i % 40 === 0) t += (i * 37) % 120; // pauses of 0 to 119 ms
    else t += ((i * 7) % 5) * 0.05;
    inputs.push({ seq: i + 1, t, payload: 20 + ((i * 131) % 1400) });
  }
  return inputs;
}

function assertDepartures(actual: { seq: number; t: number }[], expected: Expected[]): void {
  assert.equal(actual.length, expected.length, 'packets out');
  for (let i = 0; i < expected.length; i++) {
    assert.equal(actual[i].seq, expected[i].seq, `packet ${i}: order`);
    assert.ok(Math.abs(actual[i].t - expected[i].t) <= NS, `packet ${expected[i].seq}: left at ${actual[i].t}, the bucket says ${expected[i].t}`);
  }
}

test('rate 1mbit burst=3000: packets are spaced exactly as the token bucket dictates', () => {
  const inputs = burstyInputs(2000);
  for (const tick of [true, false]) {
    const r = runStage(rateStage, { rate: 1e6, burst: 3000, limit: '100s' }, inputs, { tick });
    assert.equal(r.drops.size, 0);
    assertDepartures(r.out, bucketDepartures(inputs, 1e6, 3000));
  }
});

test('rate with the default burst (64KiB): a burst below it passes at once, then the rate holds', () => {
  const inputs = Array.from({ length: 3000 }, (_, i) => ({ seq: i + 1, t: 1 + i * 0.01, payload: 1472 }));
  const r = runStage(rateStage, { rate: 20e6, burst: 65536, limit: '10s' }, inputs);
  const expected = bucketDepartures(inputs, 20e6, 65536);
  assertDepartures(r.out, expected);
  const passedAtOnce = r.out.filter((o, i) => Math.abs(o.t - inputs[i].t) <= NS).length;
  assert.equal(passedAtOnce, Math.floor(65536 / 1500) + 1, 'the full bucket lets 44 packets of 1500 bytes through at once (plus the refill)');
  // Goodput over the saturated part: IP bytes / time between departures, exactly the rate.
  const first = 100;
  const bytes = (r.out.length - 1 - first) * 1500;
  const ms = r.out[r.out.length - 1].t - r.out[first].t;
  assert.ok(Math.abs((bytes * 8) / (ms / 1000) / 20e6 - 1) < 1e-9, 'goodput is the rate');
});

test('limit=TIME: a packet that would wait longer is dropped and counted; the others leave as the bucket says', () => {
  const inputs = burstyInputs(2000);
  const r = runStage(rateStage, { rate: 1e6, burst: 3000, limit: '20ms' }, inputs);
  const expected = bucketDepartures(inputs, 1e6, 3000, 20);
  assertDepartures(r.out, expected);
  assert.equal(r.drops.get(RATE_DROP.full), inputs.length - expected.length);
  assert.ok(inputs.length - expected.length > 100, 'the test does overflow the queue');
});

test('memory: a fast input against a slow rate holds at most limit bytes; the overflow is counted', () => {
  // 1500-byte packets at 100 Mbit/s into a 1 Mbit/s bucket with a 30 kB queue.
  const inputs = Array.from({ length: 20_000 }, (_, i) => ({ seq: i + 1, t: i * 0.12, payload: 1472 }));
  let peak = 0;
  const r = runStage(rateStage, { rate: 1e6, burst: 3000, limit: '30kB' }, inputs, {
    after: (s) => (peak = Math.max(peak, (s as RateStage).queue.bytes)),
  });
  assert.ok(peak <= 30_000, `held ${peak} bytes`);
  assert.ok(peak > 30_000 - 1500, 'the queue fills up');
  const dropped = r.drops.get(RATE_DROP.full) ?? 0;
  assert.equal(r.out.length + dropped, inputs.length);
  assert.ok(dropped > 18_000, `dropped ${dropped}`);
  for (let i = 1; i < r.out.length; i++) {
    assert.ok(r.out[i].seq > r.out[i - 1].seq, 'order');
    // The first two leave at once on the full 3000-byte bucket, the third as the refill allows; then the
    // backlog keeps the bucket empty.
    if (i >= 3) assert.ok(r.out[i].t - r.out[i - 1].t >= 12 - NS, `packet ${i}: never faster than 1500 bytes per 12 ms`);
  }
});

test('a packet longer than burst is dropped as such, never queued forever', () => {
  const r = runStage(rateStage, { rate: 1e6, burst: 1000, limit: '1s' }, [{ seq: 1, t: 0, payload: 2000 }, { seq: 2, t: 1 }]);
  assert.equal(r.drops.get(RATE_DROP.tooLong), 1);
  assert.deepEqual(r.out.map((o) => o.seq), [2]);
});

test('limit accepts a size or a time and refuses anything else with a message', () => {
  const create = (limit: string) => rateStage.create({ rate: 1e6, burst: 1500, limit }, { now: () => 0 } as never);
  assert.deepEqual((create('100kB') as RateStage).options.limit, { kind: 'bytes', bytes: 100_000 });
  assert.deepEqual((create('1500') as RateStage).options.limit, { kind: 'bytes', bytes: 1500 });
  assert.deepEqual((create('50ms') as RateStage).options.limit, { kind: 'time', ms: 50 });
  assert.throws(() => create('fast'), /rate limit=fast: expected a size such as 100kB .* or a time such as 50ms/);
  assert.throws(() => create('0ms'), /above 0/);
  assert.match(String(rateStage.checkArgs({ rate: 1e6, limit: 'fast' })), /limit=fast: expected a size/);
  assert.equal(rateStage.checkArgs({ rate: 1e6, limit: '20ms' }), null);
});
