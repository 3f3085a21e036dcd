/**
 * Runs a pipeline on a device in a worker thread, with no event loop between the kernel and the stages:
 * the thread waits in the kernel, takes the packets that arrived, runs the fused engine on them and writes
 * the replies. Two ways to wait and move packets:
 * - io_uring (./uring-loop.ts, the default where the kernel has it): one multishot read, and two
 *   io_uring_enter per batch (submit the replies, wait for more), about the C read/write loop's CPU per reply;
 * - poll() (./poll-loop.ts, the fallback, or TUNPIPE_IO=poll): poll, then read() and write() per packet.
 * TUNPIPE_IO=uring insists on io_uring (an error where it cannot be had). Either way, measured against the
 * main-thread path (libuv readiness, ../device/readiness.ts), a wake costs one system call instead of a
 * turn of the event loop and a call from C++ into JavaScript. An eventfd lets the main thread stop the
 * worker at once (on SIGINT/SIGTERM), so a parked thread never keeps the process from exiting.
 *
 * The main thread keeps the device (it opened and configured it, and closes it); the worker shares its fd.
 * Stages are resolved again in the worker from the pipeline text, user modules included. Asynchronous
 * stages work: while one has packets in hand, the worker waits with a short timeout and lets its own event
 * loop turn between batches.
 */
import { isMainThread, parentPort, Worker, workerData } from 'node:worker_threads';
import { writeSync } from 'node:fs';
import * as libc from '../device/libc.js';
import type { TunCounters, TunDevice } from '../device/tun.js';
import { DeviceRing } from '../device/uring.js';
import { MAX_PACKET } from '../device/slab-reader.js';
import { TunpipeError } from '../errors.js';
import { Engine } from './engine.js';
import { resolvePipeline } from './resolve.js';
import { StageStats } from './stage.js';
import { runPollLoop } from './poll-loop.js';
import { runUringLoop } from './uring-loop.js';
import { directSend, type LoopContext } from './worker-loop.js';
import type { RunResult } from './run.js';

interface WorkerInput {
  kind: 'tunpipe-device-worker';
  fd: number;
  wake: number;
  name: string;
  pipeline: string;
  count: number;
  queueLength?: number;
}

interface StatsMessage {
  name: string;
  packetsIn: number;
  packetsOut: number;
  dropped: number;
  held: number;
  emitted: number;
  reasons: [string, number][];
}

/** The worker's stages are set up and it waits for packets. */
interface ReadyMessage {
  type: 'ready';
}

interface SetupErrorMessage {
  type: 'setup-error';
  message: string;
  code?: string;
}

interface ResultMessage {
  type: 'result';
  packetsIn: number;
  packetsOut: number;
  stages: StatsMessage[];
  reports: [string, string][];
  error: { message: string; code?: string } | null;
  stoppedBy: RunResult['stoppedBy'];
  counters: TunCounters;
  io: string;
}

/** Main thread: runs `pipeline` on `device` in a worker; resolves when the worker has stopped and reported. */
export async function runDeviceInWorker(options: {
  device: TunDevice;
  pipeline: string;
  count?: number;
  queueLength?: number;
  signal?: AbortSignal;
  onReady?: () => void;
}): Promise<RunResult> {
  const wake = libc.eventfd(0, libc.EFD_CLOEXEC | libc.EFD_NONBLOCK);
  if (wake < 0) throw new TunpipeError(`cannot create an eventfd: ${libc.errnoName(libc.errno())}`);
  const input: WorkerInput = {
    kind: 'tunpipe-device-worker',
    fd: options.device.fileDescriptor,
    wake,
    name: options.device.name,
    pipeline: options.pipeline,
    count: options.count ?? -1,
    queueLength: options.queueLength,
  };
  const worker = new Worker(new URL(import.meta.url), { workerData: input });
  const one = Buffer.alloc(8);
  one.writeBigUInt64LE(1n);
  const stop = () => libc.write(wake, one, 8);
  if (options.signal?.aborted) stop();
  options.signal?.addEventListener('abort', stop, { once: true });
  try {
    const msg = await new Promise<ResultMessage>((resolve, reject) => {
      let result: ResultMessage | null = null;
      worker.on('message', (m: ResultMessage | SetupErrorMessage | ReadyMessage) => {
        if (m.type === 'setup-error') reject(new TunpipeError(m.message, m.code));
        else if (m.type === 'ready') options.onReady?.();
        else result = m;
      });
      worker.once('error', reject);
      worker.once('exit', (code) => (result ? resolve(result) : reject(new Error(`the pipeline worker exited (code ${code}) without a result`))));
    });
    Object.assign(options.device.counters, msg.counters);
    return {
      packetsIn: msg.packetsIn,
      packetsOut: msg.packetsOut,
      stages: msg.stages.map((s) => Object.assign(new StageStats(s.name), { ...s, reasons: new Map(s.reasons) })),
      reports: new Map(msg.reports),
      error: msg.error ? new TunpipeError(msg.error.message, msg.error.code) : null,
      stoppedBy: msg.stoppedBy,
      io: msg.io,
    };
  } finally {
    options.signal?.removeEventListener('abort', stop);
    libc.close(wake);
  }
}

/** Receive buffers of the io_uring loop: packets the kernel may read ahead of the pipeline in one wake. */
const RING_BUFFERS = 128;

/**
 * How the worker moves packets: TUNPIPE_IO=uring|poll, else io_uring where the kernel has it.
 * TUNPIPE_IO_BUFFERS sets the number of receive buffers (a power of two; each holds the largest packet).
 */
function openRing(fd: number, wake: number): { ring: DeviceRing | null; io: string } {
  const want = process.env.TUNPIPE_IO;
  if (want !== undefined && want !== 'poll' && want !== 'uring') throw new TunpipeError(`TUNPIPE_IO=${want}: use uring or poll`);
  if (want === 'poll') return { ring: null, io: 'poll' };
  const text = process.env.TUNPIPE_IO_BUFFERS;
  const buffers = text === undefined ? RING_BUFFERS : Number(text);
  if (!Number.isInteger(buffers) || buffers < 1 || buffers > 32768 || (buffers & (buffers - 1)) !== 0) {
    throw new TunpipeError(`TUNPIPE_IO_BUFFERS=${text}: a power of two from 1 to 32768`);
  }
  const ring = DeviceRing.open({ deviceFd: fd, wakeFd: wake, bufferSize: MAX_PACKET, buffers });
  if (typeof ring !== 'string') return { ring, io: 'io_uring' };
  if (want === 'uring') throw new TunpipeError(`TUNPIPE_IO=uring, but io_uring cannot be used here: ${ring}`);
  return { ring: null, io: `poll (io_uring: ${ring})` };
}

/** Worker thread: sets up the engine, runs one of the device loops, reports. */
async function workerMain(input: WorkerInput): Promise<void> {
  let error: Error | null = null;
  const ctx: LoopContext = {
    fd: input.fd,
    wake: input.wake,
    name: input.name,
    engine: undefined as unknown as Engine,
    counters: { rxPackets: 0, rxBytes: 0, txPackets: 0, txBytes: 0, txErrors: 0, lastTxErrno: 0 },
    limit: input.count < 0 ? Infinity : input.count,
    packetsIn: 0,
    packetsOut: 0,
    stoppedBy: null,
    stopWith(by, err) {
      if (this.stoppedBy !== null) return;
      (this as { stoppedBy: RunResult['stoppedBy'] | null }).stoppedBy = by;
      if (err) error = err;
    },
    send: () => {},
  };
  ctx.send = directSend(ctx);
  let ring: DeviceRing | null = null;
  let io: string;
  try {
    ({ ring, io } = openRing(input.fd, input.wake));
    (ctx as { engine: Engine }).engine = new Engine(await resolvePipeline(input.pipeline), {
      sink: (p) => ctx.send(p),
      queueLength: input.queueLength,
      warn: (m) => writeSync(2, `tunpipe: ${m}\n`),
      onFail: (err) => ctx.stopWith('error', err),
    });
  } catch (err) {
    // A stage that cannot start (a capture file that cannot be created): the same one-line error as without
    // a worker. The main thread throws it.
    ring?.close();
    const e = err as TunpipeError;
    parentPort!.postMessage({ type: 'setup-error', message: e.message, code: e.code } satisfies SetupErrorMessage);
    return;
  }
  const engine = ctx.engine;
  if (ctx.limit === 0) ctx.stopWith('count');
  parentPort!.postMessage({ type: 'ready' } satisfies ReadyMessage);
  if (ring) await runUringLoop(ctx, ring);
  else await runPollLoop(ctx);

  const closeErrors = await engine.close();
  let stoppedBy = ctx.stoppedBy ?? 'end';
  if (!error && closeErrors.length) {
    error = closeErrors[0];
    stoppedBy = 'error';
  }
  const failure = error as Error | null;
  const result: ResultMessage = {
    type: 'result',
    packetsIn: ctx.packetsIn,
    packetsOut: ctx.packetsOut,
    stages: engine.stats.map((s) => ({ name: s.name, packetsIn: s.packetsIn, packetsOut: s.packetsOut, dropped: s.dropped, held: s.held, emitted: s.emitted, reasons: [...s.reasons] })),
    reports: [...engine.reports()],
    error: failure ? { message: failure.message, code: (failure as TunpipeError).code } : null,
    stoppedBy,
    counters: ctx.counters,
    io,
  };
  parentPort!.postMessage(result);
}

if (!isMainThread && (workerData as WorkerInput | undefined)?.kind === 'tunpipe-device-worker') {
  void workerMain(workerData as WorkerInput);
}
