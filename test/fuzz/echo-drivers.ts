/**
 * Fuzz drivers for the echo pipeline: through the Engine (every other round followed by `fragment mtu=N`,
 * whose fragments are put back together before judging), and offline through runPipeline on a generated
 * pcap (RAW or Ethernet). Every input is judged against the model of ./oracle.ts: answered exactly where
 * the kernel answers, and every reply a valid echo reply to it.
 */
import { join } from 'node:path';
import type { ResolvedStage } from '../../src/pipeline/resolve.js';
import { runPipeline } from '../../src/pipeline/run.js';
import { transformOf } from '../../src/pipeline/transform.js';
import type { PrimitiveStageDefinition } from '../../src/pipeline/stage.js';
import type { Packet } from '../../src/packet/packet.js';
import type { Findings } from './findings.js';
import { countersProblem, driveEngine } from './engines.js';
import { EchoModel, ipv4Header, isFragment, judgeOutputs, looksLikeReplyTo, ReassemblyModel, type Expectation } from './oracle.js';
import { readPcapFile, writePcapFile } from './pcapfile.js';
import { ethernetHeaderFor } from './generate.js';
import { chain6, ReassemblyModel6 } from './oracle6.js';
import type { Round } from './stage-drivers.js';

const DF_CATEGORY = 'not answered: a request with DF longer than the `fragment` MTU (the reply keeps DF; Linux sends echo replies without DF and fragments them)';

/**
 * The datagrams that the packets leaving `... | fragment mtu=N` for one input make up: fragments are put
 * back together with the reference reassembly (each must fit the MTU); whole packets are taken as they are.
 */
function joinFragments(outs: Packet[], mtu: number, problem: (category: string, detail: string) => void): Uint8Array[] {
  const model = new ReassemblyModel();
  const model6 = new ReassemblyModel6();
  const datagrams: Uint8Array[] = [];
  for (const o of outs) {
    const d = o.data.subarray(o.l3);
    if (d.length > 0 && d[0] >> 4 === 6) {
      if (d.length > mtu) problem('a reply left `fragment` longer than the MTU', `${d.length} bytes, MTU ${mtu}`);
      const c = chain6(d);
      if (typeof c === 'string' || c.frag < 0) {
        datagrams.push(d);
        continue;
      }
      const done = model6.add(d, c);
      if (done) {
        if (done.uncertain) problem('reply fragments overlap or are not multiples of 8', `${outs.length} IPv6 fragments`);
        datagrams.push(done.datagram);
      }
      continue;
    }
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

/**
 * Feeds the round to the echo pipeline through the Engine; with `fragment` (MTU 576-9000) after it on odd
 * rounds when that stage exists. Returns the packets pushed.
 */
export async function fuzzEcho(r: Round, echo: ResolvedStage[], reassembles: boolean, fragmentDef: PrimitiveStageDefinition | undefined): Promise<number> {
  const { findings, caseId } = r;
  const model = new EchoModel(reassembles);
  const mtu = fragmentDef && r.index % 2 === 1 ? r.rng.range(576, 9000) : 0;
  const stages = echo.map((s) => ({ ...s }));
  if (mtu) stages.push({ def: fragmentDef!, args: { mtu }, label: 'fragment' });
  const where = `echo pipeline (Engine)${mtu ? ` | fragment mtu=${mtu}` : ''}`;
  await driveEngine({
    where,
    stages,
    cases: r.batch,
    rng: r.rng,
    findings,
    caseId,
    onOutputs: (i, c, outs) => {
      const id = `${caseId(i)} (${c.kind})`;
      const e = model.input(c.data.subarray(c.l3));
      const replies = mtu ? joinFragments(outs, mtu, (category, detail) => findings.add(category, { where, detail, caseId: id, packet: c.data })) : outs.map((o) => o.data.subarray(o.l3));
      for (const p of judgeOutputs(e, replies)) {
        // Name the cause when it is the request's DF bit, which the reply keeps (Linux clears it).
        const dfTooLong = mtu && replies.length === 0 && e.request !== null && e.request[0] >> 4 === 4 && e.request.readUInt16BE(6) & 0x4000 && e.request.length > mtu;
        findings.add(dfTooLong ? DF_CATEGORY : p.category, { where, detail: p.detail, caseId: id, packet: c.data });
      }
    },
  });
  return r.batch.length;
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
  if (request[0] >> 4 === 6) {
    const c = chain6(request);
    if (typeof c === 'string' || reply.length < 48 || reply[0] >> 4 !== 6) return false;
    const r = Buffer.from(reply);
    const q = Buffer.from(request);
    return r.subarray(8, 24).equals(q.subarray(24, 40)) && r.subarray(24, 40).equals(q.subarray(8, 24)) && r.readUInt32BE(44) === q.readUInt32BE(c.l4 + 4);
  }
  if (reply.length < 28 || reply[0] >> 4 !== 4) return false;
  const ri = (reply[0] & 15) * 4;
  const qi = (request[0] & 15) * 4;
  const b = Buffer.from(reply);
  const q = Buffer.from(request);
  return b.readUInt32BE(12) === q.readUInt32BE(16) && b.readUInt32BE(16) === q.readUInt32BE(12) && b.length >= ri + 8 && b.readUInt32BE(ri + 4) === q.readUInt32BE(qi + 4);
}

/** Feeds the round to the echo pipeline offline: a pcap in, runPipeline, the output pcap judged. */
export async function fuzzOffline(r: Round, echo: ResolvedStage[], ethernet: boolean, reassembles: boolean): Promise<number> {
  const { findings, caseId, rng, dir } = r;
  const cases = r.batch;
  const where = `offline runPipeline (${ethernet ? 'Ethernet' : 'RAW'} pcap)`;
  const used = ethernet ? cases.map((c) => (c.l3 === 14 ? c.data : Buffer.concat([ethernetHeaderFor(rng, c.data), c.data]))) : cases.filter((c) => c.l3 === 0).map((c) => c.data);
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

