/** src/pipeline/resolve.ts (and the user-module loader behind it): names, arguments, compounds, user modules. */
import { standaloneContext } from '../../src/pipeline/standalone.js';
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parsePipeline, PipelineSyntaxError } from '../../src/pipeline/language.js';
import { bindArgs, resolvePipeline } from '../../src/pipeline/resolve.js';
import { Engine } from '../../src/pipeline/engine.js';
import { findStage } from '../../src/pipeline/registry.js';
import { Packet } from '../../src/packet/packet.js';
import type { StageContext, StageResult } from '../../src/pipeline/stage.js';

/** Resolves `text` expecting a PipelineSyntaxError at `pos` whose message matches `message`. */
async function rejectsAt(text: string, pos: number, message: RegExp): Promise<PipelineSyntaxError> {
  let caught: unknown;
  try {
    await resolvePipeline(text);
  } catch (err) {
    caught = err;
  }
  assert.ok(caught instanceof PipelineSyntaxError, `expected a PipelineSyntaxError for ${JSON.stringify(text)}, got ${caught}`);
  assert.equal(caught.pos, pos, `pos for ${JSON.stringify(text)}: ${caught.message}`);
  assert.match(caught.message, message);
  return caught;
}

const ctx: StageContext = standaloneContext({ name: 'test' });

test('built-in stages resolve with their defaults', async () => {
  const stages = await resolvePipeline('parse | checksum | to-reply | pcap /tmp/never-created.pcap');
  assert.deepEqual(
    stages.map((s) => s.label),
    ['parse', 'checksum', 'to-reply', 'pcap'],
  );
  assert.deepEqual(stages[1].args, { mode: 'auto' });
  assert.deepEqual(stages[2].args, { ttl: 64 });
  assert.deepEqual(stages[3].args, { file: '/tmp/never-created.pcap', format: 'auto', nanos: false, snaplen: 262144, append: false, mode: '600', onerror: 'stop' });
});

test('a compound stage expands into its parts, labelled under its name', async () => {
  const stages = await resolvePipeline('parse | icmp-echo | checksum');
  assert.deepEqual(
    stages.map((s) => s.label),
    ['parse', 'icmp-echo/reassemble', 'icmp-echo/filter-icmp-echo', 'icmp-echo/swap-addrs', 'icmp-echo/to-reply', 'checksum'],
  );
  assert.deepEqual(
    stages.map((s) => s.def.name),
    ['parse', 'reassemble', 'filter-icmp-echo', 'swap-addrs', 'to-reply', 'checksum'],
  );
  await rejectsAt('parse | icmp-echo now', 18, /takes no more positional arguments, found 'now'/);
});

test('unknown stage: error at its name, and the hint lists the known stages', async () => {
  const err = await rejectsAt('parse | icmp-ehco | checksum', 8, /unknown stage 'icmp-ehco'/);
  for (const name of ['checksum', 'filter-icmp-echo', 'fragment', 'icmp-echo', 'parse', 'pcap', 'reassemble', 'swap-addrs', 'to-reply']) {
    assert.ok(err.hint?.includes(name), `hint names ${name}: ${err.hint}`);
  }
  assert.ok(err.format().includes(err.hint!), 'format() prints the hint');
});

test('argument errors point at the argument', async () => {
  await rejectsAt('checksum bogus=1', 9, /stage 'checksum' has no argument 'bogus' \(it takes: mode\)/);
  await rejectsAt('parse x=1', 6, /stage 'parse' has no argument 'x' \(it takes: none\)/);
  await rejectsAt('parse | parse extra', 14, /stage 'parse' takes no more positional arguments, found 'extra'/);
  await rejectsAt('pcap a.pcap b.pcap', 12, /takes no more positional arguments, found 'b.pcap'/);
  await rejectsAt('pcap a.pcap file=b.pcap', 12, /argument 'file' given twice/);
  await rejectsAt('checksum mode=bogus', 9, /checksum mode: expected one of auto, full, incremental, got 'bogus'/);
  await rejectsAt('to-reply ttl=abc', 9, /to-reply ttl: expected a number, got 'abc'/);
  await rejectsAt('to-reply ttl=', 9, /expected a number, got ''/);
  await rejectsAt('to-reply ttl=0', 9, /to-reply ttl: 0 is out of range 1\.\.255/);
  // A range is said in the units the argument is written in: a probability as percentages from 0.
  await rejectsAt('loss 1% correlation=100%', 8, /loss correlation: 100% is out of range 0%\.\.99\.9%/);
  await rejectsAt('to-reply ttl=256', 9, /out of range 1\.\.255/);
  await rejectsAt('to-reply ttl=Infinity', 9, /expected a number/);
  await rejectsAt('pcap x.pcap nanos=maybe', 12, /pcap nanos: expected true or false, got 'maybe'/);
  await rejectsAt('pcap x.pcap snaplen=0', 12, /out of range 1\.\.262144/);
  await rejectsAt('pcap x.pcap onerror=ignore', 12, /expected one of stop, continue/);
  // A pattern (ArgSpec.pattern): permission bits only, no setuid/setgid/sticky.
  await rejectsAt('pcap x.pcap mode=4755', 12, /pcap mode: expected permission bits in octal, 0 to 777, .*got '4755'/);
  await rejectsAt('pcap x.pcap size=1x', 12, /pcap size: expected a size such as/);
});

test('a missing required argument is reported at the stage name with a usage line', async () => {
  const err = await rejectsAt('parse | pcap', 8, /stage 'pcap' needs its argument FILE/);
  assert.match(err.hint ?? '', /^usage: pcap FILE \[format=auto\|pcap\|pcapng\] \[comment=TEXT\] \[nanos=BOOL\] \[snaplen=N\] \[append=BOOL\] \[mode=OCTAL\] \[size=SIZE\] \[time=TIME\] \[files=N\] \[limit=SIZE\] \[filter=EXPR\] \[onerror=stop\|continue\]$/);
  await rejectsAt('parse | pcap nanos=true', 8, /needs its argument FILE/);
});

test('arguments convert to their types; a positional may also be given by name', async () => {
  const [pcap] = await resolvePipeline('pcap nanos=YES snaplen=96 file=-  append=off mode=644 onerror=continue');
  assert.deepEqual(pcap.args, { file: '-', format: 'auto', nanos: true, snaplen: 96, append: false, mode: '644', onerror: 'continue' });
  const [pcap2] = await resolvePipeline('pcap nanos=1 "my capture.pcap"');
  assert.deepEqual(pcap2.args.file, 'my capture.pcap');
  assert.equal(pcap2.args.nanos, true);
  const [reply] = await resolvePipeline('to-reply ttl=255');
  assert.equal(reply.args.ttl, 255);
  for (const mode of ['auto', 'full', 'incremental']) assert.equal((await resolvePipeline(`checksum mode=${mode}`))[0].args.mode, mode);
});

test('bindArgs works on its own with a hand-made definition', () => {
  const def = {
    name: 'demo',
    summary: 'demo',
    args: [
      { name: 'a', type: 'number' as const, positional: true, description: 'a', min: -5, max: 5 },
      { name: 'b', type: 'string' as const, positional: true, description: 'b', default: 'dflt' },
      { name: 'flag', type: 'boolean' as const, description: 'f' },
    ],
    create: () => ({ process: (p: Packet) => p }),
  };
  const text = 'demo b=x -5';
  // 'b' given by name, so the one positional fills 'a'.
  assert.deepEqual(bindArgs(def, parsePipeline(text)[0], text), { a: -5, b: 'x' });
  const text2 = 'demo 2.5';
  assert.deepEqual(bindArgs(def, parsePipeline(text2)[0], text2), { a: 2.5, b: 'dflt' });
});

let dir = '';
const modulePath = (name: string) => join(dir, name);

before(() => {
  dir = mkdtempSync(join(tmpdir(), 'tunpipe-unit-resolve-'));
  writeFileSync(modulePath('plain.mjs'), `export default function (packet) { return packet.data.length > 3 ? packet : 'tiny'; }\n`);
  writeFileSync(modulePath('slow.mjs'), `export default async function (packet) { await new Promise((r) => setTimeout(r, 1)); return packet; }\n`);
  writeFileSync(
    modulePath('with-args.mjs'),
    `export const summary = 'drop big ones';
export const args = [
  { name: 'max', type: 'number', positional: true, default: 1000, min: 0, description: 'largest' },
  { name: 'why', type: 'string', choices: ['big', 'huge'], default: 'big', description: 'reason' },
];
export default function (packet, { max, why }) { return packet.data.length > max ? why : packet; }
`,
  );
  writeFileSync(
    modulePath('full-def.mjs'),
    `export default {
  name: 'counter',
  summary: 'counts',
  args: [{ name: 'start', type: 'number', default: 7, description: 'first value' }],
  create(args, ctx) {
    let n = args.start;
    return { process(p) { n++; return p; }, report: () => ctx.name + ' saw ' + n };
  },
};
`,
  );
  writeFileSync(
    modulePath('promises.mjs'),
    `export default { name: 'promises', summary: 'p', args: [], keepsPackets: false, readsTime: false, create: () => ({ process: (p) => p }) };\n`,
  );
  writeFileSync(modulePath('throws.mjs'), `throw new Error('module exploded on import');\n`);
  writeFileSync(modulePath('syntax.mjs'), `export default function ( {\n`);
  writeFileSync(modulePath('no-default.mjs'), `export const x = 1;\n`);
  writeFileSync(modulePath('no-create.mjs'), `export default { name: 'x', args: [] };\n`);
  writeFileSync(modulePath('bad-args.mjs'), `export const args = 'max';\nexport default (p) => p;\n`);
  writeFileSync(modulePath('bad-arg-type.mjs'), `export const args = [{ name: 'n', type: 'int' }];\nexport default (p) => p;\n`);
  writeFileSync(modulePath('returns-odd.mjs'), `export default (p) => (p.data[0] === 1 ? p.data : p.data[0] === 2 ? false : p.data[0] === 3 ? 42 : p);\n`);
});

after(() => {
  if (dir) rmSync(dir, { recursive: true, force: true });
});

test('a user module exporting a plain function: named after its file, run per packet', async () => {
  const stages = await resolvePipeline(`parse | ${modulePath('plain.mjs')}`);
  assert.equal(stages[1].label, 'plain');
  assert.match(stages[1].def.summary, /user stage/);
  const inst = stages[1].def.create(stages[1].args, ctx);
  assert.equal(inst.process(new Packet(Buffer.alloc(2))), 'tiny');
  const p = new Packet(Buffer.alloc(20));
  assert.equal(inst.process(p), p);
});

test('a user module exporting an async function gives a promise of the result', async () => {
  const [s] = await resolvePipeline(modulePath('slow.mjs'));
  const p = new Packet(Buffer.alloc(20));
  const r = s.def.create(s.args, ctx).process(p);
  assert.ok(r instanceof Promise);
  assert.equal(await r, p);
});

test("a user module's `args` export is bound and checked like a built-in's", async () => {
  const path = modulePath('with-args.mjs');
  const [s] = await resolvePipeline(`${path} 20 why=huge`);
  assert.deepEqual(s.args, { max: 20, why: 'huge' });
  assert.equal(s.def.summary, 'drop big ones');
  const inst = s.def.create(s.args, ctx);
  assert.equal(inst.process(new Packet(Buffer.alloc(21))), 'huge');
  assert.deepEqual((await resolvePipeline(path))[0].args, { max: 1000, why: 'big' });
  const at = path.length + 1;
  await rejectsAt(`${path} -1`, at, /out of range 0\.\.inf/);
  await rejectsAt(`${path} lots`, at, /expected a number, got 'lots'/);
  await rejectsAt(`${path} why=small`, at, /expected one of big, huge/);
  await rejectsAt(`${path} size=1`, at, /has no argument 'size' \(it takes: max, why\)/);
});

test('a user module exporting a full stage definition keeps its name and create()', async () => {
  const [s] = await resolvePipeline(`${modulePath('full-def.mjs')} start=1`);
  assert.equal(s.label, 'counter');
  assert.deepEqual(s.args, { start: 1 });
  const inst = s.def.create(s.args, { ...ctx, name: s.label });
  inst.process(new Packet(Buffer.alloc(20)));
  inst.process(new Packet(Buffer.alloc(20)));
  assert.equal(inst.report?.(), 'counter saw 3');
});

test('user module results: a Buffer becomes a Packet, false is filtered, anything else is a bad return value', async () => {
  const [s] = await resolvePipeline(modulePath('returns-odd.mjs'));
  const inst = s.def.create(s.args, ctx);
  const asBuffer = inst.process(new Packet(Buffer.from([1, 0, 0]))) as StageResult;
  assert.ok(asBuffer instanceof Packet);
  assert.deepEqual(asBuffer.data, Buffer.from([1, 0, 0]));
  assert.equal(inst.process(new Packet(Buffer.from([2]))), null);
  assert.match(String(inst.process(new Packet(Buffer.from([3])))), /bad return value \(number\)/);
});

test('user modules that cannot be used: errors at the stage name, saying why', async () => {
  const pre = 'parse | ';
  const at = pre.length;
  await rejectsAt(`${pre}${modulePath('missing.mjs')}`, at, /stage module '.*missing\.mjs' not found \(looked for .*missing\.mjs\)/);
  await rejectsAt(`${pre}${modulePath('throws.mjs')} | checksum`, at, /cannot load stage module '.*throws\.mjs': module exploded on import/);
  await rejectsAt(`${pre}${modulePath('syntax.mjs')}`, at, /cannot load stage module '.*syntax\.mjs'/);
  await rejectsAt(`${pre}${modulePath('no-default.mjs')}`, at, /cannot load .*it has no default export/);
  await rejectsAt(`${pre}${modulePath('no-create.mjs')}`, at, /without a create\(args, ctx\) function/);
  await rejectsAt(`${pre}${modulePath('bad-args.mjs')}`, at, /'args' export must be an array/);
  await rejectsAt(`${pre}${modulePath('bad-arg-type.mjs')}`, at, /needs a name and a type/);
  // A name ending in .mjs is a path even without a slash; resolved against the working directory.
  await rejectsAt(`${pre}no-such-stage-file-for-tunpipe-tests.mjs`, at, /stage module 'no-such-stage-file-for-tunpipe-tests\.mjs' not found/);
});

test('the example user stage loads and drops packets over its limit', async () => {
  // dist/test/unit/ -> the repository's examples/.
  const example = fileURLToPath(new URL('../../../examples/drop-big.mjs', import.meta.url));
  const [s] = await resolvePipeline(`${example} max=100`);
  assert.equal(s.label, 'drop-big');
  const inst = s.def.create(s.args, ctx);
  const big = new Packet(Buffer.alloc(101));
  assert.equal(inst.process(big), 'longer than 100 bytes');
  const small = new Packet(Buffer.alloc(100));
  assert.equal(inst.process(small), small);
  assert.equal(findStage('drop-big'), undefined, 'user stages are not registered by name');
});

test('what the engine may skip: reused packets when no stage keeps them, the clock when none reads it', async () => {
  const engine = async (text: string) => new Engine(await resolvePipeline(text), { sink: () => {} });
  const echo = await engine('parse | icmp-echo | checksum');
  assert.equal(echo.packetsReusable, true);
  assert.equal(echo.readsTime, false);
  const capture = await engine(`parse | pcap ${modulePath('t.pcap')} | icmp-echo | checksum`);
  assert.equal(capture.packetsReusable, true);
  assert.equal(capture.readsTime, true, 'a capture reads packet times');
  await capture.close();
  const plain = await engine(`parse | ${modulePath('plain.mjs')}`);
  assert.equal(plain.packetsReusable, false, 'a plain function is taken to keep packets');
  assert.equal(plain.readsTime, true, 'and to read their time');
  const promised = await engine(`parse | ${modulePath('promises.mjs')}`);
  assert.equal(promised.packetsReusable, true);
  assert.equal(promised.readsTime, false);
});
