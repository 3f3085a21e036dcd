/**
 * Several queues (`--queues N`, TunOptions.queues): the kernel spreads the packets of a multi-queue device
 * over its queues by a hash of their flow (tun's automatic steering: a flow written into a queue has its
 * answers read from that queue), and every queue is read by a worker of its own (./queue-workers.ts), each
 * with its own ring, driver and engine built from the same program. Worker k holds queue k of every device;
 * a device with fewer queues than there are workers is read by the first ones only, and the others write to
 * it through queue k mod N (a write may go into any queue). So on a wire `from a | to b; from b | to a`
 * with the same number of queues on both devices, queue k of a forwards to queue k of b, and both
 * directions of a flow stay in one worker.
 *
 * What this module decides, apart from the threads: which pipelines run in which worker (a pipeline runs
 * where its device is read; elsewhere its stages are not even created, so that a capture is never opened
 * twice), which stages refuse to run on several queues (their state must be one for the whole device), how
 * `--count` is kept across workers, and how the workers' counters add up.
 */
import { PipelineSyntaxError } from './language.js';
import type { ResolvedBranch, ResolvedProgram } from './program.js';
import type { ProgramSpec } from './resolve.js';
import { StageStats } from './stage.js';
import type { TunCounters } from '../device/tun.js';

/**
 * Stages whose state must be one for the whole device, with why: on several queues each worker would have
 * its own. Everything else keeps per-packet or per-flow state, and a flow stays on one queue: `reassemble`
 * (the kernel hashes every fragment of a datagram on its addresses alone, so they meet in one queue),
 * `delay`, `loss`, `reorder` (each queue its own order and its own random stream; with `seed=N` every queue
 * draws the same sequence), `filter`, `neighbor`, the echo.
 */
export const ONE_STATE_PER_DEVICE: Record<string, string> = {
  rate: 'rate on N queues would be N token buckets, N times the rate in all',
  pcap: 'the workers of several queues cannot write one capture file',
  print: "the workers of several queues would interleave print's lines",
};

/** Workers a run needs: one per queue of the device with the most. */
export function workerCount(queues: readonly number[]): number {
  return Math.max(1, ...queues);
}

/** Per device: whether worker `k` reads it (it has a queue k). */
export function readsOf(queues: readonly number[], k: number): boolean[] {
  return queues.map((n) => k < n);
}

/** The fd worker `k` uses for a device with these queue fds: its own queue, or queue k mod N to write through. */
export function queueFdFor(fds: readonly number[], k: number): number {
  return fds[k % fds.length];
}

function stageElements(b: ResolvedBranch, out: { name: string; pos: number }[], seen = new Set<ResolvedBranch>()): void {
  if (seen.has(b)) return;
  seen.add(b);
  for (const e of b.elements) {
    if (e.kind === 'tee') stageElements(e.branch, out, seen);
    else {
      out.push({ name: e.stage.def.name, pos: e.pos });
      if (e.orElse) stageElements(e.orElse, out, seen);
    }
  }
}

/**
 * Refuses, at the stage in the text, a stage of ONE_STATE_PER_DEVICE in a pipeline whose device has several
 * queues (`pipelineOf`: per device, the pipeline reading it; `queues`: per device).
 */
export function checkQueuedProgram(program: ResolvedProgram, pipelineOf: readonly number[], queues: readonly number[], names: readonly string[]): void {
  pipelineOf.forEach((pl, d) => {
    if (pl < 0 || queues[d] <= 1) return;
    const found: { name: string; pos: number }[] = [];
    stageElements(program.pipelines[pl], found);
    for (const s of found) {
      const why = ONE_STATE_PER_DEVICE[s.name];
      if (why === undefined) continue;
      throw new PipelineSyntaxError(
        `'${s.name}' cannot run on --queues ${queues[d]} (${names[d] || 'the device'}): ${why}`,
        program.text,
        s.pos,
        `give ${names[d] || 'the device'} one queue (leave out --queues) for this pipeline`,
      );
    }
  });
}

/**
 * The program as worker `k` runs it: the pipelines whose device it does not read keep their sinks (so the
 * counters line up) but lose their stages, which would otherwise be created there too (a capture opened by
 * two workers).
 */
export function specForWorker(spec: ProgramSpec, pipelineOf: readonly number[], reads: readonly boolean[]): ProgramSpec {
  const runs = spec.pipelines.map((_, i) => pipelineOf.some((p, d) => p === i && reads[d]));
  if (runs.every(Boolean)) return spec;
  return { text: spec.text, pipelines: spec.pipelines.map((pl, i) => (runs[i] ? pl : { ...(pl as object), elements: [] })) };
}

/** The largest `--count` kept exactly across queues (an Int32 counter, with room for every worker's last try). */
export const MAX_SHARED_COUNT = 2 ** 31 - 1 - 256;

/** Zeroed counters. */
export function noCounters(): TunCounters {
  return { rxPackets: 0, rxBytes: 0, txPackets: 0, txBytes: 0, txErrors: 0, lastTxErrno: 0 };
}

/** Adds `c` into `into` (the last errno seen wins, readsRearmed only when one of them has it). */
export function addCounters(into: TunCounters, c: TunCounters): TunCounters {
  into.rxPackets += c.rxPackets;
  into.rxBytes += c.rxBytes;
  into.txPackets += c.txPackets;
  into.txBytes += c.txBytes;
  into.txErrors += c.txErrors;
  if (c.lastTxErrno) into.lastTxErrno = c.lastTxErrno;
  if (c.readsRearmed !== undefined) into.readsRearmed = (into.readsRearmed ?? 0) + c.readsRearmed;
  return into;
}

/**
 * Per device, per queue: what the workers counted (`perWorker[k][d]`, worker k's counters of device d).
 * Worker k reads queue k and writes through queue k mod N, so its counts belong there.
 */
export function queueCounters(perWorker: readonly (readonly TunCounters[])[], queues: readonly number[]): TunCounters[][] {
  return queues.map((n, d) => {
    const out = Array.from({ length: n }, noCounters);
    perWorker.forEach((counters, k) => addCounters(out[k % n], counters[d]));
    return out;
  });
}

/** Per device, the sum over its queues. */
export function deviceTotals(perQueue: readonly (readonly TunCounters[])[]): TunCounters[] {
  return perQueue.map((qs) => qs.reduce((sum, c) => addCounters(sum, c), noCounters()));
}

/**
 * The stage counters of every worker as one table: rows with the same label added (labels are unique in
 * a program), in the order of the first worker (which runs every pipeline), any row it lacks after.
 */
export function mergeStageStats(perWorker: readonly (readonly StageStats[])[]): StageStats[] {
  const rows = new Map<string, StageStats>();
  for (const list of perWorker) {
    for (const s of list) {
      let row = rows.get(s.name);
      if (row === undefined) {
        row = new StageStats(s.name);
        rows.set(s.name, row);
      }
      row.packetsIn += s.packetsIn;
      row.packetsOut += s.packetsOut;
      row.dropped += s.dropped;
      row.held += s.held;
      row.emitted += s.emitted;
      row.diverted += s.diverted;
      for (const [reason, n] of s.reasons) row.reasons.set(reason, (row.reasons.get(reason) ?? 0) + n);
    }
  }
  return [...rows.values()];
}

/** Per-stage report lines: one where every queue says the same (a seed given), else each queue's, labelled. */
export function mergeReports(perWorker: readonly Map<string, string>[]): Map<string, string> {
  const out = new Map<string, string>();
  const labels = new Set(perWorker.flatMap((m) => [...m.keys()]));
  for (const label of labels) {
    const texts = perWorker.map((m) => m.get(label));
    const distinct = new Set(texts.filter((t) => t !== undefined));
    if (distinct.size === 1) out.set(label, [...distinct][0]!);
    else out.set(label, texts.map((t, k) => (t === undefined ? null : `queue ${k}: ${t}`)).filter((t) => t !== null).join('; '));
  }
  return out;
}

/** Queued packets in front of asynchronous stages, added over the workers. */
export function mergeQueued(perWorker: readonly Map<string, number>[]): Map<string, number> {
  const out = new Map<string, number>();
  for (const m of perWorker) for (const [k, n] of m) out.set(k, (out.get(k) ?? 0) + n);
  return out;
}

/** How the workers move packets (one word when they agree, else each queue's), and how many there are: a device of one queue is in every worker too. */
export function mergeIo(perWorker: readonly string[], workers: number): string {
  const distinct = new Set(perWorker);
  const how = distinct.size === 1 ? perWorker[0] : perWorker.map((io, k) => `queue ${k}: ${io}`).join(', ');
  return `${how}, ${workers} workers`;
}
