/**
 * Live counters (`--stats [INTERVAL]`): every interval the per-stage and per-device counters, with their
 * rates since the last interval. On a terminal the table is redrawn in place; otherwise (and into
 * `--stats-json FILE`) one JSON object per line, for scripts and dashboards. The counters come from a
 * snapshot the worker posts when asked (one message per interval, none per packet).
 */
import type { TunCounters } from '../device/tun.js';
import type { StageStats } from '../pipeline/stage.js';

export interface StatsSnapshot {
  stages: StageStats[];
  counters: TunCounters[];
  queued: Map<string, number>;
  /** With --queues: per device, each queue's counters (`counters` holds their sums). */
  queueCounters?: TunCounters[][];
}

interface Previous {
  at: number;
  stages: Map<string, { in: number; out: number; dropped: number }>;
  devices: { rx: number; tx: number; rxBytes: number; txBytes: number }[];
}

/** Per second, rounded to whole packets or bytes. */
function rate(now: number, before: number, seconds: number): number {
  return seconds > 0 ? Math.round((now - before) / seconds) : 0;
}

export class LiveStats {
  private previous: Previous | null = null;
  private readonly started = Date.now();
  private drawnLines = 0;

  constructor(private readonly deviceNames: () => string[]) {}

  /** The JSON line for a snapshot taken now; also moves the rates' reference point (call once per interval). */
  next(s: StatsSnapshot): { json: string; table: string } {
    const at = Date.now();
    const prev = this.previous;
    const secs = prev ? (at - prev.at) / 1000 : 0;
    const names = this.deviceNames();
    const stages = s.stages.map((st) => {
      const p = prev?.stages.get(st.name);
      const out = st.packetsOut + st.emitted;
      return {
        name: st.name,
        in: st.packetsIn,
        out,
        dropped: st.dropped,
        diverted: st.diverted,
        held: st.held,
        queued: s.queued.get(st.name) ?? 0,
        in_per_s: rate(st.packetsIn, p?.in ?? 0, prev ? secs : 0),
        out_per_s: rate(out, p?.out ?? 0, prev ? secs : 0),
        dropped_per_s: rate(st.dropped, p?.dropped ?? 0, prev ? secs : 0),
      };
    });
    const devices = s.counters.map((c, i) => {
      const p = prev?.devices[i];
      const qs = s.queueCounters?.[i];
      return {
        name: names[i] ?? `#${i + 1}`,
        read: c.rxPackets,
        read_bytes: c.rxBytes,
        written: c.txPackets,
        written_bytes: c.txBytes,
        write_errors: c.txErrors,
        read_per_s: rate(c.rxPackets, p?.rx ?? 0, prev ? secs : 0),
        written_per_s: rate(c.txPackets, p?.tx ?? 0, prev ? secs : 0),
        read_bytes_per_s: rate(c.rxBytes, p?.rxBytes ?? 0, prev ? secs : 0),
        written_bytes_per_s: rate(c.txBytes, p?.txBytes ?? 0, prev ? secs : 0),
        // How the kernel spread the flows over the device's queues (totals since start).
        ...(qs && qs.length > 1 ? { queues: qs.map((q, k) => ({ queue: k, read: q.rxPackets, read_bytes: q.rxBytes, written: q.txPackets, written_bytes: q.txBytes, write_errors: q.txErrors })) } : {}),
      };
    });
    this.previous = {
      at,
      stages: new Map(stages.map((st) => [st.name, { in: st.in, out: st.out, dropped: st.dropped }])),
      devices: s.counters.map((c) => ({ rx: c.rxPackets, tx: c.txPackets, rxBytes: c.rxBytes, txBytes: c.txBytes })),
    };
    const json = JSON.stringify({ time: new Date(at).toISOString(), elapsed_s: (at - this.started) / 1000, stages, devices });
    const w = Math.max(5, ...stages.map((st) => st.name.length), ...devices.map((d) => d.name.length + 7)) + 2;
    const num = (n: number, width = 11) => String(n).padStart(width);
    const lines = [`${'stage'.padEnd(w)}${'in'.padStart(11)}${'in/s'.padStart(11)}${'out'.padStart(11)}${'out/s'.padStart(11)}${'dropped'.padStart(11)}${'drop/s'.padStart(11)}${'queued'.padStart(9)}`];
    for (const st of stages) lines.push(`${st.name.padEnd(w)}${num(st.in)}${num(st.in_per_s)}${num(st.out)}${num(st.out_per_s)}${num(st.dropped)}${num(st.dropped_per_s)}${num(st.queued, 9)}`);
    for (const d of devices) {
      lines.push(`${`device ${d.name}`.padEnd(w)}${num(d.read)}${num(d.read_per_s)}${num(d.written)}${num(d.written_per_s)}${num(d.write_errors)}${'-'.padStart(11)}${''.padStart(9)}`);
      for (const q of d.queues ?? []) lines.push(`${`  queue ${q.queue}`.padEnd(w)}${num(q.read)}${'-'.padStart(11)}${num(q.written)}${'-'.padStart(11)}${num(q.write_errors)}${'-'.padStart(11)}${''.padStart(9)}`);
    }
    return { json, table: lines.join('\n') };
  }

  /** The table, drawn over the previous one on a terminal. */
  redraw(table: string): string {
    const up = this.drawnLines > 0 ? `\x1b[${this.drawnLines}A\x1b[J` : '';
    this.drawnLines = table.split('\n').length;
    return `${up}${table}\n`;
  }
}
