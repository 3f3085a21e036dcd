/** transforms/duplicate.ts and transforms/reorder.ts: the sequences they produce, seeded and bounded. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import duplicateStage from '../../transforms/duplicate.js';
import reorderStage, { REORDER_DROP, ReorderStage } from '../../transforms/reorder.js';
import { SeededRandom } from '../../src/impair/random.js';
import { inputsAt, runStage } from './impair-run.js';

const NS = 1e-6;
const evenly = (n: number, spacing = 1) => inputsAt(Array.from({ length: n }, (_, i) => 1 + i * spacing));

test('duplicate 100%: every packet twice, side by side; 0%: once', () => {
  const all = runStage(duplicateStage, { p: 1, seed: 1 }, evenly(50));
  assert.deepEqual(all.out.map((o) => o.seq), Array.from({ length: 50 }, (_, i) => [i + 1, i + 1]).flat());
  for (let i = 0; i < 100; i += 2) {
    assert.deepEqual(all.out[i].bytes, all.out[i + 1].bytes, 'the same bytes');
    assert.equal(all.out[i].t, all.out[i + 1].t, 'the same timestamp');
  }
  const none = runStage(duplicateStage, { p: 0, seed: 1 }, evenly(50));
  assert.deepEqual(none.out.map((o) => o.seq), Array.from({ length: 50 }, (_, i) => i + 1));
});

test('duplicate 10%: each packet once or twice in a row, in order; the count within the 99% binomial interval; same seed same copies', () => {
  const n = 20_000;
  const run = (seed: number) => runStage(duplicateStage, { p: 0.1, seed }, evenly(n)).out.map((o) => o.seq);
  const seqs = run(21);
  let copies = 0;
  let expect = 1;
  for (let i = 0; i < seqs.length; i++) {
    assert.equal(seqs[i], expect, `position ${i}`);
    if (seqs[i + 1] === seqs[i]) {
      copies++;
      i++;
    }
    expect++;
  }
  assert.equal(expect, n + 1, 'every packet present');
  const half = 2.5758 * Math.sqrt(n * 0.1 * 0.9);
  assert.ok(Math.abs(copies - n * 0.1) <= half, `${copies} duplicated`);
  assert.deepEqual(run(21), seqs);
  assert.notDeepEqual(run(22), seqs);
});

test('duplicate: the copy has its own buffer (a change to one does not reach the other)', () => {
  const ctx = { emit: (p: unknown) => copies.push(p as never) } as never;
  const copies: { data: Buffer }[] = [];
  const stage = duplicateStage.create({ p: 1, seed: 1 }, ctx);
  const original = { data: Buffer.from([1, 2, 3]), sec: 0, nsec: 0, version: 0, l3: 0, l4: 0, end: 3, proto: 0, dirty: 0, ipSumAdj: 0, l4SumAdj: 0 };
  assert.equal(stage.process(original as never), original);
  original.data[0] = 99;
  assert.deepEqual([...copies[0].data], [1, 2, 3]);
});

/**
 * Where each packet should come out, from the stage's random stream (the stage's generator is the public
 * SeededRandom with the stream name 'reorder'): a packet not chosen leaves at its own arrival (key i); a
 * chosen one leaves once the packet `gap` places behind it has arrived: after it (i+gap+0.5) if that one
 * passes, before what follows (i+gap-0.5) if that one is held too; never overtaken enough: at the end.
 */
function expectedReorder(n: number, p: number, gap: number, seed: number): number[] {
  const rng = new SeededRandom(seed, 'reorder');
  const chosen = Array.from({ length: n + 1 }, (_, i) => i > 0 && rng.chance(p));
  const key = (i: number) => {
    if (!chosen[i]) return i;
    const j = i + gap;
    if (j > n) return n + 1 + i;
    return chosen[j] ? j - 0.5 : j + 0.5;
  };
  return Array.from({ length: n }, (_, k) => k + 1).sort((a, b) => key(a) - key(b) || a - b);
}

test('reorder P gap=N: the chosen packets are overtaken by exactly the N behind them', () => {
  for (const [p, gap, seed] of [[0.25, 1, 3], [0.1, 3, 4], [0.5, 2, 5], [1, 1, 6]] as const) {
    const n = 2000;
    const r = runStage(reorderStage, { p, gap, wait: 1e9, limit: 1 << 20, seed }, evenly(n));
    assert.deepEqual(r.out.map((o) => o.seq), expectedReorder(n, p, gap, seed), `reorder ${p} gap=${gap}`);
    for (let i = 1; i < r.out.length; i++) assert.ok(r.out[i].t >= r.out[i - 1].t, 'timestamps follow the output order');
  }
});

test('reorder 0% changes nothing; the same seed gives the same order', () => {
  const r0 = runStage(reorderStage, { p: 0, gap: 1, wait: 100, limit: 1 << 20, seed: 1 }, evenly(500));
  assert.deepEqual(r0.out.map((o) => o.seq), Array.from({ length: 500 }, (_, i) => i + 1));
  assert.equal(r0.held, 0);
  const a = runStage(reorderStage, { p: 0.3, gap: 2, wait: 100, limit: 1 << 20, seed: 8 }, evenly(500)).out.map((o) => o.seq);
  const b = runStage(reorderStage, { p: 0.3, gap: 2, wait: 100, limit: 1 << 20, seed: 8 }, evenly(500)).out.map((o) => o.seq);
  assert.deepEqual(a, b);
});

test('reorder wait=TIME: a held packet with nobody behind it leaves when its wait is over, stamped then', () => {
  // Packets 1 s apart, a 10 ms wait: every chosen packet leaves 10 ms after it came, before the next one.
  const r = runStage(reorderStage, { p: 0.5, gap: 1, wait: 10, limit: 1 << 20, seed: 2 }, evenly(200, 1000));
  assert.deepEqual(r.out.map((o) => o.seq), Array.from({ length: 200 }, (_, i) => i + 1), 'nothing overtakes');
  const delayed = r.out.filter((o) => Math.abs(o.t - (1 + (o.seq - 1) * 1000) - 10) <= NS).length;
  const onTime = r.out.filter((o) => Math.abs(o.t - (1 + (o.seq - 1) * 1000)) <= NS).length;
  assert.equal(delayed + onTime, 200);
  assert.equal(delayed, r.held, 'the held ones, 10 ms late');
  assert.ok(delayed > 60);
});

test('reorder limit: bytes held never exceed it; a chosen packet past it is dropped and counted', () => {
  let peak = 0;
  const r = runStage(reorderStage, { p: 0.9, gap: 50, wait: 1e9, limit: 10 * 84, seed: 3 }, evenly(2000), {
    after: (s) => (peak = Math.max(peak, (s as ReorderStage).queue.bytes)),
  });
  assert.ok(peak <= 840, `held ${peak} bytes`);
  const dropped = r.drops.get(REORDER_DROP.full) ?? 0;
  assert.ok(dropped > 1000);
  assert.equal(r.out.length + dropped, 2000);
});
