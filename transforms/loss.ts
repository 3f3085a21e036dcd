/**
 * loss: drops packets at random, independently, with correlation, or in bursts (Gilbert-Elliott).
 *
 * Arguments:
 *   P               loss probability (positional, required): `1%`, `0.01`. With model=gilbert: the
 *                   probability of going from the good state to the bad one, per packet.
 *   model=M         random (default) or gilbert
 *   correlation=P   random model: how much each decision follows the previous one (0..1, default 0). The
 *                   decisions form a two-state Markov chain whose loss rate stays P and whose successive
 *                   decisions correlate by exactly this much (netem's correlation lowers the loss rate it
 *                   gives; this one does not). Mean burst of losses: 1 / ((1-P)(1-correlation)).
 *   r=P             gilbert: probability of going from bad back to good, per packet (default 1 - p, as netem)
 *   h=P             gilbert: probability that a packet gets through in the bad state (default 0)
 *   k=P             gilbert: probability that a packet gets through in the good state (default 1)
 *   seed=N          seed of the decisions (default: a fresh one, printed on exit)
 * Gilbert-Elliott as in the literature (h and k are the chances of getting through): netem's
 * `loss gemodel p r 1-h 1-k` is `loss model=gilbert p=p r=r h=h k=k`. Each packet first moves the chain,
 * then is lost with the new state's loss chance (1-k good, 1-h bad). With h=0 and k=1 the loss bursts are
 * the bad state's sojourns: mean length 1/r, loss rate p/(p+r).
 * Arguments of the other model (r/h/k with random, correlation with gilbert) are refused in pipeline text;
 * given through the library they are ignored, with a warning.
 * In: any packets. Out: those not lost, unchanged. Drops are counted as "lost (random)", or
 * "lost (gilbert bad state)" / "lost (gilbert good state)". Works on either direction of a wire.
 */
import { defineStage, type StageInstance, type StageResult } from '../src/pipeline/stage.js';
import type { Packet } from '../src/packet/packet.js';
import { SeededRandom, SEED_ARG, seedOf } from '../src/impair/random.js';

export const LOSS_DROP = { random: 'lost (random)', bad: 'lost (gilbert bad state)', good: 'lost (gilbert good state)' } as const;

export interface LossOptions {
  model: 'random' | 'gilbert';
  p: number;
  correlation: number;
  r: number;
  h: number;
  k: number;
  seed: number;
}

export class LossStage implements StageInstance {
  private readonly rng: SeededRandom;
  /** random model: loss chance after a loss and after a packet that got through. */
  private readonly afterLoss: number;
  private readonly afterPass: number;
  private lastLost = false;
  /** gilbert model: in the bad state. */
  private bad = false;

  constructor(readonly options: LossOptions) {
    this.rng = new SeededRandom(options.seed, 'loss');
    const { p, correlation: c } = options;
    this.afterLoss = p + c * (1 - p);
    this.afterPass = p * (1 - c);
    // Start in the chain's stationary state, so the first packets see the configured rate too.
    this.lastLost = this.rng.chance(p);
    // p = r = 0: the chain never moves; it starts (and stays) good.
    this.bad = options.model === 'gilbert' && options.p + options.r > 0 && this.rng.chance(options.p / (options.p + options.r));
  }

  process(p: Packet): StageResult {
    const rng = this.rng;
    const o = this.options;
    if (o.model === 'random') {
      this.lastLost = rng.chance(this.lastLost ? this.afterLoss : this.afterPass);
      return this.lastLost ? LOSS_DROP.random : p;
    }
    if (this.bad) {
      if (rng.chance(o.r)) this.bad = false;
    } else if (rng.chance(o.p)) this.bad = true;
    if (this.bad) return rng.chance(o.h) ? p : LOSS_DROP.bad;
    return rng.chance(o.k) ? p : LOSS_DROP.good;
  }

  report(): string {
    return `seed=${this.options.seed}`;
  }
}

/**
 * The options from the arguments (each one's range is checked before). Arguments of the other model are
 * ignored, with a warning (`warn`), not refused: the stage still does what its model says.
 */
export function lossOptions(args: Record<string, unknown>, warn: (message: string) => void = () => {}): LossOptions {
  const model = (args.model as 'random' | 'gilbert' | undefined) ?? 'random';
  const given = (name: string) => args[name] !== undefined;
  if (model === 'random') {
    const stray = ['r', 'h', 'k'].filter(given);
    if (stray.length) warn(`${stray.map((n) => `${n}=`).join(', ')} ${stray.length > 1 ? 'apply' : 'applies'} to model=gilbert only (loss model=gilbert p=1% r=30%); ignored`);
  } else if (given('correlation') && (args.correlation as number) !== 0) {
    warn('correlation= applies to model=random only (the gilbert model has its own memory); ignored');
  }
  const p = args.p as number;
  return {
    model,
    p,
    correlation: model === 'random' ? ((args.correlation as number | undefined) ?? 0) : 0,
    // netem's default for gemodel without r: 1 - p.
    r: model === 'gilbert' ? ((args.r as number | undefined) ?? 1 - p) : 0,
    h: model === 'gilbert' ? ((args.h as number | undefined) ?? 0) : 0,
    k: model === 'gilbert' ? ((args.k as number | undefined) ?? 1) : 1,
    seed: seedOf(args.seed),
  };
}

const lossStage = defineStage({
  name: 'loss',
  recordsChanges: true,
  superPackets: true,
  keepsPackets: false,
  summary: 'drop packets at random (independent, correlated, or Gilbert-Elliott bursts)',
  help: [
    'loss P: each packet is lost with probability P ("lost (random)"); correlation=C makes losses come in',
    'bursts while keeping the rate P (mean burst 1/((1-P)(1-C))). loss model=gilbert p=P r=R [h=H] [k=K]:',
    'Gilbert-Elliott; p good->bad, r bad->good, h/k the chance to get through in bad/good (defaults 0/1);',
    "netem's 'loss gemodel p r 1-h 1-k'. Mean loss burst 1/r, loss rate p/(p+r) with the defaults.",
    "seed=N replays the same decisions. Examples: 'loss 1%', 'loss 5% correlation=25% seed=1', 'loss model=gilbert p=1% r=30%'",
  ].join('\n'),
  args: [
    { name: 'p', type: 'probability', positional: true, required: true, description: 'loss probability (gilbert: chance of good -> bad)' },
    { name: 'model', type: 'string', choices: ['random', 'gilbert'], default: 'random', description: 'random or gilbert (Gilbert-Elliott)' },
    { name: 'correlation', type: 'probability', max: 0.999, description: 'random: how much each decision follows the last (0..1, default 0)' },
    { name: 'r', type: 'probability', description: 'gilbert: chance of bad -> good per packet (default 1 - p, as netem)' },
    { name: 'h', type: 'probability', description: 'gilbert: chance of getting through in the bad state (default 0)' },
    { name: 'k', type: 'probability', description: 'gilbert: chance of getting through in the good state (default 1)' },
    SEED_ARG,
  ],
  // On the command line, arguments of the other model are refused; a library caller gets a warning.
  checkArgs: (args) => {
    let problem: string | null = null;
    lossOptions(args, (m) => (problem = m.replace(/; ignored$/, '')));
    return problem;
  },
  create: (args, ctx) => new LossStage(lossOptions(args, (m) => ctx.warn(m))),
});
export default lossStage;
