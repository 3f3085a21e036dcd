/**
 * Where io_uring cannot be had: tunpipe run under test/helpers/without-io-uring.c, a seccomp filter of that
 * process alone that makes io_uring_setup(2) fail with ENOSYS (as a kernel without io_uring does; nothing
 * host-wide changes). By default the worker falls back to poll() and says why on the exit line, and the pings
 * are answered (judged by the kernel's counters); with TUNPIPE_IO=uring it refuses with one clear line,
 * exit 1, and leaves no device.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { deviceTestSkipReason, withNetns } from '../helpers/netns.js';
import { linkExists, pingIn, tunpipeArgv, spawnInNetns, watchProcess } from '../helpers/netns-process.js';
import { REPO_ROOT, stackTraceLines } from '../helpers/cli.js';

const skip = deviceTestSkipReason();
const ECHO = 'parse | icmp-echo | checksum';
const REASON = 'io_uring_setup: ENOSYS';
let dir = '';
let helper = '';

before(() => {
  if (skip) return;
  dir = mkdtempSync(join(tmpdir(), 'tunpipe-no-uring-'));
  helper = join(dir, 'without-io-uring');
  execFileSync('cc', ['-O2', '-Wall', '-o', helper, join(REPO_ROOT, 'test', 'helpers', 'without-io-uring.c')]);
});
after(() => {
  if (dir) rmSync(dir, { recursive: true, force: true });
});

function startWithoutUring(ns: Parameters<typeof spawnInNetns>[0], args: string[], env?: Record<string, string>) {
  return watchProcess(spawnInNetns(ns, [helper, ...tunpipeArgv(args)], { env }));
}

test('without io_uring the worker falls back to poll(), answers pings, and the exit line gives the reason', { skip }, async () => {
  await withNetns(async (ns) => {
    const beforeCounters = ns.nstat();
    const tp = startWithoutUring(ns, ['--dev', 'tpt0', '--addr', '198.18.0.1/24', ECHO]);
    try {
      await tp.waitFor(/reading/);
      const ping = pingIn(ns, ['-c', '20', '-i', '0.01', '-w', '10', '198.18.0.2']);
      assert.equal(ping.received, 20, ping.output);
      const afterCounters = ns.nstat();
      assert.ok(afterCounters.IcmpInEchoReps - beforeCounters.IcmpInEchoReps >= 20, 'the kernel took the replies');
      assert.equal(afterCounters.IcmpInCsumErrors, beforeCounters.IcmpInCsumErrors, 'no reply had a bad checksum');
      assert.equal(afterCounters.IcmpOutEchoReps, beforeCounters.IcmpOutEchoReps, 'the kernel answered none itself');
      assert.equal(await tp.stop('SIGINT'), 0, tp.stderr());
      const dev = /^device tpt0: read \d+, written (\d+), write errors 0 \((.*)\)$/m.exec(tp.stderr());
      assert.ok(dev, tp.stderr());
      assert.ok(Number(dev[1]) >= 20);
      assert.equal(dev[2], `poll (io_uring: ${REASON})`);
    } finally {
      await tp.stop('SIGKILL', 1000);
    }
  }, 'tpnouring');
});

test('TUNPIPE_IO=uring without io_uring: one clear line, exit 1, no device left', { skip }, async () => {
  await withNetns(async (ns) => {
    const tp = startWithoutUring(ns, ['--dev', 'tpt0', '--addr', '198.18.0.1/24', ECHO], { TUNPIPE_IO: 'uring' });
    const timer = setTimeout(() => tp.child.kill('SIGKILL'), 10_000);
    const code = await tp.exited();
    clearTimeout(timer);
    await new Promise((r) => setImmediate(r));
    const err = tp.stderr();
    assert.equal(code, 1, err);
    assert.match(err, new RegExp(`^tunpipe: TUNPIPE_IO=uring, but io_uring cannot be used here: ${REASON}$`, 'm'));
    assert.deepEqual(stackTraceLines(err), []);
    assert.equal(linkExists(ns, 'tpt0'), false, 'the device tunpipe made is gone');
  }, 'tpnouring');
});
