/**
 * `npm run bench`: how close tunpipe's ICMP echo responder comes to a C program on the same machine and load.
 *
 * WHAT it measures, for each responder (the C reference bench/echo-ref.c, `tunpipe 'parse | icmp-echo |
 * checksum'`, and the same with `pcap FILE` in the pipeline):
 *   - throughput: `ping -f -l 64 -c N` against it; replies/s = replies ping received / the time ping reports;
 *   - CPU per reply: the responder's own CPU time over that flood (all threads, schedstat, ns) / replies;
 *   - latency at low load: `ping -i 0.002`, average and p99 of the per-packet RTTs;
 *   - idle: its CPU time and wake-ups over a window with no traffic (should be ~0: no polling);
 *   - memory: RSS after warm-up and at the end of each process's life, and across one long flood (the "soak");
 *   - validity: the kernel's counters in its namespace (nstat: no checksum errors, IcmpInEchoReps = the replies
 *     ping counted), every request in the capturing pipeline's pcap, exit on SIGTERM without SIGKILL;
 *   - offline: `tunpipe --read in.pcap --write out.pcap` on 1,000,000 generated echo requests (packets/s,
 *     every output record a valid reply), next to `tcpdump -r in.pcap -w out.pcap` on the same file.
 *
 * HOW the numbers are compared: on a shared 2-core machine the ping client's own speed changes by 2x from one
 * moment to the next (other people's load; whether the scheduler puts ping and the responder on one core or
 * two), so numbers taken at different moments cannot be compared. So the bench is PAIRED. Each responder has
 * its own namespace, and all of them are started together and warmed up (a SESSION, lib/session.ts). Then come
 * BLOCKS: in a block each responder gets a 100,000-request flood in 2n slices (n responders) interleaved
 * with the others' slices in every rotation, forward and reversed (ABC CBA BCA ACB CAB BAC), then 500
 * low-rate pings interleaved the same way; the next block starts from the other end (CBA ...). A candidate is compared with the reference's measurement of the SAME block (ratio of
 * replies/s and of CPU per reply, difference of RTT), and the table gives the median of those per-block values
 * with their min..max; verdicts are on that median (lib/paired.ts). Absolute medians are shown next to them.
 * Sessions of 4 blocks, 3 by default: fresh processes each time, each warmed up by short floods until its CPU
 * per reply stops falling (the JIT is done).
 *
 * Safety: everything that touches the network happens in private network namespaces `tpbench-<pid>-<n>`
 * (created here, removed at the end, on failure and on SIGINT/SIGTERM, after the child processes are stopped);
 * nothing is configured in the host namespace. In each, the device is `tpb0` with 198.18.0.1/24 (RFC 2544's
 * benchmarking range), and ping targets only 198.18.0.2 through it. Every ping is bounded by -c and -w, every
 * wait by a timeout, and the whole bench by a time budget (blocks that would not fit are skipped and reported).
 *
 * Modules: lib/namespace.ts (namespaces, temp dir, cleanup on signals), lib/children.ts (child processes),
 * lib/responders.ts (the responder table, start/stop, device readiness), lib/measure.ts (pings, CPU, RSS,
 * nstat), lib/session.ts (a session of blocks; the soak), lib/paired.ts and lib/stats.ts (the statistics),
 * lib/pcapfile.ts (writing and scanning pcap files), lib/offline.ts, lib/report.ts (table and JSON).
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { isShuttingDown } from './lib/children.js';
import { FORWARD_BUDGET_S, REPO_ROOT, TIME_BUDGET_S } from './lib/constants.js';
import { formatForward, runForward, type ForwardResult } from './lib/forward.js';
import { formatQueues, runQueues, type QueuesResult } from './lib/queues.js';
import { median } from './lib/stats.js';
import { runImpairAccuracy } from './lib/impair.js';
import { formatAccuracyTable, type AccuracyRow } from './lib/impair-analysis.js';
import { elapsedS, log } from './lib/log.js';
import {
  createNamespace,
  ensureRoot,
  installCleanupOnSignals,
  makeTmpDir,
  removeStaleNamespaces,
  shutdown,
} from './lib/namespace.js';
import { OFFLINE_PIPELINE, runOffline, type OfflineResult } from './lib/offline.js';
import { filterBenchSeconds, formatFilterReport, runFilterBench, writeFilterJson, type FilterBenchOptions } from './lib/filter.js';
import {
  buildRows,
  harnessOrValidityFailed,
  machineLine,
  printReport,
  statisticsLine,
  writeJson,
  type Report,
} from './lib/report.js';
import {
  compileReference,
  responderTable,
  selectResponders,
  UsageError,
  type ResponderSpec,
} from './lib/responders.js';
import {
  slicesPerBlock,
  runSession,
  runSoak,
  type BlockInfo,
  type Measurement,
  type ResponderLife,
  type RunCounts,
  type Setup,
  type Slot,
  type SoakResult,
} from './lib/session.js';
import { fmtInt } from './lib/text.js';
import { readMachine, RESULTS_FORMAT, writeResults } from './lib/results.js';
import { execFileSync } from 'node:child_process';

/** What tree was measured, for the results file; undefined outside a git checkout. */
function gitDescribe(): string | undefined {
  try {
    return execFileSync('git', ['-C', REPO_ROOT, 'describe', '--always', '--dirty'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
  } catch {
    return undefined;
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Options

interface Options {
  quick: boolean;
  /** Blocks, i.e. pairs per candidate (--pairs, or its older name --rounds). */
  pairs: number;
  counts: RunCounts;
  soakSeconds: number;
  offlinePackets: number;
  offlinePairs: number;
  filter: Omit<FilterBenchOptions, 'cli'>;
  only: Set<string> | null;
  keepGoing: boolean;
  cli: string;
}

const HELP = `usage: npm run bench -- [options]     (or: node dist/bench/run.js [options]; needs root)
  --quick        2 blocks and smaller counts (flood 30,000, 200 latency pings, 5 s soak, 200,000 offline packets)
  --pairs N      blocks, i.e. paired measurements per candidate (default 12, in sessions of 4); --rounds N: the same
  --count N      flood requests per responder and block (default 100,000, in 2 slices per responder, interleaved)
  --only LIST    comma-separated parts to run: ref, tunpipe, tunpipe+pcap, offline, forward, queues, filter, impair, ipv6 (default:
                 all of these; filter when the time budget allows), and tunpipe-poll (the worker without
                 io_uring, only when named); filter alone: --only filter (bench/lib/filter.ts);
                 without ref there are no paired ratios, only absolute numbers
  --keep-going   record a failed run and go on, instead of stopping the bench at the first failure
  --cli PATH     the tunpipe CLI to bench (default: dist/bin/tunpipe.js in this repository)
  --help         this text
Results: one table on stdout (progress on stderr), the same as JSON in bench/out/last.json, and the whole run
(machine, every block, I/O paths, nstat checks) in bench/results/<date>-<cpu>.json (-quick.json for --quick),
from which \`npm run bench:report\` makes the README's tables.
Exit status 1 when a run failed or a validity check did (nstat, pcap count, offline replies, SIGKILL needed);
performance bars (PASS/FAIL in the table) do not change it: numbers on a shared machine are noisy.`;

function positiveInt(text: string | undefined, flag: string, fallback: number): number {
  if (text === undefined) return fallback;
  const n = Number(text);
  if (!Number.isInteger(n) || n <= 0) throw new UsageError(`${flag} needs a positive integer, got '${text}'`);
  return n;
}

/** Returns null for --help. */
function parseOptions(argv: string[]): Options | null {
  const { values } = parseArgs({
    args: argv,
    strict: true,
    allowPositionals: false,
    options: {
      quick: { type: 'boolean', default: false },
      pairs: { type: 'string' },
      rounds: { type: 'string' },
      count: { type: 'string' },
      only: { type: 'string' },
      'keep-going': { type: 'boolean', default: false },
      cli: { type: 'string' },
      help: { type: 'boolean', default: false },
    },
  });
  if (values.help) return null;
  if (values.pairs !== undefined && values.rounds !== undefined) {
    throw new UsageError('give --pairs or --rounds (its older name), not both');
  }
  const quick = values.quick === true;
  const only = values.only === undefined ? null : new Set(values.only.split(',').map((s) => s.trim()).filter(Boolean));
  return {
    quick,
    pairs: positiveInt(values.pairs ?? values.rounds, values.pairs ? '--pairs' : '--rounds', quick ? 2 : 12),
    counts: {
      warmup: quick ? 10_000 : 20_000,
      warmupMinFloods: 2,
      warmupMaxFloods: 6,
      flood: positiveInt(values.count, '--count', quick ? 30_000 : 100_000),
      latency: quick ? 200 : 500,
      idleMs: quick ? 500 : 1000,
    },
    soakSeconds: quick ? 5 : 20,
    offlinePackets: quick ? 200_000 : 1_000_000,
    offlinePairs: quick ? 2 : 3,
    filter: { bigPackets: quick ? 1_000_000 : 5_000_000, rounds: quick ? 2 : 4, pairs: quick ? 1 : 2 },
    only,
    keepGoing: values['keep-going'] === true,
    cli: path.resolve(values.cli ?? path.join(REPO_ROOT, 'dist', 'bin', 'tunpipe.js')),
  };
}

// ---------------------------------------------------------------------------------------------------------------
// Sessions and the time budget

/**
 * Blocks per session. More blocks per session: less time spent starting and warming up; more sessions: more
 * fresh processes, so that one start (JIT decisions, heap layout) does not decide the result. Even, so that
 * each session has as many ABC blocks as CBA ones.
 */
const BLOCKS_PER_SESSION = 4;

/**
 * Nominal seconds of one block: per responder 2 × slicesPerBlock pings (flood and latency slices) at ~40 ms
 * each to start through `ip netns exec`, 3 nstat reads, the floods at a typical rate here, the low-rate pings.
 */
function nominalBlockS(c: RunCounts, responders: number): number {
  return responders * (2 * slicesPerBlock(responders) * 0.04 + 3 * 0.03 + c.flood / 150_000 + c.latency * 0.0021);
}

/** Nominal seconds of a session without its blocks: start, warm-up, idle window, stop. */
function sessionOverheadS(c: RunCounts, responders: number): number {
  return responders * (1 + (c.warmupMaxFloods * c.warmup) / 150_000) + c.idleMs / 1000 + 1;
}

/** What to keep free for the soak and the offline part, so that the blocks do not eat their time. */
function reservedAfterBlocksS(opts: Options, soakWanted: boolean, offlineWanted: boolean): number {
  const soak = soakWanted ? opts.soakSeconds + 4 : 0;
  const offline = offlineWanted ? 2 + (opts.offlinePackets / 1e6) * (1.5 + opts.offlinePairs * 2.5) : 0;
  return soak + offline;
}

function fitsBudget(seconds: number, what: string, skipped: string[]): boolean {
  if (elapsedS() + seconds <= TIME_BUDGET_S) return true;
  skipped.push(`${what} (time budget)`);
  log(`skipping ${what}: it would exceed the ${TIME_BUDGET_S} s budget`);
  return false;
}

interface SessionsOutcome {
  blocks: BlockInfo[];
  lives: ResponderLife[];
  measurements: Measurement[];
  sessions: number;
  /** Ended early: a failure without --keep-going, or a signal. */
  stopped: boolean;
}

/**
 * Sessions of BLOCKS_PER_SESSION blocks until opts.pairs blocks are done. A block starts only if it fits in
 * the budget at the pace of the slowest block so far (a slow responder makes pings run to their -w), with time
 * left to end the session and for what comes after the blocks.
 */
async function runSessions(
  slots: Slot[],
  opts: Options,
  setup: Setup,
  reserveS: number,
  skipped: string[],
): Promise<SessionsOutcome> {
  const out: SessionsOutcome = { blocks: [], lives: [], measurements: [], sessions: 0, stopped: false };
  const teardownS = opts.counts.idleMs / 1000 + 1;
  const blockS = () => Math.max(nominalBlockS(opts.counts, slots.length), ...out.blocks.map((b) => b.durationS));
  const fits = (extraS: number) => elapsedS() + extraS + blockS() + teardownS + reserveS <= TIME_BUDGET_S;
  while (out.blocks.length < opts.pairs) {
    if (!fits(sessionOverheadS(opts.counts, slots.length))) break;
    const want = Math.min(BLOCKS_PER_SESSION, opts.pairs - out.blocks.length);
    const plan = {
      session: out.sessions,
      firstBlock: out.blocks.length,
      blocks: want,
      nextBlockFits: () => fits(0),
      keepGoing: opts.keepGoing,
    };
    const res = await runSession(slots, plan, opts.counts, setup);
    out.sessions++;
    out.blocks.push(...res.blocks);
    out.lives.push(...res.lives);
    out.measurements.push(...res.measurements);
    if (isShuttingDown() || res.stopped) return { ...out, stopped: true };
    if (res.blocks.length < want) break; // the budget cut the session short
  }
  if (out.blocks.length < opts.pairs) {
    skipped.push(`blocks ${out.blocks.length + 1}..${opts.pairs} of ${opts.pairs} (time budget)`);
    log(`skipped blocks ${out.blocks.length + 1}..${opts.pairs}: they would not fit in the ${TIME_BUDGET_S} s budget`);
  }
  return out;
}

// ---------------------------------------------------------------------------------------------------------------
// Main

async function main(): Promise<number> {
  let opts: Options | null;
  let specs: ResponderSpec[];
  try {
    opts = parseOptions(process.argv.slice(2));
    if (opts === null) {
      console.log(HELP);
      return 0;
    }
    specs = selectResponders(responderTable(opts.cli), opts.only);
  } catch (err) {
    console.error(`bench: ${(err as Error).message}\n${HELP}`);
    return 2;
  }
  const offlineWanted = opts.only === null || opts.only.has('offline');
  const forwardWanted = opts.only === null || opts.only.has('forward');
  const queuesWanted = opts.only === null || opts.only.has('queues');
  if ((specs.some((s) => s.usesCli) || offlineWanted) && !fs.existsSync(opts.cli) && !opts.keepGoing) {
    console.error(`bench: ${opts.cli} not found: build the CLI first, or run with --only ref (or --keep-going)`);
    return 1;
  }
  ensureRoot();
  installCleanupOnSignals();
  removeStaleNamespaces();
  // One namespace per responder, kept for the whole bench (sessions and the soak reuse them).
  const slots: Slot[] = specs.map((spec, i) => ({ spec, ns: createNamespace(i) }));
  const tmpDir = makeTmpDir();
  const setup: Setup = { tmpDir, refBinary: compileReference(tmpDir) };
  log(`${machineLine()}\nnamespaces ${slots.map((s) => s.ns).join(', ') || '(none)'}, temp dir ${tmpDir}`);

  const skipped: string[] = [];
  const soakSlot = slots.find((s) => s.spec.soak);
  const reserveS = reservedAfterBlocksS(opts, soakSlot !== undefined, offlineWanted) + (forwardWanted ? 2 * FORWARD_BUDGET_S : 0) + (queuesWanted ? FORWARD_BUDGET_S : 0);
  const outcome: SessionsOutcome = slots.length
    ? await runSessions(slots, opts, setup, reserveS, skipped)
    : { blocks: [], lives: [], measurements: [], sessions: 0, stopped: false };
  const stopped = outcome.stopped;
  if (stopped) skipped.push('the rest, after the first failure (--keep-going goes on)');

  let soak: SoakResult | null = null;
  if (!stopped && soakSlot && fitsBudget(opts.soakSeconds + 4, `${soakSlot.spec.label} soak`, skipped)) {
    soak = await runSoak(soakSlot, opts.soakSeconds, opts.counts, setup);
    const rss = `RSS ${fmtInt(soak.rssStartKb ?? NaN)} → ${fmtInt(soak.rssEndKb ?? NaN)} kB`;
    if (!isShuttingDown()) log(`soak ${soakSlot.spec.label}: ${soak.ok ? rss : `FAILED: ${soak.error}`}`);
  }
  let offline: OfflineResult | null = null;
  if (!stopped && offlineWanted && fitsBudget(reservedAfterBlocksS(opts, false, true), 'offline bench', skipped)) {
    offline = await runOffline({ packets: opts.offlinePackets, pairs: opts.offlinePairs, cli: opts.cli }, tmpDir);
  }

  let forward: ForwardResult | null = null;
  if (!stopped && forwardWanted && fitsBudget(FORWARD_BUDGET_S, 'forwarding section', skipped)) {
    forward = await runForward({ cli: opts.cli, tmpDir, pairs: opts.quick ? 1 : 3, iperfSeconds: opts.quick ? 2 : 3, pingCount: opts.quick ? 10_000 : 30_000 });
  }
  let forwardOffload: ForwardResult | null = null;
  if (!stopped && forwardWanted && fitsBudget(FORWARD_BUDGET_S, 'forwarding section with offloads', skipped)) {
    forwardOffload = await runForward({ cli: opts.cli, tmpDir, offload: true, pairs: opts.quick ? 1 : 3, iperfSeconds: opts.quick ? 2 : 3, pingCount: opts.quick ? 10_000 : 30_000 });
  }
  // 1 queue against 2 (up to min(4, cores)) on the wire, plain and with --offload (bench/lib/queues.ts).
  let queues: QueuesResult | null = null;
  if (!stopped && queuesWanted && fitsBudget(FORWARD_BUDGET_S, 'queues section', skipped)) {
    queues = await runQueues({ cli: opts.cli, pairs: opts.quick ? 1 : 2, iperfSeconds: opts.quick ? 2 : 3, flows: 4 });
  }
  const filterOpts = { ...opts.filter, cli: opts.cli };
  const filterWanted = !stopped && (opts.only === null || opts.only.has('filter'));
  const filter = filterWanted && fitsBudget(filterBenchSeconds(filterOpts), 'filter bench', skipped) ? await runFilterBench(filterOpts, tmpDir) : null;
  // The impairment accuracy section takes a minute or more: run when named (--only impair).
  let impair: AccuracyRow[] | null = null;
  if (!stopped && opts.only?.has('impair')) {
    impair = await runImpairAccuracy({ cli: opts.cli, quick: opts.quick }, createNamespace(110), createNamespace(111));
  }

  const { rows, comparisons } = buildRows(specs, outcome.measurements, outcome.lives, soak, offline);
  const report: Report = {
    machine: machineLine(),
    statistics: statisticsLine(outcome.blocks, outcome.sessions, specs.map((s) => s.label), comparisons),
    options: { ...opts, only: opts.only ? [...opts.only] : null },
    durationS: elapsedS(),
    blocks: outcome.blocks,
    lives: outcome.lives,
    measurements: outcome.measurements,
    comparisons,
    soak,
    offline,
    forward,
    forwardOffload,
    impair,
    skipped,
    rows,
  };
  writeJson(report);
  const resultsFile = writeResults(
    { format: RESULTS_FORMAT, date: new Date().toISOString(), argv: process.argv.slice(2), quick: opts.quick, machine: readMachine(), commit: gitDescribe() },
    { ...report, machineLine: report.machine, filter, queues },
  );
  const c = opts.counts;
  const loadLine =
    `load: warm-up ping -f -l 64 -c ${fmtInt(c.warmup)}, ${c.warmupMinFloods}..${c.warmupMaxFloods} times until ` +
    `CPU/reply settles; per block and responder ping -f -l 64 (${fmtInt(c.flood)} requests), then ping -i 0.002 ` +
    `(${fmtInt(c.latency)}), each in ${slicesPerBlock(specs.length)} interleaved slices; idle ${c.idleMs} ms per session; ` +
    `ref = bench/echo-ref.c (C, blocking read/write)` +
    (offline ? `; offline: '${OFFLINE_PIPELINE}' on ${fmtInt(opts.offlinePackets)} requests` : '');
  if (slots.length || offline) printReport(report, loadLine);
  if (forward) console.log(`\n${formatForward(forward)}`);
  if (forwardOffload) {
    console.log(`\n${formatForward(forwardOffload, true)}`);
    if (forward) {
      const gain = median(forwardOffload.turns.filter((t) => t.label === 'tunpipe').map((t) => t.tcpGbit)) / median(forward.turns.filter((t) => t.label === 'ref').map((t) => t.tcpGbit));
      console.log(`tunpipe --offload TCP / plain C forwarder TCP: ${gain.toFixed(2)} (issue 13 asks for more than 8)`);
    }
  }
  if (queues) console.log(`\n${formatQueues(queues)}`);
  if (impair) console.log(`\n${formatAccuracyTable(impair)}`);
  // The ping -6 -f row (bench/ipv6.ts, a bench of its own with namespaces of its own), after this one's.
  if (!stopped && (opts.only === null || opts.only.has('ipv6'))) {
    console.log('');
    spawnSync(process.execPath, [path.join(path.dirname(fileURLToPath(import.meta.url)), 'ipv6.js'), '--blocks', opts.quick ? '4' : '12', '--cli', opts.cli], { stdio: 'inherit' });
  }
  if (filter) {
    writeFilterJson(filter);
    console.log(formatFilterReport(filter));
  }
  console.log(`\nresults: ${path.relative(REPO_ROOT, resultsFile)} (README tables: npm run bench:report -- --write-readme)`);
  return harnessOrValidityFailed(report) || filter?.ok === false ? 1 : 0;
}

main().then(
  (code) => shutdown(code),
  (err: unknown) => {
    if (isShuttingDown()) return; // a signal got there first; its shutdown exits
    console.error(`bench: ${err instanceof Error ? err.message : String(err)}`);
    return shutdown(1);
  },
);
