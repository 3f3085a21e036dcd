/**
 * Which port each pipeline of a program reads and where its output goes, checked before anything is
 * opened. Ports are the devices, by name, in the order they were given; offline there is one input (the
 * capture file read) and at most one output (the capture file written), and no names.
 *
 * The rules:
 * - with one device and no `from`, a pipeline reads that device; with several devices every pipeline
 *   names its source with `from NAME`; a device is read by one pipeline at most;
 * - a pipeline that names no sink writes back to the device it reads (what the echo needs), offline to
 *   `--write` (or nowhere); `to NAME` and `drop` say otherwise;
 * - a device that no pipeline reads is not read (the kernel drops what waits on it).
 */
import { PipelineSyntaxError } from './language.js';
import type { ResolvedProgram, ResolvedBranch } from './program.js';
import type { PortInfo } from './stage.js';

export interface Routing {
  /** Per port: the pipeline that reads it, or -1. */
  pipelineOf: number[];
  /** Per pipeline: the port its default sink writes to, or -1 (offline: `--write`, or discard). */
  defaultSink: number[];
  /** Pipelines whose output goes back, by default, to the device they read (see rereadWarnings). */
  writesBack: number[];
}

/** Every `to NAME` of a branch and the branches below it. */
function sinksOf(b: ResolvedBranch, out: { port: string; pos: number }[], seen = new Set<ResolvedBranch>()): void {
  if (seen.has(b)) return;
  seen.add(b);
  if (b.sink.kind === 'to') out.push({ port: b.sink.port, pos: b.sink.pos });
  for (const e of b.elements) {
    if (e.kind === 'tee') sinksOf(e.branch, out, seen);
    else if (e.orElse) sinksOf(e.orElse, out, seen);
  }
}

/**
 * Routes a program over ports named `ports` (devices), or offline (`ports` null). Throws a
 * PipelineSyntaxError at the offending name for an unknown device, a device read twice, a missing source.
 */
export function routeProgram(program: ResolvedProgram, ports: string[] | null): Routing {
  const text = program.text;
  const names = ports ?? [];
  const pipelineOf = names.map(() => -1);
  const defaultSink: number[] = [];
  const writesBack: number[] = [];
  const known = () => (names.length ? `the devices are ${names.join(', ')}` : 'offline there are no devices: the pipeline reads --read and writes --write');
  program.pipelines.forEach((pl, i) => {
    let source = -1;
    if (pl.source) {
      source = names.indexOf(pl.source.port);
      if (source < 0) throw new PipelineSyntaxError(`unknown device '${pl.source.port}' (${known()})`, text, pl.source.pos, ports ? 'open it with --dev NAME' : undefined);
      if (pipelineOf[source] >= 0) throw new PipelineSyntaxError(`device '${pl.source.port}' is read by pipeline ${pipelineOf[source] + 1} already: a device is read by one pipeline (use tee for a second path)`, text, pl.source.pos);
    } else if (ports !== null) {
      if (names.length > 1) throw new PipelineSyntaxError(`this pipeline reads no device: with several devices (${names.join(', ')}) start each pipeline with 'from NAME'`, text, pl.pos);
      source = 0;
      if (pipelineOf[0] >= 0) throw new PipelineSyntaxError(`device '${names[0]}' is read by pipeline ${pipelineOf[0] + 1} already: start this one with 'from NAME' of another device`, text, pl.pos);
    } else if (i > 0) {
      throw new PipelineSyntaxError('offline there is one input: write one pipeline (use tee for a second path)', text, pl.pos);
    }
    if (source >= 0) pipelineOf[source] = i;
    const sinks: { port: string; pos: number }[] = [];
    sinksOf(pl, sinks);
    for (const s of sinks) {
      if (!names.includes(s.port)) throw new PipelineSyntaxError(`unknown device '${s.port}' (${known()})`, text, s.pos, ports ? 'open it with --dev NAME' : undefined);
    }
    defaultSink.push(pl.sink.kind === 'default' && ports !== null ? source : -1);
    if (pl.sink.kind === 'default' && ports !== null) writesBack.push(i);
  });
  return { pipelineOf, defaultSink, writesBack };
}

/**
 * Warnings for pipelines that, with no sink named, would write what they read back onto their device
 * (no stage turns packets around): a capture-only run re-injecting every packet is never what was meant.
 */
export function rereadWarnings(program: ResolvedProgram, routing: Routing, ports: string[]): string[] {
  const out: string[] = [];
  for (const i of routing.writesBack) {
    const pl = program.pipelines[i];
    const turns = (b: ResolvedBranch): boolean => b.elements.some((e) => e.kind === 'stage' && (e.stage.def.turnsAround === true || e.stage.def.answersDirectly === true));
    if (turns(pl)) continue;
    const dev = ports[routing.defaultSink[i]];
    const which = program.pipelines.length > 1 ? `pipeline ${i + 1} ` : '';
    out.push(`${which}names no sink, so what leaves it is written back to ${dev}, and no stage in it turns packets around: end it with 'drop' to only look (capture, count), or with 'to ${dev}' to say that this is meant`);
  }
  return out;
}

/** What the stages of pipeline `i` see of its ports: the link type and the ports it reads and writes. */
export function portsOfPipeline(routing: Pick<Routing, 'pipelineOf' | 'defaultSink'>, ports: readonly PortInfo[], i: number): { linkType: number; input?: PortInfo; output?: PortInfo } {
  const source = routing.pipelineOf.indexOf(i);
  const out = routing.defaultSink[i];
  return { linkType: source >= 0 ? ports[source].linkType : 101, input: ports[source], output: out >= 0 ? ports[out] : undefined };
}
