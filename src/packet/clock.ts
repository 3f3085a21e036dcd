/** performance.now() counts from this thread's time origin, which never changes: read it once. */
const ORIGIN_MS = performance.timeOrigin;

/** The wall clock as pcap timestamps want it: whole seconds and nanoseconds (microsecond resolution here). */
export function wallClock(): [sec: number, nsec: number] {
  const ms = ORIGIN_MS + performance.now();
  const sec = Math.floor(ms / 1000);
  return [sec, Math.min(999_999_999, Math.round((ms - sec * 1000) * 1e6))];
}

/**
 * The clock a pipeline runs on (StageContext.now): milliseconds, fractional, counted from a whole second
 * near the start so that a double keeps nanoseconds exact. On a device it reads the wall clock; offline it
 * is the time of the packet last read from the file (`advanceTo`), so time-based stages (delay, rate) run
 * on the file's time and as fast as the CPU goes.
 */
export class RunClock {
  private originSec = -1;
  private fileNow = 0;

  constructor(readonly kind: 'wall' | 'file') {
    if (kind === 'wall') this.originSec = Math.floor((ORIGIN_MS + performance.now()) / 1000);
  }

  /** The current time. */
  now(): number {
    if (this.kind === 'file') return this.fileNow;
    return ORIGIN_MS + performance.now() - this.originSec * 1000;
  }

  /** Offline: the file's clock moves to a packet's time (never backwards). */
  advanceTo(sec: number, nsec: number): void {
    if (this.originSec < 0) this.originSec = sec;
    const t = (sec - this.originSec) * 1000 + nsec / 1e6;
    if (t > this.fileNow) this.fileNow = t;
  }

  /** A packet's timestamp on this clock's scale. */
  timeOf(p: { sec: number; nsec: number }): number {
    if (this.originSec < 0) this.originSec = p.sec;
    return (p.sec - this.originSec) * 1000 + p.nsec / 1e6;
  }

  /** Sets a packet's timestamp from a time on this clock's scale (rounded to the nanosecond). */
  setTime(p: { sec: number; nsec: number }, t: number): void {
    if (this.originSec < 0) this.originSec = 0;
    let sec = Math.floor(t / 1000);
    let nsec = Math.round((t - sec * 1000) * 1e6);
    if (nsec >= 1e9) {
      sec++;
      nsec -= 1e9;
    }
    p.sec = this.originSec + sec;
    p.nsec = nsec;
  }
}
