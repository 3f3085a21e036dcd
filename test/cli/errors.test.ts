/**
 * Usage and input errors of the CLI: each is one clear line on stderr (or, for pipeline text, the message,
 * the text and a caret under the offending place), never a stack trace, with a non-zero exit; and a
 * rejected command creates no file.
 */
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, writeFileSync } from 'node:fs';
import { echoRequest, writePcap } from '../helpers/packets.js';
import { lines, runCli, stackTraceLines, tempDir, type CliResult } from '../helpers/cli.js';
import { builtinStages } from '../../src/pipeline/registry.js';

const dir = tempDir('tunpipe-errors-');
after(() => dir.remove());
const inFile = dir.file('in.pcap');
writePcap(inFile, [echoRequest({ seq: 1 }), echoRequest({ seq: 2 })]);

/** Checks what every user-facing error must be: non-zero exit, no stack trace, nothing on stdout. */
function assertUserError(r: CliResult, code: number | 'non-zero'): void {
  if (code === 'non-zero') assert.ok(r.code !== 0 && r.code !== null, `exit code ${r.code}\n${r.stderr}`);
  else assert.equal(r.code, code, r.stderr);
  assert.deepEqual(stackTraceLines(r.stderr), [], 'no stack trace');
  assert.doesNotMatch(r.stderr, /internal error/);
  assert.equal(r.stdout.length, 0, 'nothing on stdout');
}

/** Checks a one-line error that matches `re`. */
function assertOneLine(r: CliResult, re: RegExp): void {
  const l = lines(r.stderr);
  assert.equal(l.length, 1, `one line, got:\n${r.stderr}`);
  assert.match(l[0], /^tunpipe: /);
  assert.match(l[0], re);
}

/**
 * Checks the caret block of a pipeline error: the pipeline text on a line of its own and a caret right
 * under the character at `column` (0-based) of that text, with the column named in the message.
 */
function assertCaret(r: CliResult, text: string, column: number, re: RegExp): void {
  const l = r.stderr.split('\n');
  assert.match(l[0], /^tunpipe: /);
  assert.match(l[0], re);
  assert.match(l[0], new RegExp(`column ${column + 1}\\b`));
  const at = l.findIndex((line) => line.trimStart() === text && line.endsWith(text));
  assert.ok(at > 0, `the pipeline text on its own line:\n${r.stderr}`);
  const indent = l[at].length - text.length;
  const caret = l[at + 1];
  assert.match(caret, /^\s*\^\s*$/, `a caret line under the text:\n${r.stderr}`);
  assert.equal(caret.indexOf('^') - indent, column, `caret under column ${column} of:\n${text}\n${r.stderr}`);
}

describe('pipeline text errors: caret block, exit 2, nothing created', () => {
  const cases: { name: string; text: string; column: number; re: RegExp }[] = [
    { name: 'unknown stage in the middle', text: 'parse | icmp-ech | checksum', column: 8, re: /unknown stage 'icmp-ech'/ },
    { name: 'unknown stage first', text: 'prase | icmp-echo', column: 0, re: /unknown stage 'prase'/ },
    { name: 'unknown stage last, after extra spaces', text: 'parse |   icmp-echo  |    cheksum', column: 26, re: /unknown stage 'cheksum'/ },
    { name: 'unterminated single quote', text: "parse | pcap 'x.pcap", column: 13, re: /unterminated single quote/ },
    { name: 'unterminated double quote', text: 'parse | pcap "x.pcap | checksum', column: 13, re: /unterminated double quote/ },
    { name: 'empty stage between two pipes', text: 'parse || checksum', column: 7, re: /empty stage/ },
    { name: 'empty stage at the end', text: 'parse | icmp-echo |', column: 18, re: /empty stage/ },
    { name: 'empty stage at the start', text: '| parse', column: 0, re: /empty stage/ },
    { name: 'argument out of range', text: 'parse | to-reply ttl=999', column: 17, re: /to-reply ttl.*999/ },
    { name: 'not a number', text: 'parse | to-reply ttl=many', column: 17, re: /expected a number/ },
    { name: 'not one of the choices', text: 'parse | checksum mode=fast', column: 17, re: /auto, full, incremental/ },
    { name: 'unknown argument', text: 'parse | checksum speed=2', column: 17, re: /no argument 'speed'/ },
    { name: 'too many positional arguments', text: 'parse extra | checksum', column: 6, re: /no more positional arguments/ },
    { name: 'missing required argument', text: 'parse | pcap', column: 8, re: /needs its argument FILE/ },
  ];
  for (const c of cases) {
    test(c.name, async () => {
      const out = dir.file(`${c.name.replace(/\W+/g, '-')}.pcap`);
      const r = await runCli(['--read', inFile, '--write', out, c.text]);
      assertUserError(r, 2);
      assertCaret(r, c.text, c.column, c.re);
      assert.equal(existsSync(out), false, '--write file not created');
    });
  }

  test('an unknown stage lists every known stage', async () => {
    const r = await runCli(['--read', inFile, 'parse | nope']);
    assertUserError(r, 2);
    const hint = lines(r.stderr).find((l) => /known stages/.test(l));
    assert.ok(hint, r.stderr);
    for (const def of builtinStages()) assert.match(hint, new RegExp(`\\b${def.name}\\b`), `${def.name} in the list`);
  });

  test('a capture stage before the error creates no file', async () => {
    const cap = dir.file('not-created-capture.pcap');
    const r = await runCli(['--read', inFile, `parse | pcap ${cap} | icmp-echo | nope`]);
    assertUserError(r, 2);
    assert.equal(existsSync(cap), false);
  });

  test('an empty pipeline', async () => {
    const r = await runCli(['--read', inFile, '']);
    assertUserError(r, 2);
    assert.match(r.stderr, /empty/);
  });
});

describe('input file errors: one line, non-zero exit, no output file', () => {
  const cases: { name: string; make?: (path: string) => void; re: RegExp }[] = [
    { name: 'missing --read file', re: /no such file/ },
    {
      name: 'a pcapng file with a corrupt block',
      // Section header block: type 0x0A0D0D0A, length 28, byte-order magic, version 1.0, section length -1;
      // then a block whose total length (13) is not a multiple of 4.
      make: (p) => writeFileSync(p, Buffer.from('0a0d0d0a1c0000004d3c2b1a01000000ffffffffffffffff1c000000' + '010000000d000000', 'hex')),
      re: /corrupt pcapng block at offset 28/,
    },
    { name: 'a text file', make: (p) => writeFileSync(p, 'these are not the packets you are looking for\n'), re: /not a pcap file/ },
    { name: 'an empty file', make: (p) => writeFileSync(p, ''), re: /empty|not a pcap/ },
    { name: 'a file shorter than a pcap header', make: (p) => writeFileSync(p, Buffer.from('d4c3b2a10200', 'hex')), re: /not a pcap file/ },
  ];
  for (const c of cases) {
    test(c.name, async () => {
      const input = dir.file(`input-${c.name.replace(/\W+/g, '-')}`);
      c.make?.(input);
      const out = dir.file(`out-${c.name.replace(/\W+/g, '-')}.pcap`);
      const r = await runCli(['--read', input, '--write', out, 'parse | icmp-echo | checksum']);
      assertUserError(r, 'non-zero');
      assertOneLine(r, c.re);
      assert.ok(r.stderr.includes(input), 'the message names the file');
      assert.equal(existsSync(out), false, '--write file not created');
    });
  }

  test('a capture of an unsupported link type', async () => {
    const input = dir.file('linktype-105.pcap');
    writePcap(input, [echoRequest()], { linkType: 105 });
    const r = await runCli(['--read', input, 'parse']);
    assertUserError(r, 'non-zero');
    assertOneLine(r, /link type 105/);
  });
});

describe('option errors: one line, exit 2', () => {
  const cases: { name: string; args: string[]; re: RegExp }[] = [
    { name: '--write without --read', args: ['--write', dir.file('w.pcap'), 'parse | icmp-echo | checksum'], re: /--read/ },
    { name: 'missing pipeline', args: ['--read', inFile], re: /pipeline/ },
    { name: 'missing pipeline, nothing at all', args: [], re: /pipeline/ },
    { name: 'pipeline in several arguments', args: ['--read', inFile, 'parse', '|', 'checksum'], re: /one argument|quote/ },
    { name: 'unknown option', args: ['--reed', inFile, 'parse'], re: /reed/ },
    { name: '--read with --dev', args: ['--read', inFile, '--dev', 'tun9', 'parse'], re: /read.*dev|dev.*read/ },
    { name: 'negative --count', args: ['--read', inFile, '--count', '-3', 'parse'], re: /--count/ },
    { name: 'fractional --count', args: ['--read', inFile, '--count', '1.5', 'parse'], re: /--count/ },
    { name: '--mtu out of range', args: ['--mtu', '20', 'parse'], re: /--mtu/ },
  ];
  for (const c of cases) {
    test(c.name, async () => {
      const r = await runCli(c.args);
      assertUserError(r, 2);
      assertOneLine(r, c.re);
    });
  }

  test('--write without --read creates no file', async () => {
    const out = dir.file('write-without-read.pcap');
    const r = await runCli(['--write', out, 'parse | icmp-echo | checksum']);
    assertUserError(r, 2);
    assert.equal(existsSync(out), false);
  });

  test('--list of an unknown stage', async () => {
    const r = await runCli(['--list', 'nope']);
    assertUserError(r, 2);
    assertOneLine(r, /unknown stage 'nope'/);
  });
});
