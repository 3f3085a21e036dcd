/**
 * One fuzz run: rounds of generated cases, each round fed to
 * - every built-in stage on its own (raw packets) and behind `parse`, with random arguments (pcap to a
 *   temporary file, whose records are then checked against what went in);
 * - a random chain of built-in stages;
 * - the echo pipeline through the Engine, every input judged against the model in ./oracle.ts;
 * - every few rounds, the echo pipeline offline through runPipeline on a generated pcap (RAW and Ethernet).
 * The run stops after `seconds` (or `maxCases`) and returns what it found.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { builtinStages, findStage } from '../../src/pipeline/registry.js';
import { resolvePipeline, type ResolvedStage } from '../../src/pipeline/resolve.js';
import { runPipeline } from '../../src/pipeline/run.js';
import { transformOf } from '../../src/pipeline/transform.js';
import { isCompound, type ArgSpec, type PrimitiveStageDefinition, type StageArgs } from '../../src/pipeline/stage.js';
import type { Packet } from '../../src/packet/packet.js';
import { Rng } from './rng.js';
import { generateCases, type FuzzCase } from './generate.js';
import { Findings } from './findings.js';
import { countersProblem, driveEngine } from './engines.js';
import { EchoModel, ipv4Header, isFragment, judgeOutputs, looksLikeReplyTo, ReassemblyModel, type Expectation } from './oracle.js';
import { checksumProblem, fragmentProblem, parseProblem, swapProblem } from './properties.js';
import { readPcapFile, writePcapFile } from './pcapfile.js';

export const ECHO_PIPELINE = 'parse | icmp-echo | checksum';

export interface FuzzOptions {
  seed: string;
  /** Stop after this long. */
  seconds: number;
  /** Or after this many generated cases. */
  maxCases?: number;
  /** Cases per round. Default 128. */
  roundSize?: number;
  /** Progress lines (cases per second); default: none. */
  log?: (line: string) => void;
  /** The echo pipeline under test; default `parse | icmp-echo | checksum`. Tests inject broken ones. */
  echoStages?: () => Promise<ResolvedStage[]>;
  /** Which drivers run; default all. */
  drivers?: ReadonlyArray<'stages' | 'chain' | 'echo' | 'offline'>;
}

export interface FuzzReport {
  seed: string;
  cases: number;
  /** Packets pushed through engines, over all drivers. */
  packets: number;
  rounds: number;
  seconds: number;
  findings: Findings;
  /** Whether the echo pipeline reassembles (answering fragmented requests is then required). */
  reassembles: boolean;
}

/** Random arguments for a stage, within what it declares; a required file argument gets a temporary path. */
function randomArgs(def: PrimitiveStageDefinition, rng: Rng, file: string): StageArgs {
  const out: StageArgs = {};
  const pickNumber = (a: ArgSpec) => rng.range(Math.ceil(a.min ?? 0), Math.floor(Math.min(a.max ?? 65535, 1 << 20)));
  for (const a of def.args) {
    if (a.type === 'string' && !a.choices && (a.required || a.name === 'file')) out[a.name] = file;
    else if (a.name === 'append') out[a.name] = false; // a fresh file every time, so that records can be checked
    else if (rng.chance(0.5) && a.default !== undefined) out[a.name] = a.default;
    else if (a.choices) out[a.name] = rng.pick(a.choices);
    else if (a.type === 'number') out[a.name] = pickNumber(a);
    else if (a.type === 'boolean') out[a.name] = rng.chance(0.5);
    else out[a.name] = a.default;
  }
  return out;
}

interface StageUnderTest {
  name: string;
  /** Fresh resolved stages with (random) arguments. */
  make: (rng: Rng, file: string) => ResolvedStage[];
}

async function builtinsUnderTest(): Promise<{ each: StageUnderTest[]; primitives: PrimitiveStageDefinition[] }> {
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

/** Judges, in order, the replies an offline run wrote against its inputs. */
function judgeOffline(inputs: Uint8Array[], replies: Uint8Array[], reassembles: boolean, findings: Findings, where: string, caseId: (i: number) => string): void {
  const model = new EchoModel(reassembles);
  let j = 0;
  inputs.forEach((d, i) => {
    const e: Expectation = model.input(d);
    const next = replies[j];
    const matches = next !== undefined && e.request !== null && (e.weak ? looksLikeAnswerWeak(next, e.request) : looksLikeReplyTo(next, e.request));
    const problems = judgeOutputs(e, matches ? [next] : []);
    if (matches) j++;
    for (const p of problems) findings.add(p.category, { where, detail: p.detail, caseId: caseId(i), packet: Buffer.from(d) });
  });
  for (; j < replies.length; j++) {
    findings.add('a packet left the echo pipeline that answers no echo request', { where, detail: `output ${j} of ${replies.length} matches no input in order`, packet: Buffer.from(replies[j]) });
  }
}

/** Addresses swapped and identifier/sequence equal: enough to pair a reply with an ambiguous reassembly. */
function looksLikeAnswerWeak(reply: Uint8Array, request: Uint8Array): boolean {
  if (reply.length < 28 || reply[0] >> 4 !== 4) return false;
  const ri = (reply[0] & 15) * 4;
  const qi = (request[0] & 15) * 4;
  const b = Buffer.from(reply);
  const q = Buffer.from(request);
  return b.readUInt32BE(12) === q.readUInt32BE(16) && b.readUInt32BE(16) === q.readUInt32BE(12) && b.length >= ri + 8 && b.readUInt32BE(ri + 4) === q.readUInt32BE(qi + 4);
}

/**
 * The datagrams that the packets leaving `... | fragment mtu=N` for one input make up: fragments are put
 * back together with the reference reassembly (each must fit the MTU); whole packets are taken as they are.
 */
function joinFragments(outs: Packet[], mtu: number, problem: (category: string, detail: string) => void): Uint8Array[] {
  const model = new ReassemblyModel();
  const datagrams: Uint8Array[] = [];
  for (const o of outs) {
    const d = o.data.subarray(o.l3);
    const v = ipv4Header(d);
    if (typeof v === 'string') {
      datagrams.push(d);
      continue;
    }
    if (v.total > mtu) problem('a reply left `fragment` longer than the MTU', `${v.total} bytes, MTU ${mtu}`);
    if (!isFragment(v)) {
      datagrams.push(d);
      continue;
    }
    const done = model.add(d, v);
    if (done) {
      if (done.uncertain) problem('reply fragments overlap or are not multiples of 8', `${outs.length} fragments`);
      datagrams.push(done.datagram);
    }
  }
  if (outs.length && datagrams.length === 0) problem('reply fragments do not make up a whole datagram', `${outs.length} fragments`);
  return datagrams;
}

async function offlineRound(
  echo: ResolvedStage[],
  cases: FuzzCase[],
  ethernet: boolean,
  dir: string,
  reassembles: boolean,
  rng: Rng,
  findings: Findings,
  caseId: (i: number) => string,
): Promise<number> {
  const where = `offline runPipeline (${ethernet ? 'Ethernet' : 'RAW'} pcap)`;
  const used = ethernet ? cases.map((c) => (c.l3 === 14 ? c.data : Buffer.concat([rng.bytes(14), c.data]))) : cases.filter((c) => c.l3 === 0).map((c) => c.data);
  const input = join(dir, 'offline-in.pcap');
  const output = join(dir, 'offline-out.pcap');
  writePcapFile(input, used, ethernet ? 1 : 101);
  let result;
  try {
    result = await runPipeline({ pipeline: [transformOf(echo.map((s) => ({ ...s })))], read: input, write: output, warn: () => {} });
  } catch (err) {
    findings.add('runPipeline threw', { where, detail: (err as Error).stack ?? String(err) });
    return used.length;
  }
  if (result.error) findings.add('offline run stopped with an error', { where, detail: result.error.message });
  if (result.stoppedBy !== 'end') findings.add('offline run did not end at the end of its input', { where, detail: result.stoppedBy });
  if (result.packetsIn !== used.length) findings.add('offline run read a different number of packets than the file holds', { where, detail: `${result.packetsIn} read, ${used.length} in the file` });
  for (const s of result.stages) {
    const bad = countersProblem(s);
    if (bad) findings.add(`counters do not add up in '${s.name}'`, { where, detail: bad });
    for (const r of s.reasons.keys()) if (r.startsWith('error:')) findings.add(`stage '${s.name}' threw`, { where, detail: r });
    findings.addDrops(s.name, s.reasons);
  }
  const out = readPcapFile(output);
  if (out.trailing !== 0) findings.add('offline output ends inside a record', { where, detail: `${out.trailing} bytes` });
  if (out.records.length !== result.packetsOut) {
    findings.add('offline output holds a different number of records than reported written', { where, detail: `${out.records.length} records, packetsOut ${result.packetsOut}` });
  }
  const l3 = ethernet ? 14 : 0;
  judgeOffline(
    used.map((d) => d.subarray(l3)),
    out.records.map((r) => r.data.subarray(l3)),
    reassembles,
    findings,
    where,
    caseId,
  );
  return used.length;
}

/** Runs the fuzzer; never throws for what it finds (that is in the report). */
export async function runFuzz(options: FuzzOptions): Promise<FuzzReport> {
  const findings = new Findings();
  const rng = new Rng(options.seed);
  const drivers = new Set(options.drivers ?? ['stages', 'chain', 'echo', 'offline']);
  const roundSize = options.roundSize ?? 128;
  const dir = mkdtempSync(join(tmpdir(), 'tunpipe-fuzz-'));
  const { each, primitives } = await builtinsUnderTest();
  const echoStages = options.echoStages ?? (() => resolvePipeline(ECHO_PIPELINE));
  const echoTemplate = await echoStages();
  const reassembles = echoTemplate.some((s) => s.def.name === 'reassemble');
  const fragmentDef = findStage('fragment') as PrimitiveStageDefinition | undefined;
  const started = Date.now();
  const deadline = started + options.seconds * 1000;
  let cases = 0;
  let packets = 0;
  let rounds = 0;
  let lastLog = started;
  let lastLogCases = 0;
  try {
    while (Date.now() < deadline && (options.maxCases === undefined || cases < options.maxCases)) {
      const round = rounds++;
      const r = rng.fork(`round ${round}`);
      const batch = generateCases(r, roundSize);
      const caseId = (i: number) => `round ${round} #${i}`;
      const driveRng = r.fork('drive');
      const file = join(dir, `capture-${round % 4}.pcap`);

      if (drivers.has('stages')) {
        for (const sut of each) {
          for (const behindParse of [false, true]) {
            const made = sut.make(driveRng, file);
            const stages = behindParse ? [...(await resolvePipeline('parse')), ...made] : made;
            const where = `stage ${sut.name}${behindParse ? ' behind parse' : ' alone'}`;
            const engine = await driveEngine({
              where,
              stages,
              cases: batch,
              rng: driveRng,
              findings,
              caseId,
              onOutputs: (i, c, outs: Packet[]) => {
                const input = c.data.subarray(c.l3);
                let bad: string | null = null;
                if (sut.name === 'parse' && !behindParse) bad = parseProblem(input, outs);
                else if (sut.name === 'checksum' && behindParse && made[0].args.mode !== 'incremental') bad = outs.map(checksumProblem).find((x) => x) ?? null;
                else if (sut.name === 'swap-addrs' && behindParse) bad = outs.map((p) => swapProblem(input, p)).find((x) => x) ?? null;
                else if (sut.name === 'fragment' && behindParse) bad = fragmentProblem(input, outs, Number(made[0].args.mtu));
                if (bad) findings.add(`${sut.name}: ${bad}`, { where, detail: bad, caseId: `${caseId(i)} (${c.kind})`, packet: c.data });
              },
            });
            packets += batch.length;
            if (engine && sut.name === 'pcap' && !behindParse) checkCapture(file, made[0], batch, engine.stats[0].packetsIn, findings, where);
          }
        }
      }

      if (drivers.has('chain')) {
        const n = driveRng.range(1, 5);
        const chain: ResolvedStage[] = [];
        for (let k = 0; k < n; k++) {
          const def = driveRng.pick(primitives);
          chain.push({ def, args: randomArgs(def, driveRng, join(dir, `chain-${k}.pcap`)), label: def.name });
        }
        await driveEngine({ where: `chain ${chain.map((s) => s.label).join(' | ')}`, stages: chain, cases: batch, rng: driveRng, findings, caseId });
        packets += batch.length;
      }

      if (drivers.has('echo')) {
        const model = new EchoModel(reassembles);
        // Every other round the replies also go through `fragment mtu=N`, as on a device with that MTU.
        const mtu = fragmentDef && round % 2 === 1 ? driveRng.range(576, 9000) : 0;
        const stages = echoTemplate.map((s) => ({ ...s }));
        if (mtu) stages.push({ def: fragmentDef!, args: { mtu }, label: 'fragment' });
        const where = `echo pipeline (Engine)${mtu ? ` | fragment mtu=${mtu}` : ''}`;
        await driveEngine({
          where,
          stages,
          cases: batch,
          rng: driveRng,
          findings,
          caseId,
          onOutputs: (i, c, outs) => {
            const e = model.input(c.data.subarray(c.l3));
            const replies = mtu ? joinFragments(outs, mtu, (category, detail) => findings.add(category, { where, detail, caseId: `${caseId(i)} (${c.kind})`, packet: c.data })) : outs.map((o) => o.data.subarray(o.l3));
            for (const p of judgeOutputs(e, replies)) {
              // Name the cause when it is the request's DF bit, which the reply keeps (Linux clears it).
              const dfTooLong = mtu && replies.length === 0 && e.request !== null && e.request.readUInt16BE(6) & 0x4000 && e.request.length > mtu;
              const category = dfTooLong ? 'not answered: a request with DF longer than the `fragment` MTU (the reply keeps DF; Linux sends echo replies without DF and fragments them)' : p.category;
              findings.add(category, { where, detail: p.detail, caseId: `${caseId(i)} (${c.kind})`, packet: c.data });
            }
          },
        });
        packets += batch.length;
      }

      if (drivers.has('offline') && round % 8 === 0) {
        packets += await offlineRound(echoTemplate, batch, round % 16 === 8, dir, reassembles, driveRng, findings, caseId);
      }

      cases += batch.length;
      const now = Date.now();
      if (options.log && now - lastLog >= 1000) {
        options.log(`fuzz: ${cases} cases, ${Math.round(((cases - lastLogCases) * 1000) / (now - lastLog))}/s, ${findings.count} findings`);
        lastLog = now;
        lastLogCases = cases;
      }
    }
  } catch (err) {
    findings.add('the fuzz harness itself failed (an exception outside any check)', { where: 'harness', detail: (err as Error).stack ?? String(err) });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  return { seed: options.seed, cases, packets, rounds, seconds: (Date.now() - started) / 1000, findings, reassembles };
}
