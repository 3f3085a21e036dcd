/**
 * The README's performance tables, made from bench results files (bench/results/*.json, lib/results.ts) and
 * nothing else: per CPU model, the medians of the absolute numbers, and for each candidate the pooled median of
 * its per-block paired values over every block of every file, a bootstrap 95% interval (seeded: the same files
 * give the same text), the bar and k/n (blocks meeting the bar alone; failed blocks count in n). Each candidate
 * gets a row set per I/O path its processes reported, so a fall-back to poll is labelled and never pooled with
 * io_uring figures. When a bar is met on one CPU and missed on another, the summary table shows both.
 */
import * as path from 'node:path';
import { fellBack, ioLabel } from './io-path.js';
import { compareWithRef, type PairedMetric } from './paired.js';
import { pool, type PooledSummary } from './pooled.js';
import { REF_LABEL, responderTable, type Bars } from './responders.js';
import type { MachineInfo } from './results.js';
import type { Measurement, ResponderLife, SoakResult } from './session.js';
import type { OfflineResult } from './offline.js';
import type { ForwardResult } from './forward.js';
import type { QueuesResult } from './queues.js';
import { median } from './stats.js';
import { fmtInt, fmtNum, fmtSigned } from './text.js';

/** What the report reads of a results file (the rest is kept for people). */
export interface ResultsFile {
  format: string;
  date: string;
  quick: boolean;
  machine: MachineInfo;
  commit?: string;
  measurements: Measurement[];
  lives: ResponderLife[];
  soak: SoakResult | null;
  offline: OfflineResult | null;
  forward?: ForwardResult | null;
  forwardOffload?: ForwardResult | null;
  forwardOffloadStages?: ForwardResult | null;
  queues?: QueuesResult | null;
  filter?: { ok: boolean; perPacket?: { expression: string; libpcapNs: number[]; tunpipeNs: number[]; ratio: number; valid: boolean }[]; wholeCommand?: { expression: string; runs: { tool: string; ok: boolean; wallS: number; digest?: string }[] }[]; bigPackets?: number } | null;
  impair?: { what: string; configured: string; measured: string; error: string; bar: string; pass: boolean | null }[] | null;
}

export interface LoadedResults {
  /** As the README names it: relative to the repository root. */
  name: string;
  data: ResultsFile;
}

export interface ReportOptions {
  seed: number;
}

const BARS: Map<string, Bars> = new Map(responderTable('tunpipe').map((s) => [s.label, s.bars]));

/** Where a measurement's figures come from; files from before the field existed get it from the process. */
function ioOf(m: Measurement, lives: ResponderLife[]): string | undefined {
  return m.io ?? lives.find((l) => l.label === m.label && l.session === m.session)?.io;
}

interface Group {
  label: string;
  io: string | undefined;
}

/** Candidate × I/O path, over all files of a CPU. */
function groupsOf(files: LoadedResults[]): Group[] {
  const seen = new Map<string, Group>();
  for (const f of files) {
    for (const m of f.data.measurements) {
      if (m.label === REF_LABEL) continue;
      const io = ioOf(m, f.data.lives);
      seen.set(`${m.label}\u0000${io}`, { label: m.label, io });
    }
  }
  return [...seen.values()];
}

type MetricKey = 'repliesPerSec' | 'usCpuPerReply' | 'rttAvgUs' | 'rttP99Us';

/** The per-block values of every file, a failed block as null. */
function pooledValues(files: LoadedResults[], g: Group, key: MetricKey): (number | null)[] {
  const out: (number | null)[] = [];
  for (const f of files) {
    const cmp = compareWithRef(f.data.measurements, g.label, (m) => ioOf(m, f.data.lives) === g.io);
    const metric: PairedMetric = cmp[key];
    for (const b of metric.perBlock) out.push(b.valid ? b.value : null);
  }
  return out;
}

function absolute(files: LoadedResults[], label: string, io: string | undefined | null, f: (m: Measurement) => number | undefined): number {
  const xs: number[] = [];
  for (const file of files) {
    for (const m of file.data.measurements) {
      if (m.label !== label || !m.ok || !m.flood?.nstat.valid || !m.latency?.nstat.valid) continue;
      if (io !== null && ioOf(m, file.data.lives) !== io) continue;
      xs.push(f(m) ?? NaN);
    }
  }
  return median(xs);
}

function fmtAbs(v: number, digits: number): string {
  return digits === 0 ? fmtInt(v) : fmtNum(v, digits);
}

function ratioText(p: PooledSummary, digits: number, unit = '', signed = false): string {
  if (p.valid === 0) return `no valid block of ${p.n}`;
  const f = (v: number) => (signed ? fmtSigned(v, digits) : fmtNum(v, digits));
  return `${f(p.median)}${unit} [${f(p.min)}..${f(p.max)}]`;
}

function intervalText(p: PooledSummary, digits: number, signed = false): string {
  if (p.valid === 0) return '';
  const f = (v: number) => (signed ? fmtSigned(v, digits) : fmtNum(v, digits));
  return `${f(p.interval.low)} to ${f(p.interval.high)}`;
}

function verdictText(p: PooledSummary, bar: string): string {
  if (!bar) return '';
  const failed = p.failed ? `, ${p.failed} failed` : '';
  return `${bar}: ${p.met ? 'met' : 'not met'} (${p.meeting}/${p.n} blocks${failed})`;
}

/** One verdict of the summary table: a bar, on a CPU. */
export interface Verdict {
  cpu: string;
  row: string;
  met: boolean;
}

interface Section {
  markdown: string[];
  verdicts: Verdict[];
}

function cpuSection(cpu: string, files: LoadedResults[], opts: ReportOptions): Section {
  const m0 = files[0]!.data.machine;
  const blocks = new Set(files.flatMap((f) => f.data.measurements.map((m) => `${f.name}#${m.block}`))).size;
  const out: string[] = [];
  const verdicts: Verdict[] = [];
  out.push(`#### ${cpu} (${m0.cores} cores)`);
  out.push('');
  const list = files.map((f) => `\`${f.name}\` (${f.data.date.slice(0, 10)}, kernel ${f.data.machine.kernel}, Node ${f.data.machine.node}${f.data.commit ? `, tree ${f.data.commit}` : ''}${f.data.quick ? ', --quick' : ''})`);
  out.push(`From ${list.join(', ')}: ${blocks} blocks pooled.`);
  out.push('');
  out.push('| metric | C reference | tunpipe | paired, pooled: median [range] | bootstrap 95% interval | bar |');
  out.push('|---|---|---|---|---|---|');
  let seed = opts.seed;
  for (const g of groupsOf(files)) {
    const bars = BARS.get(g.label) ?? {};
    const tag = `\`${g.label}\`, ${fellBack(g.io) ? '**' + ioLabel(g.io) + '**' : ioLabel(g.io)}`;
    const row = (
      name: string,
      key: MetricKey,
      digits: number,
      bar: ((v: number) => boolean) | undefined,
      barText: string,
      abs: (m: Measurement) => number | undefined,
      absDigits: number,
      signed: boolean,
    ) => {
      const p = pool(pooledValues(files, g, key), seed++, bar);
      const unit = signed ? ' µs' : '';
      out.push(
        `| ${name} [${tag}] | ${fmtAbs(absolute(files, REF_LABEL, null, abs), absDigits)} | ${fmtAbs(absolute(files, g.label, g.io, abs), absDigits)} | ${ratioText(p, digits, unit, signed)} | ${intervalText(p, digits + 1, signed)} | ${verdictText(p, barText)} |`,
      );
      if (bar) verdicts.push({ cpu, row: `${name} [${g.label}, ${ioLabel(g.io)}]: ${barText}`, met: p.met === true });
    };
    const minR = bars.minRepliesRatio;
    row('replies/s', 'repliesPerSec', 2, minR ? (v) => v >= minR : undefined, minR ? `≥ ${minR} × ref` : '', (m) => m.flood?.repliesPerSec, 0, false);
    const maxC = bars.maxCpuRatio;
    row('µs CPU per reply', 'usCpuPerReply', 2, maxC ? (v) => v <= maxC : undefined, maxC ? `≤ ${maxC} × ref` : '', (m) => m.flood?.usCpuPerReply, 2, false);
    const maxL = bars.maxRttExtraUs;
    row('low-load RTT avg µs', 'rttAvgUs', 1, maxL !== undefined ? (v) => v <= maxL : undefined, maxL !== undefined ? `≤ ref + ${maxL} µs` : '', (m) => m.latency?.avgUs, 1, true);
    row('low-load RTT p99 µs', 'rttP99Us', 1, undefined, '', (m) => m.latency?.p99Us, 0, true);
  }
  out.push(...ownRows(files));
  out.push('');
  return { markdown: out, verdicts };
}

/** Validity, idle, soak, offline and forwarding: one row each, over all files of the CPU. */
function ownRows(files: LoadedResults[]): string[] {
  const rows: string[] = [];
  const ms = files.flatMap((f) => f.data.measurements);
  const valid = ms.filter((m) => m.ok && m.flood?.nstat.valid && m.latency?.nstat.valid).length;
  rows.push(`| measurements whose replies the kernel counted valid (nstat) | | ${valid}/${ms.length} | | | all: ${valid === ms.length ? 'yes' : 'no'} |`);
  const lives = files.flatMap((f) => f.data.lives);
  const idle = (label: string) => {
    const xs = lives.filter((l) => (label === REF_LABEL ? l.label === REF_LABEL : l.label !== REF_LABEL) && l.idle).map((l) => l.idle!.cpuUsPerS);
    return xs.length ? `${fmtInt(Math.max(...xs))} µs/s` : '—';
  };
  rows.push(`| idle CPU, max over processes | ${idle(REF_LABEL)} | ${idle('')} | | | |`);
  for (const f of files) {
    const s = f.data.soak;
    if (!s) continue;
    const text = s.ok ? `${fmtInt(s.rssStartKb!)} → ${fmtInt(s.rssEndKb!)} kB (max ${fmtInt(s.rssMaxKb!)})` : `failed: ${s.error}`;
    rows.push(`| RSS across a ${s.seconds} s flood [\`${s.label}\`, ${ioLabel(s.io)}] (${f.name}) | | ${text} | ${s.ok ? `end/start ${fmtNum(s.rssEndKb! / s.rssStartKb!, 2)}` : ''} | | nstat ${s.nstat?.valid ? 'valid' : 'INVALID'} |`);
  }
  const offline = files.map((f) => f.data.offline).filter((o): o is OfflineResult => o !== null && o !== undefined);
  if (offline.length) {
    const pairs = offline.flatMap((o) => o.pairs);
    const tp = median(pairs.filter((p) => p.tunpipe.ok).map((p) => p.tunpipe.pktsPerSec!));
    const td = median(pairs.filter((p) => p.tcpdump.ok).map((p) => p.tcpdump.pktsPerSec!));
    const steady = median(pairs.filter((p) => p.tunpipe.steadyPktsPerSec !== undefined).map((p) => p.tunpipe.steadyPktsPerSec!));
    const ratios = pairs.map((p) => (p.tunpipe.ok && p.tcpdump.ok ? p.tunpipe.pktsPerSec! / p.tcpdump.pktsPerSec! : null));
    const r = pool(ratios, 7);
    const allValid = pairs.every((p) => p.tunpipe.ok && p.tunpipe.validReplies === offline.find((o) => o.pairs.includes(p))!.packets);
    rows.push(`| offline packets/s, whole command (tcpdump -r -w as ref) | ${fmtInt(td)} | ${fmtInt(tp)} | ${ratioText(r, 2)} | | every record a valid reply: ${allValid ? 'yes' : 'no'} |`);
    rows.push(`| offline packets/s past start-up | | ${fmtInt(steady)} | | | |`);
    const floored = pairs.filter((p) => p.floor?.ok && p.tcpdump.ok && p.tunpipe.ok);
    if (floored.length) {
      // Over the pairs that have the loop: files written before it have none.
      const fl = median(floored.map((p) => p.floor!.pktsPerSec!));
      const tdF = median(floored.map((p) => p.tcpdump.pktsPerSec!));
      const tpF = median(floored.map((p) => p.tunpipe.pktsPerSec!));
      rows.push(`| offline packets/s, one hand-written JS loop, the same work (\`bench/offline-floor.ts\`; tcpdump as ref) | ${fmtInt(tdF)} | ${fmtInt(fl)} | ${ratioText(pool(floored.map((p) => p.floor!.pktsPerSec! / p.tcpdump.pktsPerSec!), 7), 2)} | | informative |`);
      rows.push(`| offline, tunpipe against that loop (the loop as ref) | ${fmtInt(fl)} | ${fmtInt(tpF)} | ${ratioText(pool(floored.map((p) => p.tunpipe.pktsPerSec! / p.floor!.pktsPerSec!), 7), 2)} | | informative |`);
    }
    const startups = offline.flatMap((o) => (o.startup ? [o.startup] : []));
    if (startups.length) {
      const node = median(startups.flatMap((st) => st.nodeMs));
      const version = median(startups.flatMap((st) => st.versionMs));
      rows.push(`| start-up ms, \`tunpipe --version\` (\`node -e 0\` as ref) | ${fmtNum(node, 1)} | ${fmtNum(version, 1)} | +${fmtNum(version - node, 1)} ms | | |`);
    }
  }
  for (const f of files) {
    for (const [what, fw] of [['wire', f.data.forward], ['wire with --offload', f.data.forwardOffload], ['wire with --offload and stages', f.data.forwardOffloadStages]] as const) {
      if (!fw || fw.turns.length === 0) continue;
      const io = [...new Set(fw.turns.filter((t) => t.label === 'tunpipe').map((t) => ioLabel(t.io)))].join(', ');
      const abs = (label: 'ref' | 'tunpipe', k: 'tcpGbit' | 'pingPerS' | 'cpuNsPerPacket', digits: number) => {
        const xs = fw.turns.filter((t) => t.label === label && Number.isFinite(t[k])).map((t) => t[k]);
        return xs.length ? fmtNum(median(xs), digits) : '—';
      };
      const metrics: [string, number[], 'tcpGbit' | 'pingPerS' | 'cpuNsPerPacket', number][] = [
        ['iperf3 TCP Gbit/s', fw.ratios.tcp, 'tcpGbit', 2],
        ['ping -f round trips/s', fw.ratios.ping, 'pingPerS', 0],
        ['CPU ns per packet under TCP', fw.ratios.cpu, 'cpuNsPerPacket', 0],
      ];
      for (const [name, ratios, k, digits] of metrics) {
        const p = pool(ratios.map((v) => (Number.isFinite(v) ? v : null)), 11);
        rows.push(`| ${what}, ${name} [${io}] (${f.name}) | ${abs('ref', k, digits)} | ${abs('tunpipe', k, digits)} | ${ratioText(p, 2)} | | ${p.failed} of ${p.n} pairs failed |`);
      }
    }
    const qs = f.data.queues;
    for (const r of qs?.ratios ?? []) {
      const turns = (n: number) => qs!.turns.filter((t) => t.offload === r.offload && t.queues === n && t.nstatValid && !t.error);
      const med = (n: number, k: 'tcpGbit' | 'cpuNsPerPacket', digits: number) => {
        const xs = turns(n).map((t) => t[k]).filter(Number.isFinite);
        return xs.length ? fmtNum(median(xs), digits) : '—';
      };
      const io = [...new Set(turns(r.queues).map((t) => ioLabel(t.io)))].join(', ');
      const what = `wire${r.offload ? ' with --offload' : ''}, ${r.queues} queues against 1, iperf3 TCP -P ${qs!.flows}`;
      const shared = qs!.cores <= 2 ? `; ${qs!.cores} cores shared with iperf3` : '';
      for (const [name, ratios, k, digits] of [['Gbit/s', r.tcp, 'tcpGbit', 2], ['CPU ns per packet', r.cpu, 'cpuNsPerPacket', 0]] as const) {
        const p = pool(ratios.map((v) => (Number.isFinite(v) ? v : null)), 13);
        rows.push(`| ${what}, ${name} [${io}] (${f.name}, nproc ${qs!.cores}) | ${med(1, k, digits)} | ${med(r.queues, k, digits)} | ${ratioText(p, 2)} | | ${p.failed} of ${p.n} pairs failed${shared} |`);
      }
    }
    const fl = f.data.filter;
    if (fl && fl.perPacket && fl.perPacket.length) {
      const ratios = fl.perPacket.map((e) => e.ratio);
      const ns = (xs: number[]) => fmtNum(median(xs), 1);
      rows.push(`| filter, ns per packet, ${fl.perPacket.length} expressions, ratio range (${f.name}) | ${ns(fl.perPacket.flatMap((e) => e.libpcapNs))} (bpf_filter) | ${ns(fl.perPacket.flatMap((e) => e.tunpipeNs))} | ${fmtNum(Math.min(...ratios), 2)}..${fmtNum(Math.max(...ratios), 2)} | | faster on ${ratios.filter((r) => r < 1).length} of ${ratios.length} |`);
    }
    for (const w of fl?.wholeCommand ?? []) {
      const wall = (tool: string) => median(w.runs.filter((r) => r.tool === tool && r.ok).map((r) => r.wallS));
      const same = new Set(w.runs.map((r) => r.digest)).size === 1;
      rows.push(`| filter '${w.expression}', whole command on ${fmtInt(fl?.bigPackets ?? NaN)} packets, s (tcpdump as ref) (${f.name}) | ${fmtNum(wall('tcpdump'), 2)} | ${fmtNum(wall('tunpipe'), 2)} | ${fmtNum(wall('tunpipe') / wall('tcpdump'), 2)} | | outputs identical: ${same ? 'yes' : 'no'} |`);
    }
    for (const a of f.data.impair ?? []) {
      const cell = (t: string) => t.replace(/\|/g, '\\|');
      rows.push(`| ${cell(a.what)} (${f.name}) | ${cell(a.configured)} | ${cell(a.measured)} | ${cell(a.error)} | | ${cell(a.bar)}${a.pass === null ? '' : a.pass ? ': met' : ': not met'} |`);
    }
  }
  return rows;
}

/** Where a bar is met on one CPU and missed on another: both, side by side. */
function acrossCpus(verdicts: Verdict[], cpus: string[]): string[] {
  if (cpus.length < 2) return [];
  const rows = [...new Set(verdicts.map((v) => v.row))];
  const out = ['#### What holds on which machine', '', `| bar | ${cpus.join(' | ')} |`, `|---|${cpus.map(() => '---|').join('')}`];
  for (const r of rows) {
    const cell = (cpu: string) => {
      const v = verdicts.find((x) => x.row === r && x.cpu === cpu);
      return v === undefined ? '—' : v.met ? 'met' : 'not met';
    };
    out.push(`| ${r} | ${cpus.map(cell).join(' | ')} |`);
  }
  out.push('');
  return out;
}

/** The markdown between the README's markers. */
export function readmeTables(files: LoadedResults[], opts: ReportOptions): string {
  if (files.length === 0) return 'No results file yet: run `sudo npm run bench`, then `npm run bench:report -- --write-readme`.\n';
  const byCpu = new Map<string, LoadedResults[]>();
  for (const f of files) {
    const cpu = f.data.machine.cpuModel;
    byCpu.set(cpu, [...(byCpu.get(cpu) ?? []), f]);
  }
  const out: string[] = [
    `Generated by \`npm run bench:report\` (bench/report-readme.ts, bootstrap seed ${opts.seed}) from ${files.map((f) => `\`${f.name}\``).join(', ')}; do not edit by hand.`,
    'Paired values are candidate/ref per block (RTT: candidate − ref); a block counts only when the kernel counted both responders\' replies as valid (nstat), and a failed block stays in n of k/n and makes its bar not met.',
    '',
  ];
  const verdicts: Verdict[] = [];
  for (const [cpu, group] of byCpu) {
    const s = cpuSection(cpu, group, opts);
    out.push(...s.markdown);
    verdicts.push(...s.verdicts);
  }
  out.push(...acrossCpus(verdicts, [...byCpu.keys()]));
  if (files.some((f) => f.data.quick)) out.push('(--quick runs included: they check the plumbing, their numbers are not evidence.)', '');
  return out.join('\n');
}

export const BEGIN_MARKER = '<!-- bench:begin -->';
export const END_MARKER = '<!-- bench:end -->';

/** The README with the text between the markers replaced; an error when the markers are missing. */
export function replaceBetweenMarkers(readme: string, body: string): string {
  const a = readme.indexOf(BEGIN_MARKER);
  const b = readme.indexOf(END_MARKER);
  if (a < 0 || b < a) throw new Error(`README has no ${BEGIN_MARKER} ... ${END_MARKER} section`);
  return `${readme.slice(0, a + BEGIN_MARKER.length)}\n${body.trimEnd()}\n${readme.slice(b)}`;
}

/** A results file parsed and checked enough that the tables cannot silently be empty. */
export function parseResults(text: string, name: string): LoadedResults {
  const data = JSON.parse(text) as ResultsFile;
  if (typeof data.format !== 'string' || !data.format.startsWith('tunpipe-bench-results/')) {
    throw new Error(`${name}: not a tunpipe bench results file (no "format")`);
  }
  if (!Array.isArray(data.measurements) || !data.machine?.cpuModel) throw new Error(`${name}: no measurements or machine`);
  return { name: name.split(path.sep).join('/'), data };
}
