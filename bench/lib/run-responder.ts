/**
 * One measured run of one responder (start, warm up, flood, low-rate pings, idle, stop, checks), and the soak:
 * one long flood against a responder while its RSS is sampled.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { isRunning, waitForExit } from './children.js';
import {
  checkCounters,
  cpuClocksDisagree,
  floodPing,
  measureFlood,
  measureIdle,
  measureLatency,
  readIcmpCounters,
  readRssKb,
  warmUp,
  type FloodResult,
  type IdleResult,
  type LatencyResult,
  type NstatCheck,
  type WarmupResult,
} from './measure.js';
import { checkCapture, type CaptureCheck } from './pcapfile.js';
import {
  errorText,
  readDevice,
  startResponder,
  stopResponder,
  waitUntilDeviceReady,
  type ResponderSpec,
  type StopResult,
} from './responders.js';
import { fmtInt, fmtNum, oneLine } from './text.js';

/** Files every run needs, made once after the namespace exists. */
export interface Setup {
  tmpDir: string;
  refBinary: string;
}

export interface RunCounts {
  /** Warm-up floods before the measured one, and requests in each. */
  warmupFloods: number;
  warmup: number;
  flood: number;
  latency: number;
  idleMs: number;
}

export interface RunRecord {
  label: string;
  /** The block (0-based) this run belongs to; its ratios are taken against the ref run of the same block. */
  block: number;
  /** Its place in the block's order (0 = first). */
  position: number;
  ok: boolean;
  error?: string;
  durationS?: number;
  warmup?: WarmupResult;
  flood?: FloodResult;
  latency?: LatencyResult;
  idle?: IdleResult;
  rssStartKb?: number;
  rssEndKb?: number;
  requestsRead?: number;
  repliesWritten?: number;
  queueDrops?: number;
  capture?: CaptureCheck;
  stop?: StopResult;
  /** The tick count and schedstat disagree: a thread's CPU time may be missing (see measure.ts). */
  cpuClockWarning?: boolean;
}

export async function runResponderOnce(
  spec: ResponderSpec,
  where: { block: number; position: number },
  counts: RunCounts,
  setup: Setup,
): Promise<RunRecord> {
  const rec: RunRecord = { label: spec.label, block: where.block, position: where.position, ok: false };
  const pcapName = `${spec.label}-b${where.block}.pcap`.replace(/[^\w.-]/g, '_');
  const files = { refBinary: setup.refBinary, pcap: path.join(setup.tmpDir, pcapName) };
  const started = performance.now();
  const responder = startResponder(spec, files);
  try {
    await waitUntilDeviceReady(responder);
    rec.warmup = await warmUp(responder.pid, counts.warmupFloods, counts.warmup);
    rec.rssStartKb = readRssKb(responder.pid);
    rec.flood = await measureFlood(responder.pid, counts.flood);
    rec.cpuClockWarning = cpuClocksDisagree(rec.flood.cpu) || undefined;
    rec.latency = await measureLatency(counts.latency);
    rec.idle = await measureIdle(responder.pid, counts.idleMs);
    rec.rssEndKb = readRssKb(responder.pid);
    const dev = await readDevice(); // before the stop: the device goes away with the responder
    rec.requestsRead = dev.txPackets;
    rec.repliesWritten = dev.rxPackets;
    rec.queueDrops = dev.txDropped;
    rec.ok = true;
  } catch (err) {
    await waitForExit(responder.child, 300); // if it died, let its exit status arrive: that is the cause to report
    rec.error = errorText(err, responder);
  } finally {
    rec.stop = await stopResponder(responder);
  }
  if (rec.ok && spec.checksCapture) rec.capture = checkCapture(files.pcap, rec.requestsRead ?? 0);
  if (rec.ok && rec.stop.diedEarly) {
    rec.ok = false;
    rec.error = `${spec.label} exited during the run (${rec.stop.exit}): ${oneLine(responder.output())}`;
  }
  fs.rmSync(files.pcap, { force: true }); // captures are large; only their record count matters
  rec.durationS = (performance.now() - started) / 1000;
  return rec;
}

/** A run on one line, for the progress log. */
export function describeRun(rec: RunRecord): string {
  if (!rec.ok) return `FAILED: ${rec.error}`;
  const f = rec.flood!;
  const l = rec.latency!;
  const parts = [
    `${fmtInt(f.repliesPerSec)} replies/s`,
    `${fmtNum(f.usCpuPerReply, 2)} µs CPU/reply (warm-up ${rec.warmup!.usCpuPerReplyByFlood.map((x) => fmtNum(x, 2)).join(', ')})`,
    `RTT avg ${fmtNum(l.avgUs, 0)} p99 ${fmtNum(l.p99Us, 0)} µs`,
    `idle ${fmtInt(rec.idle!.cpuUsPerS)} µs/s ${fmtNum(rec.idle!.switchesPerS, 0)} wakeups/s`,
    `RSS ${fmtInt(rec.rssStartKb!)}→${fmtInt(rec.rssEndKb!)} kB`,
    `nstat ${f.nstat.valid && l.nstat.valid ? 'ok' : 'INVALID'}`,
  ];
  if (rec.capture) parts.push(`pcap ${fmtInt(rec.capture.records)}/${fmtInt(rec.capture.requestsRead)} requests`);
  parts.push(`stop ${fmtNum(rec.stop!.ms, 0)} ms${rec.stop!.killed ? ' (SIGKILL)' : ''}`);
  if (rec.cpuClockWarning) parts.push('CPU clocks disagree');
  return parts.join(', ');
}

export interface SoakResult {
  label: string;
  ok: boolean;
  error?: string;
  seconds: number;
  rssStartKb?: number;
  rssMaxKb?: number;
  rssEndKb?: number;
  repliesPerSec?: number;
  nstat?: NstatCheck;
  stop?: StopResult;
}

/** RSS after warm-up, sampled every second of a long flood, and at its end: a leak shows as a climb. */
export async function runSoak(spec: ResponderSpec, seconds: number, counts: RunCounts, setup: Setup): Promise<SoakResult> {
  const res: SoakResult = { label: spec.label, ok: false, seconds };
  const responder = startResponder(spec, { refBinary: setup.refBinary, pcap: path.join(setup.tmpDir, 'soak.pcap') });
  try {
    await waitUntilDeviceReady(responder);
    await warmUp(responder.pid, counts.warmupFloods, counts.warmup);
    res.rssStartKb = res.rssMaxKb = readRssKb(responder.pid);
    const counters = await readIcmpCounters();
    // -w ends it; -c is there only to bound it by count too.
    let done = false;
    const flood = floodPing(seconds * 1_000_000, seconds).finally(() => (done = true));
    while (!done) {
      await Promise.race([sleep(1000), flood.catch(() => undefined)]);
      if (isRunning(responder.child)) res.rssMaxKb = Math.max(res.rssMaxKb, readRssKb(responder.pid));
    }
    const ping = await flood;
    res.rssEndKb = readRssKb(responder.pid);
    res.repliesPerSec = ping.received / (ping.timeMs / 1000);
    res.nstat = checkCounters(counters, await readIcmpCounters(), ping);
    res.ok = true;
  } catch (err) {
    await waitForExit(responder.child, 300);
    res.error = errorText(err, responder);
  } finally {
    res.stop = await stopResponder(responder);
  }
  return res;
}
