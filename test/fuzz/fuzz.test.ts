/**
 * The fuzz harness in the normal suite: a short bounded run (≈3 s; TUNPIPE_FUZZ_SECONDS, TUNPIPE_FUZZ_SEED to
 * change), and checks that the harness itself catches what it is there to catch (broken echo pipelines, a
 * throwing stage), so that a clean run means something.
 */
import { before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { resolvePipeline, type ResolvedStage } from '../../src/pipeline/resolve.js';
import type { PrimitiveStageDefinition } from '../../src/pipeline/stage.js';
import { Packet } from '../../src/packet/packet.js';
import { StageStats } from '../../src/pipeline/stage.js';
import { countersProblem } from './engines.js';
import { checksumProblem, fragmentProblem, parseProblem, swapProblem } from './properties.js';
import { echoRequest, referenceChecksum } from '../helpers/packets.js';
import { runFuzz, type FuzzReport } from './session.js';
import { Findings, formatFindings } from './findings.js';
import { EchoModel, ipv4Header, judgeOutputs, replyProblem, type Ipv4View } from './oracle.js';
import { generateCases } from './generate.js';
import { Rng } from './rng.js';

const SECONDS = Number(process.env.TUNPIPE_FUZZ_SECONDS ?? 3);
const SEED = process.env.TUNPIPE_FUZZ_SEED ?? 'test-suite';

function categories(r: FuzzReport): string[] {
  return [...r.findings.categories.keys()];
}

/** A made-up stage, for pipelines the harness must find fault with. */
function customStage(name: string, process: (p: Packet) => Packet | string): ResolvedStage {
  const def: PrimitiveStageDefinition = { name, summary: name, args: [], create: () => ({ process }) };
  return { def, args: {}, label: name };
}

/** Runs only the echo drivers, briefly, on `stages`. */
function fuzzEcho(stages: () => Promise<ResolvedStage[]>, drivers: ('echo' | 'offline')[] = ['echo']): Promise<FuzzReport> {
  return runFuzz({ seed: 'harness-check', seconds: 5, maxCases: 800, drivers, echoStages: stages });
}

/** The reply the kernel would send, built by hand: type 0, TTL 64, addresses swapped, checksums redone. */
function handMadeReply(request: Buffer): Buffer {
  const r = Buffer.from(request);
  const ihl = (r[0] & 15) * 4;
  r[8] = 64;
  r[6] &= ~0x40; // DF clear, as Linux sends its replies
  request.copy(r, 12, 16, 20);
  request.copy(r, 16, 12, 16);
  r.writeUInt16BE(0, 10);
  r.writeUInt16BE(referenceChecksum(r.subarray(0, ihl)), 10);
  r[ihl] = 0;
  r.writeUInt16BE(0, ihl + 2);
  r.writeUInt16BE(referenceChecksum(r.subarray(ihl)), ihl + 2);
  return r;
}

/**
 * One bounded run, its findings split by what they break, so that each property passes or fails on its own.
 * Every category the harness can report falls in exactly one group (the last one catches the rest).
 */
const GROUPS: [string, RegExp][] = [
  ['no exception escapes and no built-in stage throws', /exception|threw|stopped the pipeline|creating the engine|closing a stage|harness|runPipeline threw|stopped with an error/],
  ['per stage, in = out + dropped + held, and every drop has a reason', /^counters do not add up/],
  ['single stages do what they say (parse, checksum, swap-addrs, fragment, pcap records)', /^(parse|checksum|swap-addrs|fragment): |^capture |^bad packet left/],
  ['every packet leaving the echo pipeline is a valid echo reply to an input', /^invalid reply|answers no echo request|more than one packet|^reply fragments|^a reply left `fragment`|^offline output/],
  ['the echo pipeline answers exactly where the kernel would', /^answered where the kernel does not|^not answered/],
];

describe(`fuzz: built-in stages and the echo pipeline (${SECONDS} s, seed ${SEED})`, () => {
  let report: FuzzReport;
  before(async () => {
    report = await runFuzz({ seed: SEED, seconds: SECONDS });
  }, { timeout: (SECONDS + 60) * 1000 });

  function assertNone(pattern: RegExp | null): void {
    const f = new Findings();
    for (const [category, c] of report.findings.categories) {
      const matched = pattern ? pattern.test(category) : !GROUPS.some(([, re]) => re.test(category));
      if (matched) for (const e of c.examples) f.add(category, e);
      if (matched) f.categories.get(category)!.count = c.count;
    }
    assert.equal(f.count, 0, `\n${formatFindings(f, SEED)}`);
  }

  it('tried enough cases to mean something', () => {
    assert.ok(report.cases > 1000, `only ${report.cases} cases in ${report.seconds} s`);
  });
  for (const [title, re] of GROUPS) it(title, () => assertNone(re));
  it('nothing else was found', () => assertNone(null));
});

describe('fuzz: the harness catches what it looks for', () => {
  it('generates the same cases from the same seed', () => {
    const a = generateCases(new Rng('same'), 300);
    const b = generateCases(new Rng('same'), 300);
    assert.deepEqual(a.map((c) => c.data.toString('hex')), b.map((c) => c.data.toString('hex')));
    assert.notDeepEqual(a.map((c) => c.data.toString('hex')), generateCases(new Rng('other'), 300).map((c) => c.data.toString('hex')));
  });

  it('the model answers a valid request and drops the broken ones', () => {
    const model = new EchoModel(true);
    const ok = echoRequest({ seq: 7 });
    assert.equal(model.input(ok).answer, 'must');
    const badSum = Buffer.from(ok);
    badSum[30] ^= 0x40;
    assert.equal(model.input(badSum).answer, 'never');
    assert.equal(model.input(echoRequest({ dst: '224.0.0.1' })).answer, 'never');
    assert.equal(model.input(echoRequest({ src: '0.0.0.0' })).answer, 'never');
    assert.equal(model.input(echoRequest({ type: 0 })).answer, 'never');
    assert.equal(model.input(echoRequest({ options: Buffer.from([7, 7, 4, 0, 0, 0, 0, 0]) })).answer, 'must');
    assert.equal(model.input(echoRequest({ options: Buffer.from([7, 9, 4, 0, 0, 0, 0, 0]) })).answer, 'never', 'record route longer than the options');
    assert.equal(model.input(echoRequest({ frag: 0x2000 })).answer, 'never', 'first fragment alone');
  });

  it('the reply check accepts the kernel\'s reply and rejects each kind of mistake', () => {
    const req = echoRequest({ id: 9, seq: 3 });
    const reply = handMadeReply(req);
    assert.equal(replyProblem(reply, req), null);
    assert.deepEqual(judgeOutputs(new EchoModel(true).input(req), [reply]), []);
    const ttl = Buffer.from(reply);
    ttl[8] = 63;
    assert.match(replyProblem(ttl, req) ?? '', /TTL|checksum/);
    const sum = Buffer.from(reply);
    sum[reply.length - 1] ^= 1;
    assert.match(replyProblem(sum, req) ?? '', /ICMP checksum/);
    assert.match(replyProblem(req, req) ?? '', /DF|TTL|addresses|type/);
    const df = Buffer.from(reply);
    df[6] |= 0x40;
    df.writeUInt16BE(0, 10);
    df.writeUInt16BE(referenceChecksum(df.subarray(0, 20)), 10);
    assert.match(replyProblem(df, req) ?? '', /DF/);
    // All-zero reply (id 0, seq 0, no data): 0x0000 is not a valid checksum for it, 0xFFFF is.
    const zero = handMadeReply(echoRequest({ id: 0, seq: 0, payload: Buffer.alloc(0) }));
    assert.equal(zero.readUInt16BE(22), 0xffff);
    assert.equal(replyProblem(zero, echoRequest({ id: 0, seq: 0, payload: Buffer.alloc(0) })), null);
    zero.writeUInt16BE(0, 22);
    assert.match(replyProblem(zero, echoRequest({ id: 0, seq: 0, payload: Buffer.alloc(0) })) ?? '', /ICMP checksum/);
    const v = ipv4Header(reply) as Ipv4View;
    assert.equal(v.ttl, 64);
  });

  it('the single-stage properties and the counter check reject wrong results', () => {
    const req = echoRequest({ seq: 5, payload: Buffer.alloc(100, 7) });
    const parsed = (data: Buffer, l4 = 20, end = data.length): Packet => Object.assign(new Packet(data), { version: 4, l4, end, proto: data[9] });
    assert.equal(parseProblem(req, [parsed(Buffer.from(req))]), null);
    assert.match(parseProblem(req, []) ?? '', /dropped a packet whose IPv4 header is sound/);
    assert.match(parseProblem(req, [parsed(Buffer.from(req), 24)]) ?? '', /view/);
    const broken = Buffer.from(req);
    broken[10] ^= 1;
    assert.match(parseProblem(broken, [parsed(broken)]) ?? '', /passed a packet/);
    assert.equal(checksumProblem(parsed(Buffer.from(req))), null);
    assert.match(checksumProblem(parsed(broken)) ?? '', /header checksum/);
    const badIcmp = Buffer.from(req);
    badIcmp[40] ^= 1;
    assert.match(checksumProblem(parsed(badIcmp)) ?? '', /ICMP checksum/);
    assert.match(swapProblem(req, parsed(Buffer.from(req))) ?? '', /swapped/);
    // fragment mtu=68: a 128-byte datagram passed whole, or cut into pieces that do not fit, is wrong.
    const noDf = echoRequest({ frag: 0, payload: Buffer.alloc(100, 7) });
    assert.match(fragmentProblem(noDf, [parsed(Buffer.from(noDf))], 68) ?? '', /not marked as a fragment|over the MTU/);
    assert.match(fragmentProblem(noDf, [], 68) ?? '', /dropped/);
    assert.equal(fragmentProblem(req, [], 68), null, 'DF set: dropping is right');
    const stats = new StageStats('x');
    stats.packetsIn = 3;
    stats.packetsOut = 1;
    stats.drop('why');
    assert.match(countersProblem(stats) ?? '', /in 3 != out 1 \+ dropped 1/);
    stats.packetsOut = 2;
    assert.equal(countersProblem(stats), null);
    stats.reasons.set('why', 2);
    assert.match(countersProblem(stats) ?? '', /reasons add up/);
  });

  it('flags a pipeline that corrupts replies', async () => {
    const r = await fuzzEcho(async () => [...(await resolvePipeline('parse | icmp-echo | checksum')), customStage('corrupt', (p) => ((p.data[p.end - 1] ^= 1), p))], ['echo', 'offline']);
    assert.ok(categories(r).some((c) => c.startsWith('invalid reply')), categories(r).join('\n'));
    assert.ok([...r.findings.categories.values()].some((c) => c.examples.some((e) => e.where.startsWith('offline'))), 'the offline driver found it too');
  });

  it('flags replies with the wrong TTL or without swapped addresses', async () => {
    const ttl = await fuzzEcho(() => resolvePipeline('parse | reassemble | filter-icmp-echo | swap-addrs | to-reply ttl=63 | checksum'));
    assert.ok(categories(ttl).some((c) => /invalid reply: reply TTL/.test(c)), categories(ttl).join('\n'));
    const noSwap = await fuzzEcho(() => resolvePipeline('parse | reassemble | filter-icmp-echo | to-reply | checksum'));
    assert.ok(categories(noSwap).some((c) => /invalid reply: reply addresses/.test(c)), categories(noSwap).join('\n'));
  });

  it('flags a pipeline that answers what it must not, and one that answers nothing', async () => {
    const all = await fuzzEcho(() => resolvePipeline('parse | swap-addrs | to-reply | checksum'));
    assert.ok(categories(all).some((c) => c.startsWith('answered where the kernel does not')), categories(all).join('\n'));
    const none = await fuzzEcho(async () => [...(await resolvePipeline('parse')), customStage('drop-all', () => 'dropped')]);
    assert.ok(categories(none).includes('not answered: a valid echo request'), categories(none).join('\n'));
  });

  it('flags a stage that throws', async () => {
    let n = 0;
    const r = await fuzzEcho(async () => [...(await resolvePipeline('parse | icmp-echo')), customStage('thrower', (p) => { if (++n % 5 === 0) throw new Error('boom'); return p; }), ...(await resolvePipeline('checksum'))]);
    assert.ok(categories(r).includes("stage 'thrower' threw"), categories(r).join('\n'));
  });
});
