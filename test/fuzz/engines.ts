/**
 * Drives tunpipe's fused Engine with fuzz cases the way a device would (batches, endBatch after each, close
 * at the end) and checks what must hold for any stage after every single packet: no exception escapes, no
 * built-in stage throws (the engine would count an "error:" drop), in = out + dropped + held, every drop has
 * a reason, and a parsed view stays inside its buffer.
 */
import { Engine } from '../../src/pipeline/engine.js';
import { Packet } from '../../src/packet/packet.js';
import type { ResolvedStage } from '../../src/pipeline/resolve.js';
import type { StageStats } from '../../src/pipeline/stage.js';
import type { FuzzCase } from './generate.js';
import type { Findings } from './findings.js';
import type { Rng } from './rng.js';

export interface DriveOptions {
  /** Names the engine in findings ("stage pcap", "echo pipeline", ...). */
  where: string;
  stages: ResolvedStage[];
  cases: FuzzCase[];
  rng: Rng;
  findings: Findings;
  /** Case ids for findings ("round 12 #7"). */
  caseId: (index: number) => string;
  /** Called after each input with the packets that left the last stage while it was pushed. */
  onOutputs?: (index: number, input: FuzzCase, outputs: Packet[]) => void;
}

/** Why the counters of one stage are inconsistent, or null. */
export function countersProblem(s: StageStats): string | null {
  if (s.packetsIn !== s.packetsOut + s.dropped + s.held) {
    return `in ${s.packetsIn} != out ${s.packetsOut} + dropped ${s.dropped} + held ${s.held}`;
  }
  let sum = 0;
  for (const [reason, n] of s.reasons) {
    if (typeof reason !== 'string' || reason.trim() === '') return `a drop with an empty reason (${JSON.stringify(reason)})`;
    sum += n;
  }
  if (sum !== s.dropped) return `${s.dropped} dropped but the reasons add up to ${sum}`;
  return null;
}

function errorDrops(s: StageStats): number {
  let n = 0;
  for (const [reason, k] of s.reasons) if (reason.startsWith('error:')) n += k;
  return n;
}

function viewProblem(p: Packet): string | null {
  if (!(p instanceof Packet) || !Buffer.isBuffer(p.data)) return 'the sink got something that is not a Packet with a Buffer';
  if (p.version === 0) return null;
  if (!(p.l3 >= 0 && p.l3 <= p.l4 && p.l4 <= p.end && p.end <= p.data.length)) {
    return `parsed view out of bounds: l3 ${p.l3}, l4 ${p.l4}, end ${p.end}, buffer ${p.data.length}`;
  }
  return null;
}

/**
 * Runs `cases` through a new Engine made of `stages`. Returns the engine (closed) for counter inspection,
 * or null when it could not even be created (already reported).
 */
export async function driveEngine(o: DriveOptions): Promise<Engine | null> {
  const { findings, where } = o;
  let outputs: Packet[] = [];
  let engine: Engine;
  try {
    engine = new Engine(o.stages, {
      sink: (p) => void outputs.push(p),
      // Throws are caught per packet below (as "error:" drops); other warnings are not failures.
      warn: () => {},
      onFail: (err) => findings.add('a built-in stage stopped the pipeline', { where, detail: err.message }),
    });
  } catch (err) {
    findings.add('creating the engine threw', { where, detail: (err as Error).stack ?? String(err) });
    return null;
  }
  const errorsSeen = engine.stats.map(() => 0);
  const droppedSeen = engine.stats.map(() => 0);
  let i = 0;
  while (i < o.cases.length) {
    const batchEnd = Math.min(o.cases.length, i + o.rng.range(1, 32));
    for (; i < batchEnd; i++) {
      const c = o.cases[i];
      const p = new Packet(Buffer.from(c.data));
      p.l3 = c.l3;
      try {
        engine.push(p);
      } catch (err) {
        findings.add('an exception escaped Engine.push', { where, detail: (err as Error).stack ?? String(err), caseId: `${o.caseId(i)} (${c.kind})`, packet: c.data });
      }
      const stats = engine.stats;
      for (let k = 0; k < stats.length; k++) {
        const s = stats[k];
        const bad = countersProblem(s);
        if (bad) findings.add(`counters do not add up in '${s.name}'`, { where, detail: bad, caseId: `${o.caseId(i)} (${c.kind})`, packet: c.data });
        if (s.dropped !== droppedSeen[k]) {
          droppedSeen[k] = s.dropped;
          const errs = errorDrops(s);
          if (errs !== errorsSeen[k]) {
            errorsSeen[k] = errs;
            const reason = [...s.reasons.keys()].filter((r) => r.startsWith('error:')).join('; ');
            findings.add(`stage '${s.name}' threw`, { where, detail: reason, caseId: `${o.caseId(i)} (${c.kind})`, packet: c.data });
          }
        }
      }
      for (const out of outputs) {
        const bad = viewProblem(out);
        if (bad) findings.add('bad packet left the pipeline', { where, detail: bad, caseId: `${o.caseId(i)} (${c.kind})`, packet: c.data });
      }
      o.onOutputs?.(i, c, outputs);
      outputs = [];
    }
    try {
      engine.endBatch();
    } catch (err) {
      findings.add('an exception escaped Engine.endBatch', { where, detail: (err as Error).stack ?? String(err) });
    }
  }
  try {
    const errors = await engine.close();
    for (const e of errors) findings.add('closing a stage failed', { where, detail: e.message });
  } catch (err) {
    findings.add('an exception escaped Engine.close', { where, detail: (err as Error).stack ?? String(err) });
  }
  for (const s of engine.stats) {
    const bad = countersProblem(s);
    if (bad) findings.add(`counters do not add up in '${s.name}' after close`, { where, detail: bad });
    findings.addDrops(s.name, s.reasons);
  }
  return engine;
}
