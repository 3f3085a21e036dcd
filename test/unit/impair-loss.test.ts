/** transforms/loss.ts: seeded decisions repeat, rates within binomial intervals, Gilbert-Elliott bursts. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import lossStage, { LOSS_DROP, lossOptions } from '../../transforms/loss.js';
import { Packet } from '../../src/packet/packet.js';
import type { StageArgs } from '../../src/pipeline/stage.js';
import { resolvePipeline } from '../../src/pipeline/resolve.js';
import { standaloneContext } from '../../src/pipeline/standalone.js';
import { echoRequest } from '../helpers/packets.js';

/** Which of n packets were lost (true), through one reused Packet. */
function decisions(args: StageArgs, n: number): boolean[] {
  const stage = lossStage.create(args, standaloneContext());
  const p = new Packet(echoRequest());
  const lost: boolean[] = [];
  for (let i = 0; i < n; i++) {
    const r = stage.process(p);
    assert.ok(r === p || typeof r === 'string');
    lost.push(r !== p);
  }
  return lost;
}

/** Lengths of the runs of consecutive losses. */
function bursts(lost: boolean[]): number[] {
  const out: number[] = [];
  let run = 0;
  for (const l of lost) {
    if (l) run++;
    else if (run > 0) {
      out.push(run);
      run = 0;
    }
  }
  if (run > 0) out.push(run);
  return out;
}

const count = (xs: boolean[]) => xs.filter(Boolean).length;
const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
const Z99 = 2.5758; // two-sided 99% normal quantile

test('loss 5% with a seed drops the same packets on every run, and other packets with another seed', () => {
  const a = decisions({ p: 0.05, seed: 1234 }, 20_000);
  assert.deepEqual(decisions({ p: 0.05, seed: 1234 }, 20_000), a);
  assert.notDeepEqual(decisions({ p: 0.05, seed: 1235 }, 20_000), a);
});

test('loss 5% over 20,000 packets: the count of losses is within the 99% binomial interval, for several seeds', () => {
  const n = 20_000;
  const p = 0.05;
  const half = Z99 * Math.sqrt(n * p * (1 - p));
  for (const seed of [1, 2, 3, 4, 5]) {
    const lost = count(decisions({ p, seed }, n));
    assert.ok(Math.abs(lost - n * p) <= half, `seed ${seed}: ${lost} lost, interval ${n * p - half}..${n * p + half}`);
  }
});

test('loss 0 never drops, loss 100% always drops', () => {
  assert.equal(count(decisions({ p: 0, seed: 1 }, 5000)), 0);
  assert.equal(count(decisions({ p: 1, seed: 1 }, 5000)), 5000);
});

test('correlation keeps the loss rate and lengthens bursts to 1/((1-p)(1-c))', () => {
  const n = 200_000;
  const p = 0.05;
  const c = 0.5;
  const lost = decisions({ p, correlation: c, seed: 9 }, n);
  // A two-state chain with lag-1 correlation c: the variance of the count grows by (1+c)/(1-c).
  const half = Z99 * Math.sqrt((n * p * (1 - p) * (1 + c)) / (1 - c));
  assert.ok(Math.abs(count(lost) - n * p) <= half, `${count(lost)} lost`);
  const b = bursts(lost);
  const expected = 1 / ((1 - p) * (1 - c));
  assert.ok(Math.abs(mean(b) - expected) < 0.05, `mean burst ${mean(b)} vs ${expected}`);
});

test('Gilbert-Elliott (h=0, k=1): loss bursts have the model\'s mean 1/r and geometric shape, the rate p/(p+r)', () => {
  const n = 200_000;
  const p = 0.01;
  const r = 0.3;
  const lost = decisions({ p, model: 'gilbert', r, seed: 77 }, n);
  const b = bursts(lost);
  // Sojourns in the bad state: geometric with mean 1/r and deviation sqrt(1-r)/r.
  const se = Math.sqrt(1 - r) / r / Math.sqrt(b.length);
  assert.ok(Math.abs(mean(b) - 1 / r) < 4 * se, `mean burst ${mean(b)} vs ${1 / r} (se ${se})`);
  const ones = b.filter((x) => x === 1).length / b.length;
  assert.ok(Math.abs(ones - r) < 4 * Math.sqrt((r * (1 - r)) / b.length), `bursts of one: ${ones} vs ${r}`);
  const rate = count(lost) / n;
  assert.ok(Math.abs(rate - p / (p + r)) < 0.003, `loss rate ${rate} vs ${p / (p + r)}`);
});

test('Gilbert-Elliott with h and k: losses in each state are counted under their own reason', () => {
  const stage = lossStage.create({ p: 0.05, model: 'gilbert', r: 0.2, h: 0.5, k: 0.99, seed: 3 }, standaloneContext());
  const pkt = new Packet(echoRequest());
  const reasons = new Map<string, number>();
  const n = 100_000;
  for (let i = 0; i < n; i++) {
    const res = stage.process(pkt);
    if (typeof res === 'string') reasons.set(res, (reasons.get(res) ?? 0) + 1);
  }
  const bad = 0.05 / 0.25; // stationary share of the bad state
  const expectBad = n * bad * 0.5;
  const expectGood = n * (1 - bad) * 0.01;
  assert.ok(Math.abs((reasons.get(LOSS_DROP.bad) ?? 0) - expectBad) < 0.1 * expectBad, `bad-state losses ${reasons.get(LOSS_DROP.bad)}`);
  assert.ok(Math.abs((reasons.get(LOSS_DROP.good) ?? 0) - expectGood) < 0.15 * expectGood, `good-state losses ${reasons.get(LOSS_DROP.good)}`);
});

test('arguments of the other model are ignored with a warning; gilbert r defaults to 1 - p (netem)', () => {
  const warnings: string[] = [];
  const o = lossOptions({ p: 0.01, r: 0.2, k: 0.5 }, (m) => warnings.push(m));
  assert.deepEqual([o.model, o.r, o.k], ['random', 0, 1]);
  assert.match(warnings[0], /r=, k= apply to model=gilbert only/);
  const g = lossOptions({ p: 0.01, model: 'gilbert', correlation: 0.5 }, (m) => warnings.push(m));
  assert.deepEqual([g.r, g.correlation, g.h, g.k], [0.99, 0, 0, 1]);
  assert.match(warnings[1], /correlation= applies to model=random only/);
  assert.equal(count(decisions({ p: 0, r: 0, model: 'gilbert', seed: 1 }, 1000)), 0, 'p = r = 0: never lost');
  assert.match(String(lossStage.checkArgs({ p: 0.01, model: 'random', r: 0.3 })), /^r= applies to model=gilbert only/, 'pipeline text: refused');
  assert.equal(lossStage.checkArgs({ p: 0.01, model: 'gilbert', r: 0.3 }), null);
});

test('the pipeline text: loss 1% and loss model=gilbert p=1% r=30% resolve with their units', async () => {
  const [a] = await resolvePipeline('loss 1% seed=4');
  assert.deepEqual([a.args.p, a.args.seed, a.args.model], [0.01, 4, 'random']);
  const [g] = await resolvePipeline('loss model=gilbert p=1% r=30%');
  assert.deepEqual([g.args.p, g.args.r, g.args.model], [0.01, 0.3, 'gilbert']);
  await assert.rejects(resolvePipeline('loss 150%'), /expected a probability/);
});
