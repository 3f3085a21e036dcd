/**
 * What a CLI run loads, seen from outside it (test/helpers/load-probe.ts: every ES module through a module
 * hook, and every native library mapped into the process at exit).
 *
 * The CLI as installed (bin/tunpipe.js) runs from one bundle of its modules (scripts/bundle.mjs): a run loads
 * that file and no module of dist/ one by one; never yargs, koffi, libpcap or worker_threads unless it needs
 * them; a user's stage only in the run that names it.
 *
 * Run from its modules (test/helpers/cli-from-modules.ts), the same runs show what main.ts imports lazily,
 * which is what the bundle evaluates lazily: an offline run loads only the stages its program names; --list
 * and --help still see every stage; a command line out of the ordinary is still read by yargs.
 */
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { spawn } from 'node:child_process';
import { echoRequest, readPcapRecords, writePcap } from '../helpers/packets.js';
import { lines, REPO_ROOT, tempDir, TUNPIPE_BIN } from '../helpers/cli.js';
import { builtinStages } from '../../src/pipeline/registry.js';
import { BUILTIN_STAGE_MODULES } from '../../src/pipeline/stage-modules.js';

const PROBE = fileURLToPath(new URL('../helpers/load-probe.js', import.meta.url));
const FROM_MODULES = fileURLToPath(new URL('../helpers/cli-from-modules.js', import.meta.url));
const DIST = join(REPO_ROOT, 'dist');

const dir = tempDir('tunpipe-lazy-');
after(() => dir.remove());
const inFile = dir.file('in.pcap');
writePcap(inFile, Array.from({ length: 20 }, (_, i) => echoRequest({ seq: i })));

interface Loaded {
  code: number | null;
  stdout: string;
  stderr: string;
  /** Module URLs, as paths under dist/ where they are ours (`transforms/parse.js`), else the whole URL. */
  modules: string[];
  /** Files mapped into the process at exit. */
  libs: string[];
}

let runs = 0;

/** Runs the CLI under the load probe: from its modules, or (`bundle`) as installed, from its bundle. */
function runProbed(args: string[], from: 'modules' | 'bundle' = 'modules', cwd = dir.path): Promise<Loaded> {
  const out = dir.file(`probe-${++runs}.txt`);
  writeFileSync(out, '');
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', pathToFileURL(PROBE).href, from === 'bundle' ? TUNPIPE_BIN : FROM_MODULES, ...args], {
      cwd,
      env: { ...process.env, TUNPIPE_LOAD_PROBE: out },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout!.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), 20_000);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      const entries = lines(readFileSync(out, 'utf8'));
      rmSync(out, { force: true });
      const distUrl = `${pathToFileURL(DIST).href}/`;
      const modules = entries.filter((l) => l.startsWith('module ')).map((l) => l.slice(7)).map((u) => (u.startsWith(distUrl) ? u.slice(distUrl.length) : u));
      const libs = entries.filter((l) => l.startsWith('lib ')).map((l) => l.slice(4));
      resolve({ code, stdout, stderr, modules, libs });
    });
  });
}

const stageFile = (name: string) => `transforms/${name}.js`;
const loadedStages = (r: Loaded) => r.modules.filter((m) => m.startsWith('transforms/')).sort();
const hasYargs = (r: Loaded) => r.modules.some((m) => /\/node_modules\/yargs(-parser)?\//.test(m));
const hasKoffi = (r: Loaded) => r.libs.some((l) => /koffi.*\.node$/.test(l)) || r.modules.some((m) => m.includes('/koffi/'));
const hasLibpcap = (r: Loaded) => r.libs.some((l) => /\/libpcap\.so/.test(l));

/** The stages `parse | icmp-echo | checksum` names, and what icmp-echo expands to. */
const ECHO_STAGES = ['checksum', 'filter-icmp-echo', 'icmp-echo', 'parse', 'reassemble', 'swap-addrs', 'to-reply'].map(stageFile);

describe('an offline echo loads what it needs and nothing else', () => {
  test("'parse | icmp-echo | checksum': its seven stage files; no yargs, koffi, libpcap, device layer, worker or user-stage loader", async () => {
    const out = dir.file('echo-out.pcap');
    const r = await runProbed(['--read', inFile, '--write', out, 'parse | icmp-echo | checksum']);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(readPcapRecords(readFileSync(out)).packets.length, 20, 'every request answered');
    assert.ok(r.modules.includes('src/cli/main.js'), `the probe sees the CLI's modules:\n${r.modules.join('\n')}`);
    assert.deepEqual(loadedStages(r), ECHO_STAGES);
    assert.equal(hasYargs(r), false, 'yargs not loaded');
    assert.equal(hasKoffi(r), false, 'koffi not loaded');
    assert.equal(hasLibpcap(r), false, 'libpcap not mapped');
    // Nor the loader of users' modules, nor worker_threads (the watch on users' code starts with a module).
    const unwanted = r.modules.filter((m) => m.startsWith('src/device/') || m === 'src/filter/libpcap.js' || m === 'src/pipeline/device-worker.js' || m === 'src/cli/help.js' || m === 'src/pipeline/user-stage.js' || m === 'node:worker_threads');
    assert.deepEqual(unwanted, []);
  });

  test("a filter is what loads libpcap (through koffi): 'parse | filter icmp | icmp-echo | checksum'", async () => {
    const r = await runProbed(['--read', inFile, '--quiet', 'parse | filter icmp | icmp-echo | checksum']);
    assert.equal(r.code, 0, r.stderr);
    assert.ok(hasLibpcap(r), `libpcap mapped:\n${r.libs.join('\n')}`);
    assert.ok(hasKoffi(r), 'koffi loaded');
    assert.deepEqual(loadedStages(r), [...ECHO_STAGES, stageFile('filter')].sort());
    assert.equal(hasYargs(r), false, 'yargs not loaded');
  });

  test('a pcap stage without filter= opens no libpcap', async () => {
    const r = await runProbed(['--read', inFile, '--quiet', `parse | pcap ${dir.file('tee.pcap')} | drop`]);
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(loadedStages(r), ['parse', 'pcap'].map(stageFile));
    assert.equal(hasLibpcap(r), false, 'libpcap not mapped');
    assert.equal(hasKoffi(r), false, 'koffi not loaded');
  });

  test('--version loads no stage and no yargs', async () => {
    const r = await runProbed(['--version']);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^\d+\.\d+\.\d+/);
    assert.deepEqual(loadedStages(r), []);
    assert.equal(hasYargs(r), false);
    assert.equal(hasKoffi(r), false);
  });
});

describe('the CLI as installed runs from its bundle', () => {
  /** The files of dist/ a run loaded as ES modules. */
  const ours = (r: Loaded) => r.modules.filter((m) => !m.includes(':'));
  const BUNDLE = ['bin/tunpipe.js', 'src/cli/main.bundle.js'];

  test("'parse | icmp-echo | checksum': the bundle and no other module of ours; no yargs, koffi, libpcap or worker_threads", async () => {
    const out = dir.file('bundle-echo-out.pcap');
    const r = await runProbed(['--read', inFile, '--write', out, 'parse | icmp-echo | checksum'], 'bundle');
    assert.equal(r.code, 0, r.stderr);
    assert.equal(readPcapRecords(readFileSync(out)).packets.length, 20, 'every request answered');
    assert.deepEqual(ours(r), BUNDLE);
    assert.equal(hasYargs(r), false, 'yargs not loaded');
    assert.equal(hasKoffi(r), false, 'koffi not loaded');
    assert.equal(hasLibpcap(r), false, 'libpcap not mapped');
    assert.ok(!r.modules.includes('node:worker_threads'), 'no worker_threads');
  });

  test('a filter loads koffi and libpcap, still from the bundle', async () => {
    const r = await runProbed(['--read', inFile, '--quiet', 'parse | filter icmp | icmp-echo | checksum'], 'bundle');
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(ours(r), BUNDLE);
    assert.ok(hasLibpcap(r), `libpcap mapped:\n${r.libs.join('\n')}`);
    assert.ok(hasKoffi(r), 'koffi loaded');
    assert.equal(hasYargs(r), false, 'yargs not loaded');
  });

  test('--help loads yargs and lists every stage', async () => {
    const r = await runProbed(['--help'], 'bundle');
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(ours(r), BUNDLE);
    assert.ok(hasYargs(r), 'yargs loaded for --help');
    for (const def of builtinStages()) assert.ok(r.stdout.includes(def.name), `${def.name} in --help`);
  });

  test("--version loads the bundle and nothing else", async () => {
    const r = await runProbed(['--version'], 'bundle');
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^\d+\.\d+\.\d+/);
    assert.deepEqual(ours(r), BUNDLE);
    assert.equal(hasYargs(r), false);
    assert.equal(hasKoffi(r), false);
  });

  test("a user's stage is loaded by the run that names it, and only then", async () => {
    const stage = dir.file('bundle-pass.mjs');
    writeFileSync(stage, 'export default (p) => p;\n');
    const url = pathToFileURL(stage).href;
    const named = await runProbed(['--read', inFile, '--quiet', `parse | ${stage} | checksum`], 'bundle');
    assert.equal(named.code, 0, named.stderr);
    assert.ok(named.modules.includes(url), `${url} loaded:\n${named.modules.join('\n')}`);
    const other = await runProbed(['--read', inFile, '--quiet', 'parse | checksum'], 'bundle');
    assert.equal(other.code, 0, other.stderr);
    assert.ok(!other.modules.includes(url));
  });
});

describe('--list and --help still see every stage', () => {
  const every = BUILTIN_STAGE_MODULES.map((m) => stageFile(m.name)).sort();

  test('--list loads and lists every built-in stage, without yargs', async () => {
    const r = await runProbed(['--list']);
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(loadedStages(r), every);
    const names = lines(r.stdout).map((l) => l.trim().split(/\s+/)[0]);
    for (const def of builtinStages()) assert.ok(names.includes(def.name), `${def.name} listed`);
    assert.equal(hasYargs(r), false);
  });

  test('--list NAME loads every declaration (to describe one)', async () => {
    const r = await runProbed(['--list', 'reorder']);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^reorder /);
    assert.deepEqual(loadedStages(r), every);
  });

  test('--help is written by yargs and lists every stage', async () => {
    const r = await runProbed(['--help']);
    assert.equal(r.code, 0, r.stderr);
    assert.ok(hasYargs(r), 'yargs loaded for --help');
    assert.deepEqual(loadedStages(r), every);
    for (const def of builtinStages()) assert.ok(r.stdout.includes(def.name), `${def.name} in --help`);
  });
});

describe('the stage list and the stage files agree', () => {
  test('every name in stage-modules.ts is the name its file declares, in the registry order', () => {
    assert.deepEqual(
      BUILTIN_STAGE_MODULES.map((m) => m.name),
      builtinStages().map((d) => d.name),
    );
  });

  test('every stage file in transforms/ is in stage-modules.ts', async () => {
    const known = new Set(BUILTIN_STAGE_MODULES.map((m) => m.name));
    for (const f of readdirSync(join(DIST, 'transforms')).filter((n) => n.endsWith('.js'))) {
      const mod = (await import(pathToFileURL(join(DIST, 'transforms', f)).href)) as { default?: { name?: unknown; create?: unknown; expand?: unknown } };
      const def = mod.default;
      if (def && typeof def.name === 'string' && (def.create !== undefined || def.expand !== undefined)) assert.ok(known.has(def.name), `${f} declares '${def.name}'`);
    }
  });
});

describe("a user's stage", () => {
  const stage = dir.file('count-bytes.mjs');
  writeFileSync(stage, "export default { name: 'count-bytes', keepsPackets: false, create: () => ({ process: (p) => p }) };\n");
  const stageUrl = pathToFileURL(stage).href;

  test('is loaded by the run that names it', async () => {
    const r = await runProbed(['--read', inFile, '--quiet', `parse | ${stage} | checksum`]);
    assert.equal(r.code, 0, r.stderr);
    assert.ok(r.modules.includes(stageUrl), `${stageUrl} loaded:\n${r.modules.join('\n')}`);
    assert.deepEqual(loadedStages(r), ['checksum', 'parse'].map(stageFile));
  });

  test('is not loaded by a run that does not name it, nor by --list', async () => {
    const run = await runProbed(['--read', inFile, '--quiet', 'parse | checksum']);
    assert.equal(run.code, 0, run.stderr);
    assert.ok(!run.modules.includes(stageUrl));
    const list = await runProbed(['--list']);
    assert.ok(!list.modules.includes(stageUrl));
  });
});

describe('a command line out of the ordinary is read by yargs', () => {
  test('--count 0x10 (yargs reads hex) stops after 16 packets', async () => {
    const out = dir.file('hex-count.pcap');
    const r = await runProbed(['--read', inFile, '--write', out, '--count', '0x10', 'parse | icmp-echo | checksum']);
    assert.equal(r.code, 0, r.stderr);
    assert.ok(hasYargs(r), 'yargs loaded');
    assert.equal(readPcapRecords(readFileSync(out)).packets.length, 16);
  });

  test("an unknown option is yargs' usage error, exit 2", async () => {
    const r = await runProbed(['--reed', inFile, 'parse']);
    assert.equal(r.code, 2);
    assert.ok(hasYargs(r));
    assert.match(r.stderr, /^tunpipe: Unknown argument: reed \(see tunpipe --help\)$/m);
  });
});
