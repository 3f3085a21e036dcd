/**
 * Runs a program on devices in a worker thread, with no event loop between the kernel and the stages: the
 * thread waits in the kernel, takes the packets that arrived, runs the engine on them and writes what
 * leaves. Two ways to wait and move packets, both under one Driver (./driver.ts):
 * - io_uring (./uring-loop.ts, the default where the kernel has it): one ring for every device;
 * - poll() (./poll-loop.ts, the fallback, or io 'poll').
 * 'uring' insists on io_uring (an error where it cannot be had). An eventfd lets the main thread stop the
 * worker at once (on SIGINT/SIGTERM), so a parked thread never keeps the process from exiting.
 *
 * In two steps, so that everything is open before the caller drops root and before any device exists:
 * `PipelineWorker.start()` sends the resolved program (built-ins by name; users' modules by URL, imported
 * here and only here) and the worker creates every stage (captures opened); `attach()` then hands it the
 * devices the main thread opened (and keeps, and closes), and the worker starts moving packets.
 */
import { lazyRequire } from '../lazy-require.js';
import type { Worker } from 'node:worker_threads';
import * as fs from 'node:fs';
import { closeSync, statSync, writeSync } from 'node:fs';
import { SALVAGE_LAYOUT, salvagedFds, salvageWords, startSalvage, writeUnwritten } from '../pcap/salvage.js';
import * as libc from '../device/libc.js';
import type { TunCounters } from '../device/tun.js';
import { DeviceRing } from '../device/uring.js';
import { MAX_PACKET } from '../device/slab-reader.js';
import { TunpipeError } from '../errors.js';
import { Engine } from './engine.js';
import { portsOfPipeline } from './routing.js';
import { PipelineSyntaxError } from './language.js';
import { reviveProgram, type ProgramSpec } from './resolve.js';
import { insertSegments } from './offload.js';
import { StageStats, type PortInfo } from './stage.js';
import { Driver } from './driver.js';
import { SharedCountDriver } from './queue-driver.js';
import { runPollLoop } from './poll-loop.js';
import { runUringLoop } from './uring-loop.js';
import { directSend, WAKE_REPORT, WAKE_STOP, type DeviceLoopContext } from './worker-loop.js';

import type { IoMode, RunResult, StopReason } from './result.js';

// Required, not imported (../lazy-require.ts): only a run on a device loads worker_threads.
const { isMainThread, parentPort, Worker: WorkerThread, workerData } = lazyRequire('node:worker_threads') as typeof import('node:worker_threads');

export type { IoMode };

/** Where each pipeline's packets come from and go: devices by index in `ports`. */
export interface WorkerRouting {
  /** The devices, in order. */
  ports: PortInfo[];
  /** Per device: the pipeline that reads it, or -1. */
  pipelineOf: number[];
  /** Per pipeline: the device its default sink writes to, or -1 to discard. */
  defaultSink: number[];
}

interface WorkerInput {
  kind: 'tunpipe-device-worker';
  program: ProgramSpec;
  routing: WorkerRouting;
  count: number;
  queueLength?: number;
  io: IoMode;
  ioBuffers: number;
  queue?: QueueSlot;
}

/** One queue's worker among several (./queues.ts): which devices it reads, and the count they share. */
export interface QueueSlot {
  /** Per device: whether this worker reads it (the device has a queue for it); the others it only writes. */
  reads: boolean[];
  /** `--count` over all queues: an Int32 that every worker adds its packets to (./queues.ts SharedCountDriver). */
  sharedCount?: SharedArrayBuffer;
}

interface AttachMessage {
  type: 'attach';
  fds: number[];
  names: string[];
  /** Per device, its link watch (TunDevice.linkWatchFds), -1 when none. */
  linkWatches: number[];
  wake: number;
  /** The devices could not be opened: close the stages and report. */
  cancel?: boolean;
}

/** A stage's counters as they cross back to the main thread. */
interface StatsMessage {
  name: string;
  packetsIn: number;
  packetsOut: number;
  dropped: number;
  held: number;
  emitted: number;
  diverted: number;
  reasons: [string, number][];
}

type FromWorker =
  | { type: 'created' }
  /** The worker's salvage table (../pcap/salvage.ts), or one of its capture buffers (null: dropped). */
  | { type: 'salvage'; table: SharedArrayBuffer }
  | { type: 'salvage'; id: number; buffer: SharedArrayBuffer | null }
  | { type: 'live'; stages: StatsMessage[]; reports: [string, string][]; counters: TunCounters[]; queued: [string, number][] }
  | { type: 'ready'; io: string }
  | { type: 'setup-error'; message: string; code?: string; syntax?: { reason: string; text: string; pos: number; hint?: string } }
  | ResultMessage;

interface ResultMessage {
  type: 'result';
  packetsIn: number;
  packetsOut: number;
  stages: StatsMessage[];
  reports: [string, string][];
  error: { message: string; code?: string } | null;
  stoppedBy: StopReason;
  counters: TunCounters[];
  io: string;
}

export function statsMessage(s: StageStats): StatsMessage {
  return { name: s.name, packetsIn: s.packetsIn, packetsOut: s.packetsOut, dropped: s.dropped, held: s.held, emitted: s.emitted, diverted: s.diverted, reasons: [...s.reasons] };
}

export function statsFromMessage(m: StatsMessage): StageStats {
  const s = new StageStats(m.name);
  Object.assign(s, { packetsIn: m.packetsIn, packetsOut: m.packetsOut, dropped: m.dropped, held: m.held, emitted: m.emitted, diverted: m.diverted });
  for (const [r, n] of m.reasons) s.reasons.set(r, n);
  return s;
}

/** The counters while a run goes on: every stage's, every device's, and what waits in asynchronous stages' queues. */
export interface LiveSnapshot {
  stages: StageStats[];
  reports: Map<string, string>;
  counters: TunCounters[];
  queued: Map<string, number>;
}

/** The result of a run in the worker, with every device's counters. */
export interface WorkerResult extends RunResult {
  counters: TunCounters[];
}

/**
 * A worker's entry: this module's own bundle (scripts/bundle.mjs), beside it, or this module. Named from
 * the directory above, so that they are found the same from the CLI's bundle, which lives in a sibling
 * directory (dist/src/cli).
 */
const WORKER_BUNDLE = new URL('../pipeline/device-worker.bundle.js', import.meta.url);
const WORKER_MODULE = new URL('../pipeline/device-worker.js', import.meta.url);

/**
 * The bundle, unless `tsc` alone left it missing or older than this module: then the module, as
 * bin/tunpipe.ts does, with the same margin for copies.
 */
function workerEntry(): URL {
  const mtime = (u: URL) => statSync(u, { throwIfNoEntry: false })?.mtimeMs;
  const module = mtime(WORKER_MODULE);
  const bundle = mtime(WORKER_BUNDLE);
  return module !== undefined && (bundle === undefined || bundle < module - STALE_BUNDLE_MS) ? WORKER_MODULE : WORKER_BUNDLE;
}

/** See bin/tunpipe.ts. */
const STALE_BUNDLE_MS = 2000;

/** The main thread's handle on a pipeline worker. */
export class PipelineWorker {
  private readonly wake: number;
  private readonly result: Promise<ResultMessage>;
  private readyWaiter: ((m: { io: string }) => void) | null = null;
  private failWaiter: ((e: Error) => void) | null = null;
  private stopped = false;
  private io = '';

  private constructor(
    private readonly worker: Worker,
    created: () => void,
    failed: (e: Error) => void,
  ) {
    const wake = libc.eventfd(0, libc.EFD_CLOEXEC | libc.EFD_NONBLOCK);
    if (wake < 0) throw new TunpipeError(`cannot create an eventfd: ${libc.errnoName(libc.errno())}`);
    this.wake = wake;
    this.result = new Promise<ResultMessage>((resolve, reject) => {
      let result: ResultMessage | null = null;
      const fail = (e: Error) => {
        failed(e);
        this.failWaiter?.(e);
        reject(e);
      };
      worker.on('message', (m: FromWorker) => {
        if (m.type === 'salvage') {
          if ('table' in m) this.salvageTable = m.table;
          else if (m.buffer !== null) this.salvageBuffers.set(m.id, m.buffer);
          else this.salvageBuffers.delete(m.id);
        } else if (m.type === 'setup-error') fail(m.syntax ? new PipelineSyntaxError(m.syntax.reason, m.syntax.text, m.syntax.pos, m.syntax.hint) : new TunpipeError(m.message, m.code));
        else if (m.type === 'created') created();
        else if (m.type === 'ready') this.readyWaiter?.(m);
        else if (m.type === 'live') this.liveWaiter?.(m);
        else result = m;
      });
      worker.once('error', fail);
      worker.once('exit', (code) => {
        if (result) {
          this.closeSalvagedFds();
          return resolve(result);
        }
        // Ended from here, or died of an error of its own: either way its captures are written out.
        const saved = this.salvage();
        if (this.endedFor !== null) fail(new TunpipeError(`${this.endedFor}${saved}`));
        else fail(new Error(`the pipeline worker exited (code ${code}) without a result`));
      });
    });
    // Rejections reach the caller through start(), attach() or finished().
    this.result.catch(() => {});
  }

  /**
   * Starts a worker and has it create every stage of the program; rejects with the first setup error. A
   * `signal` aborted before the stages are created ends the worker at once: no packet has moved yet, and a
   * user's module stuck in its import or its create() would otherwise hold the run past Ctrl-C.
   */
  static start(options: { program: ProgramSpec; routing: WorkerRouting; count?: number; queueLength?: number; io?: IoMode; ioBuffers?: number; queue?: QueueSlot; signal?: AbortSignal }): Promise<PipelineWorker> {
    const input: WorkerInput = {
      kind: 'tunpipe-device-worker',
      program: options.program,
      routing: options.routing,
      count: options.count ?? -1,
      queueLength: options.queueLength,
      io: options.io ?? 'auto',
      ioBuffers: options.ioBuffers ?? RING_BUFFERS,
      queue: options.queue,
    };
    return new Promise((resolve, reject) => {
      const worker = new WorkerThread(workerEntry(), { workerData: input });
      let handle: PipelineWorker | null = null;
      const signal = options.signal;
      const abort = () => {
        handle!.endedFor = "stopped by a signal while the stages were being created (a user's module still loading or in its create()?)";
        void worker.terminate();
      };
      handle = new PipelineWorker(
        worker,
        () => {
          signal?.removeEventListener('abort', abort);
          resolve(handle!);
        },
        (e) => {
          signal?.removeEventListener('abort', abort);
          handle?.closeWake();
          reject(e);
        },
      );
      if (signal?.aborted) abort();
      else signal?.addEventListener('abort', abort, { once: true });
    });
  }

  /** Hands the worker its devices (in the order of `routing.ports`); resolves once it moves packets. */
  attach(devices: { fileDescriptor: number; name: string; linkWatch?: number }[]): Promise<void> {
    return new Promise((resolve, reject) => {
      this.readyWaiter = (m) => {
        this.io = m.io;
        resolve();
      };
      this.failWaiter = reject;
      this.worker.postMessage({
        type: 'attach',
        fds: devices.map((d) => d.fileDescriptor),
        names: devices.map((d) => d.name),
        linkWatches: devices.map((d) => d.linkWatch ?? -1),
        wake: this.wake,
      } satisfies AttachMessage);
      if (this.stopped) this.stop();
    });
  }

  /**
   * Asks the worker to stop (as SIGINT does); safe to call at any time, more than once. A worker that has
   * not stopped STOP_GRACE_MS later (a stage that never returns keeps its thread) is ended: the run then
   * fails with an error that says so.
   */
  stop(): void {
    this.stopped = true;
    this.wakeWith(WAKE_STOP);
    if (this.graceTimer !== null) return;
    this.graceTimer = setTimeout(() => {
      this.endedFor = `the pipeline did not stop within ${STOP_GRACE_MS / 1000} s of being asked: a stage that never returns (a loop in a user's stage?) held it; it was ended, its counters are lost`;
      void this.worker.terminate();
    }, STOP_GRACE_MS);
    this.graceTimer.unref();
    void this.result.then(
      () => clearTimeout(this.graceTimer!),
      () => clearTimeout(this.graceTimer!),
    );
  }

  private graceTimer: NodeJS.Timeout | null = null;
  /** Why the worker was ended from here (then its result never comes). */
  private endedFor: string | null = null;
  private salvageTable: SharedArrayBuffer | null = null;
  private readonly salvageBuffers = new Map<number, SharedArrayBuffer>();

  /**
   * The worker ended without its result: writes out what its captures still held and closes them (through
   * the duplicates its table holds, see workerMain); says so, as the end of the error's text.
   */
  private salvage(): string {
    if (this.salvageTable === null) return '';
    const kept = writeUnwritten(SALVAGE_LAYOUT, this.salvageTable, this.salvageBuffers, { ...fs, sendNow: (fd, data) => libc.send(fd, data, data.length, libc.MSG_DONTWAIT | libc.MSG_NOSIGNAL) });
    this.closeSalvagedFds();
    const words = salvageWords(kept, '');
    return words === '' ? '' : '; ' + words;
  }

  /** Closes the duplicates the worker's salvage table still holds: none once each capture closed its own. */
  private closeSalvagedFds(): void {
    if (this.salvageTable === null) return;
    for (const fd of salvagedFds(this.salvageTable)) if (fd > 2) closeQuietly(fd);
    this.salvageTable = null;
  }

  private wakeWith(value: number): void {
    if (this.wakeClosed) return;
    const b = Buffer.alloc(8);
    b.writeBigUInt64LE(BigInt(value));
    libc.write(this.wake, b, 8);
  }

  private liveWaiter: ((m: { stages: StatsMessage[]; reports: [string, string][]; counters: TunCounters[]; queued: [string, number][] }) => void) | null = null;

  /** The counters as they are now (kill -USR1, --stats), or null if the worker did not answer within a second. */
  liveCounters(): Promise<LiveSnapshot | null> {
    return new Promise((resolve) => {
      const timer = setTimeout(() => resolve(null), 1000);
      this.liveWaiter = (m) => {
        clearTimeout(timer);
        this.liveWaiter = null;
        resolve({ stages: m.stages.map(statsFromMessage), reports: new Map(m.reports), counters: m.counters, queued: new Map(m.queued) });
      };
      this.wakeWith(WAKE_REPORT);
    });
  }

  /** The devices could not be opened: the worker closes its stages (captures) and ends. */
  async cancel(): Promise<void> {
    this.worker.postMessage({ type: 'attach', fds: [], names: [], linkWatches: [], wake: this.wake, cancel: true } satisfies AttachMessage);
    await this.finished().catch(() => {});
  }

  /** How the worker moves packets (known once attached): 'io_uring', 'poll', or 'poll (io_uring: why not)'. */
  get ioPath(): string {
    return this.io;
  }

  /** Resolves when the worker has stopped and reported. */
  async finished(): Promise<WorkerResult> {
    try {
      const msg = await this.result;
      return {
        packetsIn: msg.packetsIn,
        packetsOut: msg.packetsOut,
        stages: msg.stages.map(statsFromMessage),
        reports: new Map(msg.reports),
        error: msg.error ? new TunpipeError(msg.error.message, msg.error.code) : null,
        stoppedBy: msg.stoppedBy,
        io: msg.io,
        counters: msg.counters,
      };
    } finally {
      this.closeWake();
    }
  }

  private wakeClosed = false;
  private closeWake(): void {
    if (this.wakeClosed) return;
    this.wakeClosed = true;
    libc.close(this.wake);
  }
}

function closeQuietly(fd: number): void {
  try {
    closeSync(fd);
  } catch {
    /* already closed */
  }
}

/** How long a worker asked to stop may take (its stages close, captures flush, the last writes complete). */
export const STOP_GRACE_MS = 5000;

/** Receive buffers of the io_uring loop per device: packets the kernel may read ahead of the pipeline in one wake. */
export const RING_BUFFERS = 128;

function openRing(fds: number[], wake: number, io: IoMode, buffers: number): { ring: DeviceRing | null; io: string } {
  if (io === 'poll') return { ring: null, io: 'poll' };
  const ring = DeviceRing.open({ deviceFds: fds, wakeFd: wake, bufferSize: MAX_PACKET, buffers });
  if (typeof ring !== 'string') return { ring, io: 'io_uring' };
  if (io === 'uring') throw new TunpipeError(`TUNPIPE_IO=uring, but io_uring cannot be used here: ${ring}`);
  return { ring: null, io: `poll (io_uring: ${ring})` };
}

function post(m: FromWorker): void {
  parentPort!.postMessage(m);
}

function setupError(err: unknown): FromWorker {
  if (err instanceof PipelineSyntaxError) return { type: 'setup-error', message: err.message, syntax: { reason: err.reason, text: err.text, pos: err.pos, hint: err.hint } };
  if (err instanceof Error) return { type: 'setup-error', message: err.message, code: (err as TunpipeError).code };
  return { type: 'setup-error', message: String(err) };
}

/** Worker thread: creates the stages, waits for its devices, runs one of the device loops, reports. */
async function workerMain(input: WorkerInput): Promise<void> {
  // The kernel may round a sleeping thread's timeout up by its timer slack (50 µs by default): this thread
  // releases delayed packets on timeouts, so it asks for none.
  libc.prctl(libc.PR_SET_TIMERSLACK, 1, 0, 0, 0);
  const { routing } = input;
  // Captures keep their records where the main thread can write them out, should this thread get stuck,
  // through duplicates of their fds: Node closes the fds this thread opened when it ends (a user's stage's
  // files too, which would otherwise leak), and the duplicates, above stdio, are the main thread's to close.
  const table = startSalvage((id, buffer) => post({ type: 'salvage', id, buffer }), { hold: (fd) => libc.dupCloexec(fd, 3), letGo: (fd) => void libc.close(fd) });
  post({ type: 'salvage', table });
  const n = routing.ports.length;
  const counters: TunCounters[] = routing.ports.map(() => ({ rxPackets: 0, rxBytes: 0, txPackets: 0, txBytes: 0, txErrors: 0, lastTxErrno: 0 }));
  let ctx: DeviceLoopContext | null = null;
  // The sinks call through `ctx.send`, which each loop sets to its own way of writing.
  const sendTo = (device: number) => (p: Parameters<DeviceLoopContext['send']>[0]) => ctx!.send(p, device);
  const discard = () => {};
  const indexOf = new Map(routing.ports.map((p, i) => [p.name, i]));
  let engine: Engine;
  let driver: Driver;
  try {
    // Super-packets from a device with offloads are segmented where a stage or a device needs segments.
    const program = insertSegments(await reviveProgram(input.program), routing, routing.ports);
    engine = new Engine(program, {
      sink: discard,
      // A pipeline without a sink of its own writes to its default: its device, or nowhere.
      defaultSinkFor: (i) => (routing.defaultSink[i] >= 0 ? sendTo(routing.defaultSink[i]) : discard),
      sinkFor: (port) => sendTo(indexOf.get(port)!),
      portsOf: (i) => portsOfPipeline(routing, routing.ports, i),
      // io_uring writes a packet when the batch's writes are submitted, after the sink returned.
      sinksKeepBytes: true,
      queueLength: input.queueLength,
      warn: (m) => {
        try {
          writeSync(2, `tunpipe: ${m}\n`);
        } catch {
          /* stderr closed: the warning is lost, the pipeline goes on */
        }
      },
      onFail: (err) => driver?.stopWith('error', err),
    });
    const shared = input.queue?.sharedCount;
    driver = shared !== undefined && input.count >= 0 ? new SharedCountDriver(engine, shared, input.count) : new Driver(engine, input.count < 0 ? Infinity : input.count);
  } catch (err) {
    // A stage that cannot start (a capture file that cannot be created): the same one-line error as without
    // a worker. The main thread throws it.
    post(setupError(err));
    return;
  }
  post({ type: 'created' });
  const attach = await new Promise<AttachMessage>((resolve) => parentPort!.once('message', resolve));
  if (attach.cancel) {
    const closeErrors = await engine.close();
    post({ type: 'result', packetsIn: 0, packetsOut: 0, stages: engine.stats.map(statsMessage), reports: [...engine.reports()], error: closeErrors[0] ? { message: closeErrors[0].message } : null, stoppedBy: 'error', counters, io: 'none' });
    return;
  }
  ctx = {
    fds: attach.fds,
    names: attach.names,
    linkWatches: attach.linkWatches,
    // A queue's worker reads only the devices that have a queue for it; the engine still sees every port.
    pipelineOf: input.queue ? routing.pipelineOf.map((pl, d) => (input.queue!.reads[d] ? pl : -1)) : routing.pipelineOf,
    wake: attach.wake,
    driver,
    engine,
    counters,
    offload: routing.ports.map((p) => p.offload === true),
    send: () => {},
    report: () => post({ type: 'live', stages: engine.stats.map(statsMessage), reports: [...engine.reports()], counters, queued: [...engine.queueDepths()] }),
  };
  ctx.send = directSend(ctx);
  attach.names.forEach((name, i) => ((routing.ports[i] as { name: string }).name = name));
  let ring: DeviceRing | null = null;
  let io: string;
  try {
    ({ ring, io } = openRing(attach.fds, attach.wake, input.io, input.ioBuffers));
  } catch (err) {
    post(setupError(err));
    await engine.close();
    return;
  }
  void n;
  post({ type: 'ready', io });
  if (ring) await runUringLoop(ctx, ring);
  else await runPollLoop(ctx);

  const closeErrors = await engine.close();
  let stoppedBy = driver.stoppedBy ?? 'end';
  let error = driver.error;
  if (!error && closeErrors.length) {
    error = closeErrors[0];
    stoppedBy = 'error';
  }
  post({
    type: 'result',
    packetsIn: driver.packetsIn,
    packetsOut: driver.packetsOut,
    stages: engine.stats.map(statsMessage),
    reports: [...engine.reports()],
    error: error ? { message: error.message, code: (error as TunpipeError).code } : null,
    stoppedBy,
    counters,
    io,
  });
}

if (!isMainThread && (workerData as WorkerInput | undefined)?.kind === 'tunpipe-device-worker') {
  void workerMain(workerData as WorkerInput);
}
