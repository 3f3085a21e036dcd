/**
 * The impairment accuracy section: tunpipe as a wire between two namespaces (tpa0 198.18.0.1/24 in one,
 * tpb0 198.18.0.2/24 in the other, `from tpa0 | ... | to tpb0; from tpb0 | ... | to tpa0`), the far
 * kernel answering, each impairment measured against its configured value (lib/impair-analysis.ts says how):
 *   - delay 10ms each way: mean RTT minus the plain wire's, against 20 ms (bar 0.1 ms); p99 reported;
 *   - delay 10ms jitter=2ms dist=normal one way: the jitter's deviation from the RTTs of 1,000 pings (bar 10%), and no
 *     reordering with pings closer together than the jitter (reorder=true, the same, as the control);
 *   - loss 5% one way over 20,000 pings: within the 99% binomial interval, and equal to the stage's count;
 *   - loss model=gilbert p=1% r=30%: the mean loss burst against 1/r (bar: 1/r inside the 99% interval);
 *   - rate 20mbit one way: iperf3 TCP and UDP goodput against the rate times payload/IP bytes (bar 3%).
 * A reference row comes first: how late a 10 ms sleep wakes on this machine in the same run (each delayed
 * packet's release is such a wake-up, twice per round trip).
 * netem cannot run on this kernel (CONFIG_NET_SCH_NETEM is not set): the comparison is with the configured
 * values. Every ping is bounded by -c and -w, every iperf3 by -t, every wait by a timeout. Numbers taken on a
 * loaded machine are noise; the bars are for a quiet one.
 *
 * Runs inside `npm run bench` (the lead wires it in), or alone: `node dist/bench/lib/impair.js [--quick]`
 * (root; its own two namespaces, removed at the end and on a signal).
 */
import { fileURLToPath } from 'node:url';
import * as path from 'node:path';
import { spawnTracked, runCommand, waitForExit, isRunning } from './children.js';
import { REPO_ROOT } from './constants.js';
import { log } from './log.js';
import { createNamespace, ensureRoot, installCleanupOnSignals, nsExec, shutdown } from './namespace.js';
import {
  binomialInterval99,
  formatAccuracyTable,
  jitterDeviation,
  lossBursts,
  meanWithInterval,
  parsePing,
  percentile,
  reordered,
  robustDeviation,
  tcpGoodput,
  udpGoodput,
  type AccuracyRow,
  type PingRun,
} from './impair-analysis.js';

export interface ImpairBenchOptions {
  /** The tunpipe CLI (dist/bin/tunpipe.js). */
  cli: string;
  /** Smaller counts: 5,000 loss pings, 200 RTT pings, 3 s iperf3 runs. */
  quick: boolean;
}

const A_ADDR = '198.18.0.1';
const B_ADDR = '198.18.0.2';

interface Wire {
  stderr(): string;
}

/** Starts tunpipe joining namespaces a and b with `pipelines`, runs fn, stops it (SIGINT) and returns its stderr. */
async function withWire<T>(cli: string, a: string, b: string, pipelines: string, fn: (w: Wire) => Promise<T>): Promise<{ value: T; stderr: string }> {
  const args = ['--dev', 'tpa0', '--netns', a, '--addr', `${A_ADDR}/24`, '--dev', 'tpb0', '--netns', b, '--addr', `${B_ADDR}/24`, pipelines];
  const child = spawnTracked('ip', ['netns', 'exec', a, process.execPath, cli, ...args], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr!.setEncoding('utf8').on('data', (d: string) => (stderr += d));
  try {
    const deadline = Date.now() + 10_000;
    while (!/reading/.test(stderr)) {
      if (!isRunning(child)) throw new Error(`tunpipe exited before reading: ${stderr}`);
      if (Date.now() > deadline) throw new Error(`tunpipe not reading after 10 s: ${stderr}`);
      await new Promise((r) => setTimeout(r, 20));
    }
    const value = await fn({ stderr: () => stderr });
    child.kill('SIGINT');
    if (!(await waitForExit(child, 3000))) throw new Error('tunpipe did not stop on SIGINT within 3 s');
    return { value, stderr };
  } finally {
    if (isRunning(child)) {
      child.kill('SIGKILL');
      await waitForExit(child, 1000);
    }
  }
}

async function ping(ns: string, count: number, intervalS: number): Promise<PingRun> {
  const deadlineS = Math.ceil(count * intervalS * 2 + 5);
  const r = await nsExec(ns, ['ping', '-c', String(count), '-i', String(intervalS), '-W', '1', '-w', String(deadlineS), B_ADDR], (deadlineS + 5) * 1000);
  return parsePing(r.stdout);
}

/** ping -c with -w waits for `count` replies: for loss, only -c (the requests sent), bounded by the timeout. */
async function pingSent(ns: string, count: number, intervalS: number): Promise<PingRun> {
  const limitMs = (count * intervalS * 3 + 10) * 1000;
  const r = await nsExec(ns, ['ping', '-c', String(count), '-i', String(intervalS), '-W', '1', B_ADDR], limitMs);
  return parsePing(r.stdout);
}

interface IperfJson {
  start?: { tcp_mss_default?: number };
  end?: { sum_received?: { bytes: number; seconds: number }; sum?: { packets?: number; lost_packets?: number; seconds: number } };
  error?: string;
}

/** iperf3 from a to b (a one-off server in b), its JSON. */
async function iperf(a: string, b: string, args: string[], seconds: number): Promise<IperfJson> {
  const server = spawnTracked('ip', ['netns', 'exec', b, 'iperf3', '-s', '-1', '-B', B_ADDR], { stdio: 'ignore' });
  try {
    for (let attempt = 0; ; attempt++) {
      const r = await runCommand('ip', ['netns', 'exec', a, 'iperf3', '-c', B_ADDR, '-J', '-t', String(seconds), ...args], (seconds + 15) * 1000);
      if (r.code === 0) return JSON.parse(r.stdout) as IperfJson;
      if (attempt >= 20) throw new Error(`iperf3 failed: ${r.stdout.slice(0, 300)} ${r.stderr}`);
      await new Promise((res) => setTimeout(res, 100)); // the server is not listening yet
    }
  } finally {
    server.kill('SIGKILL');
    await waitForExit(server, 1000);
  }
}

const ms = (x: number, d = 3) => `${x.toFixed(d)} ms`;
const signed = (x: number, d: number, unit: string) => `${x >= 0 ? '+' : ''}${x.toFixed(d)}${unit}`;

/** The lost-count the stage printed for its pipeline (`1:loss ... lost (random): N`). */
function stageLost(stderr: string, reason: RegExp): number | null {
  const m = reason.exec(stderr);
  return m ? Number(m[1]) : null;
}

/**
 * How late this machine wakes a thread from a 10 ms sleep, now: the floor under every delay row (a release
 * is a wake-up), measured in the same run so that a loaded machine shows as such.
 */
function timerLateness(samples: number): { mean: number; p99: number } {
  const cell = new Int32Array(new SharedArrayBuffer(4));
  const late: number[] = [];
  for (let i = 0; i < samples; i++) {
    const t0 = performance.now();
    Atomics.wait(cell, 0, 0, 10);
    late.push(performance.now() - t0 - 10);
  }
  return { mean: late.reduce((x, y) => x + y, 0) / late.length, p99: percentile(late, 99) };
}

export async function runImpairAccuracy(opts: ImpairBenchOptions, a: string, b: string): Promise<AccuracyRow[]> {
  const rows: AccuracyRow[] = [];
  const timer = timerLateness(opts.quick ? 100 : 300);
  rows.push({ what: 'reference: a 10 ms sleep on this machine, late by', configured: ms(0), measured: `${ms(timer.mean)} (p99 ${ms(timer.p99, 1)})`, error: '', bar: 'reported', pass: null });
  const rttCount = opts.quick ? 200 : 500;
  const jitterCount = opts.quick ? 400 : 1000;
  const lossCount = opts.quick ? 5000 : 20_000;
  const iperfS = opts.quick ? 3 : 6;
  const wire = (pipelines: string, fn: (w: Wire) => Promise<PingRun>) => withWire(opts.cli, a, b, pipelines, fn);

  log('impairment: plain wire (the reference RTT)');
  const base = (await wire('from tpa0 | to tpb0; from tpb0 | to tpa0', () => ping(a, rttCount, 0.01))).value;

  log('impairment: delay 10ms each way');
  const delayed = (await wire('from tpa0 | delay 10ms | to tpb0; from tpb0 | delay 10ms | to tpa0', () => ping(a, rttCount, 0.01))).value;
  const extra = delayed.avg - base.avg;
  rows.push({ what: 'delay 10ms each way: mean RTT - plain', configured: ms(20), measured: ms(extra), error: signed(extra - 20, 3, ' ms'), bar: '|error| <= 0.1 ms', pass: Math.abs(extra - 20) <= 0.1 });
  const mid = percentile(delayed.rtts, 50) - percentile(base.rtts, 50);
  rows.push({ what: 'delay 10ms each way: median RTT - plain median', configured: ms(20), measured: ms(mid, 1), error: signed(mid - 20, 1, ' ms'), bar: 'reported', pass: null });
  const p99 = percentile(delayed.rtts, 99) - percentile(base.rtts, 50);
  rows.push({ what: 'delay 10ms each way: p99 RTT - plain median', configured: ms(20), measured: ms(p99, 1), error: signed(p99 - 20, 1, ' ms'), bar: 'reported', pass: null });

  log('impairment: delay 10ms jitter=2ms dist=normal, one way');
  // A thousand draws: the deviation of 500 is itself some 5% off the distribution's (an interquartile
  // estimate), which would leave the 10% bar to chance. 12 ms apart keeps them in order with no wait.
  const jit = (await wire('from tpa0 | delay 10ms jitter=2ms dist=normal seed=1 | to tpb0; from tpb0 | to tpa0', () => ping(a, jitterCount, 0.012))).value;
  const sd = jitterDeviation(robustDeviation(jit.rtts), robustDeviation(base.rtts));
  rows.push({ what: 'jitter=2ms dist=normal: deviation', configured: ms(2), measured: ms(sd), error: signed((sd / 2 - 1) * 100, 1, '%'), bar: '|error| <= 10%', pass: Math.abs(sd / 2 - 1) <= 0.1 });
  // Pings 1 ms apart, closer than the jitter: netem would reorder; order kept unless reorder=true.
  const kept = (await wire('from tpa0 | delay 10ms jitter=2ms dist=normal seed=1 | to tpb0; from tpb0 | to tpa0', () => ping(a, rttCount, 0.001))).value;
  const mixed = (await wire('from tpa0 | delay 10ms jitter=2ms dist=normal reorder=true seed=1 | to tpb0; from tpb0 | to tpa0', () => ping(a, rttCount, 0.001))).value;
  rows.push({ what: 'jitter, pings 1 ms apart: replies out of order', configured: '0', measured: String(reordered(kept.seqs)), error: '', bar: 'none', pass: reordered(kept.seqs) === 0 });
  rows.push({ what: 'the same with reorder=true (control)', configured: '> 0', measured: String(reordered(mixed.seqs)), error: '', bar: 'reported', pass: null });

  log(`impairment: loss 5% one way, ${lossCount} pings`);
  const lossRun = await wire('from tpa0 | loss 5% seed=1 | to tpb0; from tpb0 | to tpa0', () => pingSent(a, lossCount, 0.0005));
  const lost = lossRun.value.transmitted - lossRun.value.received;
  const [lo, hi] = binomialInterval99(lossRun.value.transmitted, 0.05);
  const counted = stageLost(lossRun.stderr, /lost \(random\): (\d+)/);
  rows.push({
    what: `loss 5%: pings lost of ${lossRun.value.transmitted}`,
    configured: `${lo.toFixed(0)}..${hi.toFixed(0)}`,
    measured: `${lost} (stage: ${counted ?? '?'})`,
    error: signed((lost / lossRun.value.transmitted / 0.05 - 1) * 100, 1, '%'),
    bar: '99% binomial interval',
    pass: lost >= lo && lost <= hi && counted === lost,
  });

  log(`impairment: loss model=gilbert p=1% r=30%, ${lossCount} pings`);
  const ge = (await wire('from tpa0 | loss model=gilbert p=1% r=30% seed=1 | to tpb0; from tpb0 | to tpa0', () => pingSent(a, lossCount, 0.0005))).value;
  const bursts = meanWithInterval(lossBursts(ge.seqs, ge.transmitted));
  rows.push({
    what: 'gilbert p=1% r=30%: mean loss burst',
    configured: (1 / 0.3).toFixed(3),
    measured: `${bursts.mean.toFixed(3)} ± ${bursts.half.toFixed(3)}`,
    error: signed((bursts.mean * 0.3 - 1) * 100, 1, '%'),
    bar: '1/r in the 99% interval',
    pass: Math.abs(bursts.mean - 1 / 0.3) <= bursts.half,
  });

  log('impairment: rate 20mbit one way, iperf3 TCP and UDP');
  const tcp = (await withWire(opts.cli, a, b, 'from tpa0 | rate 20mbit | to tpb0; from tpb0 | to tpa0', () => iperf(a, b, ['-O', '1'], iperfS))).value;
  const mss = tcp.start?.tcp_mss_default ?? 1448;
  const tcpGot = tcp.end?.sum_received ? (tcp.end.sum_received.bytes * 8) / tcp.end.sum_received.seconds : NaN;
  const tcpWant = tcpGoodput(20e6, mss);
  rows.push({ what: `rate 20mbit: iperf3 TCP goodput (MSS ${mss})`, configured: `${(tcpWant / 1e6).toFixed(2)} Mbit/s`, measured: `${(tcpGot / 1e6).toFixed(2)} Mbit/s`, error: signed((tcpGot / tcpWant - 1) * 100, 1, '%'), bar: '|error| <= 3%', pass: Math.abs(tcpGot / tcpWant - 1) <= 0.03 });
  const udp = (await withWire(opts.cli, a, b, 'from tpa0 | rate 20mbit | to tpb0; from tpb0 | to tpa0', () => iperf(a, b, ['-u', '-b', '30M', '-l', '1400'], iperfS))).value;
  const sum = udp.end?.sum;
  const udpGot = sum && sum.packets !== undefined && sum.lost_packets !== undefined ? ((sum.packets - sum.lost_packets) * 1400 * 8) / sum.seconds : NaN;
  const udpWant = udpGoodput(20e6, 1400);
  rows.push({ what: 'rate 20mbit: iperf3 UDP goodput (30M offered, 1400 B)', configured: `${(udpWant / 1e6).toFixed(2)} Mbit/s`, measured: `${(udpGot / 1e6).toFixed(2)} Mbit/s`, error: signed((udpGot / udpWant - 1) * 100, 1, '%'), bar: '|error| <= 3%', pass: Math.abs(udpGot / udpWant - 1) <= 0.03 });
  return rows;
}

async function main(): Promise<void> {
  ensureRoot();
  installCleanupOnSignals();
  const quick = process.argv.includes('--quick');
  const a = createNamespace(0);
  const b = createNamespace(1);
  let code = 0;
  try {
    const rows = await runImpairAccuracy({ cli: path.join(REPO_ROOT, 'dist', 'bin', 'tunpipe.js'), quick }, a, b);
    console.log(formatAccuracyTable(rows));
  } catch (err) {
    console.error(`bench impairment: ${(err as Error).message}`);
    code = 1;
  }
  await shutdown(code);
}

if (process.argv[1] === fileURLToPath(import.meta.url)) void main();
