/**
 * Fuzz drivers for single stages: every built-in stage on its own (raw packets) and behind `parse`, with
 * random arguments within what it declares, checked with the invariants of ./engines.ts and the per-stage
 * properties of ./properties.ts (a lone pcap stage's file is compared with its input); and a random chain of
 * built-in stages, checked with the invariants only.
 */
import { join } from 'node:path';
import { builtinStages } from '../../src/pipeline/registry.js';
import { resolvePipeline, type ResolvedStage } from '../../src/pipeline/resolve.js';
import { isCompound, type ArgSpec, type PrimitiveStageDefinition, type StageArgs } from '../../src/pipeline/stage.js';
import type { Packet } from '../../src/packet/packet.js';
import type { Rng } from './rng.js';
import type { FuzzCase } from './generate.js';
import type { Findings } from './findings.js';
import { driveEngine } from './engines.js';
import { genericWhy } from './oracle.js';
import { checksumProblem, fragmentProblem, parseProblem, swapProblem } from './properties.js';
import { readPcapFile } from './pcapfile.js';
import { IP_EXPRESSIONS } from './filter-corpus.js';

/** What a driver gets for one round. */
export interface Round {
  /** The round's number, as findings name it. */
  index: number;
  /** The generated cases. */
  batch: FuzzCase[];
  /** Random choices of the drivers (batch sizes, stage arguments), derived from the round's seed. */
  rng: Rng;
  findings: Findings;
  /** A private directory for capture files. */
  dir: string;
  /** "round R #i": names case i in findings. */
  caseId: (i: number) => string;
}

/** Random arguments for a stage, within what it declares; a required file argument gets a temporary path. */
export function randomArgs(def: PrimitiveStageDefinition, rng: Rng, file: string): StageArgs {
  const out: StageArgs = {};
  const pickNumber = (a: ArgSpec) => rng.range(Math.ceil(a.min ?? 0), Math.floor(Math.min(a.max ?? 65535, 1 << 20)));
  for (const a of def.args) {
    if (def.name === 'filter' && a.name === 'expr') out[a.name] = rng.pick(IP_EXPRESSIONS);
    else if (def.name === 'filter' && a.name === 'show') out[a.name] = 'none'; // listings are for people, not for stderr here
    else if (a.type === 'string' && !a.choices && (a.required || a.name === 'file')) out[a.name] = file;
    else if (a.name === 'append') out[a.name] = false; // a fresh file every time, so that records can be checked
    else if (a.name === 'format') out[a.name] = 'pcap'; // the lone capture is checked as classic pcap
    else if (def.name === 'pcap' && ['size', 'time', 'files', 'limit'].includes(a.name)) continue; // one file (rotation: test/unit/rotation.test.ts)
    else if (rng.chance(0.5) && a.default !== undefined) out[a.name] = a.default;
    else if (a.choices) out[a.name] = rng.pick(a.choices);
    else if (a.type === 'number') out[a.name] = pickNumber(a);
    else if (a.type === 'boolean') out[a.name] = rng.chance(0.5);
    // Quantities with units arrive as plain numbers (ms, bytes, bits/s, a fraction): within their bounds.
    else if (a.type === 'probability') out[a.name] = Math.min(a.max ?? 1, rng.chance(0.3) ? rng.int(2) : rng.int(1001) / 1000);
    else if (a.type === 'duration' || a.type === 'size' || a.type === 'rate') out[a.name] = pickNumber(a);
    else out[a.name] = a.default;
  }
  return out;
}

export interface StageUnderTest {
  name: string;
  /** Fresh resolved stages with (random) arguments. */
  make: (rng: Rng, file: string) => ResolvedStage[];
}

export async function builtinsUnderTest(): Promise<{ each: StageUnderTest[]; primitives: PrimitiveStageDefinition[] }> {
  const each: StageUnderTest[] = [];
  const primitives: PrimitiveStageDefinition[] = [];
  for (const def of builtinStages()) {
    if (isCompound(def)) {
      const parts = await resolvePipeline(def.name);
      each.push({ name: def.name, make: () => parts.map((p) => ({ ...p })) });
    } else {
      primitives.push(def);
      each.push({ name: def.name, make: (rng, file) => [{ def, args: randomArgs(def, rng, file), label: def.name }] });
    }
  }
  return { each, primitives };
}

/** Checks the capture a lone `pcap` stage wrote against the inputs it was given. */
function checkCapture(file: string, stage: ResolvedStage, cases: FuzzCase[], packetsIn: number, findings: Findings, where: string): void {
  let cap;
  try {
    cap = readPcapFile(file);
  } catch (err) {
    findings.add('capture file unreadable', { where, detail: (err as Error).message });
    return;
  }
  if (cap.trailing !== 0) findings.add('capture file ends inside a record', { where, detail: `${cap.trailing} bytes after the last whole record` });
  if (cap.records.length !== packetsIn || packetsIn !== cases.length) {
    findings.add('capture holds a different number of records than packets given', { where, detail: `${cap.records.length} records, ${packetsIn} packets in, ${cases.length} cases` });
    return;
  }
  const snaplen = Number(stage.args.snaplen ?? 262144);
  for (let i = 0; i < cases.length; i++) {
    const want = cases[i].data.subarray(0, snaplen);
    const r = cap.records[i];
    if (!r.data.equals(want) || r.origLen !== cases[i].data.length) {
      findings.add('capture record differs from the packet', { where, detail: `record ${i}: ${r.data.length}/${r.origLen} bytes, packet ${cases[i].data.length} (snaplen ${snaplen})`, packet: cases[i].data });
      return;
    }
  }
}

/** Feeds the round to every built-in stage, alone and behind parse. Returns the packets pushed. */
export async function fuzzStages(r: Round, each: StageUnderTest[]): Promise<number> {
  const { batch, findings, caseId } = r;
  const file = join(r.dir, `capture-${r.index % 4}.pcap`);
  let packets = 0;
  for (const sut of each) {
    for (const behindParse of [false, true]) {
      const made = sut.make(r.rng, file);
      const stages = behindParse ? [...(await resolvePipeline('parse')), ...made] : made;
      const where = `stage ${sut.name}${behindParse ? ' behind parse' : ' alone'}`;
      const engine = await driveEngine({
        where,
        stages,
        cases: batch,
        rng: r.rng,
        findings,
        caseId,
        onOutputs: (i, c, outs: Packet[]) => {
          const input = c.data.subarray(c.l3);
          let bad: string | null = null;
          if (sut.name === 'parse' && !behindParse) bad = parseProblem(input, outs);
          else if (sut.name === 'checksum' && behindParse && made[0].args.mode !== 'incremental') bad = outs.map(checksumProblem).find((x) => x) ?? null;
          else if (sut.name === 'swap-addrs' && behindParse) bad = outs.map((p) => swapProblem(input, p)).find((x) => x) ?? null;
          else if (sut.name === 'fragment' && behindParse) bad = fragmentProblem(input, outs, Number(made[0].args.mtu));
          if (bad) findings.add(`${sut.name}: ${genericWhy(bad)}`, { where, detail: bad, caseId: `${caseId(i)} (${c.kind})`, packet: c.data });
        },
      });
      packets += batch.length;
      if (engine && sut.name === 'pcap' && !behindParse) checkCapture(file, made[0], batch, engine.stats[0].packetsIn, findings, where);
    }
  }
  return packets;
}

/** Feeds the round to a random chain of 1-5 built-in stages. Returns the packets pushed. */
export async function fuzzChain(r: Round, primitives: PrimitiveStageDefinition[]): Promise<number> {
  const n = r.rng.range(1, 5);
  const chain: ResolvedStage[] = [];
  for (let k = 0; k < n; k++) {
    const def = r.rng.pick(primitives);
    chain.push({ def, args: randomArgs(def, r.rng, join(r.dir, `chain-${k}.pcap`)), label: def.name });
  }
  await driveEngine({ where: `chain ${chain.map((s) => s.label).join(' | ')}`, stages: chain, cases: r.batch, rng: r.rng, findings: r.findings, caseId: r.caseId });
  return r.batch.length;
}
