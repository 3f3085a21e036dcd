/**
 * Runs a program (one or more pipelines, with branches) between its ports until the input ends, `count`
 * packets have entered, the signal aborts, a stage fails or a device goes away; then lets queued packets
 * finish, flushes and closes every stage, and reports counters. Ports: TUN/TAP devices (on the event loop
 * here, or in a worker thread: ./device-worker.ts), or a capture file in and one out (offline). Under
 * every kind of port one Driver (./driver.ts) keeps the count, the clock, the batches and the reason to stop.
 */
import { setImmediate as nextTurn } from 'node:timers/promises';
import { Packet } from '../packet/packet.js';
import { adoptOffloadFrame, offloadFrame } from '../packet/vnet.js';
import { RunClock } from '../packet/clock.js';
import type { CaptureReader } from '../pcap/reader.js';
import { openCaptureReader } from '../pcap/open-reader.js';
import { PcapWriter } from '../pcap/writer.js';
import { LINKTYPE_ETHERNET, LINKTYPE_IPV4, LINKTYPE_IPV6, LINKTYPE_RAW } from '../pcap/format.js';
import { TunpipeError } from '../errors.js';
import { Engine, type SinkFunction } from './engine.js';
import { checkStageArgs, isStraightLine, programSpec, programStages, resolveProgram, type ResolvedProgram, type ResolvedStage } from './resolve.js';
import { noStageKeepsPackets, type PortInfo } from './stage.js';
import { portsOfPipeline, routeProgram } from './routing.js';
import { Driver } from './driver.js';
import type { StopReason } from './result.js';
import type { PacketTransform } from './transform.js';
import type { TunDevice } from '../device/tun.js';
import type { IoMode, RunResult } from './result.js';

export interface RunOptions {
  /**
   * Pipeline text (one or more pipelines, branches, `from`/`to`), a resolved program, or stages from the
   * library (`[parseIPv4(), icmpEcho(), recomputeChecksum()]`).
   */
  pipeline: string | ResolvedProgram | PacketTransform[];
  /** Read packets from this device and write what leaves the pipeline back to it. */
  device?: TunDevice;
  /** Several devices: pipelines name them with `from NAME` / `to NAME`. */
  devices?: TunDevice[];
  /** Offline: read packets from this pcap file instead of a device. */
  read?: string;
  /** Offline: write what leaves the pipeline to this pcap file (`-` for stdout); default: discard. */
  write?: string;
  /** Stop after this many packets have entered the pipeline. */
  count?: number;
  /** Aborting it stops the pipeline (the CLI aborts on SIGINT/SIGTERM). */
  signal?: AbortSignal;
  /** Packets allowed to queue in front of an asynchronous stage. Default 1024. */
  queueLength?: number;
  /** Where stage warnings go. Default: stderr. */
  warn?: (message: string) => void;
  /**
   * On devices: 'worker' runs the program in a worker thread that waits in the kernel (./device-worker.ts:
   * the CLI's default, the least CPU per packet); 'main' (the default here) runs it on the event loop, where
   * stages can share state with the rest of the program.
   */
  thread?: 'main' | 'worker';
  /** In a worker: how packets move (default: io_uring where the kernel has it, else poll). */
  io?: IoMode;
  /** In a worker on io_uring: receive buffers per device (a power of two; default 128). */
  ioBuffers?: number;
  /** Called once, when the stages are set up and packets are being read (the CLI's "reading" line). */
  onReady?: () => void;
}

export type { RunResult } from './result.js';

/** Offset of the IP header for a capture's link type. */
function l3OffsetFor(linkType: number, path: string): number {
  if (linkType === LINKTYPE_RAW || linkType === LINKTYPE_IPV4 || linkType === LINKTYPE_IPV6) return 0;
  if (linkType === LINKTYPE_ETHERNET) return 14;
  throw new TunpipeError(`${path} has link type ${linkType}; tunpipe reads RAW IP (101, 228, 229) and Ethernet (1) captures`);
}

/** A straight line of library stages as a program. */
function programOf(stages: ResolvedStage[]): ResolvedProgram {
  return { text: '', pipelines: [{ elements: stages.map((stage) => ({ kind: 'stage', stage, pos: 0 })), sink: { kind: 'default', pos: 0 }, label: '(end)', source: null, pos: 0 }] };
}

async function programFor(pipeline: RunOptions['pipeline'], deferModules = false): Promise<ResolvedProgram> {
  if (typeof pipeline === 'string') return resolveProgram(pipeline, { deferModules });
  if (Array.isArray(pipeline)) return programOf(pipeline.flatMap((t) => t.stages));
  return pipeline;
}

function devicePort(d: TunDevice): PortInfo {
  return { name: d.name, linkType: d.mode === 'tap' ? LINKTYPE_ETHERNET : LINKTYPE_RAW, kind: 'device', addresses: d.addresses, offload: d.offload };
}

/** Runs a program; resolves when it has stopped and everything is flushed. Throws on bad setup only. */
export async function runPipeline(options: RunOptions): Promise<RunResult> {
  const devices = options.devices ?? (options.device ? [options.device] : []);
  if (devices.length === 0 && !options.read) throw new TunpipeError('nothing to read from: give a device or a pcap file to read');
  if (devices.length > 0 && options.thread === 'worker' && !Array.isArray(options.pipeline)) return runInWorker(options, devices);
  if (devices.length > 0) return runOnEventLoop(options, devices);
  return runOffline(options);
}

async function runInWorker(options: RunOptions, devices: TunDevice[]): Promise<RunResult> {
  const { PipelineWorker } = await import('./device-worker.js');
  const program = await programFor(options.pipeline, true);
  const ports = devices.map(devicePort);
  const routing = routeProgram(program, ports.map((p) => p.name));
  const workerRouting = { ports, pipelineOf: routing.pipelineOf, defaultSink: routing.defaultSink };
  const queues = devices.map((d) => d.queueFds.length);
  // Devices opened with several queues: a worker per queue (./queue-workers.ts).
  const worker = queues.some((n) => n > 1)
    ? await (await import('./queue-workers.js')).QueueWorkers.start({ program, routing: workerRouting, queues, count: options.count, queueLength: options.queueLength, io: options.io, ioBuffers: options.ioBuffers, signal: options.signal })
    : await PipelineWorker.start({ program: programSpec(program), routing: workerRouting, count: options.count, queueLength: options.queueLength, io: options.io, ioBuffers: options.ioBuffers, signal: options.signal });
  const stop = () => worker.stop();
  if (options.signal?.aborted) stop();
  options.signal?.addEventListener('abort', stop, { once: true });
  try {
    await worker.attach(devices);
    options.onReady?.();
    const result = await worker.finished();
    result.counters.forEach((c, i) => Object.assign(devices[i].counters, c));
    (result as { queueCounters?: TunDevice['queueCounters'][] }).queueCounters?.forEach((qs, i) => (devices[i].queueCounters = qs));
    return result;
  } finally {
    options.signal?.removeEventListener('abort', stop);
  }
}

/** Closes the engine and turns close errors into the run's error. */
async function finish(engine: Engine, driver: Driver, more: () => Error[], io?: string): Promise<RunResult> {
  const closeErrors = await engine.close();
  closeErrors.push(...more());
  let error = driver.error;
  let stoppedBy: StopReason = driver.stoppedBy ?? 'end';
  if (!error && closeErrors.length) {
    error = closeErrors[0];
    stoppedBy = 'error';
  }
  return { packetsIn: driver.packetsIn, packetsOut: driver.packetsOut, stages: engine.stats, reports: engine.reports(), error, stoppedBy, io };
}

async function runOnEventLoop(options: RunOptions, devices: TunDevice[]): Promise<RunResult> {
  const queued = devices.find((d) => d.queueFds.length > 1);
  // The other queues would be read by nobody, and the kernel would drop the flows it steers there.
  if (queued) throw new TunpipeError(`${queued.name} has ${queued.queueFds.length} queues: run it with thread: 'worker' (a worker per queue)`);
  const ports = devices.map(devicePort);
  const written = await programFor(options.pipeline);
  const routing = routeProgram(written, ports.map((p) => p.name));
  // Super-packets from a device with offloads are segmented where a stage or a device needs segments.
  const program = devices.some((d) => d.offload) ? (await import('./offload.js')).insertSegments(written, routing, ports) : written;
  let driver: Driver | null = null;
  let wakeStop: () => void = () => {};
  const stopped = new Promise<void>((r) => (wakeStop = r));
  const sendTo = (d: number): SinkFunction => {
    const dev = devices[d];
    // A device with offloads takes each packet behind a virtio_net_hdr made from the packet's fields.
    if (dev.offload) {
      return (p) => {
        driver!.packetsOut++;
        dev.send(offloadFrame(p));
      };
    }
    return (p) => {
      driver!.packetsOut++;
      dev.send(p.data);
    };
  };
  const discard: SinkFunction = () => {};
  const engine = new Engine(program, {
    sink: discard,
    // A pipeline without a sink of its own writes back to its device (routing.ts), or nowhere.
    defaultSinkFor: (i) => (routing.defaultSink[i] >= 0 ? sendTo(routing.defaultSink[i]) : discard),
    sinkFor: (port) => sendTo(ports.findIndex((p) => p.name === port)),
    portsOf: (i) => portsOfPipeline(routing, ports, i),
    queueLength: options.queueLength,
    warn: options.warn,
    onFail: (err) => driver?.stopWith('error', err),
  });
  driver = new Driver(engine, options.count ?? Infinity, { onStop: () => wakeStop() });
  const d = driver;
  const onAbort = () => d.stopWith('signal');
  if (options.signal?.aborted) d.stopWith('signal');
  options.signal?.addEventListener('abort', onAbort, { once: true });
  // Timers for stages that hold packets until a time: the event loop has no wait of ours to bound.
  let timer: NodeJS.Timeout | undefined;
  const schedule = () => {
    clearTimeout(timer);
    if (d.stopped) return;
    const ms = d.waitMs(engine.busy);
    if (ms >= 0) timer = setTimeout(() => (d.woke(), d.idle(engine.busy), schedule()), Math.ceil(ms));
  };
  devices.forEach((dev, i) => {
    dev.once('error', (err: Error) => d.stopWith('error', err));
    const pipeline = routing.pipelineOf[i];
    if (d.stopped) return;
    if (pipeline < 0) {
      dev.watchForDeletion();
      return;
    }
    dev.start(
      (buf) => {
        if (d.stopped) return;
        d.beginBatch();
        d.push(pipeline, dev.offload ? adoptOffloadFrame(new Packet(buf), buf) : new Packet(buf));
      },
      () => {
        d.endBatch(false);
        schedule();
      },
    );
  });
  options.onReady?.();
  schedule();
  await stopped;
  clearTimeout(timer);
  for (const dev of devices) dev.stopReading();
  options.signal?.removeEventListener('abort', onAbort);
  // The readiness in use, so that the exit line (and a test) can tell the fast path from its fallback.
  return finish(engine, d, () => [], `event loop, ${devices[0]?.readiness ?? 'pipe'} readiness`);
}

async function runOffline(options: RunOptions): Promise<RunResult> {
  const program = await programFor(options.pipeline);
  const routing = routeProgram(program, null);
  void routing;
  const warn = options.warn ?? ((m: string) => process.stderr.write(`tunpipe: ${m}\n`));
  const stages = programStages(program);
  let reader: CaptureReader | null = null;
  let writer: PcapWriter | null = null;
  let driver: Driver | null = null;
  let engine: Engine;
  let l3 = 0;
  try {
    // Packets are views into the file's chunks; when no stage keeps them, two chunks serve in turn.
    reader = openCaptureReader(options.read!, { reuseChunks: noStageKeepsPackets(stages.map((s) => s.def)) });
    l3 = l3OffsetFor(reader.header.linkType, reader.path);
    // Now that the link type is known, before any output is opened (a filter for Ethernet on a RAW file).
    checkStageArgs(stages, program.text, reader.header.linkType);
    const input: PortInfo = { name: options.read!, linkType: reader.header.linkType, kind: options.read === '-' ? 'stdio' : 'file' };
    // Records are written a MiB at a time, on the threadpool while the next MiB fills (write-behind, see
    // CaptureFile); stdout: each at once, see PcapWriter.
    if (options.write) writer = new PcapWriter(options.write, { linkType: reader.header.linkType, nanos: reader.header.nanos, bufferSize: OFFLINE_WRITE_BUFFER, background: true });
    const output: PortInfo | undefined = options.write ? { name: options.write, linkType: reader.header.linkType, kind: options.write === '-' ? 'stdio' : 'file' } : undefined;
    const w = writer;
    const sink: SinkFunction = w
      ? (p) => {
          try {
            w.write(p.data, p.sec, p.nsec);
            driver!.packetsOut++;
          } catch (err) {
            driver!.stopWith('error', err as Error);
          }
        }
      : () => void driver!.packetsOut++;
    // A file waits for slow stages instead of dropping (see waitForAsyncStages): their queues never hold
    // more than one batch.
    engine = new Engine(program, { sink, queueLength: Number.MAX_SAFE_INTEGER, warn: options.warn, onFail: (err) => driver?.stopWith('error', err), linkType: reader.header.linkType, input, output, clock: new RunClock('file') });
  } catch (err) {
    reader?.close();
    writer?.close();
    throw err;
  }
  let wakeStop: (v: false) => void = () => {};
  const stopped = new Promise<false>((r) => (wakeStop = r));
  driver = new Driver(engine, options.count ?? Infinity, { fileTime: true, onStop: () => wakeStop(false) });
  const d = driver;
  const onAbort = () => d.stopWith('signal');
  if (options.signal?.aborted) d.stopWith('signal');
  options.signal?.addEventListener('abort', onAbort, { once: true });

  // A file read whole needs its output written only when the buffer fills and at the end; live input (a
  // pipe) has its output written as its packets arrive, batch by batch.
  const flushEachBatch = reader.live;
  const endBatch = () => {
    d.endBatch(false);
    if (!writer) return;
    try {
      if (flushEachBatch) writer.flush();
      else writer.writeBehind(OFFLINE_WRITE_BUFFER / 2);
    } catch (err) {
      d.stopWith('error', err as Error);
    }
  };
  const r = reader;
  options.onReady?.();
  // When no stage keeps packets, one Packet carries them all.
  const reused = engine.packetsReusable ? new Packet(Buffer.alloc(0)) : null;
  const onPacket = (data: Buffer, sec: number, nsec: number) => {
    let p: Packet;
    if (reused !== null) {
      p = reused;
      p.reset(data);
      p.sec = sec;
      p.nsec = nsec;
    } else {
      p = new Packet(data, sec, nsec);
    }
    p.l3 = l3;
    d.pushTimed(0, p);
  };
  const batch = Math.max(1, Math.min(4096, options.queueLength ?? 1024));
  try {
    while (!d.stopped) {
      const n = r.readBatch(Math.min(engine.busy || engine.asyncSettled > 0 ? batch : 4096, d.limit - d.packetsIn), onPacket);
      endBatch();
      // Let asynchronous stages, signals and stdout make progress between batches; a file waits for a
      // slow stage rather than dropping what it cannot take.
      await waitForAsyncStages(engine, d);
      if (d.stopped) break;
      if (n === 0 && r.live && r.starved) {
        // A pipe or FIFO that has gone quiet: wait for more on the threadpool, so a signal still stops the
        // run at once (the pending read is left behind; the CLI exits past it).
        if (!(await Promise.race([r.fillLive(), stopped]))) d.stopWith('end');
      } else if (n === 0) d.stopWith('end');
    }
  } catch (err) {
    d.stopWith('error', err as Error);
  }
  // The write on the threadpool lands before the file is closed; a failure there is the run's error, also
  // after the input has ended.
  let settleError: Error | null = null;
  try {
    await writer?.settle();
  } catch (err) {
    settleError = err as Error;
  }
  if (r.truncatedTail) warn(`${r.path}: the last record is cut short (a capture that was interrupted); it was skipped`);
  options.signal?.removeEventListener('abort', onAbort);
  const result = await finish(engine, d, () => {
    const errors: Error[] = settleError !== null ? [settleError] : [];
    try {
      writer?.close();
    } catch (err) {
      errors.push(err as Error);
    }
    reader?.close();
    return errors;
  });
  return result;
}

/** Bytes of records the offline --write gathers before a write(). */
const OFFLINE_WRITE_BUFFER = 1 << 20;

/** How long a file waits for an asynchronous stage that finishes nothing before it gives up on it. */
export const ASYNC_STALL_MS = 10_000;

/** Waits until asynchronous stages have taken every packet handed to them (a file never drops for them). */
async function waitForAsyncStages(engine: Engine, d: Driver): Promise<void> {
  await nextTurn();
  let seen = engine.asyncSettled;
  let since = Date.now();
  for (let turn = 0; engine.busy && !d.stopped; turn++) {
    if (turn < 8) await nextTurn();
    else await new Promise((r) => setTimeout(r, 1));
    if (engine.asyncSettled !== seen) {
      seen = engine.asyncSettled;
      since = Date.now();
    } else if (Date.now() - since > ASYNC_STALL_MS) {
      d.stopWith('error', new TunpipeError(`an asynchronous stage has finished no packet for ${ASYNC_STALL_MS / 1000} s: giving up on it (what it still holds is counted as dropped)`));
    }
  }
}

export { isStraightLine };
