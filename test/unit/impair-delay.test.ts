/** transforms/delay.ts on the file clock: exact shifts, jitter statistics, order, memory bound, the end. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import delayStage, { DELAY_DROP, DelayStage } from '../../transforms/delay.js';
import { inputsAt, runStage } from './impair-run.js';

const NS = 1e-6; // one nanosecond in ms: timestamps are kept to the nanosecond

function close(actual: number, expected: number, what: string): void {
  assert.ok(Math.abs(actual - expected) <= NS, `${what}: ${actual} != ${expected}`);
}

/** Irregular arrival times: bursts and pauses, 1000 packets. */
function arrivals(n: number): number[] {
  const t: number[] = [];
  let now = 5.123456;
  for (let i = 0; i < n; i++) {
    now += i % 50 === 0 ? 37.5 : (i * 7919) % 13 === 0 ? 0 : ((i * 104729) % 997) / 1000;
    t.push(now);
  }
  return t;
}

test('delay 10ms: every packet leaves, in order, its timestamp moved by exactly 10 ms, bytes intact', () => {
  const times = arrivals(1000);
  for (const tick of [true, false]) {
    const r = runStage(delayStage, { time: 10 }, inputsAt(times), { tick });
    assert.equal(r.out.length, times.length);
    r.out.forEach((o, i) => {
      assert.equal(o.seq, i + 1, 'order kept');
      close(o.t, times[i] + 10, `packet ${i + 1}`);
      assert.equal(o.bytes.readUInt16BE(26), i + 1, 'bytes are the packet\'s own, not the reused buffer\'s');
      assert.equal(o.bytes[30], (i + 1) & 0xff);
    });
  }
});

test('delay 0: packets pass straight through with their own timestamps', () => {
  const times = arrivals(100);
  const r = runStage(delayStage, { time: 0 }, inputsAt(times));
  assert.equal(r.held, 0, 'nothing held');
  r.out.forEach((o, i) => close(o.t, times[i], `packet ${i + 1}`));
});

test('released packets follow their due time, whatever the driver\'s tick time', () => {
  // Ticks come late (a tick at 30 ms releases a packet due at 11 ms): its timestamp is still 11 ms.
  const r = runStage(delayStage, { time: 10 }, inputsAt([1, 30, 31]));
  assert.deepEqual(r.out.map((o) => o.seq), [1, 2, 3]);
  close(r.out[0].t, 11, 'first');
  close(r.out[2].t, 41, 'last, released by tick(Infinity)');
});

function jitterRun(dist: string, reorder: boolean, seed = 42, spacing = 1) {
  const n = 20_000;
  const times = Array.from({ length: n }, (_, i) => 1 + i * spacing);
  return { times, r: runStage(delayStage, { time: 10, jitter: 2, dist, reorder, seed }, inputsAt(times)) };
}

test('jitter keeps order by default: release times never go backwards, every packet leaves', () => {
  for (const dist of ['uniform', 'normal', 'pareto', 'paretonormal']) {
    const { times, r } = jitterRun(dist, false, 7, 0.5);
    assert.equal(r.out.length, times.length, dist);
    for (let i = 0; i < r.out.length; i++) {
      assert.equal(r.out[i].seq, i + 1, `${dist}: order`);
      if (i > 0) assert.ok(r.out[i].t >= r.out[i - 1].t, `${dist}: time never goes back`);
      assert.ok(r.out[i].t >= times[i], `${dist}: never before arrival`);
    }
  }
});

test('jitter with reorder=true reorders, and leaves in release-time order', () => {
  const { r } = jitterRun('normal', true, 7, 0.5);
  let inversions = 0;
  for (let i = 1; i < r.out.length; i++) {
    if (r.out[i].seq < r.out[i - 1].seq) inversions++;
    assert.ok(r.out[i].t >= r.out[i - 1].t, 'released in time order');
  }
  assert.ok(inversions > 1000, `jitter of 2 ms over 0.5 ms spacing reorders often (${inversions})`);
  assert.equal(new Set(r.out.map((o) => o.seq)).size, 20_000, 'each packet once');
});

test('reorder=true: a packet whose drawn delay is already over overtakes the queue at once', () => {
  // delay 0 ± 5 ms uniform: about half the draws fall below zero and leave on arrival; the rest wait.
  const times = Array.from({ length: 2000 }, (_, i) => i * 0.5);
  const r = runStage(delayStage, { time: 0, jitter: 5, dist: 'uniform', reorder: true, seed: 3 }, inputsAt(times));
  const atOnce = r.out.filter((o) => Math.abs(o.t - times[o.seq - 1]) <= NS).length;
  assert.equal(atOnce, 2000 - r.held, 'the ones not held left on arrival');
  assert.ok(atOnce > 900 && atOnce < 1100, `${atOnce} left at once`);
  const kept = runStage(delayStage, { time: 0, jitter: 5, dist: 'uniform', seed: 3 }, inputsAt(times));
  assert.deepEqual(kept.out.map((o) => o.seq), times.map((_, i) => i + 1), 'without reorder=true, order kept');
});

function stats(xs: number[]) {
  const mean = xs.reduce((a, b) => a + b, 0) / xs.length;
  const sd = Math.sqrt(xs.reduce((a, b) => a + (b - mean) ** 2, 0) / (xs.length - 1));
  return { mean, sd, min: Math.min(...xs), max: Math.max(...xs) };
}

test('jitter distributions: normal, pareto and paretonormal have mean TIME and deviation jitter; uniform spans TIME ± jitter', () => {
  // Packets 50 ms apart: jitter never meets order-keeping, so the delays are the drawn ones.
  for (const dist of ['normal', 'pareto', 'paretonormal', 'uniform']) {
    const { times, r } = jitterRun(dist, false, 11, 50);
    const delays = r.out.map((o, i) => o.t - times[i]);
    const s = stats(delays);
    // 20,000 draws: the mean's standard error is 2/sqrt(20000) = 0.014 ms; 5 of them is 0.07 ms.
    assert.ok(Math.abs(s.mean - 10) < 0.07, `${dist}: mean ${s.mean}`);
    if (dist === 'uniform') {
      assert.ok(s.min >= 8 && s.max <= 12, `uniform within 10 ± 2: ${s.min}..${s.max}`);
      assert.ok(Math.abs(s.sd - 2 / Math.sqrt(3)) < 0.03, `uniform sd ${s.sd}`);
    } else {
      // A pareto tail of shape 3 has no fourth moment: its sample deviation converges slowly.
      assert.ok(Math.abs(s.sd - 2) < (dist === 'normal' ? 0.05 : 0.3), `${dist}: sd ${s.sd}`);
    }
    if (dist === 'pareto') {
      // Pareto(1, 3) has its median at 2^(1/3), its mean at 1.5, its deviation sqrt(3/4); never below 1.
      const z = (x: number) => 10 + (2 * (x - 1.5)) / Math.sqrt(0.75);
      assert.ok(s.min >= z(1) - NS, `pareto never below its minimum: ${s.min}`);
      const sorted = [...delays].sort((a, b) => a - b);
      const median = sorted[sorted.length >> 1];
      assert.ok(Math.abs(median - z(2 ** (1 / 3))) < 0.03, `pareto median ${median} vs ${z(2 ** (1 / 3))}`);
    }
  }
});

test('correlation: successive jitters correlate by about the given amount, the deviation unchanged', () => {
  const n = 20_000;
  const times = Array.from({ length: n }, (_, i) => i * 50);
  const r = runStage(delayStage, { time: 10, jitter: 2, dist: 'normal', correlation: 0.75, seed: 5 }, inputsAt(times));
  const d = r.out.map((o, i) => o.t - times[i] - 10);
  const s = stats(d);
  let cov = 0;
  for (let i = 1; i < n; i++) cov += d[i] * d[i - 1];
  const rho = cov / (n - 1) / s.sd ** 2;
  assert.ok(Math.abs(rho - 0.75) < 0.03, `lag-1 correlation ${rho}`);
  assert.ok(Math.abs(s.sd - 2) < 0.15, `sd ${s.sd}`);
});

test('the same seed gives the same delays; another seed others', () => {
  const a = jitterRun('normal', false, 99, 50).r.out.map((o) => o.t);
  const b = jitterRun('normal', false, 99, 50).r.out.map((o) => o.t);
  const c = jitterRun('normal', false, 100, 50).r.out.map((o) => o.t);
  assert.deepEqual(a, b);
  assert.notDeepEqual(a, c);
});

test('limit: bytes held never exceed it; the overflow is dropped and counted; the rest leaves in order', () => {
  // 84-byte packets every 0.1 ms, held 100 ms: 1000 would be held at once, the limit allows 200.
  const times = Array.from({ length: 3000 }, (_, i) => i * 0.1);
  let peak = 0;
  const r = runStage(delayStage, { time: 100, limit: 200 * 84 }, inputsAt(times), {
    after: (s) => (peak = Math.max(peak, (s as DelayStage).queue.bytes)),
  });
  assert.ok(peak <= 200 * 84, `held ${peak} bytes`);
  assert.equal(peak, 200 * 84, 'the limit is used in full');
  const dropped = r.drops.get(DELAY_DROP.full) ?? 0;
  assert.ok(dropped > 2000, `dropped ${dropped}`);
  assert.equal(r.out.length + dropped, 3000, 'every packet either leaves or is counted');
  for (let i = 1; i < r.out.length; i++) assert.ok(r.out[i].seq > r.out[i - 1].seq);
});

test('tick(Infinity) releases everything held, in order, at the times they were due', () => {
  const times = [0, 0.5, 1, 1.5];
  const r = runStage(delayStage, { time: 1000 }, inputsAt(times));
  assert.equal(r.held, 4);
  assert.deepEqual(r.out.map((o) => o.seq), [1, 2, 3, 4]);
  r.out.forEach((o, i) => close(o.t, times[i] + 1000, `packet ${i + 1}`));
  assert.equal((r.stage as DelayStage).nextDue(), Infinity, 'idle afterwards');
});

test('nextDue is the earliest release time, Infinity when idle', () => {
  const r = runStage(delayStage, { time: 10 }, []);
  assert.equal(r.stage.nextDue!(), Infinity);
});
