/**
 * The packet driver: what every way of moving packets shares, whatever the ports are (TUN/TAP devices
 * through io_uring, poll() or the event loop; a capture file or stdin). The I/O loops only read and write;
 * the driver owns the policy: which pipeline a port's packets enter, `--count`, the reason to stop (once),
 * the clock (read once per batch, and only when a stage reads packet times; offline, the file's time),
 * the end of a batch and the lazy flush of captures, stages that hold packets until a time (how long a
 * loop may sleep, and their ticks), and the counters of packets in and out.
 */
import type { Packet } from '../packet/packet.js';
import { wallClock } from '../packet/clock.js';
import type { Engine } from './engine.js';

import type { StopReason } from './result.js';

export type { StopReason };

/** Milliseconds without packets after which buffered capture records are written. */
export const PAUSE_MS = 20;

export class Driver {
  /** Packets that entered a pipeline, and packets written to a sink. */
  packetsIn = 0;
  packetsOut = 0;
  /** Set once, by stopWith(). */
  stoppedBy: StopReason | null = null;
  error: Error | null = null;
  private sec = 0;
  private nsec = 0;
  private readonly stamps: boolean;
  private readonly timers: boolean;
  private readonly onStop: (by: StopReason) => void;
  /**
   * How late a timed wake comes, learned (milliseconds, a moving average): the kernel wakes a sleeping
   * thread some tens or hundreds of microseconds after the time asked for, so time-holding stages are
   * ticked that much early, and a delayed packet leaves on time on average rather than always late.
   * Devices only: offline, time is the file's.
   */
  private early = 0;
  /** The release time a wait was cut short for (NaN: the wait was not for a timer). */
  private wakeFor = NaN;
  private readonly fileTime: boolean;

  /**
   * `limit`: packets to let in before stopping (Infinity: no limit). `onStop` is told once, when a stop is
   * decided (a loop that waits elsewhere can be woken).
   */
  constructor(
    readonly engine: Engine,
    readonly limit: number,
    options: { onStop?: (by: StopReason) => void; fileTime?: boolean } = {},
  ) {
    this.stamps = engine.readsTime && !options.fileTime;
    this.timers = engine.hasTimers;
    this.onStop = options.onStop ?? (() => {});
    this.fileTime = options.fileTime === true;
    if (limit <= 0) this.stopWith('count');
  }

  /** True once a stop was decided: loops stop reading. */
  get stopped(): boolean {
    return this.stoppedBy !== null;
  }

  /** Decides to stop, once; the first error is kept. */
  stopWith(by: StopReason, err?: Error): void {
    if (this.stoppedBy !== null) return;
    this.stoppedBy = by;
    if (err) this.error = err;
    this.onStop(by);
  }

  /** Start of a batch of packets from a device: read the clock once for all of them, if a stage wants it. */
  beginBatch(): void {
    if (this.stamps) [this.sec, this.nsec] = wallClock();
  }

  /** A packet read from a device enters pipeline `pipeline`. */
  push(pipeline: number, p: Packet): void {
    p.sec = this.sec;
    p.nsec = this.nsec;
    this.packetsIn++;
    this.engine.pushInto(pipeline, p);
    if (this.packetsIn >= this.limit) this.stopWith('count');
  }

  /**
   * A packet read from a file enters pipeline `pipeline`, stamped with the file's time. Time-holding stages
   * release what is due by then first, so that the output is in time order.
   */
  pushTimed(pipeline: number, p: Packet): void {
    // Always: stages without timers read the clock too (reassemble's timeout on the file's time).
    const clock = this.engine.clock;
    clock.advanceTo(p.sec, p.nsec);
    if (this.timers) {
      const now = clock.now();
      if (this.engine.nextDue() <= now) this.engine.tick(now);
    }
    this.packetsIn++;
    this.engine.pushInto(pipeline, p);
    if (this.packetsIn >= this.limit) this.stopWith('count');
  }

  /** End of a batch: time-holding stages release what is due, captures write (lazily on a device). */
  endBatch(lazy: boolean): void {
    if (this.timers) this.tick();
    this.engine.endBatch(lazy);
  }

  /** A wait ended with nothing read: captures write what they kept, due packets leave. */
  idle(busy: boolean): void {
    if (this.timers) {
      if (!Number.isNaN(this.wakeFor)) {
        const late = this.engine.clock.now() - (this.wakeFor - this.early);
        // The mean lateness, tail included (a delayed packet's mean is what users measure), but not a stall of
        // the whole machine, which says nothing about the next wake.
        if (late >= 0 && late < 5) this.early += (late - this.early) / 16;
        this.wakeFor = NaN;
      }
      this.tick();
    }
    this.engine.endBatch(busy);
  }

  private tick(): void {
    const now = this.engine.clock.now() + (this.fileTime ? 0 : this.early);
    if (this.engine.nextDue() <= now) this.engine.tick(now);
  }

  /**
   * How long a device loop may wait in the kernel (-1: until something arrives): 1 ms while an asynchronous
   * stage has packets in hand, until the next release of a time-holding stage, PAUSE_MS while a stage
   * holds output that a pause in traffic should write out.
   */
  waitMs(busy: boolean): number {
    this.wakeFor = NaN;
    if (busy) return 1;
    let ms = this.engine.pendingOutput ? PAUSE_MS : -1;
    if (this.timers) {
      const due = this.engine.nextDue();
      if (due !== Infinity) {
        const left = Math.max(0, due - this.early - this.engine.clock.now());
        if (ms < 0 || left < ms) {
          ms = left;
          this.wakeFor = due;
        }
      }
    }
    return ms;
  }
}
