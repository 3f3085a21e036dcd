/**
 * The CLI's two readers of the option table (src/cli/options.ts): quickParse takes the common command
 * lines without loading yargs; whatever it takes must come out exactly as yargs reads it, and whatever it
 * is not sure of (or yargs rejects) it must leave to yargs (null), so that usage errors stay yargs' own.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { OPTIONS, quickParse, type CliArgs } from '../../src/cli/options.js';
import { parseWithYargs } from '../../src/cli/help.js';

/** The fields main.ts reads from a parse. */
function fieldsOf(a: CliArgs): Record<string, unknown> {
  const out: Record<string, unknown> = { _: a._ };
  for (const o of OPTIONS) if (a[o.name] !== undefined) out[o.name] = a[o.name];
  return out;
}

async function yargsOf(argv: string[]): Promise<Record<string, unknown> | Error> {
  try {
    return fieldsOf(await parseWithYargs(argv));
  } catch (err) {
    return err as Error;
  }
}

const P = 'parse | icmp-echo | checksum';

/** Command lines as they reach the option parser (device options already split off, `--read -` bound). */
const COMMON: string[][] = [
  ['--read', 'in.pcap', '--write', 'out.pcap', P],
  ['--read', 'in.pcap', P],
  ['--read=in.pcap', '--write=out.pcap', P],
  ['--read=-', '--write=-', P],
  ['--read', 'in.pcap', '--count', '10', '--quiet', P],
  ['--read', 'in.pcap', '-q', '--count=0', P],
  ['--queue', '16', '--read', 'in.pcap', P],
  [P],
  ['--list'],
  ['--list', 'pcap'],
  ['--user', 'nobody', '--group', 'nogroup', P],
  ['--stats', '2s', '--stats-json', '/tmp/s.json', P],
  ['--offload', 'from a | to b; from b | to a'],
  ['--read', 'my file.pcap', "parse | pcap '/tmp/a b.pcap' | drop"],
  ['--read', 'in.pcap', './examples/drop-big.mjs max=512'],
  ['--read', 'a=b.pcap', P],
  ['--read', 'in.pcap', 'parse', '|', 'checksum'],
  [],
];

/** Lines quickParse must leave to yargs: yargs coerces, strips, negates, rejects or repeats something here. */
const UNUSUAL: string[][] = [
  ['--reed', 'in.pcap', P],
  ['--read', 'a', '--read', 'b', P],
  ['--count', '-3', P],
  ['--count', '1.5', P],
  ['--count', '0x10', P],
  ['--count', '010', P],
  ['--count', '1e3', P],
  ['--count', 'abc', P],
  ['--count', ' 5', P],
  ['--quiet', 'true', P],
  ['--quiet=false', P],
  ['--no-quiet', P],
  ['-qq', P],
  ['--statsJson', 'f', P],
  ['--stats', '--quiet', P],
  ['--stats'],
  ['--read', '', P],
  ['--read='],
  ['--user="bob"', P],
  ["--user='bob'", P],
  ['--read', 'x', '-x'],
  ['5'],
  ['1e3'],
  ['  '],
  [''],
  ['-', P],
  [P, '--', '--x'],
  ['--Quiet', P],
  ['--help=false'],
  ['--version=1'],
  ['--read'],
];

test('quickParse reads the common command lines, exactly as yargs does', async () => {
  for (const argv of COMMON) {
    const quick = quickParse(argv);
    assert.ok(quick !== null, `quickParse takes ${JSON.stringify(argv)}`);
    const y = await yargsOf(argv);
    assert.ok(!(y instanceof Error), `yargs takes ${JSON.stringify(argv)}: ${(y as Error).message}`);
    assert.deepEqual(fieldsOf(quick), y, JSON.stringify(argv));
  }
});

test('quickParse leaves unusual command lines to yargs, or reads them as yargs does', async () => {
  let left = 0;
  for (const argv of UNUSUAL) {
    const quick = quickParse(argv);
    const y = await yargsOf(argv);
    if (quick === null) {
      left++;
      continue;
    }
    assert.ok(!(y instanceof Error), `yargs rejects ${JSON.stringify(argv)} (${(y as Error).message}), so quickParse must not take it`);
    assert.deepEqual(fieldsOf(quick), y, JSON.stringify(argv));
  }
  assert.ok(left >= UNUSUAL.length - 2, `most unusual lines go to yargs (${left} of ${UNUSUAL.length})`);
});

test('every combination of a few options and values reads the same in both', async () => {
  const pieces: string[][] = [
    ['--read', 'in.pcap'],
    ['--read=-'],
    ['--write', 'out.pcap'],
    ['--count', '7'],
    ['--count', '7.5'],
    ['--queue=3'],
    ['-q'],
    ['--quiet'],
    ['--list'],
    ['--stats-json', 'x'],
    ['--offload'],
    ['--bogus'],
    [P],
    ['pcap'],
    ['12'],
  ];
  let compared = 0;
  for (let a = 0; a < pieces.length; a++) {
    for (let b = 0; b < pieces.length; b++) {
      for (let c = 0; c < pieces.length; c += 3) {
        const argv = [...pieces[a], ...pieces[b], ...pieces[c]];
        const quick = quickParse(argv);
        if (quick === null) continue;
        const y = await yargsOf(argv);
        assert.ok(!(y instanceof Error), `yargs rejects ${JSON.stringify(argv)} (${(y as Error).message}) but quickParse took it`);
        assert.deepEqual(fieldsOf(quick), y, JSON.stringify(argv));
        compared++;
      }
    }
  }
  assert.ok(compared > 100, `${compared} lines compared`);
});
