/**
 * What a resolved program is: the pipelines of a text with their stages (definitions and checked
 * arguments), branches, sources and sinks. Made by ./resolve.ts, run by ./engine.ts, routed by
 * ./routing.ts; types only, so that none of those needs to import another.
 */
import type { StageNode } from './language.js';
import type { PrimitiveStageDefinition, StageArgs } from './stage.js';

/** A stage ready to create: its definition, its checked arguments, and the label its counters print under. */
export interface ResolvedStage {
  def: PrimitiveStageDefinition;
  args: StageArgs;
  label: string;
  /** Where each argument was written in the pipeline text (for errors found after resolving). */
  argPos?: Record<string, number>;
  /**
   * A user's module, when resolved with `deferModules`: not imported yet (a worker thread imports it, once);
   * `def` is then a placeholder and `args` unchecked until reviveProgram() binds them.
   */
  module?: { url: string; node: StageNode };
}

/** An element of a resolved pipeline: a stage (maybe with an else branch), or a tee with its branch. */
export type ResolvedElement =
  | { kind: 'stage'; stage: ResolvedStage; orElse?: ResolvedBranch; pos: number }
  | { kind: 'tee'; branch: ResolvedBranch; pos: number; label: string };

/**
 * Where a pipeline or branch ends: `to NAME`, `drop`, nothing written in a pipeline (`default`: the CLI
 * decides, e.g. back to the device it reads from), or the end of a branch that names no sink (`end`:
 * what reaches it is discarded and counted).
 */
export type SinkSpec = { kind: 'to'; port: string; pos: number } | { kind: 'drop'; pos: number } | { kind: 'default'; pos: number } | { kind: 'end'; pos: number };

export interface ResolvedBranch {
  elements: ResolvedElement[];
  sink: SinkSpec;
  /** Counter label of what reaches the end of a branch, and of `drop`. */
  label: string;
}

export interface ResolvedPipeline extends ResolvedBranch {
  /** `from NAME`, or null: the only port there is (one device, or --read). */
  source: { port: string; pos: number } | null;
  pos: number;
}

/** Parsed and resolved pipeline text: every pipeline with its stages, branches, source and sink. */
export interface ResolvedProgram {
  text: string;
  pipelines: ResolvedPipeline[];
}

