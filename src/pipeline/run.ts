/**
 * Runs a pipeline between a source and a sink until the source ends, `count` packets have entered, the
 * signal aborts, a stage fails or the device goes away; then lets queued packets finish, flushes and closes
 * every stage, and reports counters. Sources: a TUN device, or a pcap file (offline). Sinks: the same
 * device, a pcap file, or nothing.
 */
import { setImmediate as nextTurn } from 'node:timers/promises';
import { Packet } from '../packet/packet.js';
import { PcapReader } from '../pcap/reader.js';
import { PcapWriter } from '../pcap/writer.js';
import { LINKTYPE_ETHERNET, LINKTYPE_IPV4, LINKTYPE_IPV6, LINKTYPE_RAW } from '../pcap/format.js';
import { TunpipeError } from '../errors.js';
import { Engine } from './engine.js';
import { resolvePipeline, type ResolvedStage } from './resolve.js';
import { noStageKeepsPackets, type StageStats } from './stage.js';
import type { PacketTransform } from './transform.js';
import type { TunDevice } from '../device/tun.js';

export interface RunOptions {
  /** Pipeline text, or stages from the library (`[parseIPv4(), icmpEcho(), recomputeChecksum()]`). */
  pipeline: string | PacketTransform[];
  /** Read packets from this device and write what leaves the pipeline back to it. */
  device?: TunDevice;
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
   * On a device, with pipeline text: 'worker' runs the pipeline in a worker thread that waits in poll()
   * (./device-worker.ts: the CLI's default, the least CPU per packet); 'main' (the default here) runs it on
   * the event loop, where stages can share state with the rest of the program.
   */
  thread?: 'main' | 'worker';
  /** Called once, when the stages are set up and packets are being read (the CLI's "reading" line). */
  onReady?: () => void;
}

export interface RunResult {
  /** Packets that entered the pipeline. */
  packetsIn: number;
  /** Packets that left it into the sink. */
  packetsOut: number;
  /** Counters per stage, left to right. */
  stages: StageStats[];
  /** Extra per-stage lines (bytes written by a capture, ...), by label. */
  reports: Map<string, string>;
  /** Why the run stopped early, if it did: a device that vanished, a capture that failed, ... */
  error: Error | null;
  /** What was printed by `--count`, the signal or the source ending. */
  stoppedBy: 'end' | 'count' | 'signal' | 'error';
  /**
   * How a device was read and written: 'io_uring' or 'poll' in a worker (with the reason io_uring could
   * not be had), 'event loop' on the main thread; undefined for files.
   */
  io?: string;
}

/** Offset of the IP header for a capture's link type. */
function l3OffsetFor(linkType: number, path: string): number {
  if (linkType === LINKTYPE_RAW || linkType === LINKTYPE_IPV4 || linkType === LINKTYPE_IPV6) return 0;
  if (linkType === LINKTYPE_ETHERNET) return 14;
  throw new TunpipeError(`${path} has link type ${linkType}; tunpipe reads RAW IP (101, 228, 229) and Ethernet (1) captures`);
}

async function resolveStages(pipeline: string | PacketTransform[]): Promise<ResolvedStage[]> {
  if (typeof pipeline === 'string') return resolvePipeline(pipeline);
  return pipeline.flatMap((t) => t.stages);
}

/** Runs a pipeline; resolves when it has stopped and everything is flushed. Throws on bad setup only. */
export async function runPipeline(options: RunOptions): Promise<RunResult> {
  if (options.thread === 'worker' && options.device && typeof options.pipeline === 'string') {
    const { runDeviceInWorker } = await import('./device-worker.js');
    return runDeviceInWorker({
      device: options.device,
      pipeline: options.pipeline,
      count: options.count,
      queueLength: options.queueLength,
      signal: options.signal,
      onReady: options.onReady,
    });
  }
  const stages = await resolveStages(options.pipeline);
  if (!options.device && !options.read) throw new TunpipeError('nothing to read from: give a device or a pcap file to read');
  const limit = options.count ?? Infinity;
  let packetsIn = 0;
  let packetsOut = 0;
  let error: Error | null = null;
  let stoppedBy: RunResult['stoppedBy'] = 'end';
  let wakeStop: () => void = () => {};
  const stopped = new Promise<void>((r) => (wakeStop = r));
  let stopping = false;
  const stop = (why: RunResult['stoppedBy'], err?: Error): void => {
    if (stopping) return;
    stopping = true;
    stoppedBy = why;
    if (err) error = err;
    wakeStop();
  };

  let reader: PcapReader | null = null;
  let writer: PcapWriter | null = null;
  let engine: Engine;
  let l3 = 0;
  try {
    if (options.read) {
      // Packets are views into the file's chunks; when no stage keeps them, two chunks serve in turn.
      reader = new PcapReader(options.read, { reuseChunks: noStageKeepsPackets(stages.map((s) => s.def)) });
      l3 = l3OffsetFor(reader.header.linkType, reader.path);
    }
    if (options.write) writer = new PcapWriter(options.write, { linkType: reader?.header.linkType, nanos: reader?.header.nanos });
    const device = options.device;
    const sink = writer
      ? (p: Packet) => {
          packetsOut++;
          try {
            writer!.write(p.data, p.sec, p.nsec);
          } catch (err) {
            stop('error', err as Error);
          }
        }
      : device
        ? (p: Packet) => {
            packetsOut++;
            device.send(p.data);
          }
        : () => void packetsOut++;
    engine = new Engine(stages, { sink, linkType: reader?.header.linkType, queueLength: options.queueLength, warn: options.warn, onFail: (err) => stop('error', err) });
  } catch (err) {
    reader?.close();
    writer?.close();
    throw err;
  }

  const onAbort = () => stop('signal');
  if (options.signal?.aborted) stop('signal');
  options.signal?.addEventListener('abort', onAbort, { once: true });

  const endBatch = () => {
    engine.endBatch();
    if (writer) {
      try {
        writer.flush();
      } catch (err) {
        stop('error', err as Error);
      }
    }
  };

  if (options.device) {
    const device = options.device;
    device.once('error', (err: Error) => stop('error', err));
    if (limit > 0 && !stopping) {
      device.start((buf) => {
        if (stopping) return;
        packetsIn++;
        engine.push(new Packet(buf));
        if (packetsIn >= limit) stop('count');
      }, endBatch);
      options.onReady?.();
    } else if (limit <= 0) stop('count');
    await stopped;
    device.stopReading();
  } else if (reader) {
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
      packetsIn++;
      engine.push(p);
    };
    try {
      while (!stopping) {
        const n = r.readBatch(Math.min(4096, limit - packetsIn), onPacket);
        endBatch();
        if (packetsIn >= limit) stop('count');
        else if (n === 0) stop('end');
        // Let asynchronous stages, signals and stdout make progress between batches.
        else await nextTurn();
      }
    } catch (err) {
      stop('error', err as Error);
    }
    if (r.truncatedTail) (options.warn ?? ((m) => process.stderr.write(`tunpipe: ${m}\n`)))(`${r.path}: the last record is cut short (a capture that was interrupted); it was skipped`);
  }

  options.signal?.removeEventListener('abort', onAbort);
  const closeErrors = await engine.close();
  try {
    writer?.close();
  } catch (err) {
    closeErrors.push(err as Error);
  }
  reader?.close();
  if (!error && closeErrors.length) {
    error = closeErrors[0];
    stoppedBy = 'error';
  }
  return { packetsIn, packetsOut, stages: engine.stats, reports: engine.reports(), error, stoppedBy, io: options.device ? 'event loop' : undefined };
}
