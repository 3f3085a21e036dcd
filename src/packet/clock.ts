/** The wall clock as pcap timestamps want it: whole seconds and nanoseconds (microsecond resolution here). */
export function wallClock(): [sec: number, nsec: number] {
  const ms = performance.timeOrigin + performance.now();
  const sec = Math.floor(ms / 1000);
  return [sec, Math.min(999_999_999, Math.round((ms - sec * 1000) * 1e6))];
}
