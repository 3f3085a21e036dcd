/**
 * Where each built-in stage is declared, by name, so that a run imports only the stages its program names
 * (and what they expand to): importing every stage file costs an offline run a good part of its start-up.
 * The order is the order `--list` shows them. ./registry.ts loads them all for `--list`, `--help` and the
 * library; a unit test checks each name against the declaration its file exports.
 */
import type { StageDefinition } from './stage.js';

type Loader = () => Promise<{ default: StageDefinition }>;

export const BUILTIN_STAGE_MODULES: readonly { readonly name: string; readonly load: Loader }[] = [
  { name: 'parse', load: () => import('../../transforms/parse.js') },
  { name: 'icmp-echo', load: () => import('../../transforms/icmp-echo.js') },
  { name: 'reassemble', load: () => import('../../transforms/reassemble.js') },
  { name: 'filter-icmp-echo', load: () => import('../../transforms/filter-icmp-echo.js') },
  { name: 'swap-addrs', load: () => import('../../transforms/swap-addrs.js') },
  { name: 'to-reply', load: () => import('../../transforms/to-reply.js') },
  { name: 'checksum', load: () => import('../../transforms/checksum.js') },
  { name: 'fragment', load: () => import('../../transforms/fragment.js') },
  { name: 'filter', load: () => import('../../transforms/filter.js') },
  { name: 'pcap', load: () => import('../../transforms/pcap.js') },
  { name: 'print', load: () => import('../../transforms/print.js') },
  { name: 'delay', load: () => import('../../transforms/delay.js') },
  { name: 'loss', load: () => import('../../transforms/loss.js') },
  { name: 'rate', load: () => import('../../transforms/rate.js') },
  { name: 'duplicate', load: () => import('../../transforms/duplicate.js') },
  { name: 'reorder', load: () => import('../../transforms/reorder.js') },
  { name: 'corrupt', load: () => import('../../transforms/corrupt.js') },
  { name: 'neighbor', load: () => import('../../transforms/neighbor.js') },
  { name: 'segment', load: () => import('../../transforms/segment.js') },
];

/** Every built-in stage's name, in `--list` order, without loading any. */
export function builtinStageNames(): string[] {
  return BUILTIN_STAGE_MODULES.map((m) => m.name);
}

/** Imports a built-in stage's declaration by name; undefined for a name that is not built in. */
export async function loadBuiltinStage(name: string): Promise<StageDefinition | undefined> {
  const entry = BUILTIN_STAGE_MODULES.find((m) => m.name === name);
  if (entry === undefined) return undefined;
  const def = (await entry.load()).default;
  if (def.name !== name) throw new Error(`internal: transforms/${name} declares the stage '${def.name}'`);
  return def;
}
