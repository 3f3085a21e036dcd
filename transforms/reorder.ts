/**
 * reorder: lets some packets be overtaken by the ones behind them, with or without a delay before it.
 *
 * Arguments:
 *   P           probability that a packet is held back (positional, required): `25%`, `0.25`
 *   gap=N       how many later packets overtake a held one (default 1: neighbours swap); it leaves right
 *               after the Nth packet that arrives behind it
 *   wait=TIME   the longest a held packet waits for those N packets (default 100ms); then it leaves anyway
 *   limit=SIZE  bytes held at most (default 1MiB); a packet chosen when the queue is full is dropped
 *   seed=N      seed of the choices (default: a fresh one, printed on exit)
 * In: any packets. Out: the same packets, the held ones further back in the stream, each timestamp set to
 * when it left (the arrival of the packet it follows, or the end of its wait).
 * Drops: a packet chosen to be held that would take the queue past `limit` ("reorder queue full (limit)").
 * netem's `reorder P gap N` needs a delay and means something else: every Nth packet may be sent at once
 * while the others wait for the delay; here the chosen packet is the one that waits, so the stage works on
 * its own and gap is the reordering distance. Works in either direction of a wire.
 */
import { defineStage, HELD, type StageContext, type StageInstance, type StageResult } from '../src/pipeline/stage.js';
import type { Packet } from '../src/packet/packet.js';
import { SeededRandom, SEED_ARG, seedOf } from '../src/impair/random.js';
import { arrivalOf, copyPacket, heldBytes, HeldQueue } from '../src/impair/held.js';

export const REORDER_DROP = { full: 'reorder queue full (limit)' } as const;
export const REORDER_DEFAULT_LIMIT = 1024 * 1024;
export const REORDER_DEFAULT_WAIT = 100;

export interface ReorderOptions {
  p: number;
  gap: number;
  /** Milliseconds. */
  wait: number;
  /** Bytes. */
  limit: number;
  seed: number;
}

export class ReorderStage implements StageInstance {
  readonly queue = new HeldQueue();

  /** Packets held now (`--stats` shows them). */
  queued(): number {
    return this.queue.length;
  }
  private readonly rng: SeededRandom;
  /** Packets that have arrived so far: a held packet leaves once this reaches its `after`. */
  private arrivals = 0;
  private lastDue = -Infinity;
  reordered = 0;

  constructor(readonly options: ReorderOptions, private readonly ctx: StageContext) {
    this.rng = new SeededRandom(options.seed, 'reorder');
  }

  process(p: Packet): StageResult {
    const ctx = this.ctx;
    const queue = this.queue;
    if (queue.length > 0 && queue.nextDue() <= ctx.now()) this.releaseDue(ctx.now());
    const n = ++this.arrivals;
    const arrival = arrivalOf(ctx, p);
    if (this.rng.chance(this.options.p)) {
      if (queue.bytes + heldBytes(p) > this.options.limit) return REORDER_DROP.full;
      // Release times only grow, so the queue stays in arrival order and the countdowns expire in turn.
      let due = arrival + this.options.wait;
      if (due < this.lastDue) due = this.lastDue;
      this.lastDue = due;
      this.releaseOvertaken(n, arrival);
      queue.push(copyPacket(p), due, n + this.options.gap);
      return HELD;
    }
    if (queue.nextAfter() > n) return p;
    // This packet is the last to overtake the held ones at the head: it goes first, then they follow it.
    ctx.emit(p);
    this.releaseOvertaken(n, arrival);
    return HELD;
  }

  nextDue(): number {
    return this.queue.nextDue();
  }

  tick(now: number): void {
    this.releaseDue(now);
  }

  /** Held packets whose N overtakers have all arrived (by the nth arrival, at time t). */
  private releaseOvertaken(n: number, t: number): void {
    const queue = this.queue;
    while (queue.length > 0 && queue.nextAfter() <= n) {
      const held = queue.shift();
      this.reordered++;
      this.ctx.setTime(held, t);
      this.ctx.emit(held);
    }
  }

  /** Held packets whose wait is over: they leave in order, stamped with the end of their wait. */
  private releaseDue(now: number): void {
    const queue = this.queue;
    while (queue.length > 0 && queue.nextDue() <= now) {
      const held = queue.shift();
      this.ctx.setTime(held, queue.lastDue);
      this.ctx.emit(held);
    }
  }

  report(): string {
    return `${this.reordered} overtaken by ${this.options.gap} packet(s); held ${this.queue.length} packets (${this.queue.bytes} bytes), at most ${this.queue.peakBytes} bytes; seed=${this.options.seed}`;
  }
}

const reorderStage = defineStage({
  name: 'reorder',
  recordsChanges: true,
  superPackets: true,
  keepsPackets: false,
  readsTime: true,
  summary: 'hold some packets back so that the next N overtake them (works without a delay)',
  help: [
    'Each packet is held back with probability P until gap=N more packets have arrived (default 1: it swaps',
    'with its neighbour), then leaves right after them; after wait=TIME (default 100ms) it leaves anyway.',
    `At most limit bytes held (default 1MiB); a chosen packet beyond that is dropped ("${REORDER_DROP.full}").`,
    "Unlike netem's reorder it needs no delay, and gap is the reordering distance. seed=N replays the choices.",
    "Examples: 'reorder 5%', 'reorder 25% gap=3', 'delay 10ms | reorder 1% seed=2'",
  ].join('\n'),
  args: [
    { name: 'p', type: 'probability', positional: true, required: true, description: 'probability that a packet is held back' },
    { name: 'gap', type: 'number', integer: true, min: 1, max: 1_000_000, default: 1, description: 'packets that overtake a held one' },
    { name: 'wait', type: 'duration', min: 0, default: REORDER_DEFAULT_WAIT, description: 'longest a held packet waits for them, in ms' },
    { name: 'limit', type: 'size', min: 1, default: REORDER_DEFAULT_LIMIT, description: 'bytes held at most (1MiB)' },
    SEED_ARG,
  ],
  create: (args, ctx) =>
    new ReorderStage(
      {
        p: args.p as number,
        gap: (args.gap as number | undefined) ?? 1,
        wait: (args.wait as number | undefined) ?? REORDER_DEFAULT_WAIT,
        limit: (args.limit as number | undefined) ?? REORDER_DEFAULT_LIMIT,
        seed: seedOf(args.seed),
      },
      ctx,
    ),
});
export default reorderStage;
