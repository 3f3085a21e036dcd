/** src/pipeline/engine.ts: counters, errors, emit, HELD, async stages behind a bounded queue, close. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { setTimeout as delay } from 'node:timers/promises';
import { Engine, ENGINE_DROP } from '../../src/pipeline/engine.js';
import { Packet } from '../../src/packet/packet.js';
import { HELD, type PrimitiveStageDefinition, type StageContext, type StageInstance, type StageResult, type StageStats } from '../../src/pipeline/stage.js';
import type { ResolvedStage } from '../../src/pipeline/resolve.js';
import { resolvePipeline } from '../../src/pipeline/resolve.js';
import { echoRequest } from '../helpers/packets.js';

/** A resolved stage from a per-packet function (and optional extra instance methods). */
function stage(label: string, process: (p: Packet, ctx: StageContext) => StageResult | Promise<StageResult>, extra: Partial<StageInstance> = {}): ResolvedStage {
  const def: PrimitiveStageDefinition = {
    name: label,
    summary: label,
    args: [],
    create: (_args, ctx) => ({ ...extra, process: (p) => process(p, ctx) }),
  };
  return { def, args: {}, label };
}

const pkt = (n: number) => new Packet(Buffer.alloc(n, n & 0xff));

function assertBalanced(stats: StageStats[]): void {
  for (const s of stats) assert.equal(s.packetsIn, s.packetsOut + s.dropped + s.held, `${s.name}: in ${s.packetsIn} = out ${s.packetsOut} + dropped ${s.dropped} + held ${s.held}`);
}

test('counters: in, out, dropped by reason, filtered, held; the sink gets what passes every stage', async () => {
  const out: number[] = [];
  const engine = new Engine(
    [
      stage('even', (p) => (p.data.length % 2 === 0 ? p : 'odd length')),
      stage('mod', (p) => (p.data.length % 10 === 0 ? null : p.data.length % 10 === 4 ? HELD : p.data.length % 10 === 6 ? undefined : p)),
      stage('pass', (p) => p),
    ],
    { sink: (p) => out.push(p.data.length), warn: () => assert.fail('no warnings') },
  );
  for (let n = 1; n <= 100; n++) engine.push(pkt(n));
  const [even, mod, pass] = engine.stats;
  assert.deepEqual([even.name, even.packetsIn, even.packetsOut, even.dropped], ['even', 100, 50, 50]);
  assert.deepEqual([...even.reasons], [['odd length', 50]]);
  assert.deepEqual([mod.packetsIn, mod.packetsOut, mod.dropped, mod.held], [50, 20, 20, 10]);
  assert.deepEqual([...mod.reasons], [[ENGINE_DROP.filtered, 20]]);
  assert.deepEqual([pass.packetsIn, pass.packetsOut, pass.dropped], [20, 20, 0]);
  assert.deepEqual(
    out,
    Array.from({ length: 100 }, (_, i) => i + 1).filter((n) => n % 2 === 0 && ![0, 4, 6].includes(n % 10)),
  );
  assertBalanced(engine.stats);
  assert.deepEqual(await engine.close(), []);
});

test('a stage that throws: packet dropped as "error: ...", reported once per stage, the pipeline goes on', async () => {
  const warnings: string[] = [];
  const out: Packet[] = [];
  const engine = new Engine(
    [
      stage('thrower', (p) => {
        if (p.data.length % 3 === 0) throw new Error('boom');
        if (p.data.length % 5 === 0) throw 'a string';
        return p;
      }),
      stage('after', (p) => p),
    ],
    { sink: (p) => out.push(p), warn: (m) => warnings.push(m) },
  );
  for (let n = 1; n <= 30; n++) engine.push(pkt(n));
  const [thrower, afterStage] = engine.stats;
  assert.equal(thrower.reasons.get('error: boom'), 10);
  assert.equal(thrower.reasons.get('error: a string'), 4);
  assert.equal(thrower.dropped, 14);
  assert.equal(afterStage.packetsIn, 16);
  assert.equal(out.length, 16);
  assert.equal(warnings.length, 1, warnings.join('\n'));
  assert.match(warnings[0], /^stage 'thrower' threw: boom; the packet was dropped/);
  assertBalanced(engine.stats);
});

test('ctx.warn reports each distinct message once, with the stage label', () => {
  const warnings: string[] = [];
  const engine = new Engine([stage('w', (p, ctx) => (ctx.warn(`len ${p.data.length % 2}`), p))], { sink: () => {}, warn: (m) => warnings.push(m) });
  for (let n = 0; n < 10; n++) engine.push(pkt(n));
  assert.deepEqual(warnings, ["stage 'w': len 0", "stage 'w': len 1"]);
});

test('ctx.emit sends extra packets downstream first, counted as emitted, not as out', () => {
  const seen: string[] = [];
  const engine = new Engine(
    [
      stage('split', (p, ctx) => {
        // A stage that passes on the packet in two pieces: the first emitted, the last returned.
        ctx.emit(new Packet(p.data.subarray(0, 1)));
        return new Packet(p.data.subarray(1));
      }),
      stage('tag', (p) => (seen.push(`tag ${p.data.length}`), p)),
      stage('last', (p, ctx) => {
        if (p.data.length === 1) ctx.emit(new Packet(Buffer.alloc(99)));
        return p;
      }),
    ],
    { sink: (p) => seen.push(`sink ${p.data.length}`) },
  );
  engine.push(pkt(5));
  assert.deepEqual(seen, ['tag 1', 'sink 99', 'sink 1', 'tag 4', 'sink 4']);
  const [split, tag, last] = engine.stats;
  assert.deepEqual([split.packetsIn, split.packetsOut, split.emitted], [1, 1, 1]);
  assert.deepEqual([tag.packetsIn, tag.packetsOut, tag.emitted], [2, 2, 0]);
  assert.deepEqual([last.packetsIn, last.packetsOut, last.emitted], [2, 2, 1]);
  assertBalanced(engine.stats);
});

test('HELD then emit later: a stage that keeps packets and releases them together', () => {
  const out: number[] = [];
  let kept: Packet[] = [];
  const engine = new Engine(
    [
      stage('batcher', (p, ctx) => {
        kept.push(p);
        if (kept.length < 3) return HELD;
        const all = kept;
        kept = [];
        all.slice(0, -1).forEach((k) => ctx.emit(k));
        return all[all.length - 1];
      }),
    ],
    { sink: (p) => out.push(p.data.length) },
  );
  for (let n = 1; n <= 7; n++) engine.push(pkt(n));
  assert.deepEqual(out, [1, 2, 3, 4, 5, 6]);
  const [s] = engine.stats;
  assert.deepEqual([s.packetsIn, s.packetsOut, s.held, s.emitted, s.dropped], [7, 2, 5, 4, 0]);
});

test('an async stage gets a bounded queue: 1 in flight + 8 queued pass, the rest are counted as queue full', async () => {
  const out: number[] = [];
  const engine = new Engine(
    [
      stage('first', (p) => p),
      stage('slow', async (p) => {
        await delay(1);
        return p;
      }),
      stage('after', (p) => p),
    ],
    { sink: (p) => out.push(p.data.length), queueLength: 8, warn: () => {} },
  );
  for (let n = 1; n <= 100; n++) engine.push(pkt(n));
  const [, slow, afterStage] = engine.stats;
  assert.equal(out.length, 0, 'nothing has settled yet');
  assert.equal(slow.packetsIn, 100);
  assert.equal(slow.reasons.get(ENGINE_DROP.queueFull), 91);
  const errors = await engine.close();
  assert.deepEqual(errors, []);
  assert.deepEqual(out, [1, 2, 3, 4, 5, 6, 7, 8, 9], 'close() drained the queue, in order');
  assert.equal(slow.packetsOut, 9);
  assert.equal(afterStage.packetsIn, 9);
  assertBalanced(engine.stats);
});

test('an async stage fed one packet at a time: results pass, drop by reason, or throw', async () => {
  const out: number[] = [];
  const warnings: string[] = [];
  const engine = new Engine(
    [
      stage('async', async (p) => {
        await delay(0);
        if (p.data.length === 3) throw new Error('async boom');
        return p.data.length % 2 ? p : 'even';
      }),
    ],
    { sink: (p) => out.push(p.data.length), queueLength: 2, warn: (m) => warnings.push(m) },
  );
  const [s] = engine.stats;
  for (let n = 1; n <= 10; n++) {
    engine.push(pkt(n));
    // Wait until this packet has settled, so the queue never fills whatever the machine's load.
    while (s.packetsOut + s.dropped < n) await delay(1);
  }
  await engine.close();
  assert.deepEqual(out, [1, 5, 7, 9]);
  assert.equal(s.reasons.get('even'), 5);
  assert.equal(s.reasons.get('error: async boom'), 1);
  assert.equal(s.reasons.get(ENGINE_DROP.queueFull), undefined);
  assert.equal(warnings.length, 1);
  assertBalanced(engine.stats);
});

test('a stage whose error messages all differ: one report, at most 8 reasons, the rest lumped together', () => {
  const warnings: string[] = [];
  const engine = new Engine(
    [
      stage('numbered', (p) => {
        throw new Error(`packet ${p.data.length} is bad`);
      }),
    ],
    { sink: () => assert.fail('nothing passes'), warn: (m) => warnings.push(m) },
  );
  for (let n = 1; n <= 50; n++) engine.push(pkt(n));
  const [s] = engine.stats;
  assert.equal(warnings.length, 1);
  assert.equal(s.dropped, 50);
  assert.equal(s.reasons.size, 9);
  assert.equal(s.reasons.get('error: (other messages)'), 42);
  assert.equal(s.reasons.get('error: packet 1 is bad'), 1);
  assertBalanced(engine.stats);
});

test('close() with a stage that never settles returns after drainMs and counts the queued and in-flight packets as dropped', async () => {
  let closed = 0;
  const engine = new Engine(
    [
      stage('stuck', () => new Promise<StageResult>(() => {}), {
        close: () => {
          closed++;
        },
      }),
    ],
    { sink: () => assert.fail('nothing passes'), queueLength: 8, warn: () => {} },
  );
  for (let n = 1; n <= 20; n++) engine.push(pkt(n));
  const guard = delay(10_000, undefined, { ref: false }).then(() => 'close() did not return');
  assert.deepEqual(await Promise.race([engine.close(50), guard]), []);
  const [s] = engine.stats;
  assert.equal(s.reasons.get(ENGINE_DROP.queueFull), 11);
  // 8 waiting in the queue and the one the stage is stuck on.
  assert.equal(s.reasons.get('stopped before the stage got to it'), 9);
  assert.equal(closed, 1, 'the stage was still closed');
});

test('close() with a slow stage: every packet is accounted for (in = out + dropped + held)', async () => {
  const engine = new Engine(
    [
      stage('slow', async (p) => {
        await delay(40);
        return p;
      }),
    ],
    { sink: () => {}, queueLength: 8, warn: () => {} },
  );
  for (let n = 1; n <= 20; n++) engine.push(pkt(n));
  await engine.close(60);
  await delay(400);
  assertBalanced(engine.stats);
});

test('close() with a slow stage: the stage is not called again after its close()', async () => {
  let closed = false;
  const callsAfterClose: number[] = [];
  const engine = new Engine(
    [
      stage(
        'slow',
        async (p) => {
          if (closed) callsAfterClose.push(p.data.length);
          await delay(40);
          return p;
        },
        {
          close: () => {
            closed = true;
          },
        },
      ),
    ],
    { sink: () => {}, queueLength: 8, warn: () => {} },
  );
  for (let n = 1; n <= 20; n++) engine.push(pkt(n));
  await engine.close(60);
  await delay(400);
  assert.deepEqual(callsAfterClose, [], 'process() called on packets already counted as dropped, after close()');
});

test('ctx.fail stops the pipeline once; endBatch flushes every stage and turns a flush error into a failure', () => {
  const failures: Error[] = [];
  const flushed: string[] = [];
  const engine = new Engine(
    [
      stage('failer', (p, ctx) => (ctx.fail(new Error(`stop ${p.data.length}`)), p), { flush: () => void flushed.push('failer') }),
      stage('flusher', (p) => p, {
        flush: () => {
          flushed.push('flusher');
          throw new Error('flush failed');
        },
      }),
    ],
    { sink: () => {}, onFail: (e) => failures.push(e) },
  );
  engine.push(pkt(1));
  engine.push(pkt(2));
  assert.deepEqual(
    failures.map((e) => e.message),
    ['stop 1'],
  );
  assert.equal(engine.failure?.message, 'stop 1');
  engine.endBatch();
  assert.deepEqual(flushed, ['failer', 'flusher']);
  assert.equal(failures.length, 1, 'the first failure stays the only one');

  const other = new Engine(
    [
      stage('flusher', (p) => p, {
        flush: () => {
          throw new Error('flush failed');
        },
      }),
    ],
    { sink: () => {}, onFail: (e) => failures.push(e) },
  );
  other.endBatch();
  assert.equal(other.failure?.message, 'flush failed');
});

test('close() still closes a stage whose final flush throws, and returns the error', async () => {
  const closed: string[] = [];
  const engine = new Engine(
    [
      stage('flusher', (p) => p, {
        flush: () => {
          throw new Error('flush failed');
        },
        close: () => void closed.push('flusher'),
      }),
      stage('b', (p) => p, { close: () => void closed.push('b') }),
    ],
    { sink: () => {} },
  );
  const errors = await engine.close();
  assert.deepEqual(
    errors.map((e) => e.message),
    ['flush failed'],
  );
  assert.deepEqual(closed, ['flusher', 'b'], 'every stage gets its close, as close() promises');
});

test('every stage is closed even when one close() throws', async () => {
  const closed: string[] = [];
  const engine = new Engine(
    [
      stage('a', (p) => p, {
        close: () => {
          closed.push('a');
          throw new Error('a failed');
        },
      }),
      stage('b', (p) => p, { close: () => void closed.push('b') }),
    ],
    { sink: () => {} },
  );
  const errors = await engine.close();
  assert.deepEqual(closed, ['a', 'b']);
  assert.deepEqual(
    errors.map((e) => e.message),
    ['a failed'],
  );
});

test('the engine with a resolved pipeline: labels, and drops counted where they happen', async () => {
  const stages = await resolvePipeline('parse | icmp-echo | checksum');
  const out: Packet[] = [];
  const engine = new Engine(stages, { sink: (p) => out.push(p) });
  engine.push(new Packet(echoRequest()));
  engine.push(new Packet(Buffer.alloc(3)));
  engine.push(new Packet(echoRequest({ type: 0 })));
  await engine.close();
  assert.equal(out.length, 1);
  assert.deepEqual(
    engine.stats.map((s) => [s.name, s.packetsIn, s.packetsOut, s.dropped]),
    [
      ['parse', 3, 2, 1],
      ['icmp-echo/reassemble', 2, 2, 0],
      ['icmp-echo/filter-icmp-echo', 2, 1, 1],
      ['icmp-echo/swap-addrs', 1, 1, 0],
      ['icmp-echo/to-reply', 1, 1, 0],
      ['checksum', 1, 1, 0],
    ],
  );
  assert.deepEqual([...engine.stats[2].reasons], [['not an ICMP echo request', 1]]);
});
