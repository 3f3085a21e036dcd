/**
 * Drives one time-holding stage the way the offline driver does, for the impairment tests: packets come from
 * one reused Packet and one reused Buffer (as a file source hands them when no stage keeps packets), the
 * file clock moves to each packet's time, due packets are ticked out before the packet is pushed, and
 * tick(Infinity) ends the input. What leaves is recorded at once (the source will overwrite it): the echo
 * sequence number that identifies it, its timestamp in ms from BASE_SEC, and its bytes.
 */
import { Packet } from '../../src/packet/packet.js';
import { standaloneContext, type StandaloneContext } from '../../src/pipeline/standalone.js';
import { HELD, type PrimitiveStageDefinition, type StageArgs, type StageInstance, type StageResult } from '../../src/pipeline/stage.js';
import { parsePacket } from '../../transforms/parse.js';
import { echoRequest } from '../helpers/packets.js';

export const BASE_SEC = 1_700_000_000;

export interface Out {
  seq: number;
  /** Milliseconds since BASE_SEC, from the packet's own sec/nsec. */
  t: number;
  bytes: Buffer;
}

export interface In {
  seq: number;
  /** Arrival, ms since BASE_SEC. */
  t: number;
  /** Bytes of echo payload (the packet is 28 bytes longer). */
  payload?: number;
}

export interface Run {
  out: Out[];
  drops: Map<string, number>;
  held: number;
  ctx: StandaloneContext;
  stage: StageInstance;
}

export function msOf(p: { sec: number; nsec: number }): number {
  return (p.sec - BASE_SEC) * 1000 + p.nsec / 1e6;
}

function stamp(p: Packet, t: number): void {
  const ns = Math.round(t * 1e6);
  p.sec = BASE_SEC + Math.floor(ns / 1e9);
  p.nsec = ns % 1e9;
}

export interface RunOptions {
  /** Tick due packets before each push, as the driver does (default true); false leaves it to process(). */
  tick?: boolean;
  /** Called after each push: for checks on the stage's state while it runs. */
  after?: (stage: StageInstance) => void;
}

export function runStage(def: PrimitiveStageDefinition, args: StageArgs, inputs: In[], opts: RunOptions = {}): Run {
  const out: Out[] = [];
  const drops = new Map<string, number>();
  let held = 0;
  const record = (p: Packet) => void out.push({ seq: p.data.readUInt16BE(p.l4 + 6), t: msOf(p), bytes: Buffer.from(p.data.subarray(0, p.end)) });
  const ctx = standaloneContext({ emit: record });
  const stage = def.create(args, ctx);
  const slab = Buffer.alloc(70_000);
  const packet = new Packet(slab);
  for (const input of inputs) {
    const bytes = echoRequest({ seq: input.seq, payload: Buffer.alloc(input.payload ?? 56, input.seq & 0xff) });
    bytes.copy(slab);
    packet.reset(slab.subarray(0, bytes.length));
    parsePacket(packet);
    stamp(packet, input.t);
    ctx.clock.advanceTo(packet.sec, packet.nsec);
    const now = ctx.now();
    if (opts.tick !== false && stage.nextDue && stage.nextDue() <= now) stage.tick!(now);
    const r = stage.process(packet) as StageResult;
    if (r === HELD) held++;
    else if (r instanceof Packet) record(r);
    else drops.set(String(r ?? 'filtered'), (drops.get(String(r ?? 'filtered')) ?? 0) + 1);
    // The source reuses its buffer: anything the stage kept without copying would now be garbage.
    slab.fill(0xee, 0, bytes.length);
    opts.after?.(stage);
  }
  stage.tick?.(Infinity);
  return { out, drops, held, ctx, stage };
}

/** Inputs with sequence numbers 1..n at the given times. */
export function inputsAt(times: number[], payload?: number): In[] {
  return times.map((t, i) => ({ seq: i + 1, t, payload }));
}
