/**
 * The report: per-responder summaries of the absolute numbers, the rows of the table (absolute medians, the
 * paired statistic, the bar and the verdict), the table as text, and the same data as JSON.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { OUT_JSON } from './constants.js';
import { TICKS_PER_S } from './measure.js';
import type { OfflineResult } from './offline.js';
import { blocksMeeting, compareWithRef, type PairedComparison, type PairedMetric } from './paired.js';
import { REF_LABEL, STOP_GRACE_MS, type Bars, type ResponderSpec } from './responders.js';
import type { RunRecord, SoakResult } from './run-responder.js';
import { median, summarizeSample } from './stats.js';
import { fmtInt, fmtNum, fmtSigned, plural } from './text.js';

/**
 * Idle bar (the bench's, not the issue's): the issue says "no CPU while nothing arrives". A process parked in
 * epoll uses none; 0.1% of a core leaves room for the odd timer or GC task, and is far below any polling loop.
 */
const IDLE_MAX_CPU_US_PER_S = 1000;
const OFFLINE_AIM_PKTS_PER_S = 2_000_000;
/** RSS across the soak: end within this fraction of the start (the bench's threshold). */
const SOAK_RSS_TOLERANCE = 0.1;

// ---------------------------------------------------------------------------------------------------------------
// Absolute numbers per responder

interface LabelSummary {
  label: string;
  runs: number;
  okRuns: number;
  repliesPerSec: number;
  usCpuPerReply: number;
  rttAvgUs: number;
  rttP99Us: number;
  idleCpuUsPerSMax: number;
  idleSwitchesPerSMax: number;
  rssStartKb: number;
  rssEndKb: number;
  stopMsMax: number;
  killed: number;
  /** Runs whose responder was still there to be stopped (not the ones that died on their own). */
  stoppable: number;
  nstatValid: number;
  captureOk: number;
  captureRuns: number;
}

function summarizeLabel(label: string, runs: RunRecord[], checksCapture = false): LabelSummary {
  const mine = runs.filter((r) => r.label === label);
  const ok = mine.filter((r) => r.ok);
  const med = (f: (r: RunRecord) => number | undefined) => median(ok.map((r) => f(r) ?? NaN));
  const max = (xs: number[]) => (xs.length ? Math.max(...xs) : NaN);
  const stopped = mine.filter((r) => r.stop && !r.stop.diedEarly); // runs where we had a process to stop
  return {
    label,
    runs: mine.length,
    okRuns: ok.length,
    repliesPerSec: med((r) => r.flood?.repliesPerSec),
    usCpuPerReply: med((r) => r.flood?.usCpuPerReply),
    rttAvgUs: med((r) => r.latency?.avgUs),
    rttP99Us: med((r) => r.latency?.p99Us),
    idleCpuUsPerSMax: max(ok.map((r) => r.idle?.cpuUsPerS ?? NaN)),
    idleSwitchesPerSMax: max(ok.map((r) => r.idle?.switchesPerS ?? NaN)),
    rssStartKb: med((r) => r.rssStartKb),
    rssEndKb: med((r) => r.rssEndKb),
    stopMsMax: max(stopped.map((r) => r.stop!.ms)),
    killed: stopped.filter((r) => r.stop!.killed).length,
    stoppable: stopped.length,
    nstatValid: ok.filter((r) => r.flood?.nstat.valid && r.latency?.nstat.valid).length,
    captureOk: mine.filter((r) => r.capture?.ok).length,
    captureRuns: checksCapture ? mine.length : 0,
  };
}

// ---------------------------------------------------------------------------------------------------------------
// Rows

export interface Row {
  metric: string;
  ref: string;
  value: string;
  /** The paired statistic: median of the per-block ratios (or differences) [min..max]. */
  paired: string;
  bar: string;
  result: string;
}

function verdict(pass: boolean | null): string {
  return pass === null ? 'n/a' : pass ? 'PASS' : 'FAIL';
}

function pairedText(m: PairedMetric | undefined, unit = ''): string {
  if (!m || m.summary.n === 0) return '—';
  const s = m.summary;
  if (m.kind === 'ratio') return `${fmtNum(s.median, 2)} [${fmtNum(s.min, 2)}..${fmtNum(s.max, 2)}]`;
  return `${fmtSigned(s.median, 1)}${unit} [${fmtSigned(s.min, 1)}..${fmtSigned(s.max, 1)}]`;
}

/** The verdict is on the median; "k/n" says in how many blocks the bar held on its own. */
function pairedVerdict(m: PairedMetric | undefined, test: (v: number) => boolean): string {
  if (!m || m.summary.n === 0) return verdict(null);
  return `${verdict(test(m.summary.median))} ${blocksMeeting(m, test)}/${m.summary.n}`;
}

function rowsForCandidate(c: LabelSummary, ref: LabelSummary, cmp: PairedComparison | null, bars: Bars): Row[] {
  const tag = ` [${c.label}]`;
  const rows: Row[] = [];
  const minR = bars.minRepliesRatio;
  rows.push({
    metric: `replies/s${tag}`,
    ref: fmtInt(ref.repliesPerSec),
    value: fmtInt(c.repliesPerSec),
    paired: pairedText(cmp?.repliesPerSec),
    bar: minR ? `≥ ${minR} × ref` : '',
    result: minR ? pairedVerdict(cmp?.repliesPerSec, (v) => v >= minR) : '',
  });
  const maxC = bars.maxCpuRatio;
  rows.push({
    metric: `µs CPU per reply${tag}`,
    ref: fmtNum(ref.usCpuPerReply, 2),
    value: fmtNum(c.usCpuPerReply, 2),
    paired: pairedText(cmp?.usCpuPerReply),
    bar: maxC ? `≤ ${maxC} × ref` : '',
    result: maxC ? pairedVerdict(cmp?.usCpuPerReply, (v) => v <= maxC) : '',
  });
  const maxL = bars.maxRttExtraUs;
  rows.push({
    metric: `low-load RTT avg µs${tag}`,
    ref: fmtNum(ref.rttAvgUs, 1),
    value: fmtNum(c.rttAvgUs, 1),
    paired: pairedText(cmp?.rttAvgUs, ' µs'),
    bar: maxL !== undefined ? `≤ ref + ${maxL} µs` : '',
    result: maxL !== undefined ? pairedVerdict(cmp?.rttAvgUs, (v) => v <= maxL) : '',
  });
  rows.push({
    metric: `low-load RTT p99 µs${tag}`,
    ref: fmtNum(ref.rttP99Us, 0),
    value: fmtNum(c.rttP99Us, 0),
    paired: pairedText(cmp?.rttP99Us, ' µs'),
    bar: '',
    result: '',
  });
  rows.push(...ownRows(c, ref, tag));
  return rows;
}

/** Rows that say something about each responder on its own (the ref column shows the ref's own value). */
function ownRows(c: LabelSummary, r: LabelSummary, tag: string): Row[] {
  const idle = (s: LabelSummary) =>
    s.okRuns ? `${fmtInt(s.idleCpuUsPerSMax)} (${fmtNum(s.idleSwitchesPerSMax, 0)}/s)` : '—';
  const rows: Row[] = [
    {
      metric: `idle CPU µs/s (wakeups/s), max${tag}`,
      ref: idle(r),
      value: idle(c),
      paired: '',
      bar: `≈ 0 (≤ ${fmtInt(IDLE_MAX_CPU_US_PER_S)} µs/s)*`,
      result: verdict(c.okRuns ? c.idleCpuUsPerSMax <= IDLE_MAX_CPU_US_PER_S : null),
    },
    {
      metric: `RSS kB after warm-up → end${tag}`,
      ref: r.okRuns ? `${fmtInt(r.rssStartKb)} → ${fmtInt(r.rssEndKb)}` : '—',
      value: `${fmtInt(c.rssStartKb)} → ${fmtInt(c.rssEndKb)}`,
      paired: '', // a Node process against a 1 MB C program: a ratio says nothing
      bar: '',
      result: '',
    },
    {
      metric: `SIGTERM → exit ms, max${tag}`,
      ref: fmtInt(r.stopMsMax),
      value: fmtInt(c.stopMsMax),
      paired: '',
      bar: `< ${STOP_GRACE_MS} (no SIGKILL)`,
      result: verdict(c.stoppable ? c.killed === 0 : null),
    },
    {
      metric: `nstat valid runs${tag}`,
      ref: r.runs ? `${r.nstatValid}/${r.runs}` : '—',
      value: `${c.nstatValid}/${c.runs}`,
      paired: '',
      bar: 'CsumErrors 0, EchoReps = replies†',
      result: verdict(c.runs ? c.nstatValid === c.runs : null),
    },
  ];
  if (c.captureRuns) {
    rows.push({
      metric: `pcap records = requests read${tag}`,
      ref: '',
      value: `${c.captureOk}/${c.captureRuns} runs`,
      paired: '',
      bar: 'equal in every run',
      result: verdict(c.captureOk === c.captureRuns),
    });
  }
  return rows;
}

function soakRows(s: SoakResult): Row[] {
  const flat = s.ok ? Math.abs(s.rssEndKb! - s.rssStartKb!) <= SOAK_RSS_TOLERANCE * s.rssStartKb! : null;
  return [
    {
      metric: `RSS kB over ${s.seconds} s flood [${s.label}]`,
      ref: '',
      value: s.ok ? `${fmtInt(s.rssStartKb!)} → ${fmtInt(s.rssEndKb!)} (max ${fmtInt(s.rssMaxKb!)})` : 'failed (below)',
      paired: s.ok ? `end/start ${fmtNum(s.rssEndKb! / s.rssStartKb!, 2)}` : '',
      bar: `end within ±${SOAK_RSS_TOLERANCE * 100}% of start*`,
      result: verdict(flat),
    },
    {
      metric: `nstat valid, ${s.seconds} s flood [${s.label}]`,
      ref: '',
      value: s.nstat ? `${s.nstat.valid ? 'valid' : 'INVALID'} (${fmtInt(s.repliesPerSec ?? NaN)} replies/s)` : '—',
      paired: '',
      bar: 'CsumErrors 0, EchoReps = replies†',
      result: verdict(s.nstat ? s.nstat.valid : null),
    },
  ];
}

function offlineAllValid(o: OfflineResult): boolean {
  return o.pairs.length > 0 && o.pairs.every((p) => p.tunpipe.ok && p.tunpipe.outRecords === o.packets && p.tunpipe.validReplies === o.packets);
}

function offlineRows(o: OfflineResult): Row[] {
  const tp = o.pairs.map((p) => p.tunpipe).filter((t) => t.ok);
  const td = o.pairs.map((p) => p.tcpdump).filter((t) => t.ok);
  const ratios = o.pairs.filter((p) => p.tunpipe.ok && p.tcpdump.ok).map((p) => p.tunpipe.pktsPerSec! / p.tcpdump.pktsPerSec!);
  const r = summarizeSample(ratios);
  const tpMedian = median(tp.map((t) => t.pktsPerSec!));
  const tdNote = o.pairs.find((p) => !p.tcpdump.ok)?.tcpdump.note;
  return [
    {
      metric: `offline pkts/s, ${plural(o.pairs.length, 'pair')} (ref = tcpdump -r -w)`,
      ref: td.length ? fmtInt(median(td.map((t) => t.pktsPerSec!))) : (tdNote ?? 'failed'),
      value: tp.length ? fmtInt(tpMedian) : 'failed (below)',
      paired: r.n ? `${fmtNum(r.median, 2)} [${fmtNum(r.min, 2)}..${fmtNum(r.max, 2)}]` : '',
      bar: `aim > ${fmtInt(OFFLINE_AIM_PKTS_PER_S)}/s`,
      result: verdict(tp.length ? tpMedian > OFFLINE_AIM_PKTS_PER_S : false),
    },
    {
      metric: `offline out.pcap: valid replies (in: ${fmtInt(o.packets)})`,
      ref: td.length ? `${fmtInt(td[0]!.outRecords!)} records` : '—',
      value: tp.length ? `${fmtInt(Math.min(...tp.map((t) => t.validReplies!)))} min of ${tp.length}/${o.pairs.length} runs` : '—',
      paired: '',
      bar: 'every record a valid reply',
      result: verdict(offlineAllValid(o)),
    },
  ];
}

export function buildRows(
  specs: ResponderSpec[],
  runs: RunRecord[],
  soak: SoakResult | null,
  offline: OfflineResult | null,
): { rows: Row[]; comparisons: PairedComparison[] } {
  const hasRef = specs.some((s) => s.label === REF_LABEL);
  const ref = summarizeLabel(REF_LABEL, runs);
  const candidates = specs.filter((s) => s.label !== REF_LABEL);
  const rows: Row[] = [];
  const comparisons: PairedComparison[] = [];
  if (candidates.length === 0 && hasRef) {
    // Only the reference ran: show its own numbers, with nothing to compare.
    rows.push(...rowsForCandidate(ref, ref, null, {}).map((r) => ({ ...r, value: '—', paired: '' })));
  }
  for (const spec of candidates) {
    const cmp = hasRef ? compareWithRef(runs, spec.label) : null;
    if (cmp) comparisons.push(cmp);
    rows.push(...rowsForCandidate(summarizeLabel(spec.label, runs, spec.checksCapture), ref, cmp, spec.bars));
  }
  if (soak) rows.push(...soakRows(soak));
  if (offline) rows.push(...offlineRows(offline));
  return { rows, comparisons };
}

// ---------------------------------------------------------------------------------------------------------------
// Text and JSON

export function formatTable(rows: Row[]): string {
  const header: Row = {
    metric: 'metric',
    ref: 'ref',
    value: 'tunpipe',
    paired: 'paired: median [min..max]',
    bar: 'bar',
    result: 'result',
  };
  const keys: (keyof Row)[] = ['metric', 'ref', 'value', 'paired', 'bar', 'result'];
  const rightAligned = new Set<keyof Row>(['ref', 'value', 'paired']);
  const all = [header, ...rows];
  const widths = keys.map((k) => Math.max(...all.map((r) => r[k].length)));
  const line = (r: Row) =>
    keys
      .map((k, i) => (rightAligned.has(k) ? r[k].padStart(widths[i]!) : r[k].padEnd(widths[i]!)))
      .join('  ')
      .trimEnd();
  const rule = widths.map((w) => '-'.repeat(w)).join('  ');
  return [line(header), rule, ...rows.map(line)].join('\n');
}

export function machineLine(): string {
  const cpus = os.cpus();
  const model = cpus[0]?.model.trim() ?? 'unknown CPU';
  return `machine: ${cpus.length} cores, ${model}, Node ${process.version}, kernel ${os.release()}, CLK_TCK ${TICKS_PER_S}`;
}

/** The one line above the table that says how its "paired" column and verdicts come about. */
export function statisticsLine(blocks: number, order: string[], comparisons: PairedComparison[]): string {
  const pairs = comparisons.length ? Math.min(...comparisons.map((c) => c.pairs)) : 0;
  if (!order.includes(REF_LABEL)) {
    return `statistics: ${blocks} block(s) of back-to-back runs, no reference among them: no paired ratios; columns are medians`;
  }
  if (order.length < 2) return `statistics: ${blocks} run(s) of the reference alone: nothing to compare; columns are medians`;
  return (
    `statistics: paired, ${plural(blocks, 'block')} (${order.join(', ')}, then reversed, alternating), ${plural(pairs, 'complete pair')}; ` +
    `per block: candidate / ref of the same block (RTT: candidate − ref); "paired" = median of the per-block values ` +
    `[min..max], the verdict is on that median, "k/n" = blocks meeting the bar alone; ref/tunpipe = medians of the absolute values`
  );
}

export interface Report {
  machine: string;
  statistics: string;
  options: Record<string, unknown>;
  durationS: number;
  blocks: { block: number; order: string[] }[];
  runs: RunRecord[];
  comparisons: PairedComparison[];
  soak: SoakResult | null;
  offline: OfflineResult | null;
  skipped: string[];
  rows: Row[];
}

export function writeJson(report: Report): void {
  fs.mkdirSync(path.dirname(OUT_JSON), { recursive: true });
  fs.writeFileSync(OUT_JSON, JSON.stringify(report, null, 2) + '\n');
}

export function printReport(report: Report, loadLine: string): void {
  const out: string[] = [''];
  out.push(report.machine);
  out.push(loadLine);
  out.push(report.statistics);
  out.push('');
  out.push(formatTable(report.rows));
  out.push('* threshold chosen by the bench, not from the issue');
  out.push('† IcmpInEchoReps between the replies ping counted and the requests it sent (ping -f sends past -c)');
  if (report.skipped.length) out.push(`skipped: ${report.skipped.join('; ')}`);
  for (const f of report.runs.filter((r) => !r.ok)) out.push(`failed run: ${f.label} block ${f.block + 1}: ${f.error}`);
  const warned = report.runs.filter((r) => r.cpuClockWarning);
  if (warned.length) out.push(`note: in ${warned.length} run(s) schedstat and utime+stime disagree (a thread's CPU may be missing)`);
  if (report.soak && !report.soak.ok) out.push(`failed soak: ${report.soak.label}: ${report.soak.error}`);
  const offlineFail = report.offline?.pairs.find((p) => !p.tunpipe.ok);
  if (offlineFail) out.push(`failed offline: tunpipe --read/--write: ${offlineFail.tunpipe.note}`);
  out.push(`total ${fmtNum(report.durationS, 0)} s; JSON: ${path.relative(process.cwd(), OUT_JSON) || OUT_JSON}`);
  console.log(out.join('\n'));
}

/** Performance bars are noisy and never fail the command; a failed run or a wrong reply does. */
export function harnessOrValidityFailed(report: Report): boolean {
  const badRun = (r: RunRecord) =>
    !r.ok || !r.flood?.nstat.valid || !r.latency?.nstat.valid || r.stop?.killed || (r.capture && !r.capture.ok);
  const soak = report.soak;
  const badSoak = soak !== null && (!soak.ok || !soak.nstat?.valid || soak.stop?.killed === true);
  const badOffline = report.offline !== null && !offlineAllValid(report.offline);
  return report.runs.some(badRun) || badSoak || badOffline;
}
