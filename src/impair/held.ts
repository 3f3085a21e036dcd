/**
 * What the time-holding stages (delay, rate, reorder) share: a copy of a packet they keep (the source may
 * reuse the Packet and its Buffer once `process` returns), and a queue of held packets ordered by release
 * time that counts the bytes it holds, so that each stage bounds its memory in bytes.
 */
import { copyPacket, type Packet } from '../packet/packet.js';
import type { StageContext } from '../pipeline/stage.js';

export { copyPacket };

/** The bytes a held packet costs, as the limits count them: its buffer. */
export function heldBytes(p: Packet): number {
  return p.data.length;
}

interface Entry {
  p: Packet;
  due: number;
  /** Arrival order: equal release times leave in the order they came. */
  seq: number;
  /** For the reorder stage: the arrival count after which the packet leaves. */
  after: number;
}

/**
 * Held packets by release time (a binary min-heap on due time, then arrival order). Pushed in order of
 * release time it is a FIFO at O(1) a push; out of order (delay reorder=true) O(log n).
 */
export class HeldQueue {
  private readonly heap: Entry[] = [];
  private seq = 0;
  /** Bytes held now (heldBytes of each packet). */
  bytes = 0;
  /** The most bytes held at any time. */
  peakBytes = 0;

  get length(): number {
    return this.heap.length;
  }

  /** Release time of the first packet out, or Infinity when empty. */
  nextDue(): number {
    return this.heap.length > 0 ? this.heap[0].due : Infinity;
  }

  /** Arrival count of the first packet out (reorder), or Infinity when empty. */
  nextAfter(): number {
    return this.heap.length > 0 ? this.heap[0].after : Infinity;
  }

  push(p: Packet, due: number, after = Infinity): void {
    const heap = this.heap;
    const e: Entry = { p, due, seq: this.seq++, after };
    heap.push(e);
    let i = heap.length - 1;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (!before(e, heap[parent])) break;
      heap[i] = heap[parent];
      i = parent;
    }
    heap[i] = e;
    this.bytes += heldBytes(p);
    if (this.bytes > this.peakBytes) this.peakBytes = this.bytes;
  }

  /** Removes the first packet out; its release time is in `lastDue`. */
  shift(): Packet {
    const heap = this.heap;
    const top = heap[0];
    const last = heap.pop()!;
    if (heap.length > 0) {
      let i = 0;
      const n = heap.length;
      for (;;) {
        const l = 2 * i + 1;
        if (l >= n) break;
        const r = l + 1;
        const c = r < n && before(heap[r], heap[l]) ? r : l;
        if (!before(heap[c], last)) break;
        heap[i] = heap[c];
        i = c;
      }
      heap[i] = last;
    }
    this.bytes -= heldBytes(top.p);
    this.lastDue = top.due;
    return top.p;
  }

  /** Emits every packet due by `now` (all of them for Infinity), each stamped with its release time. */
  releaseDue(now: number, ctx: Pick<StageContext, 'setTime' | 'emit'>): void {
    while (this.length > 0 && this.nextDue() <= now) {
      const p = this.shift();
      ctx.setTime(p, this.lastDue);
      ctx.emit(p);
    }
  }

  /** Release time of the packet `shift()` returned last. */
  lastDue = 0;
}

function before(a: Entry, b: Entry): boolean {
  return a.due < b.due || (a.due === b.due && a.seq < b.seq);
}

/**
 * When a packet arrived, on the `ctx.now()` scale: its timestamp, or the clock's reading for a packet that
 * carries none (sec and nsec 0: a library caller's packet, a source that does not stamp).
 */
export function arrivalOf(ctx: { now(): number; timeOf(p: Packet): number }, p: Packet): number {
  return p.sec === 0 && p.nsec === 0 ? ctx.now() : ctx.timeOf(p);
}

/**
 * What a stage that holds packets in a HeldQueue until their release time (delay, rate) answers the
 * driver with: when it next wants a tick, the release of what is due, and how much it holds (--stats).
 */
export abstract class HoldingStage {
  readonly queue = new HeldQueue();

  constructor(protected readonly ctx: StageContext) {}

  nextDue(): number {
    return this.queue.nextDue();
  }

  tick(now: number): void {
    this.queue.releaseDue(now, this.ctx);
  }

  /** Packets held now (`--stats` shows them). */
  queued(): number {
    return this.queue.length;
  }
}
