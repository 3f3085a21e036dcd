/**
 * The load and what is read around it: flood and low-rate pings against the responder, the responder's CPU
 * time and RSS from /proc, and the namespace's ICMP counters (nstat) that say whether its replies were valid.
 */
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { PEER_ADDR } from './constants.js';
import { nsExec } from './namespace.js';
import { percentileNearestRank } from './stats.js';
import { oneLine } from './text.js';

export const TICKS_PER_S = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim());

// ---------------------------------------------------------------------------------------------------------------
// CPU and memory of a process

export interface CpuSample {
  /** Run time of all the process's threads, ns, from the scheduler's own accounting (schedstat). */
  ns: number;
  /** Times its threads were switched onto a CPU: with ns, what tells an idle process from a polling one. */
  switches: number;
  /** utime+stime from /proc/PID/stat in clock ticks: coarse (10 ms), kept as a cross-check of ns. */
  ticks: number;
}

/**
 * Why schedstat and not only utime+stime: at CLK_TCK 100 a 25,000-request flood slice costs about 10 ticks,
 * so a tick of rounding at each end would be ~10% of noise per slice; schedstat counts nanoseconds.
 * It is per thread, so the threads are summed; a thread that exits takes its time with it (Node's threads
 * live as long as the process; the tick count, which includes dead threads, would show a gap).
 */
export function readCpu(pid: number): CpuSample {
  let ns = 0;
  let switches = 0;
  for (const tid of fs.readdirSync(`/proc/${pid}/task`)) {
    let fields: string[];
    try {
      fields = fs.readFileSync(`/proc/${pid}/task/${tid}/schedstat`, 'utf8').trim().split(' ');
    } catch {
      continue; // the thread exited between the listing and the read
    }
    ns += Number(fields[0]);
    switches += Number(fields[2]);
  }
  const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
  // The command name (field 2) may contain spaces; fields after ')' start with field 3, the state.
  const after = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  const ticks = Number(after[11]) + Number(after[12]); // fields 14 (utime) and 15 (stime)
  return { ns, switches, ticks };
}

export interface CpuDelta {
  us: number;
  switches: number;
  ticks: number;
}

export function cpuSince(pid: number, before: CpuSample): CpuDelta {
  const now = readCpu(pid);
  return { us: (now.ns - before.ns) / 1000, switches: now.switches - before.switches, ticks: now.ticks - before.ticks };
}

/** The two clocks disagree by more than rounding: a thread came and went, and its time is missing from us. */
export function cpuClocksDisagree(d: CpuDelta): boolean {
  const fromTicks = (d.ticks / TICKS_PER_S) * 1e6;
  return Math.abs(fromTicks - d.us) > (2 / TICKS_PER_S) * 1e6 + 0.05 * d.us;
}

export function readRssKb(pid: number): number {
  const status = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
  const m = /^VmRSS:\s+(\d+) kB/m.exec(status);
  if (!m) throw new Error(`no VmRSS in /proc/${pid}/status`);
  return Number(m[1]);
}

// ---------------------------------------------------------------------------------------------------------------
// Kernel counters: were the replies valid?

export interface IcmpCounters {
  icmpInCsumErrors: number;
  icmpInEchoReps: number;
  ipInCsumErrors: number;
}

/**
 * Absolute counters of the namespace (-a), without reading or writing nstat's history file (-s): that file is
 * per user in /tmp and shared by every namespace, so "nstat -n; nstat" would mix with anyone else's use.
 * The caller subtracts two snapshots.
 */
export async function readIcmpCounters(ns: string): Promise<IcmpCounters> {
  const r = await nsExec(ns, ['nstat', '-asz', 'IcmpInCsumErrors', 'IcmpInEchoReps', 'IpExtInCsumErrors'], 5000);
  const value = (name: string) => {
    const m = new RegExp(`^${name}\\s+(\\d+)`, 'm').exec(r.stdout);
    if (!m) throw new Error(`nstat printed no ${name}: ${r.stdout.trim()} ${r.stderr.trim()}`);
    return Number(m[1]);
  };
  return {
    icmpInCsumErrors: value('IcmpInCsumErrors'),
    icmpInEchoReps: value('IcmpInEchoReps'),
    ipInCsumErrors: value('IpExtInCsumErrors'), // IP header checksum failures (dropped before ICMP sees them)
  };
}

export interface NstatCheck {
  valid: boolean;
  echoReps: number;
  /** Replies ping counted, and requests it sent: the kernel's count must lie between them. */
  pingReceived: number;
  pingTransmitted: number;
  icmpCsumErrors: number;
  ipCsumErrors: number;
}

/**
 * Valid = no checksum errors, and every reply ping counted was also accepted by the kernel's ICMP layer.
 * ping reads replies from a raw socket, which gets them before the kernel checks the ICMP checksum, so a
 * responder with broken checksums still looks fine to ping; only the kernel's counters tell. The kernel may
 * count a few more than ping: with -f -l 64 ping sends a little past -c, stops at -c replies and exits while
 * the last ones are in flight. So the check is pingReceived <= IcmpInEchoReps <= pingTransmitted rather than
 * strict equality.
 */
export function checkCounters(before: IcmpCounters, after: IcmpCounters, ping: PingSummary): NstatCheck {
  const echoReps = after.icmpInEchoReps - before.icmpInEchoReps;
  const icmpCsumErrors = after.icmpInCsumErrors - before.icmpInCsumErrors;
  const ipCsumErrors = after.ipInCsumErrors - before.ipInCsumErrors;
  const valid =
    icmpCsumErrors === 0 && ipCsumErrors === 0 && echoReps >= ping.received && echoReps <= ping.transmitted;
  return {
    valid,
    echoReps,
    pingReceived: ping.received,
    pingTransmitted: ping.transmitted,
    icmpCsumErrors,
    ipCsumErrors,
  };
}

// ---------------------------------------------------------------------------------------------------------------
// Pings

export interface PingSummary {
  transmitted: number;
  received: number;
  timeMs: number;
}

function parsePingSummary(out: string): PingSummary {
  const counts = /(\d+) packets transmitted, (\d+) received/.exec(out);
  const time = /, time (\d+)ms/.exec(out);
  if (!counts || !time) throw new Error(`no summary in ping output: ${oneLine(out)}`);
  return { transmitted: Number(counts[1]), received: Number(counts[2]), timeMs: Number(time[1]) };
}

/** Flood ping; -l 64 keeps 64 requests in flight so the responder, not ping's pacing, is the limit. */
export async function floodPing(ns: string, count: number, deadlineS: number): Promise<PingSummary> {
  const r = await nsExec(
    ns,
    ['ping', '-f', '-l', '64', '-c', String(count), '-q', '-w', String(deadlineS), PEER_ADDR],
    (deadlineS + 5) * 1000,
  );
  // Exit status 1 only means some replies were missing at the deadline; the summary still counts.
  return parsePingSummary(r.stdout);
}

export interface WarmupResult {
  replies: number;
  /** CPU per reply in each warm-up flood: it falls while the JIT compiles the hot path, then levels off. */
  usCpuPerReplyByFlood: number[];
  /** The last two floods agreed (see warmUp); false: it stopped at the maximum number of floods. */
  settled: boolean;
}

/** Two consecutive warm-up floods within this fraction of each other: the JIT is done with the hot path. */
const WARM_SETTLED_WITHIN = 0.1;

/**
 * Short floods before the measured ones, until the responder is warm: a fresh tunpipe costs ~15 µs per reply
 * over its first 5,000 requests and levels off near 4 µs after 15,000-40,000 (it varies from start to start),
 * so a fixed count is either wasteful or sometimes too short. Flood until two consecutive floods cost the same
 * CPU per reply (±10%), at least minFloods, at most maxFloods. The C reference settles at once. The floods also
 * prove the responder answers at all.
 */
export async function warmUp(
  ns: string,
  pid: number,
  plan: { warmup: number; warmupMinFloods: number; warmupMaxFloods: number },
): Promise<WarmupResult> {
  const res: WarmupResult = { replies: 0, usCpuPerReplyByFlood: [], settled: false };
  while (res.usCpuPerReplyByFlood.length < plan.warmupMaxFloods) {
    const before = await readIcmpCounters(ns);
    const cpu = readCpu(pid);
    const ping = await floodPing(ns, plan.warmup, 5);
    const used = cpuSince(pid, cpu);
    if (ping.received === 0) {
      // Say why if the kernel knows: replies that arrive with bad checksums are dropped before ping sees them.
      const after = await readIcmpCounters(ns);
      const ipBad = after.ipInCsumErrors - before.ipInCsumErrors;
      const icmpBad = after.icmpInCsumErrors - before.icmpInCsumErrors;
      const why = ipBad || icmpBad ? ` (kernel: ${ipBad} bad IP header checksums, ${icmpBad} bad ICMP checksums)` : '';
      throw new Error(`no reply at all during warm-up${why}`);
    }
    res.replies += ping.received;
    const costs = res.usCpuPerReplyByFlood;
    costs.push(used.us / ping.received);
    const [prev, last] = costs.slice(-2);
    res.settled = costs.length >= 2 && Math.abs(last! - prev!) <= WARM_SETTLED_WITHIN * prev!;
    if (costs.length >= plan.warmupMinFloods && res.settled) break;
  }
  return res;
}

/** One slice of a measured flood: a block gives each responder several, interleaved with the others'. */
export interface FloodSlice {
  ping: PingSummary;
  cpu: CpuDelta;
}

export async function floodSlice(ns: string, pid: number, count: number): Promise<FloodSlice> {
  const before = readCpu(pid);
  const ping = await floodPing(ns, count, 10);
  return { ping, cpu: cpuSince(pid, before) };
}

export interface FloodResult extends PingSummary {
  slices: number;
  cpu: CpuDelta;
  repliesPerSec: number;
  usCpuPerReply: number;
  nstat: NstatCheck;
}

/**
 * A responder's slices of one block as one flood: replies/s = all replies / the sum of the times ping reported,
 * CPU per reply = all CPU / all replies. The namespace's counters are read around all of them (the namespace
 * is the responder's alone, so the other responders' slices in between do not touch them).
 */
export function combineFloodSlices(slices: FloodSlice[], before: IcmpCounters, after: IcmpCounters): FloodResult {
  const sum = (f: (s: FloodSlice) => number) => slices.reduce((t, s) => t + f(s), 0);
  const ping = {
    transmitted: sum((s) => s.ping.transmitted),
    received: sum((s) => s.ping.received),
    timeMs: sum((s) => s.ping.timeMs),
  };
  const cpu = { us: sum((s) => s.cpu.us), switches: sum((s) => s.cpu.switches), ticks: sum((s) => s.cpu.ticks) };
  return {
    ...ping,
    slices: slices.length,
    cpu,
    repliesPerSec: ping.timeMs > 0 ? ping.received / (ping.timeMs / 1000) : 0,
    usCpuPerReply: ping.received > 0 ? cpu.us / ping.received : NaN,
    nstat: checkCounters(before, after, ping),
  };
}

/** One slice of a latency test: pings one every 2 ms, so the responder is idle between packets. */
export interface LatencySlice {
  ping: PingSummary;
  rttsUs: number[];
}

export async function latencySlice(ns: string, count: number): Promise<LatencySlice> {
  const deadlineS = Math.ceil(count * 0.004) + 3; // twice the nominal duration, plus slack
  const args = ['ping', '-i', '0.002', '-c', String(count), '-w', String(deadlineS), PEER_ADDR];
  const r = await nsExec(ns, args, (deadlineS + 5) * 1000);
  const ping = parsePingSummary(r.stdout);
  return { ping, rttsUs: [...r.stdout.matchAll(/ time=([\d.]+) ms/g)].map((m) => Number(m[1]) * 1000) };
}

export interface LatencyResult {
  slices: number;
  sent: number;
  samples: number;
  avgUs: number;
  p99Us: number;
  nstat: NstatCheck;
}

export function combineLatencySlices(slices: LatencySlice[], before: IcmpCounters, after: IcmpCounters): LatencyResult {
  const rtts = slices.flatMap((s) => s.rttsUs).sort((a, b) => a - b);
  const ping = {
    transmitted: slices.reduce((t, s) => t + s.ping.transmitted, 0),
    received: slices.reduce((t, s) => t + s.ping.received, 0),
    timeMs: slices.reduce((t, s) => t + s.ping.timeMs, 0),
  };
  return {
    slices: slices.length,
    sent: ping.transmitted,
    samples: rtts.length,
    avgUs: rtts.reduce((t, x) => t + x, 0) / rtts.length,
    p99Us: percentileNearestRank(rtts, 99),
    nstat: checkCounters(before, after, ping),
  };
}

export interface IdleResult {
  ms: number;
  /** CPU used while nothing arrived, µs per second of window. */
  cpuUsPerS: number;
  /** Times its threads ran, per second: a polling loop or a timer shows here even when its CPU is tiny. */
  switchesPerS: number;
}

/** Several processes over the same window: the bench idles all its responders at once. */
export async function measureIdle(pids: number[], ms: number): Promise<IdleResult[]> {
  const before = pids.map((pid) => readCpu(pid));
  await sleep(ms);
  return pids.map((pid, i) => {
    const d = cpuSince(pid, before[i]!);
    return { ms, cpuUsPerS: d.us / (ms / 1000), switchesPerS: d.switches / (ms / 1000) };
  });
}
