/** performance.now() counts from this thread's time origin, which never changes: read it once. */
const ORIGIN_MS = performance.timeOrigin;

/** The wall clock as pcap timestamps want it: whole seconds and nanoseconds (microsecond resolution here). */
export function wallClock(): [sec: number, nsec: number] {
  const ms = ORIGIN_MS + performance.now();
  const sec = Math.floor(ms / 1000);
  return [sec, Math.min(999_999_999, Math.round((ms - sec * 1000) * 1e6))];
}
