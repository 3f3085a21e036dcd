/**
 * One session of the paired bench, and the soak.
 *
 * A session starts every responder, each in its own namespace so that they can all be alive at once, and warms
 * each one up. Then come its blocks. In a block every responder gets its measured flood, cut in slices that are
 * interleaved with the other responders' slices (ABC CBA BCA ACB CAB BAC for three), then its low-rate pings,
 * interleaved the same way. The measurements that are compared are thus a fraction of a second apart, with
 * nothing started or stopped in between, and each responder has been first, middle and last equally often, and
 * followed itself as often as the others did: that is what makes a per-block ratio steadier than comparing runs
 * made minutes apart. At the end all responders idle together for a window
 * (their CPU while nothing arrives), then each is stopped with SIGTERM, and the capture of the capturing one is
 * checked against the requests its device delivered.
 * Several sessions (fresh processes) keep one unlucky start (JIT, heap layout) from deciding the result.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { isRunning, isShuttingDown, waitForExit } from './children.js';
import { log } from './log.js';
import {
  checkCounters,
  cpuClocksDisagree,
  floodPing,
  combineFloodSlices,
  combineLatencySlices,
  floodSlice,
  latencySlice,
  measureIdle,
  readIcmpCounters,
  readRssKb,
  warmUp,
  type FloodResult,
  type FloodSlice,
  type IcmpCounters,
  type IdleResult,
  type LatencyResult,
  type LatencySlice,
  type NstatCheck,
  type WarmupResult,
} from './measure.js';
import { ioPathFromOutput } from './io-path.js';
import { checkCapture, type CaptureCheck } from './pcapfile.js';
import {
  errorText,
  readDevice,
  startResponder,
  stopResponder,
  waitUntilDeviceReady,
  type Responder,
  type ResponderSpec,
  type StopResult,
} from './responders.js';
import { fmtInt, fmtNum, oneLine } from './text.js';

/** Files every session needs, made once at the start. */
export interface Setup {
  tmpDir: string;
  refBinary: string;
}

/** A responder and the namespace reserved for it for the whole bench. */
export interface Slot {
  spec: ResponderSpec;
  ns: string;
}

export interface RunCounts {
  /** Requests in each warm-up flood, and how many floods at least and at most (see warmUp). */
  warmup: number;
  warmupMinFloods: number;
  warmupMaxFloods: number;
  /** Requests in each measured flood, and low-rate pings in each latency test. */
  flood: number;
  latency: number;
  idleMs: number;
}

/** One responder's flood and latency test in one block: the unit that is paired with the ref's. */
export interface Measurement {
  label: string;
  session: number;
  /** Numbered across sessions (0-based); its parity gives the order. */
  block: number;
  /** Its place in the block's order (0 = first), i.e. in the block's first round of slices. */
  position: number;
  ok: boolean;
  error?: string;
  flood?: FloodResult;
  latency?: LatencyResult;
  /** The tick count and schedstat disagree: a thread's CPU time may be missing (see measure.ts). */
  cpuClockWarning?: boolean;
  /** The process's I/O path (its ResponderLife's io), stamped when the session ends. */
  io?: string;
}

/** One responder process, from its start to its stop. */
export interface ResponderLife {
  label: string;
  session: number;
  namespace: string;
  /** Started, warmed up, alive until asked to stop, capture complete. */
  ok: boolean;
  error?: string;
  warmup?: WarmupResult;
  rssStartKb?: number;
  rssEndKb?: number;
  idle?: IdleResult;
  /** Requests the device handed to it over its whole life, replies it wrote, requests dropped at the queue. */
  requestsRead?: number;
  repliesWritten?: number;
  queueDrops?: number;
  capture?: CaptureCheck;
  stop?: StopResult;
  /** How it moved packets, from its exit line: 'io_uring', 'poll', 'poll (io_uring: why not)' (tunpipe only). */
  io?: string;
}

export interface BlockInfo {
  block: number;
  session: number;
  order: string[];
  durationS: number;
}

export interface SessionPlan {
  session: number;
  firstBlock: number;
  blocks: number;
  /** Asked before each block: false when it would not fit in the time budget. */
  nextBlockFits: () => boolean;
  keepGoing: boolean;
}

export interface SessionResult {
  blocks: BlockInfo[];
  lives: ResponderLife[];
  measurements: Measurement[];
  /** A failure without --keep-going: the bench goes no further. */
  stopped: boolean;
}

interface Entry {
  slot: Slot;
  life: ResponderLife;
  responder: Responder;
  pcap: string;
  /** Still taking part: started, warmed up, not failed. */
  active: boolean;
}

export async function runSession(
  slots: Slot[],
  plan: SessionPlan,
  counts: RunCounts,
  setup: Setup,
): Promise<SessionResult> {
  const res: SessionResult = { blocks: [], lives: [], measurements: [], stopped: false };
  const entries: Entry[] = [];
  const failed = (e: Entry, err: unknown) => {
    e.active = false;
    e.life.error ??= errorText(err, e.responder);
    if (!plan.keepGoing) res.stopped = true;
  };
  try {
    for (const slot of slots) {
      if (res.stopped || isShuttingDown()) break;
      const label = slot.spec.label;
      const life: ResponderLife = { label, session: plan.session, namespace: slot.ns, ok: false };
      res.lives.push(life);
      const pcap = path.join(setup.tmpDir, `${label}-s${plan.session}.pcap`.replace(/[^\w.-]/g, '_'));
      const responder = startResponder(slot.spec, slot.ns, { refBinary: setup.refBinary, pcap });
      const e: Entry = { slot, life, responder, pcap, active: true };
      entries.push(e);
      try {
        await waitUntilDeviceReady(responder);
        life.warmup = await warmUp(slot.ns, responder.pid, counts);
        life.rssStartKb = readRssKb(responder.pid);
        const byFlood = life.warmup.usCpuPerReplyByFlood.map((x) => fmtNum(x, 2)).join(', ');
        const settled = life.warmup.settled ? '' : ' (not settled)';
        log(`[session ${plan.session + 1}] ${label} started in ${slot.ns}; warm-up µs CPU/reply ${byFlood}${settled}`);
      } catch (err) {
        await waitForExit(responder.child, 300); // if it died, let its exit status arrive: that is the cause
        failed(e, err);
        log(`[session ${plan.session + 1}] ${label}: FAILED: ${life.error}`);
      }
    }

    for (let i = 0; i < plan.blocks && !res.stopped && !isShuttingDown(); i++) {
      const block = plan.firstBlock + i;
      const order = (block % 2 === 0 ? entries : [...entries].reverse()).filter((e) => e.active);
      if (order.length === 0 || !plan.nextBlockFits()) break;
      const started = performance.now();
      const ms = await measureBlock(order, block, plan.session, counts);
      if (isShuttingDown()) return res;
      const durationS = (performance.now() - started) / 1000;
      res.blocks.push({ block, session: plan.session, order: order.map((e) => e.slot.spec.label), durationS });
      // A responder that is no longer running still owes this block: a failed block, not a missing one.
      for (const e of entries.filter((x) => !order.includes(x))) {
        const error = `not measured: ${e.life.error ?? 'not running'}`;
        res.measurements.push({ label: e.slot.spec.label, session: plan.session, block, position: -1, ok: false, error });
      }
      for (const [k, e] of order.entries()) {
        const m = ms[k]!;
        res.measurements.push(m);
        log(`[block ${block + 1}, session ${plan.session + 1}] ${m.label}: ${describeMeasurement(m)}`);
        if (m.ok) continue;
        if (!isRunning(e.responder.child)) {
          e.active = false; // gone: nothing more to measure in this session
          e.life.error ??= m.error;
        }
        if (!plan.keepGoing) res.stopped = true;
      }
    }
    if (isShuttingDown() || res.stopped) return res; // the finally below still stops them

    // Idle all at once: nothing is sent to any of them during the window.
    const idling = entries.filter((e) => e.active && isRunning(e.responder.child));
    const idle = await measureIdle(idling.map((e) => e.responder.pid), counts.idleMs);
    for (const [k, e] of idling.entries()) {
      e.life.idle = idle[k];
      e.life.rssEndKb = readRssKb(e.responder.pid);
      const dev = await readDevice(e.slot.ns); // before the stop: the device goes away with the responder
      e.life.requestsRead = dev.txPackets;
      e.life.repliesWritten = dev.rxPackets;
      e.life.queueDrops = dev.txDropped;
    }
  } finally {
    if (!isShuttingDown()) await stopAll(entries, plan, res.measurements);
  }
  if (entries.some((e) => !e.life.ok) && !plan.keepGoing) res.stopped = true;
  return res;
}

/**
 * The rounds of a block over n responders: each round gives every responder one slice, in every rotation of the
 * block's order, each forward and then reversed (ABC CBA BCA ACB CAB BAC): 2n rounds. Every responder is then
 * first, middle and last equally often, and runs right after its own previous slice once, so that a position
 * effect (what ran just before, whose caches are warm, where the scheduler put things) cancels out of the
 * block's ratio. Alternating one order with its reverse (ABC CBA ABC CBA) does that for two responders only:
 * with three, the middle one never follows itself while the others do, which measured as several percent of
 * replies/s against whoever sits in the middle.
 */
export function roundOrders(n: number): number[][] {
  const rounds: number[][] = [];
  for (let r = 0; r < n; r++) {
    const rotation = Array.from({ length: n }, (_, i) => (i + r) % n);
    rounds.push(rotation, [...rotation].reverse());
  }
  return rounds;
}

/** Slices per responder in a block with n responders (the rounds of roundOrders). */
export function slicesPerBlock(n: number): number {
  return 2 * n;
}

/** The block's measurements, in `order`: all flood slices first, then all latency slices. */
async function measureBlock(order: Entry[], block: number, session: number, counts: RunCounts): Promise<Measurement[]> {
  const ms = order.map(
    (e, position): Measurement => ({ label: e.slot.spec.label, session, block, position, ok: false }),
  );
  const rounds = (run: (e: Entry, k: number) => Promise<void>) => interleave(order, ms, run);
  const floods: FloodSlice[][] = order.map(() => []);
  const before = await countersOf(order, ms);
  await rounds(async (e, k) => {
    floods[k]!.push(await floodSlice(e.slot.ns, e.responder.pid, Math.ceil(counts.flood / slicesPerBlock(order.length))));
  });
  const afterFloods = await countersOf(order, ms);
  const latencies: LatencySlice[][] = order.map(() => []);
  await rounds(async (e, k) => {
    latencies[k]!.push(await latencySlice(e.slot.ns, Math.ceil(counts.latency / slicesPerBlock(order.length))));
  });
  const after = await countersOf(order, ms);
  for (const [k, m] of ms.entries()) {
    if (m.error !== undefined) continue;
    m.flood = combineFloodSlices(floods[k]!, before[k]!, afterFloods[k]!);
    if (floods[k]!.some((f) => cpuClocksDisagree(f.cpu))) m.cpuClockWarning = true;
    m.latency = combineLatencySlices(latencies[k]!, afterFloods[k]!, after[k]!);
    m.ok = true;
  }
  return ms;
}

/** The rounds of roundOrders over `order`; a responder that fails sits out the rest. */
async function interleave(
  order: Entry[],
  ms: Measurement[],
  run: (e: Entry, k: number) => Promise<void>,
): Promise<void> {
  for (const ks of roundOrders(order.length)) {
    for (const k of ks) {
      if (isShuttingDown()) return;
      if (ms[k]!.error !== undefined) continue;
      try {
        await run(order[k]!, k);
      } catch (err) {
        ms[k]!.error = errorText(err, order[k]!.responder);
      }
    }
  }
}

/** Each responder's namespace counters (placeholders for the failed ones, which are not combined). */
async function countersOf(order: Entry[], ms: Measurement[]): Promise<(IcmpCounters | undefined)[]> {
  const out: (IcmpCounters | undefined)[] = [];
  for (const [k, e] of order.entries()) {
    if (isShuttingDown() || ms[k]!.error !== undefined) {
      out.push(undefined);
      continue;
    }
    try {
      out.push(await readIcmpCounters(e.slot.ns));
    } catch (err) {
      ms[k]!.error = errorText(err, e.responder);
      out.push(undefined);
    }
  }
  return out;
}

/** SIGTERM to each, timed; then the checks that need the process gone (its capture is complete only then). */
async function stopAll(entries: Entry[], plan: SessionPlan, measurements: Measurement[]): Promise<void> {
  for (const e of entries) {
    const life = e.life;
    life.stop = await stopResponder(e.responder);
    if (e.slot.spec.usesCli) life.io = ioPathFromOutput(e.responder.output());
    for (const m of measurements) if (m.label === life.label) m.io = life.io;
    if (e.active && life.stop.diedEarly) {
      e.active = false;
      life.error ??= `${life.label} exited during the session (${life.stop.exit}): ${oneLine(e.responder.output())}`;
    }
    // Only if the device's count was read (not when the session was cut short): it is what the capture must match.
    if (e.active && e.slot.spec.checksCapture && life.requestsRead !== undefined) {
      life.capture = checkCapture(e.pcap, life.requestsRead);
    }
    fs.rmSync(e.pcap, { force: true }); // captures are large; only their record count matters
    life.ok = e.active && !life.stop.killed && life.capture?.ok !== false;
    if (e.active && !life.ok) life.error ??= life.stop.killed ? 'needed SIGKILL to stop' : 'capture incomplete';
    log(`[session ${plan.session + 1}] ${life.label}: ${describeLife(life)}`);
  }
}

/** A measurement on one line, for the progress log. */
function describeMeasurement(m: Measurement): string {
  if (!m.ok) return `FAILED: ${m.error}`;
  const f = m.flood!;
  const l = m.latency!;
  return [
    `${fmtInt(f.repliesPerSec)} replies/s`,
    `${fmtNum(f.usCpuPerReply, 2)} µs CPU/reply`,
    `RTT avg ${fmtNum(l.avgUs, 0)} p99 ${fmtNum(l.p99Us, 0)} µs`,
    `nstat ${f.nstat.valid && l.nstat.valid ? 'ok' : 'INVALID'}`,
    ...(m.cpuClockWarning ? ['CPU clocks disagree'] : []),
  ].join(', ');
}

function describeLife(life: ResponderLife): string {
  const parts: string[] = [];
  if (life.idle) parts.push(`idle ${fmtInt(life.idle.cpuUsPerS)} µs/s ${fmtNum(life.idle.switchesPerS, 0)} wakeups/s`);
  if (life.rssEndKb !== undefined) parts.push(`RSS ${fmtInt(life.rssStartKb ?? NaN)}→${fmtInt(life.rssEndKb)} kB`);
  if (life.capture) parts.push(`pcap ${fmtInt(life.capture.records)}/${fmtInt(life.capture.requestsRead)} requests`);
  if (life.stop) parts.push(`stop ${fmtNum(life.stop.ms, 0)} ms${life.stop.killed ? ' (SIGKILL)' : ''}`);
  if (!life.ok) parts.push(`FAILED: ${life.error}`);
  return parts.join(', ');
}

// ---------------------------------------------------------------------------------------------------------------
// The soak

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
  /** Its exit line's I/O path (see ResponderLife.io). */
  io?: string;
}

/** A fresh process, warmed up; RSS sampled every second of one long flood: a leak shows as a climb. */
export async function runSoak(slot: Slot, seconds: number, counts: RunCounts, setup: Setup): Promise<SoakResult> {
  const res: SoakResult = { label: slot.spec.label, ok: false, seconds };
  const pcap = path.join(setup.tmpDir, 'soak.pcap');
  const responder = startResponder(slot.spec, slot.ns, { refBinary: setup.refBinary, pcap });
  try {
    await waitUntilDeviceReady(responder);
    await warmUp(slot.ns, responder.pid, counts);
    res.rssStartKb = res.rssMaxKb = readRssKb(responder.pid);
    const counters = await readIcmpCounters(slot.ns);
    // -w ends it; -c is there only to bound it by count too.
    let done = false;
    const flood = floodPing(slot.ns, seconds * 1_000_000, seconds).finally(() => (done = true));
    while (!done) {
      await Promise.race([sleep(1000), flood.catch(() => undefined)]);
      if (isRunning(responder.child)) res.rssMaxKb = Math.max(res.rssMaxKb, readRssKb(responder.pid));
    }
    const ping = await flood;
    res.rssEndKb = readRssKb(responder.pid);
    res.repliesPerSec = ping.received / (ping.timeMs / 1000);
    res.nstat = checkCounters(counters, await readIcmpCounters(slot.ns), ping);
    res.ok = true;
  } catch (err) {
    await waitForExit(responder.child, 300);
    res.error = errorText(err, responder);
  } finally {
    res.stop = await stopResponder(responder);
    if (slot.spec.usesCli) res.io = ioPathFromOutput(responder.output());
    fs.rmSync(pcap, { force: true });
  }
  return res;
}
