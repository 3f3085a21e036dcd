/**
 * tunpipe as a library: a small program importing the compiled package does
 * `pipe(tun, parseIPv4(), icmpEcho(), recomputeChecksum(), tun)` with it-pipe and answers the system ping in a
 * namespace, with no checksum error counted by the kernel; then it is killed.
 */
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { deviceTestSkipReason, withNetns } from '../helpers/netns.js';
import { pingIn, spawnInNetns, watchProcess } from '../helpers/netns-process.js';
import { REPO_ROOT, tempDir } from '../helpers/cli.js';

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
