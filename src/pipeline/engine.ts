/**
 * The pipeline engine. Synchronous stages are fused into one loop: a packet entering on the left is handed
 * from stage to stage by plain calls, with no allocation and no await between them, so a whole batch read
 * from the device in one wake is answered before the event loop turns again. An asynchronous stage (a
 * user's stage that awaits) gets a bounded it-pushable queue in front of it, joined to the rest by it-pipe;
 * when the queue is full, packets are dropped and counted rather than buffered without limit.
 *
 * Every stage has counters (in, out, dropped by reason); a stage that throws has the packet dropped and
 * counted with the error, which is reported once per stage, and the pipeline goes on.
 */
import { pipe } from 'it-pipe';
import { pushable, type Pushable } from 'it-pushable';
import { Packet } from '../packet/packet.js';
import { allRecordChanges, HELD, noStageKeepsPackets, StageStats, type PortInfo, type StageContext, type StageInstance, type StageResult } from './stage.js';
import { RunClock } from '../packet/clock.js';
import type { ResolvedStage } from './resolve.js';
import { recordStageError } from './error-reasons.js';

/** Drop reasons the engine itself gives. */
export const ENGINE_DROP = {
  filtered: 'filtered',
  queueFull: 'queue full: the stage is slower than the traffic',
} as const;

export interface EngineOptions {
  /** Where packets leaving the last stage go. */
  sink: (p: Packet) => void;
  /** Packets allowed to wait in front of an asynchronous stage. Default 1024. */
  queueLength?: number;
  /** Where warnings go (default: stderr). */
  warn?: (message: string) => void;
  /** Called once when a stage asks to stop the pipeline. */
  onFail?: (err: Error) => void;
  /** Link type of the packets entering (StageContext.linkType). Default 101, RAW IP. */
  linkType?: number;
  /** The ports the pipeline reads from and writes to, as the stages see them. */
  input?: PortInfo;
  output?: PortInfo;
  /** The driver's clock (StageContext.now). Default: the wall clock. */
  clock?: RunClock;
}

function isThenable(x: unknown): x is PromiseLike<StageResult> {
  return typeof x === 'object' && x !== null && typeof (x as PromiseLike<unknown>).then === 'function';
}

/** The queue and worker in front of one asynchronous stage. */
class AsyncGate {
  readonly queue: Pushable<Packet> = pushable<Packet>({ objectMode: true });
  readonly done: Promise<void>;
  /** A packet the stage is working on now (counted as dropped if the pipeline gives up waiting). */
  inFlight = false;
  /**
   * Packets handed to the gate and not yet through the stage. Counted here rather than read off the queue:
   * a packet pushed while the stage waits for one goes straight to it, leaving the queue empty before the
   * stage has even started on it.
   */
  pending = 1;

  constructor(engine: Engine, index: number, first: PromiseLike<StageResult>, firstPacket: Packet) {
    const slot = engine.slots[index];
    const settle = async (p: Packet, r: StageResult | PromiseLike<StageResult>): Promise<void> => {
      this.inFlight = true;
      let result: StageResult;
      try {
        result = await r;
      } catch (err) {
        this.inFlight = false;
        this.pending--;
        if (!engine.abandoned) engine.stageError(index, err);
        return;
      }
      this.inFlight = false;
      this.pending--;
      // Given up on by close(): this packet was already counted as dropped there.
      if (!engine.abandoned) engine.afterStage(index, p, result);
    };
    this.done = (async () => {
      await settle(firstPacket, first);
      await pipe(this.queue, async (source) => {
        for await (const p of source) {
          // After close() gave up waiting, the stage is closed: never call it again.
          if (engine.abandoned) break;
          let r: StageResult | PromiseLike<StageResult>;
          try {
            r = slot.instance.process(p);
          } catch (err) {
            this.pending--;
            engine.stageError(index, err);
            continue;
          }
          await settle(p, r);
        }
      });
    })();
  }
}

interface Slot {
  label: string;
  instance: StageInstance;
  stats: StageStats;
  gate: AsyncGate | null;
  warned: Set<string>;
  reportedError: boolean;
  errorReasons: number;
}

export class Engine {
  readonly slots: Slot[] = [];
  private readonly sink: (p: Packet) => void;
  private readonly queueLength: number;
  private readonly warnOut: (message: string) => void;
  private readonly onFail: (err: Error) => void;
  /** The clock the stages read (StageContext.now). */
  readonly clock: RunClock;
  /** The first error a stage stopped the pipeline with. */
  failure: Error | null = null;
  private closed = false;
  /** Set when close() stopped waiting for a slow asynchronous stage. */
  abandoned = false;

  constructor(stages: ResolvedStage[], options: EngineOptions) {
    this.sink = options.sink;
    this.queueLength = options.queueLength ?? 1024;
    this.warnOut = options.warn ?? ((m) => process.stderr.write(`tunpipe: ${m}\n`));
    this.onFail = options.onFail ?? (() => {});
    this.packetsReusable = noStageKeepsPackets(stages.map((s) => s.def));
    this.readsTime = stages.some((s) => s.def.readsTime === true);
    const clock = (this.clock = options.clock ?? new RunClock('wall'));
    const linkType = options.linkType ?? 101;
    stages.forEach((s, index) => {
      const stats = new StageStats(s.label);
      const slot: Slot = { label: s.label, instance: undefined as unknown as StageInstance, stats, gate: null, warned: new Set(), reportedError: false, errorReasons: 0 };
      this.slots.push(slot);
      const ctx: StageContext = {
        name: s.label,
        emit: (p) => {
          stats.emitted++;
          this.runFrom(index + 1, p);
        },
        warn: (m) => this.warnOnce(slot, m),
        fail: (err) => this.fail(err),
        linkType,
        direction: stages.slice(0, index).some((e) => e.def.turnsAround === true) ? 'out' : 'in',
        changesRecorded: allRecordChanges(stages.slice(0, index).map((e) => e.def)),
        input: options.input,
        output: options.output,
        now: () => clock.now(),
        timeOf: (p) => clock.timeOf(p),
        setTime: (p, t) => clock.setTime(p, t),
      };
      try {
        slot.instance = s.def.create(s.args, ctx);
      } catch (err) {
        // Release what the stages before this one opened (capture files), then report.
        for (const done of this.slots.slice(0, index)) void Promise.resolve().then(() => done.instance.close?.()).catch(() => {});
        throw err;
      }
    });
    this.flushing = this.slots.filter((s) => s.instance.flush !== undefined);
  }

  /**
   * True when no stage keeps packets after handling them, so a source may hand in the same Packet and
   * Buffer again once push() returns.
   */
  readonly packetsReusable: boolean;

  /** True when a stage reads packets' arrival time: a source need not stamp packets otherwise. */
  readonly readsTime: boolean;

  /** The gates of the stages that turned out asynchronous, and the stages that buffer output. */
  private readonly gates: AsyncGate[] = [];
  private flushing: Slot[] = [];

  /** True while an asynchronous stage has packets queued or in hand. */
  get busy(): boolean {
    const gates = this.gates;
    for (let i = 0; i < gates.length; i++) if (gates[i].pending > 0) return true;
    return false;
  }

  /** The extra lines stages report on exit (bytes written by a capture, ...), by stage label. */
  reports(): Map<string, string> {
    const out = new Map<string, string>();
    for (const slot of this.slots) {
      const line = slot.instance.report?.();
      if (line) out.set(slot.label, line);
    }
    return out;
  }

  /** Counters of every stage, left to right. */
  get stats(): StageStats[] {
    return this.slots.map((s) => s.stats);
  }

  /** A packet enters the pipeline on the left. */
  push(p: Packet): void {
    this.runFrom(0, p);
  }

  /** Runs `p` through stages `i`.. and into the sink. */
  runFrom(i: number, p: Packet): void {
    const slots = this.slots;
    const n = slots.length;
    for (; i < n; i++) {
      const slot = slots[i];
      slot.stats.packetsIn++;
      if (slot.gate !== null) {
        this.enqueue(slot, p);
        return;
      }
      let r: StageResult | PromiseLike<StageResult>;
      try {
        r = slot.instance.process(p);
      } catch (err) {
        this.stageError(i, err);
        return;
      }
      if (r instanceof Packet) {
        slot.stats.packetsOut++;
        p = r;
        continue;
      }
      if (isThenable(r)) {
        // The stage turned out to be asynchronous: from now on packets queue in front of it.
        slot.gate = new AsyncGate(this, i, r, p);
        this.gates.push(slot.gate);
        return;
      }
      this.notPassed(slot, r);
      return;
    }
    this.sink(p);
  }

  private enqueue(slot: Slot, p: Packet): void {
    const gate = slot.gate!;
    if (this.closed || gate.queue.readableLength >= this.queueLength) {
      slot.stats.drop(ENGINE_DROP.queueFull);
      return;
    }
    gate.pending++;
    gate.queue.push(p);
  }

  private notPassed(slot: Slot, r: StageResult): void {
    if (typeof r === 'string') slot.stats.drop(r);
    else if (r === HELD) slot.stats.held++;
    else slot.stats.drop(ENGINE_DROP.filtered);
  }

  /** Continues after an asynchronous stage settled. */
  afterStage(i: number, p: Packet, r: StageResult): void {
    // A slow stage that outlived close() must not write into closed stages.
    if (this.abandoned) return;
    const slot = this.slots[i];
    if (r instanceof Packet) {
      slot.stats.packetsOut++;
      this.runFrom(i + 1, r);
    } else {
      this.notPassed(slot, r);
    }
  }

  /**
   * A stage threw: the packet is dropped and counted under the error's message (at most MAX_ERROR_REASONS
   * distinct messages per stage, the rest under one reason, so a message with a packet number in it
   * cannot grow the table), and the first error of the stage is reported.
   */
  stageError(i: number, err: unknown): void {
    const slot = this.slots[i];
    const { message: msg, first } = recordStageError(slot.stats, slot, err);
    if (first) {
      this.warnOut(`stage '${slot.label}' threw: ${msg}; the packet was dropped and counted, the pipeline goes on (further errors are counted, not printed)`);
    }
  }

  private warnOnce(slot: Slot, message: string): void {
    if (slot.warned.has(message)) return;
    slot.warned.add(message);
    this.warnOut(`stage '${slot.label}': ${message}`);
  }

  /** Stops the pipeline with an error, once. */
  fail(err: Error): void {
    if (this.failure) return;
    this.failure = err;
    this.onFail(err);
  }

  /**
   * End of a batch: stages write out what they buffered. `lazy`: they may keep a small recent buffer, and
   * `pendingOutput` tells the source to call endBatch() again when traffic pauses.
   */
  endBatch(lazy = false): void {
    const slots = this.flushing;
    for (let i = 0; i < slots.length; i++) {
      try {
        slots[i].instance.flush!(lazy);
      } catch (err) {
        this.fail(err as Error);
      }
    }
  }

  /** True when a stage holds output that endBatch() would write. */
  get pendingOutput(): boolean {
    const slots = this.flushing;
    for (let i = 0; i < slots.length; i++) if (slots[i].instance.pending?.()) return true;
    return false;
  }

  /**
   * No more packets will enter: lets queued packets through asynchronous stages (left to right, since a
   * stage may feed the next one's queue) for at most `drainMs`, counting what is left as dropped, then
   * flushes and closes every stage. Errors while closing are collected, so every stage gets its close
   * (every capture file its final flush).
   */
  async close(drainMs = 500): Promise<Error[]> {
    const errors: Error[] = [];
    const deadline = Date.now() + drainMs;
    for (const slot of this.slots) {
      if (!slot.gate) continue;
      slot.gate.queue.end();
      const left = deadline - Date.now();
      let timer: NodeJS.Timeout | undefined;
      const timedOut = await Promise.race([
        slot.gate.done.then(() => false),
        new Promise<boolean>((r) => (timer = setTimeout(() => r(true), Math.max(0, left)))),
      ]);
      clearTimeout(timer);
      if (timedOut) {
        const n = slot.gate.queue.readableLength + (slot.gate.inFlight ? 1 : 0);
        for (let k = 0; k < n; k++) slot.stats.drop('stopped before the stage got to it');
        this.abandoned = true;
      }
    }
    this.closed = true;
    for (const slot of this.slots) {
      // Separately: a flush that fails must not keep the stage from closing its file.
      try {
        slot.instance.flush?.();
      } catch (err) {
        errors.push(err as Error);
      }
      try {
        await slot.instance.close?.();
      } catch (err) {
        errors.push(err as Error);
      }
    }
    return errors;
  }
}
