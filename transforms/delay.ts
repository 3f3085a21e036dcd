/**
 * delay: holds each packet for a time, with optional jitter, as a link's propagation delay.
 *
 * Arguments (netem's where netem has them):
 *   TIME              the delay (positional, required): `10ms`, `250us`, `1.5s`
 *   jitter=TIME       spread of the delay (default 0)
 *   dist=D            distribution of the jitter: uniform (TIME ± jitter, the default, as netem), normal,
 *                     pareto, paretonormal (these three: mean TIME, standard deviation jitter; see
 *                     src/impair/distributions.ts)
 *   correlation=P     how much each packet's jitter follows the previous one's (0..1, default 0)
 *   reorder=BOOL      let jitter reorder packets (default false: order kept)
 *   limit=SIZE        bytes held at most (default 32MiB: 250 ms of a 1 Gbit/s stream)
 *   seed=N            seed of the jitter (default: a fresh one, printed on exit)
 * In: any packets; the stage reads only their timestamps and lengths. Out: the same packets, each released
 * at arrival + delay (never before its arrival), its timestamp set to that release time: offline the output
 * file shows the delayed times; on a device the packet leaves when the driver's clock reaches it.
 * Order: kept by default, even with jitter: a packet whose drawn release time is earlier than the previous
 * packet's leaves right after it (so with packets closer together than the jitter, the delays' spread is
 * smaller than `jitter`). netem instead reorders whenever jitter is set. `reorder=true` releases strictly by
 * drawn time.
 * Drops: a packet that would take the queue past `limit` ("delay queue full (limit)"). No limit on packet count
 * (netem silently drops above 1000 packets by default): the bound is in bytes, and the counters say.
 * Unlike netem (egress only), it works on any pipeline, so in both directions of a wire.
 * A packet whose release time has already come when nothing is queued ahead of it passes straight through.
 */
import { defineStage, HELD, type StageContext, type StageInstance, type StageResult } from '../src/pipeline/stage.js';
import type { Packet } from '../src/packet/packet.js';
import { SeededRandom, SEED_ARG, seedOf } from '../src/impair/random.js';
import { DISTRIBUTIONS, JitterSource, type Distribution } from '../src/impair/distributions.js';
import { arrivalOf, copyPacket, heldBytes, HoldingStage } from '../src/impair/held.js';

export const DELAY_DROP = { full: 'delay queue full (limit)' } as const;

export const DELAY_DEFAULT_LIMIT = 32 * 1024 * 1024;

export interface DelayOptions {
  /** Milliseconds. */
  time: number;
  jitter: number;
  dist: Distribution;
  correlation: number;
  reorder: boolean;
  /** Bytes. */
  limit: number;
  seed: number;
}

export class DelayStage extends HoldingStage implements StageInstance {
  private readonly jitter: JitterSource | null;
  /** Release time of the last packet let through or queued: the floor for the next one when order is kept. */
  private lastDue = -Infinity;

  constructor(
    readonly options: DelayOptions,
    ctx: StageContext,
  ) {
    super(ctx);
    this.jitter = options.jitter > 0 ? new JitterSource(options.dist, options.correlation, new SeededRandom(options.seed, 'delay')) : null;
  }

  process(p: Packet): StageResult {
    const ctx = this.ctx;
    const now = ctx.now();
    if (this.queue.length > 0 && this.queue.nextDue() <= now) this.tick(now);
    const arrival = arrivalOf(ctx, p);
    let due = arrival + this.options.time;
    if (this.jitter !== null) due += this.options.jitter * this.jitter.next();
    if (due < arrival) due = arrival;
    if (!this.options.reorder && due < this.lastDue) due = this.lastDue;
    // Due already: nothing queued can be ahead of it (with order kept, every queued packet is due later than
    // now and no later than this one; with reorder=true it may overtake them).
    if (due <= now) {
      this.lastDue = due;
      if (due !== arrival) ctx.setTime(p, due);
      return p;
    }
    if (this.queue.bytes + heldBytes(p) > this.options.limit) return DELAY_DROP.full;
    this.lastDue = due;
    this.queue.push(copyPacket(p), due);
    return HELD;
  }


  report(): string {
    const seed = this.jitter !== null ? `, seed=${this.options.seed}` : '';
    return `held ${this.queue.length} packets (${this.queue.bytes} bytes), at most ${this.queue.peakBytes} bytes${seed}`;
  }
}

const delayStage = defineStage({
  name: 'delay',
  recordsChanges: true,
  superPackets: true,
  keepsPackets: false,
  readsTime: true,
  summary: 'hold each packet for a time, with optional jitter; order kept unless reorder=true',
  help: [
    'Each packet leaves TIME (± jitter) after it arrived; offline its timestamp is moved by the delay.',
    'jitter: dist=uniform spreads over TIME ± jitter (netem\'s default); normal, pareto and paretonormal have',
    'mean TIME and standard deviation jitter. correlation=P makes each jitter follow the last (keeping its',
    'distribution). Order is kept unless reorder=true (netem reorders whenever jitter is set).',
    `Memory: at most limit bytes held (default 32MiB, 250 ms of 1 Gbit/s); a packet past it is dropped as`,
    `"${DELAY_DROP.full}". No packet-count limit (netem's silent 1000). Works in either direction of a wire.`,
    "Examples: 'delay 40ms', 'delay 10ms jitter=2ms dist=normal', 'delay 100ms jitter=30ms reorder=true seed=7'",
  ].join('\n'),
  args: [
    { name: 'time', type: 'duration', positional: true, required: true, min: 0, description: 'how long each packet is held' },
    { name: 'jitter', type: 'duration', default: 0, min: 0, description: 'spread of the delay (see dist)' },
    { name: 'dist', type: 'string', choices: [...DISTRIBUTIONS], default: 'uniform', description: 'distribution of the jitter' },
    { name: 'correlation', type: 'probability', default: 0, max: 0.999, description: 'how much each jitter follows the previous one (0..1)' },
    { name: 'reorder', type: 'boolean', default: false, description: 'let jitter reorder packets (false: order kept)' },
    { name: 'limit', type: 'size', default: DELAY_DEFAULT_LIMIT, min: 1, description: 'bytes held at most; beyond, packets are dropped and counted (32MiB: 250 ms of 1 Gbit/s)' },
    SEED_ARG,
  ],
  create: (args, ctx) =>
    new DelayStage(
      {
        time: args.time as number,
        jitter: (args.jitter as number | undefined) ?? 0,
        dist: ((args.dist as Distribution | undefined) ?? 'uniform'),
        correlation: (args.correlation as number | undefined) ?? 0,
        reorder: (args.reorder as boolean | undefined) ?? false,
        limit: (args.limit as number | undefined) ?? DELAY_DEFAULT_LIMIT,
        seed: seedOf(args.seed),
      },
      ctx,
    ),
});
export default delayStage;
