/**
 * The built-in stages, one per file in transforms/, all loaded: what `tunpipe --list`, `--help` and the
 * library see. A run loads only the stages it names (./stage-modules.ts, which lists them).
 */
import type { StageDefinition } from './stage.js';
import { BUILTIN_STAGE_MODULES, loadBuiltinStage } from './stage-modules.js';

const BUILTINS: StageDefinition[] = await Promise.all(BUILTIN_STAGE_MODULES.map(async (m) => (await loadBuiltinStage(m.name))!));

/** Every built-in stage, in the order `--list` shows them. */
export function builtinStages(): readonly StageDefinition[] {
  return BUILTINS;
}

export function findStage(name: string): StageDefinition | undefined {
  return BUILTINS.find((d) => d.name === name);
}
