/**
 * Stages as library values. `stage(def, args)` (and the named helpers such as `parseIPv4()`) return a
 * PacketTransform: an it-pipe transform (`source => source`) that can go straight into `pipe(...)`, and also
 * a recipe that `runPipeline` fuses into its fast loop. Each use as an it-pipe transform creates its own
 * stage instance with its own counters (`lastStats`).
 */
import { asPacket, Packet } from '../packet/packet.js';
import { EXIT, HELD, StageStats, type StageArgs, type StageContext, type StageDefinition, type PrimitiveStageDefinition, type StageResult } from './stage.js';
import { allRecordChanges, isCompound } from './stage.js';
import { ENGINE_DROP } from './drop-reasons.js';
import { RunClock } from '../packet/clock.js';
import { recordStageError, type StageErrorState } from './error-reasons.js';
import type { ResolvedStage } from './program.js';

type PacketLike = Packet | Uint8Array;
export type PacketSource = AsyncIterable<PacketLike> | Iterable<PacketLike>;

export interface PacketTransform {
  (source: PacketSource): AsyncGenerator<Packet>;
  /** The stages this transform stands for (several for a compound such as icmp-echo). */
  readonly stages: ResolvedStage[];
  /** Counters of the most recent it-pipe use, one per stage. */
  readonly lastStats: StageStats[];
  /** The link type its packets have (101 raw IP unless set: a TUN device, most captures). */
  readonly linkType: number;
  /**
   * The same stages for packets of another link type, e.g. `parseIPv4().withLinkType(1)` for the Ethernet
   * frames of a TAP device: stages that read link headers (parse, filter, pcap, print, neighbor) need it.
   */
  withLinkType(linkType: number): PacketTransform;
}

function isThenable(x: unknown): x is PromiseLike<StageResult> {
  return typeof x === 'object' && x !== null && typeof (x as PromiseLike<unknown>).then === 'function';
}

/** Fills in defaults and checks the names of library-given arguments. */
function withDefaults(def: StageDefinition, args: StageArgs): StageArgs {
  const out: StageArgs = {};
  for (const spec of def.args) out[spec.name] = args[spec.name] ?? spec.default;
  for (const k of Object.keys(args)) {
    if (!def.args.some((a) => a.name === k)) throw new TypeError(`stage '${def.name}' has no argument '${k}'`);
  }
  for (const spec of def.args) {
    if (spec.required && out[spec.name] === undefined) throw new TypeError(`stage '${def.name}' needs its argument '${spec.name}'`);
  }
  return out;
}

/** Packets a stage sent to the exit (EXIT): the later it-pipe transforms of a chain pass them untouched. */
const exiting = new WeakSet<Packet>();

/** Runs one stage instance over an async source, as an it-pipe transform. */
async function* runOne(s: ResolvedStage, stats: StageStats, source: AsyncIterable<Packet>, changesRecorded: boolean, linkType: number): AsyncGenerator<Packet> {
  const emitted: Packet[] = [];
  let failure: Error | null = null;
  const errors: StageErrorState = { errorReasons: 0, reportedError: false };
  const clock = new RunClock('wall');
  const ctx: StageContext = {
    name: s.label,
    emit: (p) => {
      stats.emitted++;
      emitted.push(p);
    },
    warn: (m) => process.stderr.write(`tunpipe: stage '${s.label}': ${m}\n`),
    fail: (err) => void (failure ??= err),
    linkType,
    direction: 'in',
    changesRecorded,
    now: () => clock.now(),
    timeOf: (p) => clock.timeOf(p),
    setTime: (p, t) => clock.setTime(p, t),
  };
  const inst = s.def.create(s.args, ctx);
  try {
    for await (const p of source) {
      if (exiting.has(p)) {
        yield p;
        continue;
      }
      stats.packetsIn++;
      let r: StageResult | PromiseLike<StageResult>;
      try {
        r = inst.process(p);
        if (isThenable(r)) r = await r;
      } catch (err) {
        const { message, first } = recordStageError(stats, errors, err);
        if (first) ctx.warn(`threw: ${message}; the packet was dropped (further errors are counted, not printed)`);
        continue;
      }
      if (failure) throw failure;
      // Packets a stage emits come before the one it returns, as in the fused engine.
      while (emitted.length) yield emitted.shift()!;
      if (r instanceof Packet) {
        stats.packetsOut++;
        yield r;
      } else if (r === EXIT) {
        stats.packetsOut++;
        exiting.add(p);
        yield p;
      } else if (typeof r === 'string') stats.drop(r);
      else if (r === HELD) stats.held++;
      else stats.drop(ENGINE_DROP.filtered);
      // A stage that holds packets until a time releases what is due as packets pass.
      if (inst.tick && inst.nextDue && inst.nextDue() <= clock.now()) {
        inst.tick(clock.now());
        while (emitted.length) yield emitted.shift()!;
      }
      inst.flush?.();
    }
    // The source ended: what a time-holding stage still holds leaves now, in order.
    if (inst.tick) {
      inst.tick(Infinity);
      while (emitted.length) yield emitted.shift()!;
    }
  } finally {
    await inst.close?.();
  }
}

async function* packets(source: PacketSource): AsyncGenerator<Packet> {
  for await (const p of source) yield asPacket(p);
}

/** Builds a PacketTransform from resolved stages. */
export function transformOf(stages: ResolvedStage[], linkType = 101): PacketTransform {
  if (!Number.isInteger(linkType) || linkType < 0 || linkType > 0xffff) throw new TypeError(`a link type is a whole number 0..65535, got ${linkType}`);
  const lastStats: StageStats[] = [];
  const fn = (source: PacketSource): AsyncGenerator<Packet> => {
    lastStats.length = 0;
    let it: AsyncIterable<Packet> = packets(source);
    // What feeds the first stage is unknown (any it-pipe source or transform): its changes are not trusted.
    stages.forEach((s, i) => {
      const stats = new StageStats(s.label);
      lastStats.push(stats);
      it = runOne(s, stats, it, i > 0 && allRecordChanges(stages.slice(0, i).map((e) => e.def)), linkType);
    });
    return it as AsyncGenerator<Packet>;
  };
  return Object.assign(fn, { stages, lastStats, linkType, withLinkType: (t: number) => transformOf(stages, t) });
}

/**
 * A PacketTransform for a stage definition with library-given arguments. A compound definition needs
 * `expand` to be resolved by name, so the caller passes the primitive definitions it expands to.
 */
export function stageTransform(def: StageDefinition, args: StageArgs = {}, parts?: PrimitiveStageDefinition[]): PacketTransform {
  if (isCompound(def)) {
    if (!parts) throw new TypeError(`compound stage '${def.name}' needs its parts`);
    return transformOf(parts.map((p) => ({ def: p, args: withDefaults(p, {}), label: `${def.name}/${p.name}` })));
  }
  return transformOf([{ def, args: withDefaults(def, args), label: def.name }]);
}
