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
/**
 * The share of time the driver may spend spinning before releases, and the most it saves up: waiting out
 * the last part of a wait on the clock costs a core while it lasts, so a busy stream of releases (a `rate`
 * stage under load) falls back to plain waits, late by a wake-up, rather than spinning all the time.
 */
const SPIN_SHARE = 0.05;
const SPIN_MAX_MS = 5;
/** The most a wait ends early (and a spin lasts): a lateness past it is a loaded machine, not the timer. */
const LEAD_MAX_MS = 1;
/**
 * The longest wait a loop is given: a release further away is waited for in several waits. Every loop's
 * timeout has a limit of its own (setTimeout's 32-bit milliseconds, a timespec's 64-bit nanoseconds), and a
 * wake-up a minute costs nothing.
 */
export const MAX_WAIT_MS = 60_000;

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
   * How late a timed wake comes, learned (milliseconds, moving averages of the lateness and of its spread):
   * the kernel wakes a sleeping thread some tens or hundreds of microseconds after the time asked for. A
   * wait for a release asks to end `lead()` early, and the rest is waited out on the clock (spun), so that a
   * delayed packet leaves at its time, never before it and, as long as the wake came in time, not after.
   * Devices only: offline, time is the file's.
   */
  private lateMean = 0;
  private lateSpread = 0;
  /** When the last wait, if it was for a release (NaN otherwise), was asked to end, on the clock's scale. */
  private wakeAt = NaN;
  /** Milliseconds of spinning still allowed: it grows by SPIN_SHARE of the time that passes, up to SPIN_MAX_MS. */
  private spinAllowance = SPIN_MAX_MS;
  private lastWoke = 0;
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

  /**
   * A wait ended, for whatever reason. If it was a wait for a release and it lasted its whole time, how late
   * it ended is learned, whatever way it ended (io_uring reports completions rather than ETIME when some
   * arrived meanwhile, such as the writes submitted with the wait), and what is left until the release is
   * waited out on the clock, if the spin allowance covers it.
   *
   * `sendQueued`: the loop holds back what is sent until told. The packets due are then released, and go
   * through the rest of their pipelines, before the spin, and sent when it ends: code that last ran a
   * release ago runs slowly (cold caches), and would otherwise make each packet late by that much. Without
   * it (writes sent as they are made: the event loop's path), the spin comes first and the release after.
   */
  woke(sendQueued?: () => void): void {
    const clock = this.engine.clock;
    let now = clock.now();
    if (!this.fileTime) {
      this.spinAllowance = Math.min(SPIN_MAX_MS, this.spinAllowance + (now - this.lastWoke) * SPIN_SHARE);
      this.lastWoke = now;
    }
    if (Number.isNaN(this.wakeAt)) return;
    const late = now - this.wakeAt;
    this.wakeAt = NaN;
    if (late < 0) return; // cut short by a packet: says nothing about timers
    // Means with the tail (a delayed packet's mean is what users measure), but not a stall of the whole
    // machine, which says nothing about the next wake.
    if (late < 5) {
      this.lateMean += (late - this.lateMean) / 16;
      this.lateSpread += (Math.abs(late - this.lateMean) - this.lateSpread) / 16;
    }
    const due = this.engine.nextDue();
    const left = due - now;
    if (left > 0 && left <= this.spinAllowance) {
      // Released at their time (the stages stamp them with it), sent once it has come.
      if (sendQueued) this.engine.tick(due);
      while (now < due) now = clock.now();
      this.spinAllowance -= left;
      sendQueued?.();
    }
  }

  /** How early a wait for a release asks to end: most wakes come within it. */
  private lead(): number {
    return Math.min(LEAD_MAX_MS, this.lateMean + 2 * this.lateSpread);
  }

  /** A wait ended with nothing read: captures write what they kept, due packets leave. */
  idle(busy: boolean): void {
    if (this.timers) this.tick();
    this.engine.endBatch(busy);
  }

  private tick(): void {
    const now = this.engine.clock.now();
    if (this.engine.nextDue() <= now) this.engine.tick(now);
  }

  /**
   * How long a device loop may wait in the kernel (-1: until something arrives): 1 ms while an asynchronous
   * stage has packets in hand, until the next release of a time-holding stage, PAUSE_MS while a stage
   * holds output that a pause in traffic should write out. The loop calls woke() when the wait ends.
   */
  waitMs(busy: boolean): number {
    this.wakeAt = NaN;
    if (busy) return 1;
    let ms = this.engine.pendingOutput ? PAUSE_MS : -1;
    if (this.timers) {
      const due = this.engine.nextDue();
      if (due !== Infinity) {
        const now = this.engine.clock.now();
        // Early by the lead only when the allowance can spin the rest; otherwise until the release itself.
        const lead = this.fileTime ? 0 : this.lead();
        const left = Math.max(0, due - now - (lead <= this.spinAllowance ? lead : 0));
        if (ms < 0 || left < ms) {
          ms = left;
          // A wait of no time teaches nothing about wake-ups.
          if (left > 0) this.wakeAt = now + left;
        }
      }
    }
    if (ms > MAX_WAIT_MS) {
      // Not the release's own wait: the wake teaches nothing.
      this.wakeAt = NaN;
      return MAX_WAIT_MS;
    }
    return ms;
  }
}
