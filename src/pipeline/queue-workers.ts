/**
 * The main thread's handle on the workers of a run on several queues (./queues.ts says what runs where):
 * one PipelineWorker per queue, started, attached, stopped and reported as one. Any worker that ends (the
 * shared `--count` reached, a device gone, a capture failing, a crash) stops the others, so the run ends as
 * a whole and every worker lets its queued packets finish and flushes its stages before it reports. The
 * counters are added up: per stage, per device, and kept per queue for the exit lines and --stats.
 */
import type { TunCounters } from '../device/tun.js';
import { TunpipeError } from '../errors.js';
import { PipelineWorker, type LiveSnapshot, type WorkerResult, type WorkerRouting } from './device-worker.js';
import { programSpec, type ResolvedProgram } from './resolve.js';
import type { IoMode } from './result.js';
import { checkQueuedProgram, deviceTotals, mergeIo, mergeQueued, mergeReports, mergeStageStats, queueCounters, queueFdFor, readsOf, specForWorker, workerCount } from './queues.js';

/** A run's result with each device's counters per queue too. */
export interface QueuesResult extends WorkerResult {
  /** Per device, per queue. */
  queueCounters: TunCounters[][];
}

/** Live counters with each device's per queue. */
export interface QueuesSnapshot extends LiveSnapshot {
  queueCounters: TunCounters[][];
}

/** A device as the workers need it: every queue's fd. */
export interface QueuedDevice {
  name: string;
  fileDescriptor: number;
  queueFds?: readonly number[];
  /** Per queue, its link watch (TunDevice.linkWatchFds). */
  linkWatchFds?: readonly number[];
}

export interface QueueWorkersOptions {
  program: ResolvedProgram;
  routing: WorkerRouting;
  /** Per device, in the order of routing.ports: its queues. */
  queues: number[];
  count?: number;
  queueLength?: number;
  io?: IoMode;
  ioBuffers?: number;
  /** Aborted while the workers create their stages: they are ended (PipelineWorker.start). */
  signal?: AbortSignal;
}

export class QueueWorkers {
  private settled: Promise<PromiseSettledResult<WorkerResult>[]> | null = null;
  /** Workers in the order they ended: the first one's reason is the run's. */
  private readonly endOrder: number[] = [];

  private constructor(
    private readonly workers: PipelineWorker[],
    private readonly queues: number[],
  ) {}

  /** Starts a worker per queue, each creating the stages of the pipelines it runs; rejects with the first setup error. */
  static async start(o: QueueWorkersOptions): Promise<QueueWorkers> {
    // The CLI checked this before opening anything; the library's callers get the same refusal here.
    checkQueuedProgram(o.program, o.routing.pipelineOf, o.queues, o.routing.ports.map((p) => p.name));
    const n = workerCount(o.queues);
    const spec = programSpec(o.program);
    const sharedCount = o.count !== undefined ? new SharedArrayBuffer(4) : undefined;
    const started = await Promise.allSettled(
      Array.from({ length: n }, (_, k) => {
        const reads = readsOf(o.queues, k);
        return PipelineWorker.start({
          program: specForWorker(spec, o.routing.pipelineOf, reads),
          routing: o.routing,
          count: o.count,
          queueLength: o.queueLength,
          io: o.io,
          ioBuffers: o.ioBuffers,
          queue: { reads, sharedCount },
          signal: o.signal,
        });
      }),
    );
    const failed = started.find((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (failed) {
      await Promise.all(started.map((r) => (r.status === 'fulfilled' ? r.value.cancel() : undefined)));
      throw failed.reason;
    }
    return new QueueWorkers(
      started.map((r) => (r as PromiseFulfilledResult<PipelineWorker>).value),
      o.queues,
    );
  }

  /** Hands worker k queue k of every device (queue k mod N to write through); resolves once every worker moves packets. */
  async attach(devices: QueuedDevice[]): Promise<void> {
    const attached = await Promise.allSettled(this.workers.map((w, k) => w.attach(devices.map((d) => ({ name: d.name, fileDescriptor: queueFdFor(d.queueFds ?? [d.fileDescriptor], k), linkWatch: d.linkWatchFds?.[k] ?? -1 })))));
    this.settled = Promise.allSettled(
      this.workers.map((w, k) =>
        w.finished().finally(() => {
          this.endOrder.push(k);
          this.stop();
        }),
      ),
    );
    const failed = attached.find((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (failed) {
      this.stop();
      await this.settled;
      throw failed.reason;
    }
  }

  /** Asks every worker to stop (as SIGINT does); safe at any time, more than once. */
  stop(): void {
    for (const w of this.workers) w.stop();
  }

  /** The devices could not be opened: every worker closes its stages and ends. */
  async cancel(): Promise<void> {
    await Promise.all(this.workers.map((w) => w.cancel()));
  }

  /** The counters of every queue added up, or null when a worker did not answer within a second. */
  async liveCounters(): Promise<QueuesSnapshot | null> {
    const snaps = await Promise.all(this.workers.map((w) => w.liveCounters()));
    if (snaps.some((s) => s === null)) return null;
    const all = snaps as LiveSnapshot[];
    const perQueue = queueCounters(all.map((s) => s.counters), this.queues);
    return {
      stages: mergeStageStats(all.map((s) => s.stages)),
      reports: mergeReports(all.map((s) => s.reports)),
      counters: deviceTotals(perQueue),
      queued: mergeQueued(all.map((s) => s.queued)),
      queueCounters: perQueue,
    };
  }

  get ioPath(): string {
    return mergeIo(this.workers.map((w) => w.ioPath), this.workers.length);
  }

  /** Resolves when every worker has stopped and reported: their results as one. */
  async finished(): Promise<QueuesResult> {
    if (this.settled === null) throw new TunpipeError('the queue workers were never attached');
    const settled = await this.settled;
    const results: WorkerResult[] = [];
    let error: Error | null = null;
    // The first worker to end decides why the run stopped; its error (or the first one's) is the run's.
    for (const k of this.endOrder) {
      const r = settled[k];
      const failure = r.status === 'rejected' ? (r.reason as Error) : r.value.error;
      if (failure && error === null) error = new TunpipeError(`${failure.message} (the worker of queue ${k}; the other queues were stopped)`, (failure as TunpipeError).code);
    }
    for (const r of settled) if (r.status === 'fulfilled') results.push(r.value);
    const first = settled[this.endOrder[0]];
    const stoppedBy = error !== null ? 'error' : first.status === 'fulfilled' ? first.value.stoppedBy : 'error';
    const perQueue = queueCounters(
      settled.map((r) => (r.status === 'fulfilled' ? r.value.counters : this.queues.map(() => ({ rxPackets: 0, rxBytes: 0, txPackets: 0, txBytes: 0, txErrors: 0, lastTxErrno: 0 })))),
      this.queues,
    );
    return {
      packetsIn: results.reduce((n, r) => n + r.packetsIn, 0),
      packetsOut: results.reduce((n, r) => n + r.packetsOut, 0),
      stages: mergeStageStats(results.map((r) => r.stages)),
      reports: mergeReports(results.map((r) => r.reports)),
      error,
      stoppedBy,
      io: mergeIo(results.map((r) => r.io ?? '?'), this.workers.length),
      counters: deviceTotals(perQueue),
      queueCounters: perQueue,
    };
  }
}
