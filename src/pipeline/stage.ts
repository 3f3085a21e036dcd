/**
 * What a stage is. A stage definition (one per file in transforms/, or a user's module) declares its name,
 * a one-line summary, its arguments and how to create a running instance; `tunpipe --list` and `--help`
 * are generated from these declarations.
 */
import type { Packet } from '../packet/packet.js';

/**
 * What `process` returns for one packet:
 * - a Packet (usually the same one, maybe modified in place): pass it on;
 * - a string: drop the packet, counted under that reason;
 * - `HELD`: the stage kept the packet (a fragment awaiting reassembly) and will emit later; not a drop;
 * - `EXIT`: the packet (as the stage left it) goes straight to where its pipeline or branch writes, past the
 *   stages after this one: an answer that later stages must not take for traffic (a neighbour advertisement
 *   going past `icmp-echo`). Counted as passed;
 * - null or undefined: drop, counted as "filtered".
 */
export type StageResult = Packet | string | typeof HELD | typeof EXIT | null | undefined;

/**
 * Returned by a stage that keeps a packet for later (not counted as a drop). Registered symbols, this and
 * EXIT: the same in every copy of this module (the CLI's bundle, the library a user's stage imports).
 */
export const HELD: unique symbol = Symbol.for('tunpipe.held');

/** Returned by a stage whose packet leaves at once by its chain's exit, skipping the later stages (see StageResult). */
export const EXIT: unique symbol = Symbol.for('tunpipe.exit');

/** A running stage. */
export interface StageInstance {
  /**
   * Handles one packet. A synchronous stage returns its result; an asynchronous one (a user's stage that
   * awaits) returns a promise, and the engine puts a bounded queue in front of it.
   */
  process(p: Packet): StageResult | Promise<StageResult>;
  /**
   * End of a batch of packets (one drain of the device, one chunk of a file): write out what is buffered.
   * With `lazy` true the stage may keep a small, recent buffer for a later flush (it must then say so
   * through `pending()`); the source calls flush() without `lazy` once traffic pauses.
   */
  flush?(lazy?: boolean): void;
  /** True when the stage holds output that a flush would write. */
  pending?(): boolean;
  /** The pipeline stops: finish files, release handles. Called once, after the last packet. */
  close?(): void | Promise<void>;
  /** Extra counters to print on exit beside in/out/dropped (e.g. bytes written). */
  report?(): string;
  /**
   * A stage that holds packets until a time (delay, rate): when it next wants `tick`, on the `ctx.now()`
   * scale, or Infinity when it holds nothing. The driver sleeps until the earliest such time (no busy
   * loop) and reads it again after every batch and every tick.
   */
  nextDue?(): number;
  /**
   * Called once `ctx.now()` has reached `nextDue()`: the stage releases what is due with `ctx.emit`.
   * `now` is Infinity when the input has ended (offline) or the pipeline stops: release everything.
   */
  tick?(now: number): void;
  /** Packets the stage holds now (a delay's queue): shown by `--stats` beside asynchronous stages' queues. */
  queued?(): number;
}

/** A source or sink of packets as the stages see it: a device, a capture file, stdin or stdout. */
export interface PortInfo {
  /** The device name, the file's path, or '-'. */
  readonly name: string;
  /** pcap link type of its packets: 101 RAW (IPv4/IPv6, a TUN device), 1 Ethernet (a TAP device). */
  readonly linkType: number;
  readonly kind: 'device' | 'file' | 'stdio';
  /**
   * A device's addresses as CIDR text (`198.18.0.1/24`), as far as they are known before it opens: those
   * `--addr` (or `openTun({ addresses })`) gives it. Undefined for files and where nobody said; a
   * persistent device's own addresses are not in it. `neighbor` answers for the rest of these subnets.
   */
  readonly addresses?: readonly string[];
  /**
   * A device opened with offloads (IFF_VNET_HDR, TUNSETOFFLOAD): its packets may be TCP/UDP super-packets
   * with partial checksums (Packet.gsoType, vnetFlags), and it takes them back. See superPackets.
   */
  readonly offload?: boolean;
}

/** What a stage instance may call back into. */
export interface StageContext {
  /** The stage's name as written in the pipeline. */
  readonly name: string;
  /** Passes an extra packet on, downstream of this stage (the fragments of a reply, a reassembled datagram). */
  emit(p: Packet): void;
  /** Reports a problem on stderr, once per distinct message, with the stage's name. */
  warn(message: string): void;
  /** Stops the whole pipeline with an error (a capture that cannot be written, when asked to stop). */
  fail(err: Error): void;
  /** pcap link type of the packets this stage receives (its pipeline's source port): 101 RAW, 1 Ethernet. */
  readonly linkType: number;
  /**
   * Which way the packets this stage sees travel, for a capture: 'in' (read from `input`, not yet turned
   * around) or 'out' (a stage before this one turned them around, so they leave on `output`, or on `input`
   * where the pipeline has no sink of its own).
   */
  readonly direction: 'in' | 'out';
  /**
   * True when every stage before this one on its path declares `recordsChanges`, so what they changed is
   * recorded in the packets; false or undefined when some stage (a user's) may have edited bytes unrecorded,
   * or when the stages before are unknown (a single stage used as an it-pipe transform).
   */
  readonly changesRecorded?: boolean;
  /** The port this stage's pipeline reads from, and the one it writes to (undefined: discarded, or unknown). */
  readonly input?: PortInfo;
  readonly output?: PortInfo;
  /**
   * True when stdout carries a capture in this run (`pcap -`, `--write -`), so that text output (`print`)
   * goes to stderr instead. Undefined: not known (taken as false).
   */
  readonly stdoutTaken?: boolean;
  /**
   * The driver's clock in milliseconds (fractional): the wall clock on a device; offline, the time of the
   * packet last read from the file, so that time-based stages run on the file's time, as fast as the CPU goes.
   * Only differences between readings mean anything.
   */
  now(): number;
  /** A packet's timestamp (`sec`/`nsec`) on the `now()` scale. */
  timeOf(p: Packet): number;
  /** Sets a packet's timestamp (`sec`/`nsec`) from a time on the `now()` scale. */
  setTime(p: Packet, t: number): void;
}

/**
 * How an argument is written and what the stage receives: `string`, `number` (decimal), `boolean`; and
 * quantities with units (./units.ts), each handed to the stage as a plain number: `duration` (written
 * `10ms`, `1.5s`; received in milliseconds), `size` (`100kB`, `64KiB`; bytes), `rate` (`10mbit`, `500kbps`;
 * bits per second), `probability` (`1%`, `0.01`; a fraction). `min`/`max` apply to the received number.
 */
export type ArgType = 'string' | 'number' | 'boolean' | 'duration' | 'size' | 'rate' | 'probability';
export type ArgValue = string | number | boolean;

/** One argument a stage takes: positional (`pcap FILE`) or keyword (`nanos=true`). */
export interface ArgSpec {
  name: string;
  type: ArgType;
  description: string;
  /** Positional arguments are matched in order; any argument may also be given as name=value. */
  positional?: boolean;
  required?: boolean;
  default?: ArgValue;
  /** The values a string argument may take. */
  choices?: string[];
  /** How usage lines write the value (`EXPR`, `OCTAL`, `SIZE|TIME`); default from the type. */
  placeholder?: string;
  /** A string argument must match `regex`; the error says what was `expected` (checked with a caret). */
  pattern?: { regex: RegExp; expected: string };
  /** Numbers only: whole numbers only. */
  integer?: boolean;
  /** Inclusive bounds for numbers. */
  min?: number;
  max?: number;
  /**
   * A string argument that names a file the stage writes (`-`: stdout). tunpipe refuses to start when two
   * outputs name the same file (or stdout twice), or an output names the file being read.
   */
  output?: boolean;
}

/** Parsed arguments, by name. */
export type StageArgs = Record<string, ArgValue | undefined>;

interface StageDefinitionBase {
  /** Name used in pipeline text: lower case, words joined by '-'. */
  name: string;
  /**
   * True when the stage may hold on to a packet object or its Buffer after `process` returns (a queue, a
   * table). The device then gives each packet its own objects; when no stage keeps packets, it reuses one
   * Packet and one Buffer, allocating nothing per packet. Built-in stages copy what they keep and say
   * false; a user's stage is taken to keep packets.
   */
  keepsPackets?: boolean;
  /**
   * True when the stage reads when packets arrived (`sec`/`nsec`, as a capture does). A device stamps
   * packets only when some stage does: reading the clock is a cost on every wake. A user's stage is taken
   * to read it.
   */
  readsTime?: boolean;
  /**
   * True when what leaves the stage is addressed back to where it came from (a reply: to-reply, a neighbour
   * answer). A device pipeline without a sink writes its output back to its device; tunpipe warns when no
   * stage of such a pipeline turns packets around, since it would then re-inject what it read.
   */
  turnsAround?: boolean;
  /**
   * True when the stage answers some packets itself, straight to the pipeline's exit (EXIT: neighbor's ARP
   * and NDP answers), and passes the rest on untouched: the pipeline does write back on purpose, but the
   * stages after it still see packets travelling in, so it does not turn them around.
   */
  answersDirectly?: boolean;
  /**
   * True when every change the stage makes to a packet's bytes is either recorded for the `checksum` stage
   * (Packet.setIpWord/setL4Word, or a `dirty` flag saying what to recompute) or leaves the checksums valid
   * (swapped addresses, a copy). `checksum` in auto mode trusts the recorded changes only when every stage
   * before it makes this promise; after any other stage (a user's stage is taken not to) it recomputes in full.
   */
  recordsChanges?: boolean;
  /**
   * True when the stage is correct on a super-packet from a device with offloads as it is: a TCP or UDP
   * train of up to 64 KiB behind one IP header (Packet.gsoType not 0), its transport checksum partial
   * (NEEDS_CSUM): a stage that only reads headers, passes, drops, copies or holds packets (parse, filter,
   * pcap, delay, ...). On a pipeline that reads such a device, tunpipe puts a `segment` stage in front of
   * the first stage that does not say so (a user's stage never does), which then gets segments with
   * complete checksums, and in front of a device without offloads.
   */
  superPackets?: boolean;
  /**
   * Checks arguments against each other once each has been converted (`files=` needs `size=` or `time=`):
   * a message, reported at the stage's name with its usage like any argument error, or null. Runs before
   * anything is created (no device, no file).
   */
  checkArgs?(args: StageArgs): string | null;
  /**
   * Checks argument values against the packets the stage will receive, so that a mistake is shown with a
   * caret under the argument before anything starts (a filter expression that does not compile for the
   * link type). `linkType` is that of the packets, when the caller knows it (see checkStageArgs). Returns
   * the faulty argument's name and the message, or undefined when the arguments are fine.
   */
  checkArgsForLink?(args: StageArgs, linkType?: number): { arg: string; message: string } | undefined;
  /**
   * For a stage whose output file may be shared with other stages (several pipelines writing one pcapng,
   * each its own interface): a key that is the same for stages that can share, undefined when this one
   * cannot. tunpipe refuses two outputs on one file unless their keys are equal.
   */
  outputShareKey?(args: StageArgs): string | undefined;
  /** One line for `tunpipe --list`. */
  summary: string;
  /** More lines for `tunpipe --list NAME`: what passes, what is dropped and why, examples. */
  help?: string;
  args: ArgSpec[];
}

/** A stage implemented in code. */
export interface PrimitiveStageDefinition extends StageDefinitionBase {
  create(args: StageArgs, ctx: StageContext): StageInstance;
}

/** A stage written as a pipeline of other stages (like a Click compound element); flattened before running. */
export interface CompoundStageDefinition extends StageDefinitionBase {
  expand: string;
}

export type StageDefinition = PrimitiveStageDefinition | CompoundStageDefinition;

const ARG_PLACEHOLDER: Record<ArgType, string> = { string: 'TEXT', number: 'N', boolean: 'BOOL', duration: 'TIME', size: 'SIZE', rate: 'RATE', probability: 'P' };

/** A stage's usage line from its declaration: `pcap FILE [nanos=BOOL] ... [onerror=stop|continue]`. */
export function stageUsage(def: StageDefinition): string {
  const arg = (a: ArgSpec) => {
    if (a.positional) return a.required ? a.name.toUpperCase() : `[${a.name.toUpperCase()}]`;
    const value = a.choices ? a.choices.join('|') : (a.placeholder ?? ARG_PLACEHOLDER[a.type]);
    return `[${a.name}=${value}]`;
  };
  return [def.name, ...def.args.map(arg)].join(' ');
}

/** Identity helper that gives a stage file its types. */
export function defineStage<T extends StageDefinition>(def: T): T {
  return def;
}

/** True when no stage keeps packets: a source may hand in the same Packet and Buffer again (see keepsPackets). */
export function noStageKeepsPackets(defs: readonly StageDefinition[]): boolean {
  return defs.every((d) => d.keepsPackets === false);
}

/** True when every one of `defs` (the stages before some stage) records its changes: see `recordsChanges`. */
export function allRecordChanges(defs: readonly StageDefinition[]): boolean {
  return defs.every((d) => d.recordsChanges === true);
}

export function isCompound(def: StageDefinition): def is CompoundStageDefinition {
  return 'expand' in def;
}

/** The reason the drops beyond a stage's limit of distinct reasons are counted under. */
export const OTHER_REASONS = '(other reasons)';

/** Per-stage counters, printed on exit and readable while running. */
export class StageStats {
  packetsIn = 0;
  packetsOut = 0;
  dropped = 0;
  held = 0;
  /** Extra packets a stage passed on through ctx.emit (fragments, reassembled datagrams): not in packetsOut,
   * so that packetsIn === packetsOut + dropped + held always holds. */
  emitted = 0;
  /** Packets the stage would have dropped that went into its `else { ... }` branch instead (their reasons
   * are counted in `reasons` too): packetsIn === packetsOut + dropped + held + diverted. */
  diverted = 0;
  /** Drops by reason. */
  readonly reasons = new Map<string, number>();

  /** `limits`: how many distinct reasons are kept before the rest are counted together (default 32). */
  constructor(
    readonly name: string,
    private readonly limits: { reasons: number } = { reasons: 32 },
  ) {}

  drop(reason: string): void {
    this.dropped++;
    this.count(reason);
  }

  /** Counts a packet that went into the stage's else branch, under the reason it would have been dropped for. */
  divert(reason: string): void {
    this.diverted++;
    this.count(reason);
  }

  private count(reason: string): void {
    const n = this.reasons.get(reason);
    if (n !== undefined) {
      this.reasons.set(reason, n + 1);
      return;
    }
    // A stage whose reasons carry a number (a length, a packet's index) must not grow the table without bound.
    const key = this.reasons.size < this.limits.reasons ? String(reason) : OTHER_REASONS;
    this.reasons.set(key, (this.reasons.get(key) ?? 0) + 1);
  }
}
