/**
 * `npm run bench`: how close tunpipe's ICMP echo responder comes to a C program on the same machine and load.
 *
 * WHAT it measures, for each responder (the C reference bench/echo-ref.c, `tunpipe 'parse | icmp-echo |
 * checksum'`, and the same with `pcap FILE` in the pipeline):
 *   - throughput: `ping -f -l 64 -c N` against it; replies/s = replies ping received / the time ping reports;
 *   - CPU per reply: the responder's own CPU time over that flood (all threads, schedstat, ns) / replies;
 *   - latency at low load: `ping -i 0.002`, average and p99 of the per-packet RTTs;
 *   - idle: its CPU time and wake-ups over a window with no traffic (should be ~0: no polling);
 *   - memory: RSS after warm-up and at the end of each run, and across one long flood (the "soak");
 *   - validity: the namespace's kernel counters (nstat: no checksum errors, IcmpInEchoReps = the replies ping
 *     counted), every request in the pcap of the capturing pipeline, exit on SIGTERM without SIGKILL;
 *   - offline: `tunpipe --read in.pcap --write out.pcap` on 1,000,000 generated echo requests (packets/s,
 *     every output record a valid reply), next to `tcpdump -r in.pcap -w out.pcap` on the same file.
 *
 * HOW the numbers are compared: on a shared 2-core machine the ping client's own speed drifts by 2x from one
 * minute to the next, so absolute numbers from different moments cannot be compared. The bench therefore runs
 * BLOCKS: every responder once, back to back, in the table's order in even blocks and reversed in odd ones
 * (ABC, CBA, ...: a linear drift then hits every position alike). Each run is short (start, warm-up flood so
 * the JIT has compiled the hot path, measured flood of 100,000 requests, 500 low-rate pings, idle window,
 * SIGTERM). A candidate is compared with the reference run of the SAME block (ratio of replies/s and of CPU per
 * reply, difference of RTT), and the table gives the median of those per-block values with their min..max;
 * verdicts are on that median (see lib/paired.ts). Absolute medians are shown next to it.
 *
 * Safety: everything that touches the network happens in a private network namespace `tpbench-<pid>` (created
 * here, removed at the end, on failure and on SIGINT/SIGTERM, after the child processes are stopped); nothing is
 * configured in the host namespace. The device is `tpb0` with 198.18.0.1/24 (RFC 2544's benchmarking range), and
 * ping targets only 198.18.0.2 through it. Every ping is bounded by -c and -w, every wait by a timeout, and the
 * whole bench by a time budget (blocks that would not fit are skipped and reported).
 *
 * Modules: lib/namespace.ts (namespace, temp dir, cleanup on signals), lib/children.ts (child processes),
 * lib/responders.ts (the responder table, start/stop, device readiness), lib/measure.ts (pings, CPU, RSS,
 * nstat), lib/run-responder.ts (one run; the soak), lib/paired.ts and lib/stats.ts (the statistics),
 * lib/pcapfile.ts (writing and scanning pcap files), lib/offline.ts, lib/report.ts (table and JSON).
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { parseArgs } from 'node:util';
import { isShuttingDown } from './lib/children.js';
import { REPO_ROOT, TIME_BUDGET_S } from './lib/constants.js';
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
  describeRun,
  runResponderOnce,
  runSoak,
  type RunCounts,
  type RunRecord,
  type Setup,
  type SoakResult,
} from './lib/run-responder.js';
import { fmtInt } from './lib/text.js';

// ---------------------------------------------------------------------------------------------------------------
// Options

interface Options {
  quick: boolean;
  /** Blocks of back-to-back runs, i.e. pairs per candidate (--pairs, or its older name --rounds). */
  pairs: number;
  counts: RunCounts;
  soakSeconds: number;
  offlinePackets: number;
  offlinePairs: number;
  only: Set<string> | null;
  keepGoing: boolean;
  cli: string;
}

const HELP = `usage: npm run bench -- [options]     (or: node dist/bench/run.js [options]; needs root)
  --quick        2 blocks and smaller counts (flood 30,000, 200 latency pings, 5 s soak, 200,000 offline packets)
  --pairs N      blocks of back-to-back runs, one pair per candidate and block (default 8); --rounds N: the same
  --count N      echo requests per measured flood (default 100,000)
  --only LIST    comma-separated parts to run: ref, tunpipe, tunpipe+pcap, offline (default: all);
                 without ref there are no paired ratios, only absolute numbers
  --keep-going   record a failed run and go on, instead of stopping the bench at the first failure
  --cli PATH     the tunpipe CLI to bench (default: dist/bin/tunpipe.js in this repository)
  --help         this text
Results: one table on stdout (progress on stderr), the same as JSON in bench/out/last.json.
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
  if (values.pairs !== undefined && values.rounds !== undefined) throw new UsageError('give --pairs or --rounds, not both');
  const quick = values.quick === true;
  const only = values.only === undefined ? null : new Set(values.only.split(',').map((s) => s.trim()).filter(Boolean));
  return {
    quick,
    pairs: positiveInt(values.pairs ?? values.rounds, values.pairs ? '--pairs' : '--rounds', quick ? 2 : 8),
    counts: {
      // Measured here: a fresh tunpipe's CPU per packet falls from ~17 µs over the first 5,000 requests to its
      // plateau after 15,000-40,000 (varies run to run), so two floods of 20,000; the JSON keeps the CPU per
      // reply of each (warmup.usCpuPerReplyByFlood) to compare with the measured flood's.
      warmupFloods: 2,
      warmup: quick ? 10_000 : 20_000,
      flood: positiveInt(values.count, '--count', quick ? 30_000 : 100_000),
      latency: quick ? 200 : 500,
      idleMs: quick ? 500 : 1000,
    },
    soakSeconds: quick ? 5 : 20,
    offlinePackets: quick ? 200_000 : 1_000_000,
    offlinePairs: quick ? 2 : 3,
    only,
    keepGoing: values['keep-going'] === true,
    cli: path.resolve(values.cli ?? path.join(REPO_ROOT, 'dist', 'bin', 'tunpipe.js')),
  };
}

// ---------------------------------------------------------------------------------------------------------------
// Time budget

/** Nominal seconds of one run: start and stop, the pings at the rates they usually reach here, the idle window. */
function nominalRunS(c: RunCounts): number {
  return 1.5 + (c.warmupFloods * c.warmup) / 100_000 + c.flood / 100_000 + c.latency * 0.0021 + c.idleMs / 1000;
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

// ---------------------------------------------------------------------------------------------------------------
// The blocks

interface BlocksOutcome {
  runs: RunRecord[];
  blocks: { block: number; order: string[] }[];
  /** Ended early: a failed run without --keep-going, or a signal. */
  stopped: boolean;
}

/**
 * Every responder once per block, the order reversed in every other block. A block starts only if it fits in
 * the budget at the pace of the slowest block so far (a slow responder makes pings run to their -w).
 */
async function runBlocks(specs: ResponderSpec[], opts: Options, setup: Setup, reserveS: number, skipped: string[]): Promise<BlocksOutcome> {
  const out: BlocksOutcome = { runs: [], blocks: [], stopped: false };
  let slowestBlockS = 0;
  for (let block = 0; block < opts.pairs; block++) {
    const order = block % 2 === 0 ? specs : [...specs].reverse();
    const estimateS = Math.max(nominalRunS(opts.counts) * order.length, slowestBlockS);
    if (elapsedS() + estimateS + reserveS > TIME_BUDGET_S) {
      skipped.push(`blocks ${block + 1}..${opts.pairs} of ${opts.pairs} (time budget)`);
      log(`skipping blocks ${block + 1}..${opts.pairs}: they would not fit in the ${TIME_BUDGET_S} s budget`);
      break;
    }
    const started = elapsedS();
    out.blocks.push({ block, order: order.map((s) => s.label) });
    for (const [position, spec] of order.entries()) {
      const rec = await runResponderOnce(spec, { block, position }, opts.counts, setup);
      if (isShuttingDown()) return { ...out, stopped: true }; // interrupted: its failure is ours, not the responder's
      out.runs.push(rec);
      log(`[block ${block + 1}/${opts.pairs}] ${spec.label}: ${describeRun(rec)}`);
      if (!rec.ok && !opts.keepGoing) return { ...out, stopped: true };
    }
    slowestBlockS = Math.max(slowestBlockS, elapsedS() - started);
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
  const soakSpec = specs.find((s) => s.soak);
  if ((specs.some((s) => s.usesCli) || offlineWanted) && !fs.existsSync(opts.cli) && !opts.keepGoing) {
    console.error(`bench: ${opts.cli} not found: build the CLI first, or run with --only ref (or --keep-going)`);
    return 1;
  }
  ensureRoot();
  installCleanupOnSignals();
  removeStaleNamespaces();
  const ns = createNamespace();
  const tmpDir = makeTmpDir();
  const setup: Setup = { tmpDir, refBinary: compileReference(tmpDir) };
  log(`${machineLine()}\nnamespace ${ns}, temp dir ${tmpDir}`);

  const skipped: string[] = [];
  const reserveS = reservedAfterBlocksS(opts, soakSpec !== undefined, offlineWanted);
  const { runs, blocks, stopped } = specs.length
    ? await runBlocks(specs, opts, setup, reserveS, skipped)
    : { runs: [], blocks: [], stopped: false };
  if (stopped) skipped.push('the rest, after the first failed run (--keep-going goes on)');

  let soak: SoakResult | null = null;
  if (!stopped && soakSpec && fitsBudget(opts.soakSeconds + 4, `${soakSpec.label} soak`, skipped)) {
    soak = await runSoak(soakSpec, opts.soakSeconds, opts.counts, setup);
    if (!isShuttingDown()) log(`soak ${soakSpec.label}: ${soak.ok ? `RSS ${soak.rssStartKb} → ${soak.rssEndKb} kB` : `FAILED: ${soak.error}`}`);
  }
  let offline: OfflineResult | null = null;
  if (!stopped && offlineWanted && fitsBudget(reservedAfterBlocksS(opts, false, true), 'offline bench', skipped)) {
    offline = await runOffline({ packets: opts.offlinePackets, pairs: opts.offlinePairs, cli: opts.cli }, tmpDir);
  }

  const { rows, comparisons } = buildRows(specs, runs, soak, offline);
  const report: Report = {
    machine: machineLine(),
    statistics: statisticsLine(blocks.length, specs.map((s) => s.label), comparisons),
    options: { ...opts, only: opts.only ? [...opts.only] : null },
    durationS: elapsedS(),
    blocks,
    runs,
    comparisons,
    soak,
    offline,
    skipped,
    rows,
  };
  writeJson(report);
  const c = opts.counts;
  printReport(
    report,
    `per run: warm-up ${c.warmupFloods} × ping -f -l 64 -c ${fmtInt(c.warmup)}, then measured ping -f -l 64 -c ${fmtInt(c.flood)}; ` +
      `latency ping -i 0.002 -c ${fmtInt(c.latency)}; idle ${c.idleMs} ms; ref = bench/echo-ref.c (C, blocking ` +
      `read/write); offline: '${OFFLINE_PIPELINE}' on ${fmtInt(opts.offlinePackets)} requests`,
  );
  return harnessOrValidityFailed(report) ? 1 : 0;
}

main().then(
  (code) => shutdown(code),
  (err: unknown) => {
    if (isShuttingDown()) return; // a signal got there first; its shutdown exits
    console.error(`bench: ${err instanceof Error ? err.message : String(err)}`);
    return shutdown(1);
  },
);
