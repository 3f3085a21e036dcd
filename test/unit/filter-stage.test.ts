/**
 * transforms/filter.ts: the stage passes what libpcap matches and drops the rest as "filtered out", with
 * or without parse, for the pipeline's link type; bad expressions are pipeline errors with libpcap's
 * message and a caret under the expression; show= prints the program once.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { checkStageArgs, resolvePipeline } from '../../src/pipeline/resolve.js';
import { PipelineSyntaxError } from '../../src/pipeline/language.js';
import { Engine } from '../../src/pipeline/engine.js';
import { Packet } from '../../src/packet/packet.js';
import { standaloneContext } from '../../src/pipeline/standalone.js';
import { TunpipeError } from '../../src/errors.js';
import filterStage, { FILTER_DROP } from '../../transforms/filter.js';
import { pcapFilter } from '../../src/library/stages.js';
import { echoRequest } from '../helpers/packets.js';
import { LibpcapInterpreter, compileExpression } from '../../src/filter/libpcap.js';
import { Rng } from '../fuzz/rng.js';
import { filterPacket } from '../fuzz/filter-corpus.js';

const ethernet = (payload: Buffer, type = 0x0800, dst = 'ff:ff:ff:ff:ff:ff'): Buffer =>
  Buffer.concat([Buffer.from(dst.split(':').map((x) => parseInt(x, 16))), Buffer.from('020000000002', 'hex'), Buffer.from([type >> 8, type & 0xff]), payload]);

/** Runs `text` over `packets` in the engine; returns what came out and the stats of the last stage. */
async function run(text: string, packets: Buffer[], linkType = 101) {
  const out: Buffer[] = [];
  const stages = await resolvePipeline(text);
  checkStageArgs(stages, text, linkType);
  const engine = new Engine(stages, { sink: (p) => out.push(p.data), linkType });
  for (const b of packets) {
    const p = new Packet(b);
    p.l3 = linkType === 1 ? 14 : 0;
    engine.push(p);
  }
  const stats = engine.stats.at(-1)!;
  await engine.close();
  return { out, stats };
}

describe('filter stage', () => {
  const fromPeer = echoRequest({ src: '198.18.0.2', dst: '198.18.0.1', seq: 1 });
  const fromOther = echoRequest({ src: '198.18.0.9', dst: '198.18.0.1', seq: 2 });

  test('passes matching packets unchanged and drops the rest as "filtered out"', async () => {
    const { out, stats } = await run("filter 'icmp and src host 198.18.0.2'", [fromPeer, fromOther, fromPeer]);
    assert.deepEqual(out, [fromPeer, fromPeer]);
    assert.deepEqual([stats.packetsIn, stats.packetsOut, stats.dropped], [3, 2, 1]);
    assert.deepEqual([...stats.reasons], [[FILTER_DROP.unmatched, 1]]);
  });

  test('gives the same verdict as libpcap with or without parse before it', async () => {
    const rng = new Rng('filter-stage');
    const packets = Array.from({ length: 400 }, () => filterPacket(rng, 101));
    const expr = 'udp and (port 53 or port 5353) and not src host 198.18.0.1';
    const oracle = new LibpcapInterpreter(compileExpression(expr));
    const alone = await run(`filter '${expr}'`, packets);
    assert.deepEqual(alone.out, packets.filter((p) => oracle.run(p) !== 0));
    assert.ok(alone.out.length > 5, 'some packets match');
    // After parse: the packets parse accepts, then the same verdicts.
    const parsed = await run(`parse | filter '${expr}'`, packets);
    assert.ok(parsed.out.every((p) => oracle.run(p) !== 0));
    assert.ok(parsed.out.length > 0);
  });

  test('compiles for the pipeline’s link type: Ethernet frames', async () => {
    const frames = [ethernet(fromPeer), ethernet(fromOther, 0x0800, '02:00:00:00:00:01'), ethernet(Buffer.alloc(28), 0x0806)];
    assert.deepEqual((await run("filter 'ether broadcast and icmp'", frames, 1)).out, [frames[0]]);
    assert.deepEqual((await run("filter 'arp'", frames, 1)).out, [frames[2]]);
    assert.deepEqual((await run("filter 'src host 198.18.0.9'", frames, 1)).out, [frames[1]]);
  });

  test('a bad expression is a pipeline error with libpcap’s message and a caret under it', async () => {
    const text = "parse | filter 'icmp and and src host 198.18.0.2' | checksum";
    const err = await resolvePipeline(text).catch((e: unknown) => e);
    assert.ok(err instanceof PipelineSyntaxError, String(err));
    assert.match(err.reason, /^filter expr: .*syntax error/);
    assert.equal(err.pos, text.indexOf("'"));
    assert.match(err.format(), /\n {2}parse \| filter 'icmp and and.*\n {17}\^/);
    await assert.rejects(resolvePipeline('filter'), /needs its argument EXPR/);
    await assert.rejects(resolvePipeline("filter 'ip' show=all"), /expected one of none, bpf, js/);
  });

  test('an expression for another link type: refused under a caret once the link type is known, at creation otherwise', async () => {
    const text = "filter 'ether host 02:00:00:00:00:01'";
    const stages = await resolvePipeline(text);
    assert.throws(
      () => checkStageArgs(stages, text, 101),
      (e: unknown) => e instanceof PipelineSyntaxError && /ethernet addresses supported only on .*\(compiling for RAW packets\)/.test(e.reason) && e.pos === text.indexOf("'"),
    );
    checkStageArgs(stages, text, 1);
    const [s] = stages;
    assert.throws(() => s.def.create(s.args, standaloneContext({ linkType: 101 })), (e: unknown) => e instanceof TunpipeError && /filter 'ether host.*ethernet addresses/.test(e.message));
  });

  test('show=bpf and show=js print the program once, on stderr', () => {
    const printed: string[] = [];
    const write = process.stderr.write;
    process.stderr.write = ((chunk: string) => void printed.push(String(chunk))) as unknown as typeof process.stderr.write;
    try {
      filterStage.create({ expr: 'icmp', show: 'bpf', optimize: true }, standaloneContext());
      filterStage.create({ expr: 'icmp', show: 'js', optimize: true }, standaloneContext());
      filterStage.create({ expr: 'icmp', show: 'none', optimize: true }, standaloneContext());
    } finally {
      process.stderr.write = write;
    }
    assert.equal(printed.length, 2);
    assert.match(printed[0], /^filter 'icmp' for RAW packets, 7 BPF instructions:\n\(000\) ldb {6}\[0\]\n/);
    assert.match(printed[1], /function bpf\(d, len, wirelen\)/);
  });

  test('optimize=false runs the unoptimized program, with the same verdicts', async () => {
    const packets = [fromPeer, fromOther, Buffer.alloc(3)];
    const a = await run("filter 'icmp and src host 198.18.0.2' optimize=false", packets);
    assert.deepEqual(a.out, [fromPeer]);
  });

  test('as an it-pipe transform', async () => {
    const out: Packet[] = [];
    for await (const p of pcapFilter('src host 198.18.0.9')([fromPeer, fromOther])) out.push(p);
    assert.deepEqual(out.map((p) => p.data), [fromOther]);
  });
});
