/**
 * tunpipe as a library: a small program importing the compiled package does
 * `pipe(tun, parseIPv4(), icmpEcho(), recomputeChecksum(), tun)` with it-pipe and answers the system ping in a
 * namespace, with no checksum error counted by the kernel; then it is killed.
 *
 * runPipeline() in a worker thread, inside a program that lives on after it: whether the run ends as asked
 * or its worker is ended (a user's stage that never returns), no file the worker opened stays open in the
 * program, neither a capture's nor one a user's stage opened and never closed.
 */
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { deviceTestSkipReason, withNetns } from '../helpers/netns.js';
import { pingIn, spawnInNetns, watchProcess } from '../helpers/netns-process.js';
import { REPO_ROOT, tempDir } from '../helpers/cli.js';
import { tcpdumpRead } from '../helpers/pcap-tools.js';

const skip = deviceTestSkipReason();
const dir = tempDir('tunpipe-lib-');
after(() => dir.remove());

/** The program, as a user would write it; modules named by URL since it lives outside the repository. */
function program(): string {
  const itPipe = import.meta.resolve('it-pipe');
  const tunpipe = pathToFileURL(join(REPO_ROOT, 'dist', 'src', 'index.js')).href;
  return `import { pipe } from '${itPipe}';
import { openTun, parseIPv4, icmpEcho, recomputeChecksum } from '${tunpipe}';

const tun = openTun({ name: process.argv[2], addresses: ['198.18.0.1/24'] });
process.once('SIGINT', () => tun.close());
process.stderr.write('library: answering on ' + tun.name + '\\n');
await pipe(tun, parseIPv4(), icmpEcho(), recomputeChecksum(), tun);
process.stderr.write('library: done\\n');
`;
}

test('pipe(tun, parseIPv4(), icmpEcho(), recomputeChecksum(), tun) answers pings', { skip }, async () => {
  const file = dir.file('echo.mjs');
  writeFileSync(file, program());
  await withNetns(async (ns) => {
    const before = ns.nstat();
    const p = watchProcess(spawnInNetns(ns, [process.execPath, file, 'tplib0']));
    try {
      await p.waitFor(/answering on tplib0/);
      const ping = pingIn(ns, ['-c', '10', '-i', '0.01', '-w', '5', '198.18.0.2']);
      assert.equal(ping.received, 10, `${ping.output}\n${p.stderr()}`);
      const after = ns.nstat();
      assert.ok(after.IcmpInEchoReps - before.IcmpInEchoReps >= 10);
      assert.equal(after.IcmpInCsumErrors, before.IcmpInCsumErrors);
      assert.equal(p.child.exitCode, null, 'still running: the pipe only ends when the device does');
      // The README's shutdown: Ctrl-C ends the pipe cleanly, with no stack trace.
      assert.equal(await p.stop('SIGINT', 2000), 0, p.stderr());
      assert.match(p.stderr(), /library: done/);
      assert.doesNotMatch(p.stderr(), /ERR_STREAM_PREMATURE_CLOSE|\n\s+at /);
      assert.equal(ns.run('ip', ['-o', 'link', 'show']).includes('tplib0'), false, 'the device is gone');
    } finally {
      await p.stop('SIGKILL', 1000);
    }
  }, 'tplib');
});

/** `node runs.mjs DEVICE DIR STAGE`: runPipeline in a worker until SIGINT, then prints the fds open on DIR. */
function runsInWorker(): string {
  const tunpipe = pathToFileURL(join(REPO_ROOT, 'dist', 'src', 'index.js')).href;
  return `import { readdirSync, readlinkSync } from 'node:fs';
import { openTun, runPipeline } from '${tunpipe}';

const [name, dir, stage] = process.argv.slice(2);
const openOnDir = () => readdirSync('/proc/self/fd').flatMap((fd) => {
  try {
    const target = readlinkSync('/proc/self/fd/' + fd);
    return target.startsWith(dir) ? [target] : [];
  } catch {
    return [];
  }
});
const tun = openTun({ name, addresses: ['198.18.0.1/24'] });
const stop = new AbortController();
process.once('SIGINT', () => stop.abort());
try {
  const pipeline = 'parse | pcap file=' + dir + '/seen.pcap | ' + dir + '/' + stage + ' | icmp-echo | checksum';
  await runPipeline({ pipeline, device: tun, thread: 'worker', signal: stop.signal, onReady: () => process.stderr.write('library: ready\\n') });
  process.stderr.write('library: ended\\n');
} catch (err) {
  process.stderr.write('library: failed: ' + err.message + '\\n');
}
tun.close();
process.stdout.write(JSON.stringify(openOnDir()) + '\\n');
`;
}

/** Opens a file when it loads and never closes it; with `spin`, never returns from its third packet. */
function leakyStage(spin: boolean): string {
  return `import { openSync, writeSync } from 'node:fs';
const fd = openSync(new URL('./kept-open.txt', import.meta.url), 'w');
let n = 0;
export default function (packet) {
  writeSync(fd, 'packet\\n');
  if (${spin} && ++n === 3) for (;;) {}
  return packet;
}
`;
}

for (const [dev, stuck] of [
  ['tplibfd0', false],
  ['tplibfd1', true],
] as const) {
  test(`runPipeline in a worker ${stuck ? 'ended after its grace time (a stage that never returns)' : 'stopped as asked'}: no file it opened stays open in the program`, { skip, timeout: 30_000 }, async () => {
    const sub = tempDir('tunpipe-libfd-');
    try {
      writeFileSync(sub.file('runs.mjs'), runsInWorker());
      writeFileSync(sub.file('leaks.mjs'), leakyStage(stuck));
      await withNetns(async (ns) => {
        const p = watchProcess(spawnInNetns(ns, [process.execPath, sub.file('runs.mjs'), dev, sub.path, 'leaks.mjs']));
        try {
          await p.waitFor(/library: ready/);
          const ping = pingIn(ns, ['-c', '3', '-i', '0.2', '-W', '1', '198.18.0.2']);
          assert.equal(ping.received, stuck ? 2 : 3, `${ping.output}\n${p.stderr()}`);
          assert.equal(await p.stop('SIGINT', 15_000), 0, p.stderr());
          assert.match(p.stderr(), stuck ? /library: failed: the pipeline did not stop within 5 s.*written out$/m : /library: ended/);
          assert.deepEqual(JSON.parse(p.stdout()), [], `fds still open on ${sub.path}`);
          assert.equal(tcpdumpRead(sub.file('seen.pcap'), ['icmp[icmptype] = 8']).length, 3, 'the capture holds every request');
          assert.equal(readFileSync(sub.file('kept-open.txt'), 'utf8'), 'packet\n'.repeat(3));
        } finally {
          await p.stop('SIGKILL', 1000);
        }
      }, 'tplibfd');
    } finally {
      sub.remove();
    }
  });
}
