/**
 * The tests' own namespaces leave nothing behind, however a test process ends: a process that makes
 * namespaces with test/helpers/netns.ts, with a process running in one of them (as a tunpipe or an
 * `iperf3 -D` would be), is ended by SIGTERM, SIGINT and SIGHUP (a cancelled run) and by SIGKILL. After a
 * signal it can handle, its namespaces and the process inside are gone when it has exited; after SIGKILL,
 * they are gone once the next test process has loaded the helper.
 */
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { deviceTestSkipReason } from '../helpers/netns.js';
import { listNetns, removeNetns } from '../helpers/netns-remove.js';
import { REPO_ROOT, tempDir } from '../helpers/cli.js';

const skip = deviceTestSkipReason();
const dir = tempDir('tunpipe-netns-cleanup-');
after(() => dir.remove());

const helper = pathToFileURL(join(REPO_ROOT, 'dist', 'test', 'helpers', 'netns.js')).href;

/** Makes two namespaces, starts `sleep` in the first, prints what it made, then waits to be killed. */
const MAKER = `import { createNetns } from '${helper}';
const a = createNetns('tpcl');
const b = createNetns('tpcl');
const sleeper = a.spawn('sleep', ['300']);
sleeper.on('spawn', () => process.stdout.write(JSON.stringify({ names: [a.name, b.name], pid: sleeper.pid }) + '\\n'));
setInterval(() => {}, 1000);
`;

/** Gone, or a zombie waiting for its new parent to reap it: either way it runs no more. */
function runs(pid: number): boolean {
  try {
    return !/^\d+ \(.*\) Z/.test(readFileSync(`/proc/${pid}/stat`, 'latin1'));
  } catch {
    return false;
  }
}

async function makeThenKill(signal: NodeJS.Signals): Promise<{ names: string[]; pid: number; exit: string }> {
  const file = join(dir.path, 'maker.mjs');
  writeFileSync(file, MAKER);
  const child = spawn(process.execPath, [file], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  const made = await new Promise<{ names: string[]; pid: number }>((resolve, reject) => {
    child.stdout!.on('data', (d: Buffer) => {
      out += d.toString();
      if (out.includes('\n')) resolve(JSON.parse(out));
    });
    child.once('exit', (code) => reject(new Error(`the maker exited (${code}) before making anything`)));
  });
  try {
    assert.ok(made.names.every((n) => listNetns().includes(n)), 'the namespaces exist while their maker runs');
    assert.ok(runs(made.pid), 'the process inside runs');
  } catch (err) {
    child.kill('SIGKILL');
    for (const n of listNetns().filter((name) => made.names.includes(name))) removeNetns(n);
    throw err;
  }
  const exited = new Promise<string>((resolve) => child.once('exit', (code, sig) => resolve(sig ?? String(code))));
  child.kill(signal);
  return { ...made, exit: await exited };
}

for (const signal of ['SIGTERM', 'SIGINT', 'SIGHUP'] as const) {
  test(`a test process ended by ${signal} removes its namespaces and what runs in them, and still dies of the signal`, { skip, timeout: 20_000 }, async () => {
    const { names, pid, exit } = await makeThenKill(signal);
    const left = listNetns().filter((n) => names.includes(n));
    // Whatever is asserted below, this test leaves nothing of its own.
    for (const n of left) removeNetns(n);
    assert.equal(exit, signal, 'it died of the signal, as without the cleanup');
    assert.deepEqual(left, [], 'no namespace left');
    assert.equal(runs(pid), false, 'the process inside was killed');
  });
}

test('a test process killed with SIGKILL: the next one to load the helper removes its namespaces and what runs in them', { skip, timeout: 20_000 }, async () => {
  const { names, pid, exit } = await makeThenKill('SIGKILL');
  try {
    assert.equal(exit, 'SIGKILL');
    // ip netns list shows the newest first.
    assert.deepEqual(listNetns().filter((n) => names.includes(n)).sort(), [...names].sort(), 'SIGKILL leaves them (nothing can run)');
    const next = spawnSync(process.execPath, ['--input-type=module', '-e', `await import('${helper}')`], { encoding: 'utf8', timeout: 10_000 });
    assert.equal(next.status, 0, next.stderr);
    assert.deepEqual(listNetns().filter((n) => names.includes(n)), [], 'the stale namespaces were removed');
    assert.equal(runs(pid), false, 'the process left inside was killed');
  } finally {
    // Whatever failed above, this test leaves nothing of its own.
    for (const n of listNetns().filter((name) => names.includes(name))) removeNetns(n);
  }
});
