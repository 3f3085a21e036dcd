/**
 * The report: per-responder summaries of the absolute numbers, the rows of the table (absolute medians, the
 * paired statistic, the bar and the verdict), the table as text, and the same data as JSON.
 */
import * as fs from 'node:fs';
import type { ForwardResult } from './forward.js';
import * as os from 'node:os';
import * as path from 'node:path';
import { OUT_JSON } from './constants.js';
import { TICKS_PER_S } from './measure.js';
import type { OfflineResult, OfflineToolRun, StartupResult } from './offline.js';
import { ioLabel } from './io-path.js';
import { barMet, blocksMeeting, compareWithRef, type PairedComparison, type PairedMetric } from './paired.js';
import { REF_LABEL, STOP_GRACE_MS, type Bars, type ResponderSpec } from './responders.js';
import {
  slicesPerBlock,
  type BlockInfo,
  type Measurement,
  type ResponderLife,
  type SoakResult,
} from './session.js';
import { median, summarizeSample } from './stats.js';
import { fmtInt, fmtNum, fmtSigned, plural } from './text.js';

/**
 * Idle bar (the bench's, not the issue's): the issue says "no CPU while nothing arrives". A process parked in
 * epoll uses none; 0.1% of a core leaves room for the odd timer or GC task, and is far below any polling loop.
 */
const IDLE_MAX_CPU_US_PER_S = 1000;
const OFFLINE_AIM_PKTS_PER_S = 2_000_000;
/** Issue 13: the whole offline command at least half as fast as `tcpdump -r -w` on the same file. */
const OFFLINE_MIN_RATIO = 0.5;
/**
 * RSS across the soak: growth at most this fraction of the start (the bench's threshold). What is looked
 * for is growth with packets; a worker gives back some of its start-up memory in the first seconds of
 * traffic (about 8 MB, not GC'd JavaScript objects: one scavenge in 100,000 packets), which is no leak.
 */
const SOAK_RSS_TOLERANCE = 0.1;

// ---------------------------------------------------------------------------------------------------------------
// Absolute numbers per responder

interface LabelSummary {
  label: string;
  /** Measurements (a flood and a latency test in one block), and how many succeeded. */
  measurements: number;
  okMeasurements: number;
  repliesPerSec: number;
  usCpuPerReply: number;
  rttAvgUs: number;
  rttP99Us: number;
  /** Processes started (one per session), and how many had an idle window. */
  lives: number;
  idled: number;
  idleCpuUsPerSMax: number;
  idleSwitchesPerSMax: number;
  rssStartKb: number;
  rssEndKb: number;
  stopMsMax: number;
  killed: number;
  /** Processes that were still there to be stopped (not the ones that died on their own). */
  stoppable: number;
  nstatValid: number;
  captureOk: number;
  captureChecks: number;
}

function summarizeLabel(
  label: string,
  measurements: Measurement[],
  lives: ResponderLife[],
  checksCapture = false,
): LabelSummary {
  const mine = measurements.filter((m) => m.label === label);
  const ok = mine.filter((m) => m.ok);
  const myLives = lives.filter((l) => l.label === label);
  const idled = myLives.filter((l) => l.idle);
  const med = (f: (m: Measurement) => number | undefined) => median(ok.map((m) => f(m) ?? NaN));
  const medLife = (f: (l: ResponderLife) => number | undefined) => median(myLives.map((l) => f(l) ?? NaN));
  const max = (xs: number[]) => (xs.length ? Math.max(...xs) : NaN);
  const stopped = myLives.filter((l) => l.stop && !l.stop.diedEarly); // processes we had to stop
  return {
    label,
    measurements: mine.length,
    okMeasurements: ok.length,
    repliesPerSec: med((m) => m.flood?.repliesPerSec),
    usCpuPerReply: med((m) => m.flood?.usCpuPerReply),
    rttAvgUs: med((m) => m.latency?.avgUs),
    rttP99Us: med((m) => m.latency?.p99Us),
    lives: myLives.length,
    idled: idled.length,
    idleCpuUsPerSMax: max(idled.map((l) => l.idle!.cpuUsPerS)),
    idleSwitchesPerSMax: max(idled.map((l) => l.idle!.switchesPerS)),
    rssStartKb: medLife((l) => l.rssStartKb),
    rssEndKb: medLife((l) => l.rssEndKb),
    stopMsMax: max(stopped.map((l) => l.stop!.ms)),
    killed: stopped.filter((l) => l.stop!.killed).length,
    stoppable: stopped.length,
    nstatValid: ok.filter((m) => m.flood?.nstat.valid && m.latency?.nstat.valid).length,
    captureOk: myLives.filter((l) => l.capture?.ok).length,
    captureChecks: checksCapture ? myLives.length : 0,
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

/** A sample of ratios as `median [min..max]`; empty for no sample. */
function ratioRange(s: { n: number; median: number; min: number; max: number }): string {
  return s.n ? `${fmtNum(s.median, 2)} [${fmtNum(s.min, 2)}..${fmtNum(s.max, 2)}]` : '';
}

function pairedText(m: PairedMetric | undefined, unit = ''): string {
  if (!m || m.summary.n === 0) return '—';
  const s = m.summary;
  if (m.kind === 'ratio') return ratioRange(s);
  return `${fmtSigned(s.median, 1)}${unit} [${fmtSigned(s.min, 1)}..${fmtSigned(s.max, 1)}]`;
}

/**
 * The verdict is on the median of the valid blocks, and fails when any block failed; "k/n" says in how many
 * blocks the bar held on its own, n counting the failed blocks too.
 */
function pairedVerdict(m: PairedMetric | undefined, test: (v: number) => boolean): string {
  if (!m || m.perBlock.length === 0) return verdict(null);
  return `${verdict(barMet(m, test))} ${blocksMeeting(m, test)}/${m.perBlock.length}`;
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
    s.idled ? `${fmtInt(s.idleCpuUsPerSMax)} (${fmtNum(s.idleSwitchesPerSMax, 0)}/s)` : '—';
  const rss = (s: LabelSummary) => (s.lives ? `${fmtInt(s.rssStartKb)} → ${fmtInt(s.rssEndKb)}` : '—');
  const rows: Row[] = [
    {
      metric: `idle CPU µs/s (wakeups/s), max${tag}`,
      ref: idle(r),
      value: idle(c),
      paired: '',
      bar: `≈ 0 (≤ ${fmtInt(IDLE_MAX_CPU_US_PER_S)} µs/s)*`,
      result: verdict(c.idled ? c.idleCpuUsPerSMax <= IDLE_MAX_CPU_US_PER_S : null),
    },
    {
      metric: `RSS kB after warm-up → session end${tag}`,
      ref: rss(r),
      value: rss(c),
      paired: '', // a Node process against a 1 MB C program: a ratio says nothing
      bar: '',
      result: '',
    },
    {
      metric: `SIGTERM → exit ms, max of ${c.stoppable}${tag}`,
      ref: fmtInt(r.stopMsMax),
      value: fmtInt(c.stopMsMax),
      paired: '',
      bar: `< ${STOP_GRACE_MS} (no SIGKILL)`,
      result: verdict(c.stoppable ? c.killed === 0 : null),
    },
    {
      metric: `nstat valid floods + RTT tests${tag}`,
      ref: r.measurements ? `${r.nstatValid}/${r.measurements}` : '—',
      value: `${c.nstatValid}/${c.measurements}`,
      paired: '',
      bar: 'CsumErrors 0, EchoReps = replies†',
      result: verdict(c.measurements ? c.nstatValid === c.measurements : null),
    },
  ];
  if (c.captureChecks) {
    rows.push({
      metric: `pcap records = requests read${tag}`,
      ref: '',
      value: `${c.captureOk}/${c.captureChecks} processes`,
      paired: '',
      bar: 'equal for every process',
      result: verdict(c.captureOk === c.captureChecks),
    });
  }
  return rows;
}

function soakRows(s: SoakResult): Row[] {
  const flat = s.ok ? s.rssEndKb! - s.rssStartKb! <= SOAK_RSS_TOLERANCE * s.rssStartKb! : null;
  return [
    {
      metric: `RSS kB over ${s.seconds} s flood [${s.label}, ${ioLabel(s.io)}]`,
      ref: '',
      value: s.ok
        ? `${fmtInt(s.rssStartKb!)} → ${fmtInt(s.rssEndKb!)} (max ${fmtInt(s.rssMaxKb!)})`
        : 'failed (below)',
      paired: s.ok ? `end/start ${fmtNum(s.rssEndKb! / s.rssStartKb!, 2)}` : '',
      bar: `no growth: end ≤ start + ${SOAK_RSS_TOLERANCE * 100}%*`,
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
  const allValid = (t: OfflineToolRun) => t.ok && t.outRecords === o.packets && t.validReplies === o.packets;
  return o.pairs.length > 0 && o.pairs.every((p) => allValid(p.tunpipe));
}

/** Start-up: `tunpipe --version` next to `node -e 0`, and what tunpipe adds (the pairs' differences). */
function startupRows(st: StartupResult | undefined): Row[] {
  if (st === undefined) return [];
  const pairs = Math.min(st.nodeMs.length, st.versionMs.length);
  const added = summarizeSample(Array.from({ length: pairs }, (_, i) => st.versionMs[i]! - st.nodeMs[i]!));
  return [
    {
      metric: `start-up ms: tunpipe --version (ref = node -e 0), median of ${plural(pairs, 'run')}`,
      ref: st.nodeMs.length ? fmtNum(median(st.nodeMs), 1) : (st.note ?? 'failed'),
      value: st.versionMs.length ? fmtNum(median(st.versionMs), 1) : (st.note ?? 'failed'),
      paired: added.n ? `${fmtSigned(added.median, 1)} ms [${fmtSigned(added.min, 1)}..${fmtSigned(added.max, 1)}]` : '',
      bar: 'what tunpipe adds to Node (informative)',
      result: verdict(null),
    },
  ];
}

/** The hand-written loop (bench/offline-floor.ts) against tcpdump, and tunpipe against it, pair by pair. */
function floorRows(o: OfflineResult): Row[] {
  const withFloor = o.pairs.filter((p) => p.floor?.ok);
  if (withFloor.length === 0) return [];
  const fl = median(withFloor.map((p) => p.floor!.pktsPerSec!));
  const vsTcpdump = summarizeSample(withFloor.filter((p) => p.tcpdump.ok).map((p) => p.floor!.pktsPerSec! / p.tcpdump.pktsPerSec!));
  const tunpipeVs = summarizeSample(withFloor.filter((p) => p.tunpipe.ok).map((p) => p.tunpipe.pktsPerSec! / p.floor!.pktsPerSec!));
  return [
    {
      metric: '  one hand-written JS loop, the same work (bench/offline-floor.ts; ref = tcpdump)',
      ref: '',
      value: fmtInt(fl),
      paired: ratioRange(vsTcpdump),
      bar: 'what one Node thread does at best (informative)',
      result: verdict(null),
    },
    {
      metric: '  tunpipe against that loop (ref = the loop)',
      ref: fmtInt(fl),
      value: '',
      paired: ratioRange(tunpipeVs),
      bar: "tunpipe's own cost (informative)",
      result: verdict(null),
    },
  ];
}

function offlineRows(o: OfflineResult): Row[] {
  const tp = o.pairs.map((p) => p.tunpipe).filter((t) => t.ok);
  const td = o.pairs.map((p) => p.tcpdump).filter((t) => t.ok);
  const bothOk = o.pairs.filter((p) => p.tunpipe.ok && p.tcpdump.ok);
  const ratios = bothOk.map((p) => p.tunpipe.pktsPerSec! / p.tcpdump.pktsPerSec!);
  const r = summarizeSample(ratios);
  const tpMedian = median(tp.map((t) => t.pktsPerSec!));
  const steady = tp.filter((t) => t.steadyPktsPerSec !== undefined);
  const tdNote = o.pairs.find((p) => !p.tcpdump.ok)?.tcpdump.note;
  return [
    {
      metric: `offline pkts/s, ${plural(o.pairs.length, 'pair')} (ref = tcpdump -r -w)`,
      ref: td.length ? fmtInt(median(td.map((t) => t.pktsPerSec!))) : (tdNote ?? 'failed'),
      value: tp.length ? fmtInt(tpMedian) : 'failed (below)',
      paired: ratioRange(r),
      bar: `paired ≥ ${fmtNum(OFFLINE_MIN_RATIO, 2)} (the whole command)`,
      result: verdict(r.n ? r.median >= OFFLINE_MIN_RATIO : false),
    },
    ...floorRows(o),
    {
      metric: '  the same past start-up (a run on an empty file, subtracted)',
      ref: '',
      value: steady.length ? `${fmtInt(median(steady.map((t) => t.steadyPktsPerSec!)))} (start-up ${fmtNum(median(steady.map((t) => t.fixedS!)), 2)} s)` : '—',
      paired: '',
      bar: `aim > ${fmtInt(OFFLINE_AIM_PKTS_PER_S)}/s`,
      result: verdict(steady.length ? median(steady.map((t) => t.steadyPktsPerSec!)) > OFFLINE_AIM_PKTS_PER_S : null),
    },
    ...startupRows(o.startup),
    {
      metric: `offline out.pcap: valid replies (in: ${fmtInt(o.packets)})`,
      ref: td.length ? `${fmtInt(td[0]!.outRecords!)} records` : '—',
      value: tp.length ? `${fmtInt(Math.min(...tp.map((t) => t.validReplies!)))} (fewest of ${tp.length} runs)` : '—',
      paired: '',
      bar: 'every record a valid reply',
      result: verdict(offlineAllValid(o)),
    },
  ];
}

export function buildRows(
  specs: ResponderSpec[],
  measurements: Measurement[],
  lives: ResponderLife[],
  soak: SoakResult | null,
  offline: OfflineResult | null,
): { rows: Row[]; comparisons: PairedComparison[] } {
  const hasRef = specs.some((s) => s.label === REF_LABEL);
  const ref = summarizeLabel(REF_LABEL, measurements, lives);
  const candidates = specs.filter((s) => s.label !== REF_LABEL);
  const rows: Row[] = [];
  const comparisons: PairedComparison[] = [];
  if (candidates.length === 0 && hasRef) {
    // Only the reference ran: show its own numbers, with nothing to compare.
    rows.push(...rowsForCandidate(ref, ref, null, {}).map((r) => ({ ...r, value: '—', paired: '' })));
  }
  for (const spec of candidates) {
    // One set of rows per I/O path the candidate's processes reported: a fall-back to poll is never
    // counted as io_uring's figures.
    const paths = [...new Set(measurements.filter((m) => m.label === spec.label).map((m) => m.io))];
    if (paths.length === 0) paths.push(undefined);
    for (const io of paths) {
      const name = spec.usesCli ? `${spec.label}, ${ioLabel(io)}` : spec.label;
      const mine = measurements.filter((m) => m.label !== spec.label || m.io === io);
      const myLives = lives.filter((l) => l.label !== spec.label || l.io === io);
      const cmp = hasRef ? compareWithRef(mine, spec.label, () => true, name) : null;
      if (cmp) comparisons.push(cmp);
      const summary = { ...summarizeLabel(spec.label, mine, myLives, spec.checksCapture), label: name };
      rows.push(...rowsForCandidate(summary, ref, cmp, spec.bars));
    }
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
  const node = `Node ${process.version}`;
  return `machine: ${cpus.length} cores, ${model}, ${node}, kernel ${os.release()}, CLK_TCK ${TICKS_PER_S}`;
}

/** The one line above the table that says how its "paired" column and verdicts come about. */
export function statisticsLine(
  blocks: BlockInfo[],
  sessions: number,
  labels: string[],
  comparisons: PairedComparison[],
): string {
  const where = `${plural(blocks.length, 'block')} in ${plural(sessions, 'session')}`;
  if (!labels.includes(REF_LABEL)) return `statistics: ${where}, no reference: no paired ratios; columns are medians`;
  if (labels.length < 2) return `statistics: ${where}, the reference alone: nothing to compare; columns are medians`;
  const pairs = comparisons.length ? Math.min(...comparisons.map((c) => c.pairs)) : 0;
  return (
    `statistics: paired; ${where} (responders alive together, one namespace each; in a block each one's flood ` +
    `and pings are cut in ${slicesPerBlock(labels.length)} slices interleaved with the others' in every rotation of the order, forward and reversed), ` +
    `${plural(pairs, 'complete pair')} per candidate; "paired" = median [min..max] of the per-block ` +
    `candidate/ref ratios (RTT: candidate − ref) over blocks whose replies nstat counted valid; verdict on the median, FAIL when a block failed; k/n = blocks meeting the bar alone, failed blocks in n; ` +
    `ref, tunpipe = medians of absolute values`
  );
}

export interface Report {
  machine: string;
  statistics: string;
  options: Record<string, unknown>;
  durationS: number;
  blocks: BlockInfo[];
  lives: ResponderLife[];
  measurements: Measurement[];
  comparisons: PairedComparison[];
  soak: SoakResult | null;
  offline: OfflineResult | null;
  /** The forwarding section (lib/forward.ts). */
  forward?: ForwardResult | null;
  /** The same with offloads (tunpipe --offload against the C forwarder with IFF_VNET_HDR). */
  forwardOffload?: ForwardResult | null;
  /** The same with stages on the offload path (FORWARD_STAGES_PIPELINE). */
  forwardOffloadStages?: ForwardResult | null;
  /** The impairment accuracy section (lib/impair.ts), when asked for. */
  impair?: unknown;
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
  for (const l of report.lives.filter((l) => !l.ok)) {
    out.push(`failed: ${l.label} in session ${l.session + 1}: ${l.error}`);
  }
  for (const m of report.measurements.filter((m) => !m.ok)) {
    out.push(`failed measurement: ${m.label} block ${m.block + 1}: ${m.error}`);
  }
  const warned = report.measurements.filter((m) => m.cpuClockWarning).length;
  if (warned) out.push(`note: in ${warned} flood(s) schedstat and utime+stime disagree (missing thread CPU?)`);
  if (report.soak && !report.soak.ok) out.push(`failed soak: ${report.soak.label}: ${report.soak.error}`);
  const offlineFail = report.offline?.pairs.find((p) => !p.tunpipe.ok);
  if (offlineFail) out.push(`failed offline: tunpipe --read/--write: ${offlineFail.tunpipe.note}`);
  out.push(`total ${fmtNum(report.durationS, 0)} s; JSON: ${path.relative(process.cwd(), OUT_JSON) || OUT_JSON}`);
  console.log(out.join('\n'));
}

/** Performance bars are noisy and never fail the command; a failed run or a wrong reply does. */
export function harnessOrValidityFailed(report: Report): boolean {
  const badMeasurement = (m: Measurement) => !m.ok || !m.flood?.nstat.valid || !m.latency?.nstat.valid;
  const badLife = (l: ResponderLife) => !l.ok || l.stop?.killed === true || l.capture?.ok === false;
  const soak = report.soak;
  const badSoak = soak !== null && (!soak.ok || !soak.nstat?.valid || soak.stop?.killed === true);
  const badOffline = report.offline !== null && !offlineAllValid(report.offline);
  return report.measurements.some(badMeasurement) || report.lives.some(badLife) || badSoak || badOffline;
}
