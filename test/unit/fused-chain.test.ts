/**
 * src/pipeline/fused-chain.ts: a chain fused into a function of its own does exactly what the engine's loop
 * does: the same packets out in the same order, the same counters and drop reasons, stages that throw, hold,
 * exit, emit, replace the packet, or turn out to be asynchronous halfway through a run.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Engine } from '../../src/pipeline/engine.js';
import { fuseChain, MAX_FUSED_STAGES } from '../../src/pipeline/fused-chain.js';
import { Packet } from '../../src/packet/packet.js';
import { EXIT, HELD, type PrimitiveStageDefinition, type StageContext, type StageResult } from '../../src/pipeline/stage.js';
import type { ResolvedStage } from '../../src/pipeline/resolve.js';
import { withSeed, type Random } from './seeded-random.js';

const KINDS = ['pass', 'filter', 'null', 'held', 'exit', 'throw', 'replace', 'emit'] as const;
type Kind = (typeof KINDS)[number];

/** A stage whose answer for packet n depends on its kind and its modulus only, so two engines see the same. */
function stage(k: number, kind: Kind, every: number): ResolvedStage {
  const label = `s${k}-${kind}`;
  const hit = (p: Packet) => p.data[0] % every === 0;
  const def: PrimitiveStageDefinition = {
    name: label,
    summary: label,
    args: [],
    create: (_args, ctx: StageContext) => ({
      process: (p: Packet): StageResult => {
        if (!hit(p)) return p;
        switch (kind) {
          case 'pass':
            return p;
          case 'filter':
            return `not a multiple of ${every}`;
          case 'null':
            return null;
          case 'held':
            return HELD;
          case 'exit':
            return EXIT;
          case 'throw':
            throw new Error(`boom in ${label}`);
          case 'replace': {
            const q = new Packet(Buffer.from(p.data));
            q.data[1] = (q.data[1] + 1) & 0xff;
            return q;
          }
          case 'emit': {
            const extra = new Packet(Buffer.from(p.data));
            extra.data[0] = (extra.data[0] + 1) & 0xff;
            ctx.emit(extra);
            return p;
          }
        }
      },
    }),
  };
  return { def, args: {}, label };
}

function randomChain(rng: Random, length: number): ResolvedStage[] {
  return Array.from({ length }, (_, k) => stage(k, KINDS[rng.int(KINDS.length)], rng.range(2, 9)));
}

/** Runs packets 0..count-1 (first byte n, second byte 0) through an engine; what came out, and every counter. */
function run(stages: ResolvedStage[], fuse: boolean, count: number): { out: string[]; stats: unknown[]; warnings: string[] } {
  const out: string[] = [];
  const warnings: string[] = [];
  const engine = new Engine(stages, { sink: (p) => out.push(`${p.data[0]}.${p.data[1]}`), warn: (m) => warnings.push(m), fuse });
  for (let n = 0; n < count; n++) {
    const b = Buffer.alloc(4);
    b[0] = n & 0xff;
    engine.push(new Packet(b));
  }
  const stats = engine.stats.map((s) => ({ name: s.name, in: s.packetsIn, out: s.packetsOut, dropped: s.dropped, held: s.held, emitted: s.emitted, reasons: [...s.reasons] }));
  return { out, stats, warnings };
}

test('fused and looped chains agree on 300 random chains of 1 to 30 stages: output, order, counters, warnings', () =>
  withSeed((rng) => {
    for (let i = 0; i < 300; i++) {
      const stages = randomChain(rng, rng.range(1, 30));
      const looped = run(stages, false, 600);
      const fused = run(stages, true, 600);
      assert.deepEqual(fused, looped, `chain ${stages.map((s) => s.label).join(' | ')}`);
    }
  }));

test('every chain up to MAX_FUSED_STAGES stages is fused; a longer one keeps the loop and still runs', () => {
  const host = { runFrom: () => {}, stageError: () => {}, afterSync: () => {} };
  const chainOf = (n: number) => {
    const engine = new Engine(Array.from({ length: n }, (_, k) => stage(k, 'pass', 2)), { sink: () => {} });
    return engine.pipelines[0];
  };
  assert.equal(typeof fuseChain(host, chainOf(MAX_FUSED_STAGES)), 'function');
  assert.equal(fuseChain(host, chainOf(MAX_FUSED_STAGES + 1)), null);
  const long = Array.from({ length: MAX_FUSED_STAGES + 6 }, (_, k) => stage(k, 'filter', 3));
  assert.deepEqual(run(long, true, 200), run(long, false, 200));
});

test('a stage that turns asynchronous halfway through a fused run: later packets queue in front of it, in order, none lost', async () => {
  let calls = 0;
  const slowAfter = 50;
  const def: PrimitiveStageDefinition = {
    name: 'sometimes-async',
    summary: 'sometimes-async',
    args: [],
    create: () => ({
      process: (p: Packet) => (++calls > slowAfter ? new Promise<StageResult>((r) => setImmediate(() => r(p))) : p),
    }),
  };
  const stages: ResolvedStage[] = [stage(0, 'filter', 7), { def, args: {}, label: 'sometimes-async' }, stage(2, 'replace', 5)];
  const out: number[] = [];
  const engine = new Engine(stages, { sink: (p) => out.push(p.data[0]), queueLength: 1000 });
  for (let n = 0; n < 200; n++) {
    const b = Buffer.alloc(4);
    b[0] = n;
    engine.push(new Packet(b));
  }
  await engine.close();
  const expected = Array.from({ length: 200 }, (_, n) => n).filter((n) => n % 7 !== 0);
  assert.deepEqual(out, expected);
  const [, gate, last] = engine.stats;
  assert.deepEqual([gate.packetsIn, gate.packetsOut, last.packetsIn, last.packetsOut], [expected.length, expected.length, expected.length, expected.length]);
});
