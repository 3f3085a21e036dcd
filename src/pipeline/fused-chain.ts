/**
 * A chain of stages as one function of its own, in place of the engine's loop over its slots
 * (Engine.runFrom). The loop calls every stage's `process` from one call site, which V8 sees with as many
 * shapes as there are stages (megamorphic: no inlining, a lookup each call); the fused function has a call
 * site per stage, each with one shape, so V8 can inline the stages into it. What a packet goes through is
 * the same: counters, a stage that throws (dropped and counted), a stage that holds, rejects or turns out
 * to be asynchronous (handed back to the engine, which goes on from there), a stage that has become
 * asynchronous since (its queue: the engine's loop from that stage on).
 *
 * The function is made with `new Function` from the template below: its text holds slot numbers and
 * nothing else, never a word of the user's program or a module's code; the stages themselves are passed in
 * as values.
 */
import { Packet } from '../packet/packet.js';
import type { StageResult } from './stage.js';
import type { Chain, Slot } from './engine.js';

/** What the fused function hands back to the engine. */
export interface FusedHost {
  /** Runs `p` through stages `i`.. of `chain` the generic way (a stage with a queue in front of it). */
  runFrom(chain: Chain, i: number, p: Packet): void;
  /** A stage threw on `p`. */
  stageError(slot: Slot, err: unknown): void;
  /** A stage returned something other than a packet: a promise, a hold, an exit, a drop reason. */
  afterSync(slot: Slot, p: Packet, r: StageResult | PromiseLike<StageResult>): void;
}

/** Longer chains keep the loop: a function of that size is more than V8 optimizes well. */
export const MAX_FUSED_STAGES = 24;

/** The chain's run from its first stage, fused; null when it is too long to fuse (see MAX_FUSED_STAGES). */
export function fuseChain(host: FusedHost, chain: Chain): ((p: Packet) => void) | null {
  const n = chain.slots.length;
  if (n > MAX_FUSED_STAGES) return null;
  const params = ['P', 'h', 'c'];
  const values: unknown[] = [Packet, host, chain];
  let body = '"use strict";\nreturn function fusedChain(p) {\n  let r;\n';
  for (let k = 0; k < n; k++) {
    const slot = chain.slots[k];
    params.push(`g${k}`, `s${k}`, `i${k}`);
    values.push(slot, slot.stats, slot.instance);
    body +=
      `  if (g${k}.gate !== null) { h.runFrom(c, ${k}, p); return; }\n` +
      `  s${k}.packetsIn++;\n` +
      `  try { r = i${k}.process(p); } catch (err) { h.stageError(g${k}, err); return; }\n` +
      `  if (!(r instanceof P)) { h.afterSync(g${k}, p, r); return; }\n` +
      `  s${k}.packetsOut++;\n` +
      `  p = r;\n`;
  }
  body += '  c.exit(p);\n};\n';
  const make = new Function(...params, body) as (...args: unknown[]) => (p: Packet) => void;
  return make(...values);
}
