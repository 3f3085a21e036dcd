/**
 * Runs a pipeline on a device in a worker thread: the thread waits in a blocking poll() on the device and
 * an eventfd, drains the device with read() and runs the fused engine, with no event loop between the
 * kernel and the stages. Measured against the main-thread path (libuv readiness, ./readiness.ts), this
 * halves the CPU spent outside the kernel per packet: a wake costs one poll() instead of a turn of the
 * event loop and a call from C++ into JavaScript. The eventfd lets the main thread stop the worker at once
 * (on SIGINT/SIGTERM), so a parked thread never keeps the process from exiting.
 *
 * The main thread keeps the device (it opened and configured it, and closes it); the worker shares its fd.
 * Stages are resolved again in the worker from the pipeline text, user modules included. Asynchronous
 * stages work: while one has packets in hand, the worker polls with a short timeout and lets its own event
 * loop turn between batches.
 */
import { isMainThread, parentPort, Worker, workerData } from 'node:worker_threads';
import { writeSync } from 'node:fs';
import { setImmediate as nextTurn } from 'node:timers/promises';
import * as libc from '../device/libc.js';
import { countWrite, readError, type TunCounters, type TunDevice } from '../device/tun.js';
import { DRAIN_BUDGET, MAX_PACKET, SlabReader } from '../device/slab-reader.js';
import { TunpipeError } from '../errors.js';
import { Packet } from '../packet/packet.js';
import { wallClock } from '../packet/clock.js';
import { Engine } from './engine.js';
import { resolvePipeline } from './resolve.js';
import { StageStats } from './stage.js';
import type { RunResult } from './run.js';

/** Milliseconds without packets after which buffered capture records are written. */
const PAUSE_MS = 20;

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
}

/** Main thread: runs `pipeline` on `device` in a worker; resolves when the worker has stopped and reported. */
export async function runDeviceInWorker(options: { device: TunDevice; pipeline: string; count?: number; queueLength?: number; signal?: AbortSignal }): Promise<RunResult> {
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
      worker.on('message', (m: ResultMessage | SetupErrorMessage) => {
        if (m.type === 'setup-error') reject(new TunpipeError(m.message, m.code));
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
    };
  } finally {
    options.signal?.removeEventListener('abort', stop);
    libc.close(wake);
  }
}

/** Worker thread: the poll/drain loop around the engine. */
async function workerMain(input: WorkerInput): Promise<void> {
  const { fd, wake } = input;
  const counters: ResultMessage['counters'] = { rxPackets: 0, rxBytes: 0, txPackets: 0, txBytes: 0, txErrors: 0, lastTxErrno: 0 };
  let stoppedBy: RunResult['stoppedBy'] | null = null;
  let error: Error | null = null;
  const stopWith = (by: RunResult['stoppedBy'], err?: Error) => {
    if (stoppedBy !== null) return;
    stoppedBy = by;
    if (err) error = err;
  };
  let packetsIn = 0;
  let packetsOut = 0;
  // Set below when packets are read into one reused buffer: replies still in it are written by address.
  let scratchMemory: ArrayBufferLike | null = null;
  let scratchBase = 0;
  const send = (p: Packet) => {
    packetsOut++;
    const d = p.data;
    countWrite(counters, d.buffer === scratchMemory ? libc.writeAt(fd, scratchBase + d.byteOffset, d.length) : libc.write(fd, d, d.length));
  };
  let engine: Engine;
  try {
    engine = new Engine(await resolvePipeline(input.pipeline), {
      sink: send,
      queueLength: input.queueLength,
      warn: (m) => writeSync(2, `tunpipe: ${m}\n`),
      onFail: (err) => stopWith('error', err),
    });
  } catch (err) {
    // A stage that cannot start (a capture file that cannot be created): the same one-line error as without
    // a worker. The main thread throws it.
    const e = err as TunpipeError;
    parentPort!.postMessage({ type: 'setup-error', message: e.message, code: e.code } satisfies SetupErrorMessage);
    return;
  }
  const limit = input.count < 0 ? Infinity : input.count;
  if (limit === 0) stopWith('count');

  // No stage keeps packets: every packet is read into one buffer and handed in as one reused Packet, through
  // a view of the right length (one per length seen, kept). Nothing is allocated per packet. Otherwise each
  // packet gets its own Buffer (a view into a slab) and Packet.
  const reuse = engine.packetsReusable;
  const scratch = Buffer.allocUnsafeSlow(MAX_PACKET);
  const scratchAddr = libc.addressOf(scratch);
  if (reuse) {
    scratchMemory = scratch.buffer;
    scratchBase = scratchAddr - scratch.byteOffset;
  }
  const views: (Buffer | undefined)[] = [];
  const reused = new Packet(scratch);
  const reader = new SlabReader();
  /** The next packet, null when none waits, or an errno value. */
  const readPacket = (): Packet | null | number => {
    if (!reuse) {
      const got = reader.read(fd);
      return got === null || typeof got === 'number' ? got : new Packet(got);
    }
    const n = libc.readAt(fd, scratchAddr, MAX_PACKET);
    if (n < 0) {
      const e = libc.errno();
      return e === libc.E.EAGAIN || e === libc.E.EINTR ? null : e;
    }
    if (n === 0) return null;
    reused.reset(views[n] ?? (views[n] = scratch.subarray(0, n)));
    return reused;
  };
  const drain = () => {
    const [sec, nsec] = wallClock();
    for (let budget = DRAIN_BUDGET; budget > 0 && stoppedBy === null; budget--) {
      const p = readPacket();
      if (p === null) break;
      if (typeof p === 'number') {
        stopWith('error', readError(input.name, p));
        break;
      }
      p.sec = sec;
      p.nsec = nsec;
      counters.rxPackets++;
      counters.rxBytes += p.data.length;
      packetsIn++;
      engine.push(p);
      if (packetsIn >= limit) stopWith('count');
    }
    engine.endBatch(true);
  };

  const fds = Buffer.alloc(16);
  fds.writeInt32LE(fd, 0);
  fds.writeInt16LE(libc.POLLIN, 4);
  fds.writeInt32LE(wake, 8);
  fds.writeInt16LE(libc.POLLIN, 12);
  while (stoppedBy === null) {
    fds.writeInt16LE(0, 6);
    fds.writeInt16LE(0, 14);
    const busy = engine.busy;
    // Buffered capture records are written once traffic pauses for PAUSE_MS (or the buffer fills).
    const rc = libc.pollSync(fds, 2, busy ? 1 : engine.pendingOutput ? PAUSE_MS : -1);
    if (rc === 0) engine.endBatch(busy);
    if (rc < 0) {
      const e = libc.errno();
      if (e !== libc.E.EINTR) stopWith('error', new TunpipeError(`waiting for ${input.name} failed: ${libc.errnoName(e)}`));
      continue;
    }
    if (fds.readInt16LE(14) !== 0) stopWith('signal');
    const revents = fds.readInt16LE(6);
    if (revents & libc.POLLIN) drain();
    else if (revents & (libc.POLLERR | libc.POLLHUP | libc.POLLNVAL)) stopWith('error', readError(input.name, libc.E.EBADFD));
    // Let promises of asynchronous stages settle.
    if (busy || engine.busy) await nextTurn();
  }

  const closeErrors = await engine.close();
  if (!error && closeErrors.length) {
    error = closeErrors[0];
    stoppedBy = 'error';
  }
  const failure = error as Error | null;
  const result: ResultMessage = {
    type: 'result',
    packetsIn,
    packetsOut,
    stages: engine.stats.map((s) => ({ name: s.name, packetsIn: s.packetsIn, packetsOut: s.packetsOut, dropped: s.dropped, held: s.held, emitted: s.emitted, reasons: [...s.reasons] })),
    reports: [...engine.reports()],
    error: failure ? { message: failure.message, code: (failure as TunpipeError).code } : null,
    stoppedBy: stoppedBy ?? 'end',
    counters,
  };
  parentPort!.postMessage(result);
}

if (!isMainThread && (workerData as WorkerInput | undefined)?.kind === 'tunpipe-device-worker') {
  void workerMain(workerData as WorkerInput);
}
