/**
 * Loading a user's stage module, named by path in the pipeline text (never from anything but the command
 * line). The contract, documented in the README:
 *
 *   // a per-packet function: return the packet to pass it on, a string to drop it with that reason,
 *   // null to drop it as "filtered"; it may be async (the engine then queues in front of it, bounded)
 *   export default function (packet, args) { ... }
 *   export const summary = 'one line for --list';           // optional
 *   export const args = [{ name: 'max', type: 'number', positional: true, default: 1000, description: '...' }];
 *
 * or a full stage definition, the same shape the built-in stages use:
 *   export default { name, summary, args, create(args, ctx) { return { process(packet) { ... } } } }
 */
import { basename } from 'node:path';
import { adoptPacket, asPacket, Packet } from '../packet/packet.js';
import type { ArgSpec, PrimitiveStageDefinition, StageArgs, StageContext, StageDefinition, StageInstance, StageResult } from './stage.js';
import { asUserCode, enterUserCode, leaveUserCode, userCodeLabel } from './user-code-watch.js';

type UserFn = (packet: Packet, args: StageArgs) => unknown;

/** Maps what a user's function returned onto a StageResult (a Buffer becomes a Packet). */
export function normalizeResult(r: unknown): StageResult {
  if (r instanceof Packet || typeof r === 'string' || r === null || r === undefined || typeof r === 'symbol') return r as StageResult;
  if (r instanceof Uint8Array) return asPacket(r);
  if (r === false) return null;
  const adopted = adoptPacket(r);
  if (adopted !== null) return adopted;
  return `bad return value (${typeof r}): a stage returns a packet, a string reason, or null`;
}

function isThenable(x: unknown): x is PromiseLike<unknown> {
  return typeof x === 'object' && x !== null && typeof (x as PromiseLike<unknown>).then === 'function';
}

/** Wraps a plain per-packet function as a stage definition. */
export function functionStage(fn: UserFn, name: string, summary: string, args: ArgSpec[], label = -1): PrimitiveStageDefinition {
  return {
    name,
    summary,
    args,
    keepsPackets: true,
    readsTime: true,
    create(bound) {
      return {
        process(p) {
          // Entered and left inline, not through asUserCode: no closure per packet.
          let r: unknown;
          enterUserCode(label);
          try {
            r = fn(p, bound);
          } finally {
            leaveUserCode();
          }
          return isThenable(r) ? Promise.resolve(r).then(normalizeResult) : normalizeResult(r);
        },
      };
    },
  };
}

function checkArgSpecs(args: unknown): ArgSpec[] {
  if (args === undefined) return [];
  if (!Array.isArray(args)) throw new Error("its 'args' export must be an array of { name, type, description }");
  for (const a of args) {
    if (typeof a?.name !== 'string' || !['string', 'number', 'boolean'].includes(a?.type)) {
      throw new Error(`its argument spec ${JSON.stringify(a)} needs a name and a type (string, number or boolean)`);
    }
  }
  return args as ArgSpec[];
}

/** Imports a user's module and returns its stage definition; throws an Error saying what is wrong with it. */
export async function loadUserStage(url: string, written: string): Promise<StageDefinition> {
  const name = basename(written).replace(/\.[^.]*$/, '');
  const label = await userCodeLabel(`stage '${name}' (${written})`);
  // The module's top level runs inside the import, its awaits included.
  enterUserCode(label);
  let mod: Record<string, unknown>;
  try {
    mod = (await import(url)) as Record<string, unknown>;
  } finally {
    leaveUserCode();
  }
  const exported = mod.default ?? mod.stage;
  if (typeof exported === 'function') {
    const summary = typeof mod.summary === 'string' ? mod.summary : `user stage ${written}`;
    return functionStage(exported as UserFn, name, summary, checkArgSpecs(mod.args), label);
  }
  if (typeof exported === 'object' && exported !== null) {
    const def = exported as Partial<PrimitiveStageDefinition>;
    if (typeof def.create !== 'function') throw new Error('its default export is an object without a create(args, ctx) function');
    return { name: def.name ?? name, summary: def.summary ?? `user stage ${written}`, help: def.help, args: checkArgSpecs(def.args), keepsPackets: def.keepsPackets ?? true, readsTime: def.readsTime ?? true, recordsChanges: def.recordsChanges === true, create: watchedCreate(def.create, label) };
  }
  throw new Error('it has no default export: export a function (packet, args) => packet | reason | null, or a stage definition');
}

/** The methods of a stage instance that the engine calls; each takes at most one argument. */
const INSTANCE_METHODS = ['process', 'flush', 'pending', 'close', 'report', 'nextDue', 'tick', 'queued'] as const;

/**
 * A user's create(), and every method of what it returns, run as users' code (./user-code-watch.ts). The
 * methods are put on an object of their own whose prototype is the user's (which may be frozen), and call
 * the user's with it as `this`.
 */
function watchedCreate(create: PrimitiveStageDefinition['create'], label: number): PrimitiveStageDefinition['create'] {
  return (args: StageArgs, ctx: StageContext) => {
    const inst = asUserCode(label, () => create(args, ctx)) as StageInstance | null | undefined;
    if (typeof inst !== 'object' || inst === null) return inst as unknown as StageInstance;
    const watched = Object.create(inst) as Record<string, unknown>;
    for (const m of INSTANCE_METHODS) {
      const f = (inst as unknown as Record<string, unknown>)[m];
      if (typeof f !== 'function') continue;
      const method = f as (this: unknown, x?: unknown) => unknown;
      // Defined, not assigned: a frozen prototype's property of that name would refuse an assignment.
      Object.defineProperty(watched, m, {
        value: (x?: unknown) => {
          enterUserCode(label);
          try {
            return method.call(inst, x);
          } finally {
            leaveUserCode();
          }
        },
      });
    }
    return watched as unknown as StageInstance;
  };
}
