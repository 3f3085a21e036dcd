/**
 * Defects found by trying tunpipe as a new user and as an attacker, each fixed as a class and tested here
 * offline (the device ones are in test/device/graph-errors.test.ts and test/fault/):
 * every kind of space and invisible character in pipeline text; outputs that would overwrite the input or
 * each other; options given twice or empty; users' modules that fail in every way a module can; tables
 * that grow with what stages say; a file source that must wait for a slow stage, never drop; a close()
 * that never settles; a closed stderr.
 */
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, readFileSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { echoRequest, readPcapRecords, writePcap } from '../helpers/packets.js';
import { lines, runCli, stackTraceLines, tempDir, TUNPIPE_BIN, type CliResult } from '../helpers/cli.js';
import { parseCounters, stageRow } from '../helpers/counters.js';

const dir = tempDir('tunpipe-defects-');
after(() => dir.remove());
const input = dir.file('in.pcap');
const packets = Array.from({ length: 50 }, (_, i) => echoRequest({ seq: i + 1 }));
writePcap(input, packets);
const inputBytes = readFileSync(input);

function assertUsage(r: CliResult, re: RegExp): void {
  assert.equal(r.code, 2, r.stderr);
  assert.deepEqual(stackTraceLines(r.stderr), [], r.stderr);
  assert.match(r.stderr, re);
}

function records(file: string): Buffer[] {
  return readPcapRecords(readFileSync(file)).packets;
}

describe('every character in pipeline text is either a separator, part of a word, or a clear error', () => {
  const spaces = ['\u00a0', '\f', '\v', '\ufeff', '\u3000', '\u2028', '\u2029', '\u1680', '\u2003', '\u202f', '\u205f'];
  for (const sp of spaces) {
    test(`U+${sp.codePointAt(0)!.toString(16).padStart(4, '0')} separates words like a space`, async () => {
      const r = await runCli(['--read', input, `parse${sp}|${sp}icmp-echo${sp}|checksum${sp}`], { timeoutMs: 10_000 });
      assert.equal(r.code, 0, r.stderr);
      assert.equal(stageRow(parseCounters(r.stderr), 'checksum').out, 50);
    });
  }
  for (const ch of ['\u200b', '\u2060', '\u00ad', '\u200e', '\u0001', '\u001b', '\u007f', '\ue000', '\u0085']) {
    test(`U+${ch.codePointAt(0)!.toString(16).padStart(4, '0')} outside quotes is refused with a caret`, async () => {
      const text = `parse | icmp${ch}-echo`;
      const r = await runCli(['--read', input, text], { timeoutMs: 10_000 });
      assertUsage(r, /invisible character U\+/);
      assert.match(r.stderr, /column 13/);
    });
  }
  test('the tokenizer ends on every code point of the basic plane, alone and in words', async () => {
    const { parseProgram } = await import('../../src/pipeline/language.js');
    const t0 = Date.now();
    for (let c = 0; c < 0x10000; c++) {
      if (c >= 0xd800 && c <= 0xdfff) continue;
      const ch = String.fromCharCode(c);
      for (const text of [ch, `a${ch}b`, `parse ${ch}| x`, `'${ch}'`, `tee {${ch}}`]) {
        try {
          parseProgram(text);
        } catch (err) {
          assert.ok((err as Error).name === 'TunpipeError', `U+${c.toString(16)} in ${JSON.stringify(text)}: ${err}`);
        }
      }
    }
    assert.ok(Date.now() - t0 < 60_000, 'no character makes the tokenizer crawl');
  });
});

describe('outputs that would destroy the input or each other are refused before anything is written', () => {
  const cases: { name: string; args: () => string[]; re: RegExp }[] = [
    { name: '--write the file being read', args: () => ['--read', input, '--write', input, 'parse'], re: /is the file being read/ },
    { name: '--write through a symlink to the input', args: () => ['--read', input, '--write', link, 'parse'], re: /is the file being read/ },
    { name: 'a pcap stage naming the input', args: () => ['--read', input, `parse | pcap ${input}`], re: /is the file being read/ },
    { name: '--write and a pcap stage on one file', args: () => ['--read', input, '--write', dir.file('same.pcap'), `parse | pcap ${dir.file('same.pcap')}`], re: /written by --write already/ },
    { name: 'two pcap stages on one file', args: () => ['--read', input, `parse | pcap ${dir.file('two.pcap')} | tee { pcap ${dir.file('./two.pcap')} }`], re: /written by pcap file already/ },
    { name: '--write - and pcap -', args: () => ['--read', input, '--write', '-', 'parse | pcap -'], re: /stdout/ },
  ];
  const link = dir.file('link-to-input.pcap');
  symlinkSync(input, link);
  for (const c of cases) {
    test(c.name, async () => {
      const r = await runCli(c.args());
      assertUsage(r, c.re);
      assert.deepEqual(readFileSync(input), inputBytes, 'the input is untouched');
      assert.equal(r.stdout.length, 0);
      assert.equal(existsSync(dir.file('same.pcap')) || existsSync(dir.file('two.pcap')), false, 'no output created');
    });
  }
});

describe('options: given twice, empty, or meaningless offline', () => {
  const cases: [string, string[], RegExp][] = [
    ['--read twice', ['--read', input, '--read', input, 'parse'], /--read is given 2 times/],
    ['--write twice', ['--read', input, '--write', dir.file('a.pcap'), '--write', dir.file('b.pcap'), 'parse'], /--write is given 2 times/],
    ['--count twice', ['--read', input, '--count', '1', '--count', '2', 'parse'], /--count is given 2 times/],
    ["--read ''", ['--read', '', 'parse'], /--read needs a file name/],
    ['--user offline', ['--read', input, '--user', 'nobody', 'parse'], /offline there is none/],
    ['--group offline', ['--read', input, '--group', 'nogroup', 'parse'], /offline there is none/],
    ['from offline', ['--read', input, 'from tun0 | parse'], /unknown device 'tun0'.*offline/],
    ['a stray brace', ['--read', input, 'parse } | drop'], /'}' without a '{'/],
    ['an unclosed brace', ['--read', input, 'parse | tee { pcap x.pcap'], /unclosed '{'/],
    ['else with no stage', ['--read', input, 'parse | else { drop }'], /'else' with no stage before it/],
    ['else after tee', ['--read', input, 'parse | tee { drop } else { drop }'], /a tee drops none/],
    ['a stage after drop', ['--read', input, 'parse | drop | checksum'], /nothing can follow 'drop'/],
    ['two pipelines offline', ['--read', input, 'parse; checksum'], /offline there is one input/],
  ];
  for (const [name, args, re] of cases) {
    test(name, async () => {
      const r = await runCli(args);
      assertUsage(r, re);
      assert.ok(lines(r.stderr).length <= 4, r.stderr);
    });
  }
});

describe("users' modules that fail in every way a module can: one clear line, no stack trace", () => {
  const mod = (name: string, text: string) => {
    const file = dir.file(name);
    writeFileSync(file, text);
    return file;
  };
  const cases: [string, string, number, RegExp][] = [
    ['throw null at import', 'throw null;\n', 2, /cannot load stage module.*threw null/],
    ['throw a string at import', "throw 'nope';\n", 2, /cannot load stage module.*threw nope/],
    ['create() throws', 'export default { create() { throw new Error("no thanks"); } };\n', 1, /could not start: no thanks/],
    ['create() throws null', 'export default { create() { throw null; } };\n', 1, /could not start: it threw null/],
    ['create() returns null', 'export default { create() { return null; } };\n', 1, /create\(\) returned null/],
    ['create() returns no process', 'export default { create() { return {}; } };\n', 1, /not an object with a process/],
  ];
  for (const [name, text, code, re] of cases) {
    test(name, async () => {
      const file = mod(`${name.replace(/\W+/g, '-')}.mjs`, text);
      const r = await runCli(['--read', input, `parse | ${file}`]);
      assert.equal(r.code, code, r.stderr);
      assert.deepEqual(stackTraceLines(r.stderr), [], r.stderr);
      assert.doesNotMatch(r.stderr, /internal error/);
      assert.match(r.stderr, re);
    });
  }
  test('report() that throws: the run completes and says so', async () => {
    const file = mod('report-throws.mjs', 'export default { keepsPackets: false, create() { return { process: (p) => p, report() { throw new Error("bad report"); } }; } };\n');
    const r = await runCli(['--read', input, `parse | ${file}`]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stderr, /its report failed: bad report/);
  });
  test('a close() that never settles is given up on; the captures after it are complete', async () => {
    const file = mod('close-hangs.mjs', 'export default { keepsPackets: false, create() { return { process: (p) => p, close: () => new Promise(() => {}) }; } };\n');
    const cap = dir.file('after-hang.pcap');
    const t0 = Date.now();
    const r = await runCli(['--read', input, `parse | ${file} | pcap ${cap}`], { timeoutMs: 15_000 });
    assert.equal(r.code, 0, r.stderr);
    assert.ok(Date.now() - t0 < 10_000);
    assert.match(r.stderr, /did not finish closing within/);
    assert.equal(records(cap).length, 50);
  });
});

test('distinct drop reasons and warnings are bounded per stage', async () => {
  const file = dir.file('chatty.mjs');
  writeFileSync(file, 'let n = 0; export default { create(args, ctx) { return { process(p) { n++; ctx.warn(`warning ${n}`); return `reason ${n}`; } }; } };\n');
  const many = dir.file('many.pcap');
  writePcap(many, Array.from({ length: 2000 }, (_, i) => echoRequest({ seq: i })));
  const r = await runCli(['--read', many, `parse | ${file}`]);
  assert.equal(r.code, 0, r.stderr);
  const row = stageRow(parseCounters(r.stderr), 'chatty');
  assert.equal(row.dropped, 2000);
  assert.ok(row.reasons.size <= 33, `${row.reasons.size} reasons kept`);
  assert.equal(row.reasons.get('(other reasons)'), 2000 - 32);
  const warnings = r.stderr.split('\n').filter((l) => /stage 'chatty': warning/.test(l));
  assert.equal(warnings.length, 32);
  assert.match(r.stderr, /further ones are not printed/);
});

test('a file source waits for a slow asynchronous stage: nothing is dropped, whatever --queue says', async () => {
  const file = dir.file('slow.mjs');
  writeFileSync(file, 'export default async function (p) { await new Promise((r) => setTimeout(r, 2)); return p; }\n');
  const out = dir.file('slow-out.pcap');
  const r = await runCli(['--read', input, '--write', out, '--queue', '4', `parse | ${file} | icmp-echo | checksum`]);
  assert.equal(r.code, 0, r.stderr);
  const row = stageRow(parseCounters(r.stderr), 'slow');
  assert.equal(row.in, 50);
  assert.equal(row.dropped, 0, r.stderr);
  assert.equal(records(out).length, 50);
});

test('--queue for a program with no asynchronous stage warns that it does nothing and names --queues; with a user stage, no warning', async () => {
  const out = dir.file('queue-out.pcap');
  for (const args of [['--queue', '4'], ['--queue=4']]) {
    const r = await runCli(['--read', input, '--write', out, ...args, 'parse | icmp-echo | checksum']);
    assert.equal(r.code, 0, r.stderr);
    const warned = lines(r.stderr).filter((l) => l.startsWith('tunpipe: warning: --queue '));
    assert.equal(warned.length, 1, r.stderr);
    assert.match(warned[0], /this program has none\. A device with several queues is --queues N/);
    assert.equal(records(out).length, 50, 'the run goes on');
  }
  const plain = await runCli(['--read', input, '--write', out, 'parse | icmp-echo | checksum']);
  assert.doesNotMatch(plain.stderr, /warning: --queue/);
  const file = dir.file('passes.mjs');
  writeFileSync(file, 'export default (p) => p;\n');
  const user = await runCli(['--read', input, '--write', out, '--queue', '4', `parse | ${file} | icmp-echo | checksum`]);
  assert.equal(user.code, 0, user.stderr);
  assert.doesNotMatch(user.stderr, /warning: --queue/);
});

test('a closed stderr does not end the run, and the output file is complete', async () => {
  const file = dir.file('warns.mjs');
  writeFileSync(file, 'export default { keepsPackets: false, create(a, ctx) { let n = 0; return { process(p) { ctx.warn(`w${n++ % 40}`); return p; } }; } };\n');
  const out = dir.file('stderr-closed.pcap');
  const child = spawn(process.execPath, [TUNPIPE_BIN, '--read', input, '--write', out, `parse | ${file}`], { stdio: ['ignore', 'ignore', 'pipe'] });
  child.stderr!.destroy();
  const code = await new Promise<number | null>((resolve) => child.on('close', resolve));
  assert.equal(code, 0);
  assert.equal(records(out).length, 50);
  assert.ok(statSync(out).size > 24);
});
