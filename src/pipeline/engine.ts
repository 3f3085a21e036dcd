/**
 * The pipeline engine: a graph of stages. Each pipeline (and each branch of a `tee` or an `else`) is a
 * chain of stages ending in an exit (a port's output, `drop`, or the end of a branch). Synchronous stages
 * are fused: a packet entering a chain is handed from stage to stage by plain calls, with no allocation and
 * no await between them, so a whole batch read from the device in one wake is answered before the event
 * loop turns again; a straight line runs exactly today's loop. A tee is a stage like the others (it runs
 * its branch on a copy, then passes the original on); an `else` branch takes, in place of a drop, what its
 * stage rejects. An asynchronous stage (a user's stage that awaits) gets a bounded it-pushable queue in front
 * of it, which it reads in order; when the queue is full, packets are dropped and counted rather than
 * buffered without limit.
 *
 * Every stage has counters (in, out, dropped by reason, diverted); a stage that throws has the packet
 * dropped and counted with the error, which is reported once per stage, and the pipeline goes on. Stages
 * that hold packets until a time (delay, rate) declare `nextDue`; the driver asks `nextDue()` and calls
 * `tick(now)` when it has come.
 */
import { pushable, type Pushable } from 'it-pushable';
import { adoptPacket, copyPacket, Packet } from '../packet/packet.js';
import { EXIT, HELD, noStageKeepsPackets, StageStats, type PortInfo, type StageContext, type StageInstance, type StageResult } from './stage.js';
import { RunClock } from '../packet/clock.js';
import type { ResolvedBranch, ResolvedElement, ResolvedPipeline, ResolvedProgram, ResolvedStage, SinkSpec } from './program.js';
import { recordStageError } from './error-reasons.js';
import { describeThrown, TunpipeError } from '../errors.js';
import { MAX_PACKET_COPY, StageCounterLimits } from './limits.js';

export { ENGINE_DROP } from './drop-reasons.js';
import { ENGINE_DROP } from './drop-reasons.js';

/** Where a pipeline's sink sends a packet; null discards (counted by the caller's sink row). */
export type SinkFunction = (p: Packet) => void;

export interface EngineOptions {
  /** Where packets leaving a pipeline with no sink of its own go (`default`), and the only sink of a straight line. */
  sink: SinkFunction;
  /** Per pipeline, where a pipeline with no sink of its own writes (default: `sink`). */
  defaultSinkFor?: (pipeline: number) => SinkFunction;
  /** Where `to NAME` sends packets (required when a pipeline names one). */
  sinkFor?: (port: string, pipeline: number) => SinkFunction;
  /** Packets allowed to wait in front of an asynchronous stage. Default 1024. */
  queueLength?: number;
  /** Where warnings go (default: stderr). */
  warn?: (message: string) => void;
  /** Called once when a stage asks to stop the pipeline. */
  onFail?: (err: Error) => void;
  /** Link type of the packets entering (StageContext.linkType). Default 101, RAW IP. */
  linkType?: number;
  /** Per pipeline: link type and ports as the stages see them (overrides the ones above). */
  portsOf?: (pipeline: number) => { linkType: number; input?: PortInfo; output?: PortInfo };
  /** The ports the pipeline reads from and writes to, as the stages see them. */
  input?: PortInfo;
  output?: PortInfo;
  /** The driver's clock (StageContext.now). Default: the wall clock. */
  clock?: RunClock;
  /** How long close() waits for a stage's close() to settle before it goes on without it. Default 2000 ms. */
  closeTimeoutMs?: number;
  /**
   * A sink that sends to a port may still read a packet's bytes after it returns (an io_uring write is
   * submitted later): then a tee whose branch sends gives every copy bytes of its own.
   */
  sinksKeepBytes?: boolean;
}

function isThenable(x: unknown): x is PromiseLike<StageResult> {
  return typeof x === 'object' && x !== null && typeof (x as PromiseLike<unknown>).then === 'function';
}

/** What building one pipeline's chains shares: its ports, its number, the options, and what was built. */
interface ChainBuild {
  ports: { linkType: number; input?: PortInfo; output?: PortInfo };
  pipeline: number;
  options: EngineOptions;
  /** Branches built so far (a compound's parts share one else branch). */
  built: Map<ResolvedBranch, Chain>;
  /** Every stage, in the order created. */
  all: ResolvedStage[];
}

/** What a chain inherits from the path before it: a stage turned packets around; all recorded changes. */
interface PathState {
  turned: boolean;
  recorded: boolean;
}

/** A sequence of stages and the exit its packets leave by. */
export interface Chain {
  readonly slots: Slot[];
  exit: SinkFunction;
  /** Its end sends packets to a port (`to NAME`, or the default sink), rather than dropping them. */
  sends: boolean;
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

  constructor(engine: Engine, slot: Slot, first: PromiseLike<StageResult>, firstPacket: Packet) {
    const settle = async (p: Packet, r: StageResult | PromiseLike<StageResult>): Promise<void> => {
      this.inFlight = true;
      let result: StageResult;
      try {
        result = await r;
      } catch (err) {
        this.inFlight = false;
        this.pending--;
        if (!engine.abandoned) engine.stageError(slot, err);
        return;
      }
      this.inFlight = false;
      this.pending--;
      engine.asyncSettled++;
      // Given up on by close(): this packet was already counted as dropped there.
      if (!engine.abandoned) engine.afterStage(slot, p, result);
    };
    this.done = (async () => {
      await settle(firstPacket, first);
      // The queue is read directly (it-pipe would only call this with it, and costs start-up to load).
      for await (const p of this.queue) {
        // After close() gave up waiting, the stage is closed: never call it again.
        if (engine.abandoned) break;
        let r: StageResult | PromiseLike<StageResult>;
        try {
          r = slot.instance.process(p);
        } catch (err) {
          this.pending--;
          engine.stageError(slot, err);
          continue;
        }
        await settle(p, r);
      }
    })();
  }
}

export interface Slot {
  label: string;
  instance: StageInstance;
  stats: StageStats;
  gate: AsyncGate | null;
  warned: Set<string>;
  reportedError: boolean;
  errorReasons: number;
  /** The chain this stage is in, and its place there. */
  chain: Chain;
  index: number;
  /** Where the packets this stage rejects go instead of being dropped (`else { ... }`). */
  orElse: Chain | null;
  /** The stage may hold on to packets (StageDefinition.keepsPackets). */
  keepsPackets: boolean;
}

/** A straight line of stages: one pipeline, no branches, its output to the default sink. */
function straightProgram(stages: ResolvedStage[]): ResolvedProgram {
  const pipeline: ResolvedPipeline = {
    elements: stages.map((stage) => ({ kind: 'stage', stage, pos: 0 })),
    sink: { kind: 'default', pos: 0 },
    label: '(end)',
    source: null,
    pos: 0,
  };
  return { text: '', pipelines: [pipeline] };
}

export class Engine {
  /** Every stage, in the order written (branches after the stage that owns them). */
  readonly slots: Slot[] = [];
  /** One chain per pipeline of the program, in order; `push` feeds the first. */
  readonly pipelines: Chain[] = [];
  private readonly queueLength: number;
  private readonly sinksKeepBytes: boolean;
  private readonly warnOut: (message: string) => void;
  private readonly onFail: (err: Error) => void;
  /** The clock the stages read (StageContext.now). */
  readonly clock: RunClock;
  /** The first error a stage stopped the pipeline with. */
  failure: Error | null = null;
  private closed = false;
  /** Set when close() stopped waiting for a slow asynchronous stage. */
  abandoned = false;
  /** Packets asynchronous stages have finished with, so far: a reader that waits for them sees progress. */
  asyncSettled = 0;
  /** Counter rows of `drop` sinks and of the ends of branches, in the order written. */
  private readonly sinkRows: StageStats[] = [];
  private readonly limits = new StageCounterLimits();
  private readonly closeTimeoutMs: number;

  /**
   * `stages`: one straight line (its output goes to `options.sink`), or a resolved program with branches,
   * several pipelines and sinks.
   */
  constructor(stages: ResolvedStage[] | ResolvedProgram, options: EngineOptions) {
    const program = Array.isArray(stages) ? straightProgram(stages) : stages;
    this.queueLength = options.queueLength ?? 1024;
    this.sinksKeepBytes = options.sinksKeepBytes === true;
    this.warnOut = options.warn ?? ((m) => process.stderr.write(`tunpipe: ${m}\n`));
    this.onFail = options.onFail ?? (() => {});
    this.closeTimeoutMs = options.closeTimeoutMs ?? 2000;
    this.clock = options.clock ?? new RunClock('wall');
    const all: ResolvedStage[] = [];
    const built = new Map<ResolvedBranch, Chain>();
    try {
      program.pipelines.forEach((pl, index) => {
        const ports = options.portsOf?.(index) ?? { linkType: options.linkType ?? 101, input: options.input, output: options.output };
        const exit = this.exitFor(pl.sink, pl.label, index, options);
        this.pipelines.push(this.buildChain(pl, exit, { ports, pipeline: index, options, built, all }, { turned: false, recorded: true }));
      });
    } catch (err) {
      // Release what the stages created so far opened (capture files), then report.
      for (const done of this.slots) void Promise.resolve().then(() => done.instance?.close?.()).catch(() => {});
      throw err;
    }
    this.packetsReusable = noStageKeepsPackets(all.map((s) => s.def));
    this.readsTime = all.some((s) => s.def.readsTime === true);
    this.flushing = this.slots.filter((s) => s.instance.flush !== undefined);
    this.timed = this.slots.filter((s) => s.instance.nextDue !== undefined && s.instance.tick !== undefined);
  }

  private sinkRow(label: string): StageStats {
    const row = new StageStats(this.uniqueLabel(label));
    this.sinkRows.push(row);
    return row;
  }

  private exitFor(sink: SinkSpec, label: string, pipeline: number, options: EngineOptions): SinkFunction {
    if (sink.kind === 'default') return options.defaultSinkFor?.(pipeline) ?? options.sink;
    if (sink.kind === 'to') {
      if (!options.sinkFor) throw new Error(`no output for 'to ${sink.port}'`);
      return options.sinkFor(sink.port, pipeline);
    }
    const row = this.sinkRow(label);
    const reason = sink.kind === 'drop' ? ENGINE_DROP.drop : ENGINE_DROP.endOfBranch;
    return () => {
      row.packetsIn++;
      row.drop(reason);
    };
  }

  private buildChain(branch: ResolvedBranch, exit: SinkFunction, b: ChainBuild, path: PathState): Chain {
    const chain: Chain = { slots: [], exit, sends: true };
    let turnedAround = path.turned;
    // True while every stage on the path so far records its changes (StageContext.changesRecorded).
    let changesRecorded = path.recorded;
    for (const el of branch.elements) {
      if (el.kind === 'tee') {
        const sub = this.buildBranch(el.branch, b, { turned: turnedAround, recorded: changesRecorded });
        chain.slots.push(this.teeSlot(el, chain, sub));
        continue;
      }
      const slot = this.stageSlot(el, chain, b.ports, turnedAround, changesRecorded);
      chain.slots.push(slot);
      b.all.push(el.stage);
      if (el.stage.def.turnsAround === true) turnedAround = true;
      if (el.stage.def.recordsChanges !== true) changesRecorded = false;
      if (el.orElse) slot.orElse = this.buildBranch(el.orElse, b, { turned: turnedAround, recorded: changesRecorded });
    }
    return chain;
  }

  private buildBranch(branch: ResolvedBranch, b: ChainBuild, path: PathState): Chain {
    // A compound stage's parts share one else branch: build it once.
    const known = b.built.get(branch);
    if (known) return known;
    const chain = this.buildChain(branch, () => {}, b, path);
    chain.exit = this.exitFor(branch.sink, branch.label, b.pipeline, b.options);
    chain.sends = branch.sink.kind === 'to' || branch.sink.kind === 'default';
    b.built.set(branch, chain);
    return chain;
  }

  /** How often each label was given out: a second `pcap` in one program counts as `pcap#2`. */
  private readonly labels = new Map<string, number>();

  private uniqueLabel(label: string): string {
    const n = (this.labels.get(label) ?? 0) + 1;
    this.labels.set(label, n);
    return n === 1 ? label : `${label}#${n}`;
  }

  private newSlot(written: string, chain: Chain): Slot {
    const label = this.uniqueLabel(written);
    const slot: Slot = {
      label,
      instance: undefined as unknown as StageInstance,
      stats: new StageStats(label, this.limits),
      gate: null,
      warned: new Set(),
      reportedError: false,
      errorReasons: 0,
      chain,
      index: chain.slots.length,
      orElse: null,
      keepsPackets: false,
    };
    this.slots.push(slot);
    return slot;
  }

  private stageSlot(el: Extract<ResolvedElement, { kind: 'stage' }>, chain: Chain, ports: { linkType: number; input?: PortInfo; output?: PortInfo }, turned: boolean, changesRecorded: boolean): Slot {
    const s = el.stage;
    const slot = this.newSlot(s.label, chain);
    slot.keepsPackets = s.def.keepsPackets !== false;
    const clock = this.clock;
    const ctx: StageContext = {
      name: slot.label,
      emit: (p) => {
        slot.stats.emitted++;
        this.runFrom(slot.chain, slot.index + 1, p);
      },
      warn: (m) => this.warnOnce(slot, m),
      fail: (err) => this.fail(err),
      linkType: ports.linkType,
      direction: turned ? 'out' : 'in',
      changesRecorded,
      input: ports.input,
      output: ports.output,
      now: () => clock.now(),
      timeOf: (p) => clock.timeOf(p),
      setTime: (p, t) => clock.setTime(p, t),
    };
    let instance: unknown;
    try {
      instance = s.def.create(s.args, ctx);
    } catch (err) {
      if (err instanceof TunpipeError) throw err;
      throw new TunpipeError(`stage '${slot.label}' could not start: ${describeThrown(err)}`);
    }
    if (typeof instance !== 'object' || instance === null || typeof (instance as StageInstance).process !== 'function') {
      throw new TunpipeError(`stage '${slot.label}' could not start: its create() returned ${instance === null ? 'null' : typeof instance}, not an object with a process(packet) function`);
    }
    slot.instance = instance as StageInstance;
    return slot;
  }

  private teeSlot(el: Extract<ResolvedElement, { kind: 'tee' }>, chain: Chain, branch: Chain): Slot {
    const slot = this.newSlot(el.label, chain);
    // When nothing in the branch keeps packets, one copy (Packet and Buffer) serves every packet.
    let reuse: { packet: Packet | null; scratch: Buffer | null } | null = null;
    slot.instance = {
      process: (p: Packet) => {
        if (reuse === null) {
          const keeps = branchKeepsPackets(branch) || (this.sinksKeepBytes && branchSends(branch));
          reuse = keeps ? { packet: null, scratch: null } : { packet: null, scratch: Buffer.allocUnsafeSlow(MAX_PACKET_COPY) };
        }
        const copy = copyPacket(p, reuse.packet, reuse.scratch);
        if (reuse.scratch !== null) reuse.packet = copy;
        slot.stats.emitted++;
        this.runFrom(branch, 0, copy);
        return p;
      },
    };
    return slot;
  }

  /**
   * True when no stage keeps packets after handling them, so a source may hand in the same Packet and
   * Buffer again once push() returns.
   */
  readonly packetsReusable: boolean;

  /** True when a stage reads packets' arrival time: a source need not stamp packets otherwise. */
  readonly readsTime: boolean;

  /** The gates of the stages that turned out asynchronous, the stages that buffer output, and those with timers. */
  private readonly gates: AsyncGate[] = [];
  private flushing: Slot[] = [];
  private timed: Slot[] = [];

  /** True while an asynchronous stage has packets queued or in hand. */
  get busy(): boolean {
    const gates = this.gates;
    for (let i = 0; i < gates.length; i++) if (gates[i].pending > 0) return true;
    return false;
  }

  /** Packets waiting in front of each asynchronous stage (and in its hands), and held by time-holding stages, by label. */
  queueDepths(): Map<string, number> {
    const out = new Map<string, number>();
    for (const slot of this.slots) {
      const held = slot.instance.queued?.() ?? 0;
      if (slot.gate || held > 0) out.set(slot.label, (slot.gate?.pending ?? 0) + held);
    }
    return out;
  }

  /** The extra lines stages report on exit (bytes written by a capture, ...), by stage label. */
  reports(): Map<string, string> {
    const out = new Map<string, string>();
    for (const slot of this.slots) {
      let line: string | undefined;
      try {
        line = slot.instance.report?.();
      } catch (err) {
        line = `(its report failed: ${err instanceof Error ? err.message : String(err)})`;
      }
      if (line) out.set(slot.label, String(line));
    }
    return out;
  }

  /** Counters of every stage in the order written, then those of `drop` sinks and branch ends that saw packets. */
  get stats(): StageStats[] {
    return [...this.slots.map((s) => s.stats), ...this.sinkRows.filter((r) => r.packetsIn > 0)];
  }

  /** A packet enters the first pipeline on the left. */
  push(p: Packet): void {
    this.runFrom(this.pipelines[0], 0, p);
  }

  /** A packet enters pipeline `index` on the left. */
  pushInto(index: number, p: Packet): void {
    this.runFrom(this.pipelines[index], 0, p);
  }

  /** Runs `p` through stages `i`.. of `chain` and into its exit. */
  runFrom(chain: Chain, i: number, p: Packet): void {
    const slots = chain.slots;
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
        this.stageError(slot, err);
        return;
      }
      if (r instanceof Packet) {
        slot.stats.packetsOut++;
        p = r;
        continue;
      }
      if (isThenable(r)) {
        // The stage turned out to be asynchronous: from now on packets queue in front of it.
        slot.gate = new AsyncGate(this, slot, r, p);
        this.gates.push(slot.gate);
        return;
      }
      this.notPassed(slot, r, p);
      return;
    }
    chain.exit(p);
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

  private notPassed(slot: Slot, r: StageResult, p: Packet): void {
    // Not this copy's Packet, yet a Packet: one a user's stage made with the library (see adoptPacket).
    const adopted = typeof r === 'object' ? adoptPacket(r) : null;
    if (adopted !== null) {
      slot.stats.packetsOut++;
      this.runFrom(slot.chain, slot.index + 1, adopted);
      return;
    }
    if (r === HELD) {
      slot.stats.held++;
      return;
    }
    if (r === EXIT) {
      slot.stats.packetsOut++;
      slot.chain.exit(p);
      return;
    }
    const reason = typeof r === 'string' ? r : ENGINE_DROP.filtered;
    if (slot.orElse !== null) {
      slot.stats.divert(reason);
      this.runFrom(slot.orElse, 0, p);
      return;
    }
    slot.stats.drop(reason);
  }

  /** Continues after an asynchronous stage settled. */
  afterStage(slot: Slot, p: Packet, r: StageResult): void {
    // A slow stage that outlived close() must not write into closed stages.
    if (this.abandoned) return;
    if (r instanceof Packet) {
      slot.stats.packetsOut++;
      this.runFrom(slot.chain, slot.index + 1, r);
    } else {
      this.notPassed(slot, r, p);
    }
  }

  /**
   * A stage threw: the packet is dropped and counted under the error's message (at most MAX_ERROR_REASONS
   * distinct messages per stage, the rest under one reason, so a message with a packet number in it
   * cannot grow the table), and the first error of the stage is reported.
   */
  stageError(slot: Slot, err: unknown): void {
    const { message: msg, first } = recordStageError(slot.stats, slot, err);
    if (first) {
      this.warnOut(`stage '${slot.label}' threw: ${msg}; the packet was dropped and counted, the pipeline goes on (further errors are counted, not printed)`);
    }
  }

  private warnOnce(slot: Slot, message: unknown): void {
    const text = String(message);
    if (slot.warned.has(text)) return;
    if (slot.warned.size >= StageCounterLimits.WARNINGS) {
      if (slot.warned.size === StageCounterLimits.WARNINGS) {
        slot.warned.add('\0more');
        this.warnOut(`stage '${slot.label}': more warnings than ${StageCounterLimits.WARNINGS}; further ones are not printed`);
      }
      return;
    }
    slot.warned.add(text);
    this.warnOut(`stage '${slot.label}': ${text}`);
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

  /** True when some stage holds packets until a time (delay, rate): the driver must ask nextDue(). */
  get hasTimers(): boolean {
    return this.timed.length > 0;
  }

  /** The earliest time (on the clock's scale) a stage wants tick(), or Infinity. */
  nextDue(): number {
    const slots = this.timed;
    let due = Infinity;
    for (let i = 0; i < slots.length; i++) {
      let t: number;
      try {
        t = slots[i].instance.nextDue!();
      } catch (err) {
        this.stageError(slots[i], err);
        continue;
      }
      if (t < due) due = t;
    }
    return due;
  }

  /** Lets every stage whose time has come release its packets (`now` Infinity: release everything). */
  tick(now: number): void {
    const slots = this.timed;
    // Left to right, so what an earlier stage releases can be released by a later one in the same tick.
    for (let i = 0; i < slots.length; i++) {
      const inst = slots[i].instance;
      try {
        if (inst.nextDue!() <= now) inst.tick!(now);
      } catch (err) {
        this.stageError(slots[i], err);
      }
    }
  }

  /**
   * No more packets will enter: lets queued packets through asynchronous stages (left to right, since a
   * stage may feed the next one's queue) for at most `drainMs`, counting what is left as dropped, releases
   * what time-holding stages still hold, then flushes and closes every stage. A stage's close() that does
   * not settle within closeTimeoutMs is given up on (reported), and the others close anyway. Errors while
   * closing are collected, so every stage gets its close (every capture file its final flush).
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
        for (let k = 0; k < n; k++) slot.stats.drop(ENGINE_DROP.stopped);
        this.abandoned = true;
      }
    }
    // Held packets leave before the captures after them close.
    if (!this.abandoned && this.timed.length) this.tick(Infinity);
    this.closed = true;
    const closing: { slot: Slot; done: Promise<void> }[] = [];
    for (const slot of this.slots) {
      // Separately: a flush that fails must not keep the stage from closing its file.
      try {
        slot.instance.flush?.();
      } catch (err) {
        errors.push(err as Error);
      }
      let result: unknown;
      try {
        result = slot.instance.close?.();
      } catch (err) {
        errors.push(err instanceof Error ? err : new Error(`stage '${slot.label}' failed to close: ${String(err)}`));
        continue;
      }
      if (isThenable(result)) closing.push({ slot, done: Promise.resolve(result).then(() => {}) });
    }
    const closeDeadline = Date.now() + this.closeTimeoutMs;
    for (const { slot, done } of closing) {
      let timer: NodeJS.Timeout | undefined;
      const outcome = await Promise.race([
        done.then(
          () => 'ok' as const,
          (err: unknown) => (err instanceof Error ? err : new Error(`stage '${slot.label}' failed to close: ${String(err)}`)),
        ),
        new Promise<'late'>((r) => (timer = setTimeout(() => r('late'), Math.max(0, closeDeadline - Date.now())))),
      ]);
      clearTimeout(timer);
      if (outcome === 'late') this.warnOut(`stage '${slot.label}' did not finish closing within ${this.closeTimeoutMs} ms; the others were closed without it`);
      else if (outcome !== 'ok') errors.push(outcome);
    }
    return errors;
  }
}

/** True when the chain, or an else branch below it (which gets the same packet), ends by sending to a port. */
function branchSends(chain: Chain, seen = new Set<Chain>()): boolean {
  if (seen.has(chain)) return false;
  seen.add(chain);
  return chain.sends || chain.slots.some((slot) => slot.orElse !== null && branchSends(slot.orElse, seen));
}

/** True when a stage of the chain, or of an else branch below it (which gets the same packet), keeps packets. */
function branchKeepsPackets(chain: Chain, seen = new Set<Chain>()): boolean {
  if (seen.has(chain)) return false;
  seen.add(chain);
  return chain.slots.some((slot) => slot.keepsPackets || (slot.orElse !== null && branchKeepsPackets(slot.orElse, seen)));
}
