/**
 * Where a pipeline that reads a device with offloads needs segments. Such a device hands over TCP and UDP
 * super-packets (up to 64 KiB behind one header, transport checksum partial); the stages that declare
 * `superPackets: true` take them as they are (parse, filter, pcap, delay, ...), and so does a device with
 * offloads. Every other stage, and a device without offloads, must get the segments a link would carry:
 * a `segment` stage (transforms/segment.ts) is put in front of the first of them on each path, once (what
 * leaves it has no super-packets). Pipelines that read a device without offloads, or a file, are unchanged.
 */
import segmentStage from '../../transforms/segment.js';
import type { ResolvedBranch, ResolvedElement, ResolvedPipeline, ResolvedProgram, SinkSpec } from './program.js';
import type { Routing } from './routing.js';
import type { PortInfo } from './stage.js';

/** The program with a `segment` stage wherever super-packets would reach what cannot take them. */
export function insertSegments(program: ResolvedProgram, routing: Pick<Routing, 'pipelineOf' | 'defaultSink'>, ports: readonly PortInfo[]): ResolvedProgram {
  if (!ports.some((p) => p.offload === true)) return program;
  const offloadAt = (port: string) => ports.find((p) => p.name === port)?.offload === true;
  const pipelines = program.pipelines.map((pl, i): ResolvedPipeline => {
    const source = routing.pipelineOf.indexOf(i);
    if (source < 0 || ports[source].offload !== true) return pl;
    const sinkTakes = (sink: SinkSpec): boolean => {
      if (sink.kind === 'to') return offloadAt(sink.port);
      if (sink.kind === 'default') return routing.defaultSink[i] < 0 || ports[routing.defaultSink[i]].offload === true;
      return true;
    };
    // A branch shared by several elements (a compound stage's parts share one else) is rewritten once: the
    // first element to reach it is the one nearest the source, so it sees super-packets if any does.
    const done = new Map<ResolvedBranch, ResolvedBranch>();
    const rewrite = <B extends ResolvedBranch>(b: B, superIn: boolean): B => {
      const known = done.get(b);
      if (known) return known as B;
      const copy: B = { ...b, elements: [] };
      done.set(b, copy);
      const labelPrefix = b.label.replace(/(\(end\)|drop)$/, '');
      const segmentHere = (pos: number): ResolvedElement => ({ kind: 'stage', stage: { def: segmentStage, args: {}, label: `${labelPrefix}segment` }, pos });
      let sup = superIn;
      for (const el of b.elements) {
        if (el.kind === 'tee') {
          copy.elements.push({ ...el, branch: rewrite(el.branch, sup) });
          continue;
        }
        const def = el.stage.def;
        if (sup && def.superPackets !== true) {
          copy.elements.push(segmentHere(el.pos));
          sup = false;
        }
        copy.elements.push(el.orElse ? { ...el, orElse: rewrite(el.orElse, sup) } : el);
        if (def === segmentStage) sup = false;
      }
      if (sup && !sinkTakes(b.sink)) copy.elements.push(segmentHere(b.sink.pos));
      return copy;
    };
    return rewrite(pl, true);
  });
  return { ...program, pipelines };
}
