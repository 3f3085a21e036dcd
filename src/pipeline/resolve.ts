/**
 * Turns parsed pipeline text into stage definitions with checked arguments: built-in names are imported
 * when named (./stage-modules.ts), compound stages are flattened, and a name that is a path loads the user's module. Every
 * problem is a PipelineSyntaxError pointing at the offending text; nothing is created here.
 */
import { pathToFileURL } from 'node:url';
import { basename, resolve as resolvePath } from 'node:path';
import { existsSync } from 'node:fs';
import { isKeyword, parseProgram, parsePipeline, PipelineSyntaxError, type ArgNode, type ElementNode, type StageNode } from './language.js';
import { isCompound, stageUsage, type ArgSpec, type PrimitiveStageDefinition, type StageArgs, type StageDefinition } from './stage.js';
import { builtinStageNames, loadBuiltinStage } from './stage-modules.js';
import { describeThrown } from '../errors.js';
import type { ResolvedBranch, ResolvedElement, ResolvedPipeline, ResolvedProgram, ResolvedStage, SinkSpec } from './program.js';

export type { ResolvedBranch, ResolvedElement, ResolvedPipeline, ResolvedProgram, ResolvedStage, SinkSpec } from './program.js';
import { parseDuration, parseProbability, parseRate, parseSize } from './units.js';

function knownStagesHint(): string {
  const names = builtinStageNames().sort();
  return `known stages: ${names.join(', ')}; or a path to your own module (./my-stage.mjs). See 'tunpipe --list'.`;
}

/** True when a stage name is to be loaded from a file rather than looked up. */
export function isPathName(name: string): boolean {
  return name.includes('/') || /\.(m|c)?[jt]s$/.test(name);
}

const QUANTITY = { duration: parseDuration, size: parseSize, rate: parseRate, probability: parseProbability } as const;

/** How each kind of quantity writes a bound, in the units its parser returns. */
const BOUND_TEXT: Partial<Record<ArgSpec['type'], (x: number) => string>> = {
  probability: (x) => `${+(x * 100).toFixed(4)}%`,
  duration: (x) => `${x}ms`,
  size: (x) => `${x}B`,
  rate: (x) => `${x}bit`,
};

/** An argument's range in the units it is written in (quantities are never negative: no minimum means 0). */
function rangeOf(spec: ArgSpec): string {
  const bound = BOUND_TEXT[spec.type] ?? String;
  const min = spec.min !== undefined ? bound(spec.min) : spec.type === 'number' ? '-inf' : bound(0);
  return `${min}..${spec.max !== undefined ? bound(spec.max) : 'inf'}`;
}

function convert(spec: ArgSpec, arg: ArgNode, text: string, stage: string): string | number | boolean {
  const where = `${stage} ${spec.name}`;
  if (spec.type === 'string') {
    if (spec.choices && !spec.choices.includes(arg.value)) {
      throw new PipelineSyntaxError(`${where}: expected one of ${spec.choices.join(', ')}, got '${arg.value}'`, text, arg.pos);
    }
    if (spec.pattern && !spec.pattern.regex.test(arg.value)) throw new PipelineSyntaxError(`${where}: expected ${spec.pattern.expected}, got '${arg.value}'`, text, arg.pos);
    return arg.value;
  }
  if (spec.type === 'boolean') {
    const v = arg.value.toLowerCase();
    if (['true', '1', 'yes', 'on'].includes(v)) return true;
    if (['false', '0', 'no', 'off'].includes(v)) return false;
    throw new PipelineSyntaxError(`${where}: expected true or false, got '${arg.value}'`, text, arg.pos);
  }
  let n: number;
  if (spec.type === 'number') {
    // Decimal only: Number() would also take hex, binary and exponents.
    n = /^-?(\d+\.?\d*|\.\d+)$/.test(arg.value) ? Number(arg.value) : NaN;
    if (!Number.isFinite(n)) throw new PipelineSyntaxError(`${where}: expected a number, got '${arg.value}'`, text, arg.pos);
  } else {
    const parsed = QUANTITY[spec.type](arg.value);
    if (typeof parsed === 'string') throw new PipelineSyntaxError(`${where}: ${parsed}`, text, arg.pos);
    n = parsed;
  }
  if (spec.integer && !Number.isInteger(n)) throw new PipelineSyntaxError(`${where}: expected a whole number, got '${arg.value}'`, text, arg.pos);
  if ((spec.min !== undefined && n < spec.min) || (spec.max !== undefined && n > spec.max)) {
    throw new PipelineSyntaxError(`${where}: ${arg.value} is out of range ${rangeOf(spec)}`, text, arg.pos);
  }
  return n;
}

function usage(def: StageDefinition): string {
  return `usage: ${stageUsage(def)}`;
}

/**
 * Checks a stage's written arguments against what its definition declares, then with the definition's own
 * `checkArgs` and `checkArgsForLink` (for packets of any link type; checkStageArgs checks again once the
 * link type is known).
 */
export function bindArgs(def: StageDefinition, node: StageNode, text: string): StageArgs {
  const out: StageArgs = {};
  const written: Record<string, number> = {};
  const positional = def.args.filter((a) => a.positional);
  let next = 0;
  for (const arg of node.args) {
    let spec: ArgSpec | undefined;
    if (arg.key !== undefined) {
      spec = def.args.find((a) => a.name === arg.key);
      if (!spec) {
        const known = def.args.map((a) => a.name).join(', ') || 'none';
        throw new PipelineSyntaxError(`stage '${def.name}' has no argument '${arg.key}' (it takes: ${known})`, text, arg.pos, usage(def));
      }
    } else {
      while (next < positional.length && out[positional[next].name] !== undefined) next++;
      spec = positional[next++];
      if (!spec) throw new PipelineSyntaxError(`stage '${def.name}' takes no more positional arguments, found '${arg.value}'`, text, arg.pos, usage(def));
    }
    if (out[spec.name] !== undefined) throw new PipelineSyntaxError(`stage '${def.name}': argument '${spec.name}' given twice`, text, arg.pos, usage(def));
    out[spec.name] = convert(spec, arg, text, def.name);
    written[spec.name] = arg.pos;
  }
  for (const spec of def.args) {
    if (out[spec.name] !== undefined) continue;
    if (spec.required) throw new PipelineSyntaxError(`stage '${def.name}' needs its argument ${spec.name.toUpperCase()} (${spec.description})`, text, node.pos, usage(def));
    if (spec.default !== undefined) out[spec.name] = spec.default;
  }
  const problem = def.checkArgs?.(out);
  if (problem) throw new PipelineSyntaxError(`${def.name}: ${problem}`, text, node.pos, usage(def));
  checkArgsOf(def, out, text, written, node.pos);
  return out;
}

function checkArgsOf(def: StageDefinition, args: StageArgs, text: string, argPos: Record<string, number> | undefined, pos: number, linkType?: number): void {
  const problem = def.checkArgsForLink?.(args, linkType);
  if (problem) throw new PipelineSyntaxError(`${def.name} ${problem.arg}: ${problem.message}`, text, argPos?.[problem.arg] ?? pos);
}

/**
 * Runs the stages' link checks (StageDefinition.checkArgsForLink) again for packets of `linkType`, once
 * it is known (a filter expression that suits Ethernet but not RAW IP); throws a PipelineSyntaxError under
 * the argument. Call it before anything is opened.
 */
export function checkStageArgs(stages: readonly ResolvedStage[], text: string, linkType: number): void {
  for (const s of stages) if (!s.module) checkArgsOf(s.def, s.args, text, s.argPos, 0, linkType);
}

/** Loads a user's module; the loader is imported only when one is named (start-up of every other run). */
async function loadUserModule(url: string, written: string): Promise<StageDefinition> {
  return (await import('./user-stage.js')).loadUserStage(url, written);
}

async function definitionFor(node: StageNode, text: string): Promise<StageDefinition> {
  if (isPathName(node.name)) {
    const path = resolvePath(node.name);
    if (!existsSync(path)) throw new PipelineSyntaxError(`stage module '${node.name}' not found (looked for ${path})`, text, node.pos);
    try {
      return await loadUserModule(pathToFileURL(path).href, node.name);
    } catch (err) {
      throw new PipelineSyntaxError(`cannot load stage module '${node.name}': ${describeThrown(err)}`, text, node.pos);
    }
  }
  // Only the stages a program names are imported.
  const def = await loadBuiltinStage(node.name);
  if (!def) {
    const hint = isKeyword(node.name) ? `'${node.name}' is a keyword of the language here; see 'tunpipe --help'` : knownStagesHint();
    throw new PipelineSyntaxError(`unknown stage '${node.name}'`, text, node.pos, hint);
  }
  return def;
}

interface ResolveState {
  text: string;
  deferModules: boolean;
  /** Prefix of every label in this pipeline (`2:` when the text has several pipelines). */
  prefix: string;
}

/** Stands for a user's module that a worker thread imports: never created. */
function deferredDefinition(node: StageNode): PrimitiveStageDefinition {
  return {
    name: basename(node.name).replace(/\.[^.]*$/, ''),
    summary: `user stage ${node.name}`,
    args: [],
    keepsPackets: true,
    readsTime: true,
    create: () => {
      throw new Error(`stage module '${node.name}' was not loaded`);
    },
  };
}

function positionsOf(node: StageNode, def: StageDefinition): Record<string, number> {
  const out: Record<string, number> = {};
  const positional = def.args.filter((a) => a.positional);
  let next = 0;
  for (const a of node.args) {
    const name = a.key ?? positional[next++]?.name;
    if (name !== undefined) out[name] = a.pos;
  }
  return out;
}

async function resolveStageNode(node: StageNode, text: string, out: ResolvedStage[], depth: number, prefix: string, deferModules = false): Promise<void> {
  if (deferModules && isPathName(node.name)) {
    const path = resolvePath(node.name);
    if (!existsSync(path)) throw new PipelineSyntaxError(`stage module '${node.name}' not found (looked for ${path})`, text, node.pos);
    const def = deferredDefinition(node);
    out.push({ def, args: {}, label: `${prefix}${def.name}`, module: { url: pathToFileURL(path).href, node } });
    return;
  }
  const def = await definitionFor(node, text);
  const args = bindArgs(def, node, text);
  if (isCompound(def)) {
    if (depth > 8) throw new PipelineSyntaxError(`stage '${def.name}' expands into itself`, text, node.pos);
    // A compound's own text is ours, so an error inside it is a bug in tunpipe; report it at the name.
    const inner = parsePipeline(def.expand);
    const before = out.length;
    for (const n of inner) await resolveStageNode(n, def.expand, out, depth + 1, '');
    for (let i = before; i < out.length; i++) out[i].label = `${prefix}${def.name}/${out[i].label}`;
    return;
  }
  out.push({ def, args, label: `${prefix}${def.name}`, argPos: positionsOf(node, def) });
}

async function resolveElements(nodes: ElementNode[], st: ResolveState, labelPrefix: string, inBranch: boolean): Promise<ResolvedBranch & { source: ResolvedPipeline['source'] }> {
  const elements: ResolvedElement[] = [];
  let source: ResolvedPipeline['source'] = null;
  let sink: SinkSpec | null = null;
  for (const node of nodes) {
    if (node.kind === 'from') source = { port: node.port, pos: node.portPos };
    else if (node.kind === 'to') sink = { kind: 'to', port: node.port, pos: node.portPos };
    else if (node.kind === 'drop') sink = { kind: 'drop', pos: node.pos };
    else if (node.kind === 'tee') {
      const label = `${labelPrefix}tee`;
      const branch = await resolveElements(node.branch.elements, st, `${label}/`, true);
      elements.push({ kind: 'tee', branch, pos: node.pos, label });
    } else {
      const stages: ResolvedStage[] = [];
      await resolveStageNode(node.stage, st.text, stages, 0, labelPrefix, st.deferModules);
      const orElse = node.orElse ? await resolveElements(node.orElse.elements, st, `${labelPrefix}${node.stage.name}/else/`, true) : undefined;
      for (const stage of stages) elements.push(orElse ? { kind: 'stage', stage, orElse, pos: node.stage.pos } : { kind: 'stage', stage, pos: node.stage.pos });
    }
  }
  const endPos = nodes.length ? (nodes[nodes.length - 1] as { pos: number }).pos : 0;
  const label = sink?.kind === 'drop' ? `${labelPrefix}drop` : `${labelPrefix}(end)`;
  return { elements, sink: sink ?? { kind: inBranch ? 'end' : 'default', pos: endPos }, label, source };
}

/**
 * Parses and resolves pipeline text with its branches and ports. Throws PipelineSyntaxError for anything
 * wrong in it. `deferModules`: users' modules are found but not imported (see ResolvedStage.module).
 */
export async function resolveProgram(text: string, options: { deferModules?: boolean } = {}): Promise<ResolvedProgram> {
  const parsed = parseProgram(text);
  const pipelines: ResolvedPipeline[] = [];
  for (let i = 0; i < parsed.length; i++) {
    const prefix = parsed.length > 1 ? `${i + 1}:` : '';
    const r = await resolveElements(parsed[i].elements, { text, prefix, deferModules: options.deferModules ?? false }, prefix, false);
    pipelines.push({ ...r, pos: parsed[i].pos });
  }
  return { text, pipelines };
}

/** Every stage of some pipelines, branches included, in the order they are written. */
function stagesOf(pipelines: readonly ResolvedBranch[]): ResolvedStage[] {
  const out: ResolvedStage[] = [];
  const seen = new Set<ResolvedBranch>();
  const walk = (b: ResolvedBranch) => {
    if (seen.has(b)) return;
    seen.add(b);
    for (const e of b.elements) {
      if (e.kind === 'tee') walk(e.branch);
      else {
        out.push(e.stage);
        if (e.orElse) walk(e.orElse);
      }
    }
  };
  pipelines.forEach(walk);
  return out;
}

/** Every stage of a program, branches included, in the order they are written. */
export function programStages(program: ResolvedProgram): ResolvedStage[] {
  return stagesOf(program.pipelines);
}

/** Every stage of one pipeline, its branches included. */
export function pipelineStages(pipeline: ResolvedPipeline): ResolvedStage[] {
  return stagesOf([pipeline]);
}

/** True when the program is one straight pipeline of stages: no branches, ports or sinks. */
export function isStraightLine(program: ResolvedProgram): boolean {
  if (program.pipelines.length !== 1) return false;
  const [p] = program.pipelines;
  return p.source === null && p.sink.kind === 'default' && p.elements.every((e) => e.kind === 'stage' && !e.orElse);
}

/**
 * Parses and resolves text that is one straight pipeline of stages (what the library's `pipeline: string`
 * took before branches existed). Throws PipelineSyntaxError for anything wrong in it, or for a graph.
 */
export async function resolvePipeline(text: string): Promise<ResolvedStage[]> {
  const program = await resolveProgram(text);
  if (!isStraightLine(program)) throw new PipelineSyntaxError('expected one straight pipeline of stages here (use resolveProgram for branches, ports and several pipelines)', text, 0);
  return programStages(program);
}

/** A stage as it crosses to a worker thread: a built-in by name, or a user's module by URL. */
interface StageSpec {
  label: string;
  args: StageArgs;
  argPos?: Record<string, number>;
  builtin?: string;
  module?: { url: string; node: StageNode };
}

/**
 * A program in a form that can be posted to a worker thread (structured clone keeps shared branches
 * shared): definitions are replaced by what names them.
 */
export type ProgramSpec = { text: string; pipelines: unknown[] };

function mapProgram<A, B>(pipelines: unknown[], stage: (s: A) => B): unknown[] {
  const branches = new Map<unknown, unknown>();
  const branch = (b: { elements: unknown[] } & Record<string, unknown>): unknown => {
    const known = branches.get(b);
    if (known) return known;
    const copy: Record<string, unknown> = { ...b };
    branches.set(b, copy);
    copy.elements = b.elements.map((e) => {
      const el = e as Record<string, unknown>;
      if (el.kind === 'tee') return { ...el, branch: branch(el.branch as never) };
      const out: Record<string, unknown> = { ...el, stage: stage(el.stage as A) };
      if (el.orElse) out.orElse = branch(el.orElse as never);
      return out;
    });
    return copy;
  };
  return pipelines.map((p) => branch(p as never));
}

/** A resolved program as it is posted to a worker thread. */
export function programSpec(program: ResolvedProgram): ProgramSpec {
  return {
    text: program.text,
    pipelines: mapProgram<ResolvedStage, StageSpec>(program.pipelines, (s) =>
      s.module ? { label: s.label, args: s.args, module: s.module } : { label: s.label, args: s.args, argPos: s.argPos, builtin: s.def.name },
    ),
  };
}

/**
 * The program again from its spec, in a worker thread: built-ins looked up, users' modules imported (the
 * only time they are) and their arguments bound. Throws PipelineSyntaxError like resolveProgram.
 */
export async function reviveProgram(spec: ProgramSpec): Promise<ResolvedProgram> {
  const modules = new Map<string, StageDefinition>();
  const specs: StageSpec[] = [];
  mapProgram<StageSpec, null>(spec.pipelines, (s) => (specs.push(s), null));
  for (const s of specs) {
    if (!s.module || modules.has(s.module.url)) continue;
    try {
      modules.set(s.module.url, await loadUserModule(s.module.url, s.module.node.name));
    } catch (err) {
      throw new PipelineSyntaxError(`cannot load stage module '${s.module.node.name}': ${describeThrown(err)}`, spec.text, s.module.node.pos);
    }
  }
  const builtins = new Map<string, StageDefinition | undefined>();
  for (const s of specs) if (s.builtin !== undefined && !builtins.has(s.builtin)) builtins.set(s.builtin, await loadBuiltinStage(s.builtin));
  const pipelines = mapProgram<StageSpec, ResolvedStage>(spec.pipelines, (s) => {
    if (s.module) {
      const def = modules.get(s.module.url) as PrimitiveStageDefinition;
      const args = bindArgs(def, s.module.node, spec.text);
      return { def, args, label: s.label.replace(/[^/:]*$/, def.name), argPos: positionsOf(s.module.node, def) };
    }
    const def = builtins.get(s.builtin!);
    if (!def || isCompound(def)) throw new Error(`internal: no primitive stage '${s.builtin}'`);
    return { def, args: s.args, label: s.label, argPos: s.argPos };
  });
  return { text: spec.text, pipelines: pipelines as ResolvedPipeline[] };
}
