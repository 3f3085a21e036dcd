/**
 * duplicate: sends some packets twice, as a link that retransmits at layer 2 or a looped bridge does.
 *
 * Arguments:
 *   P        probability that a packet is duplicated (positional, required): `1%`, `0.01`
 *   seed=N   seed of the decisions (default: a fresh one, printed on exit)
 * In: any packets. Out: every packet; a duplicated one is preceded by its copy (ctx.emit), an identical
 * packet with its own buffer (what a stage after this one changes in one does not touch the
 * other). Nothing is dropped. The copy is the only allocation, made only for duplicated packets.
 * Works on either direction of a wire (netem only on egress).
 */
import { defineStage, type StageContext, type StageInstance, type StageResult } from '../src/pipeline/stage.js';
import type { Packet } from '../src/packet/packet.js';
import { SeededRandom, SEED_ARG, seedOf } from '../src/impair/random.js';
import { copyPacket } from '../src/impair/held.js';

export class DuplicateStage implements StageInstance {
  private readonly rng: SeededRandom;
  duplicated = 0;

  constructor(readonly probability: number, readonly seed: number, private readonly ctx: StageContext) {
    this.rng = new SeededRandom(seed, 'duplicate');
  }

  process(p: Packet): StageResult {
    if (this.rng.chance(this.probability)) {
      this.duplicated++;
      // The copy goes first through ctx.emit; both are the same bytes, so which one is "first" is moot.
      this.ctx.emit(copyPacket(p));
    }
    return p;
  }

  report(): string {
    return `${this.duplicated} duplicated, seed=${this.seed}`;
  }
}

const duplicateStage = defineStage({
  name: 'duplicate',
  recordsChanges: true,
  superPackets: true,
  keepsPackets: false,
  summary: 'send some packets twice (each copy has its own buffer)',
  help: [
    'Each packet is duplicated with probability P: its copy (own buffer, same bytes and timestamp) goes on',
    'right beside it. Nothing is dropped; the copies are counted as emitted. seed=N replays the same choices.',
    "Examples: 'duplicate 1%', 'duplicate 0.5% seed=3'",
  ].join('\n'),
  args: [{ name: 'p', type: 'probability', positional: true, required: true, description: 'probability that a packet is sent twice' }, SEED_ARG],
  create: (args, ctx) => new DuplicateStage(args.p as number, seedOf(args.seed), ctx),
});
export default duplicateStage;
