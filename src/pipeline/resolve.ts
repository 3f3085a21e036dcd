/**
 * Turns parsed pipeline text into stage definitions with checked arguments: built-in names are looked up in
 * the registry, compound stages are flattened, and a name that is a path loads the user's module. Every
 * problem is a PipelineSyntaxError pointing at the offending text; nothing is created here.
 */
import { pathToFileURL } from 'node:url';
import { resolve as resolvePath } from 'node:path';
import { existsSync } from 'node:fs';
import { parsePipeline, PipelineSyntaxError, type ArgNode, type StageNode } from './language.js';
import { isCompound, stageUsage, type ArgSpec, type PrimitiveStageDefinition, type StageArgs, type StageDefinition } from './stage.js';
import { builtinStages, findStage } from './registry.js';
import { loadUserStage } from './user-stage.js';
import { parseDuration, parseProbability, parseRate, parseSize } from './units.js';

/** A stage ready to create: its definition, its checked arguments, and the label its counters print under. */
export interface ResolvedStage {
  def: PrimitiveStageDefinition;
  args: StageArgs;
  label: string;
}

function knownStagesHint(): string {
  const names = builtinStages().map((d) => d.name).sort();
  return `known stages: ${names.join(', ')}; or a path to your own module (./my-stage.mjs). See 'tunpipe --list'.`;
}

/** True when a stage name is to be loaded from a file rather than looked up. */
export function isPathName(name: string): boolean {
  return name.includes('/') || /\.(m|c)?[jt]s$/.test(name);
}

const QUANTITY = { duration: parseDuration, size: parseSize, rate: parseRate, probability: parseProbability } as const;

function convert(spec: ArgSpec, arg: ArgNode, text: string, stage: string): string | number | boolean {
  const where = `${stage} ${spec.name}`;
  if (spec.type === 'string') {
    if (spec.choices && !spec.choices.includes(arg.value)) {
      throw new PipelineSyntaxError(`${where}: expected one of ${spec.choices.join(', ')}, got '${arg.value}'`, text, arg.pos);
    }
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
    throw new PipelineSyntaxError(`${where}: ${n} is out of range ${spec.min ?? '-inf'}..${spec.max ?? 'inf'}`, text, arg.pos);
  }
  return n;
}

function usage(def: StageDefinition): string {
  return `usage: ${stageUsage(def)}`;
}

/**
 * Checks a stage's written arguments against what its definition declares, then with the definition's own
 * `checkArgs` (for packets of `linkType`, when known).
 */
export function bindArgs(def: StageDefinition, node: StageNode, text: string, linkType?: number): StageArgs {
  const out: StageArgs = {};
  const written = new Map<string, number>();
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
    written.set(spec.name, arg.pos);
  }
  for (const spec of def.args) {
    if (out[spec.name] !== undefined) continue;
    if (spec.required) throw new PipelineSyntaxError(`stage '${def.name}' needs its argument ${spec.name.toUpperCase()} (${spec.description})`, text, node.pos, usage(def));
    if (spec.default !== undefined) out[spec.name] = spec.default;
  }
  const problem = def.checkArgs?.(out, linkType);
  if (problem) throw new PipelineSyntaxError(`${def.name} ${problem.arg}: ${problem.message}`, text, written.get(problem.arg) ?? node.pos);
  return out;
}

async function definitionFor(node: StageNode, text: string): Promise<StageDefinition> {
  if (isPathName(node.name)) {
    const path = resolvePath(node.name);
    if (!existsSync(path)) throw new PipelineSyntaxError(`stage module '${node.name}' not found (looked for ${path})`, text, node.pos);
    try {
      return await loadUserStage(pathToFileURL(path).href, node.name);
    } catch (err) {
      throw new PipelineSyntaxError(`cannot load stage module '${node.name}': ${(err as Error).message}`, text, node.pos);
    }
  }
  const def = findStage(node.name);
  if (!def) throw new PipelineSyntaxError(`unknown stage '${node.name}'`, text, node.pos, knownStagesHint());
  return def;
}

async function resolveNodes(nodes: StageNode[], text: string, out: ResolvedStage[], depth: number, linkType?: number): Promise<void> {
  for (const node of nodes) {
    const def = await definitionFor(node, text);
    const args = bindArgs(def, node, text, linkType);
    if (isCompound(def)) {
      if (depth > 8) throw new PipelineSyntaxError(`stage '${def.name}' expands into itself`, text, node.pos);
      // A compound's own text is ours, so an error inside it is a bug in tunpipe; report it at the name.
      const inner = parsePipeline(def.expand);
      const before = out.length;
      await resolveNodes(inner, def.expand, out, depth + 1, linkType);
      for (let i = before; i < out.length; i++) out[i].label = `${def.name}/${out[i].label}`;
      continue;
    }
    out.push({ def, args, label: def.name });
  }
}

/** What the caller knows of the pipeline's packets when it resolves the text. */
export interface ResolveOptions {
  /** Link type of the packets entering the pipeline (101 RAW, 1 Ethernet), so stages can check for it. */
  linkType?: number;
}

/** Parses and resolves pipeline text. Throws PipelineSyntaxError for anything wrong in it. */
export async function resolvePipeline(text: string, options: ResolveOptions = {}): Promise<ResolvedStage[]> {
  const out: ResolvedStage[] = [];
  await resolveNodes(parsePipeline(text), text, out, 0, options.linkType);
  return out;
}
