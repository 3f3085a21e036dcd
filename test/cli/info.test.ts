/**
 * The CLI's own documentation: --help explains the pipeline language with examples, --list shows every
 * built-in stage (every stage file in transforms/ must be there), --list NAME describes the arguments, and
 * --version prints the version from package.json.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { lines, REPO_ROOT, runCli } from '../helpers/cli.js';
import { builtinStages } from '../../src/pipeline/registry.js';
import type { StageDefinition } from '../../src/pipeline/stage.js';

/** The stage definitions exported by the compiled files of transforms/, found on disk, not through the registry. */
async function stageFiles(): Promise<StageDefinition[]> {
  const root = join(REPO_ROOT, 'dist', 'transforms');
  const defs: StageDefinition[] = [];
  for (const f of readdirSync(root).filter((n) => n.endsWith('.js')).sort()) {
    const mod = (await import(pathToFileURL(join(root, f)).href)) as { default?: StageDefinition };
    if (mod.default && typeof mod.default.name === 'string' && ('create' in mod.default || 'expand' in mod.default)) defs.push(mod.default);
  }
  return defs;
}

describe('--help', () => {
  test('explains the pipeline language, with examples, and exits 0', async () => {
    const r = await runCli(['--help']);
    assert.equal(r.code, 0, r.stderr);
    const text = r.stdout.toString();
    assert.match(text, /Usage:/);
    assert.match(text, /Pipeline language/i);
    assert.match(text, /separated by '\|'/);
    assert.match(text, /key=value/);
    assert.match(text, /Examples?:/);
    assert.match(text, /tunpipe --dev \S+ --addr 198\.18\.0\.1\/24 'parse \| icmp-echo \| checksum'/);
    assert.match(text, /tunpipe --read \S+ --write \S+ 'parse \| icmp-echo \| checksum'/);
    assert.match(text, /pcap -/, 'the live capture example');
    for (const opt of ['--dev', '--addr', '--mtu', '--read', '--write', '--count', '--list', '--version']) assert.ok(text.includes(opt), opt);
  });

  test('-h is the same as --help', async () => {
    const [a, b] = await Promise.all([runCli(['--help']), runCli(['-h'])]);
    assert.equal(b.code, 0);
    assert.equal(b.stdout.toString(), a.stdout.toString());
  });
});

describe('--list', () => {
  test('lists every built-in stage of the registry with its summary', async () => {
    const r = await runCli(['--list']);
    assert.equal(r.code, 0, r.stderr);
    const rows = lines(r.stdout.toString());
    const defs = builtinStages();
    assert.ok(defs.length >= 7, 'parse, icmp-echo, filter-icmp-echo, swap-addrs, to-reply, checksum, pcap at least');
    for (const def of defs) {
      const row = rows.find((l) => l.trim().split(/\s+/)[0] === def.name);
      assert.ok(row, `a line for ${def.name}:\n${r.stdout}`);
      assert.ok(row.includes(def.summary), `${def.name}'s summary`);
    }
  });

  test('every stage file in transforms/ is in the list', async () => {
    const r = await runCli(['--list']);
    const names = lines(r.stdout.toString()).map((l) => l.trim().split(/\s+/)[0]);
    const files = await stageFiles();
    assert.ok(files.length >= 7, `stage files found: ${files.map((d) => d.name).join(', ')}`);
    for (const def of files) assert.ok(names.includes(def.name), `${def.name} (a stage file) is listed`);
  });

  test('--list pcap describes each argument, its default, and says FILE is required', async () => {
    const r = await runCli(['--list', 'pcap']);
    assert.equal(r.code, 0, r.stderr);
    const text = r.stdout.toString();
    assert.match(text, /^pcap FILE/m);
    for (const name of ['nanos', 'snaplen', 'append', 'onerror']) assert.match(text, new RegExp(`\\b${name}=`), name);
    assert.match(text, /FILE\s+.*- for stdout.*required/);
    assert.match(text, /nanos=\s+.*nanosecond.*default false/);
    assert.match(text, /snaplen=\s+.*default 262144/);
    assert.match(text, /onerror=\s+.*default stop/);
    assert.match(text, /stop\|continue/, 'the choices of onerror');
  });

  test('--list NAME works for every built-in stage', async () => {
    for (const def of builtinStages()) {
      const r = await runCli(['--list', def.name]);
      assert.equal(r.code, 0, `${def.name}: ${r.stderr}`);
      const text = r.stdout.toString();
      assert.ok(text.startsWith(def.name), def.name);
      assert.ok(text.includes(def.summary), `${def.name}'s summary`);
      for (const a of def.args) assert.ok(text.includes(a.description), `${def.name} ${a.name}: ${a.description}`);
    }
  });

  test('--list icmp-echo shows what the compound expands to', async () => {
    const r = await runCli(['--list', 'icmp-echo']);
    assert.match(r.stdout.toString(), /filter-icmp-echo \| swap-addrs \| to-reply/);
  });
});

describe('--version', () => {
  test('prints the version of package.json', async () => {
    const pkg = JSON.parse(readFileSync(join(REPO_ROOT, 'package.json'), 'utf8')) as { version: string };
    const r = await runCli(['--version']);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout.toString().trim(), pkg.version);
    assert.match(pkg.version, /^\d+\.\d+\.\d+/);
  });
});
