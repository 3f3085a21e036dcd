/**
 * Errors with devices: a name already in use (EBUSY), an invalid --addr, a configuration the kernel refuses
 * after the device was made, a name that is too long, a pipeline typo. Each is one clear line (or the
 * caret block) with no stack trace and a non-zero exit, and leaves no device behind.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { deviceTestSkipReason, withNetns, type Netns } from '../helpers/netns.js';
import { linkExists, pingIn, runTunpipeIn, startTunpipeWith } from '../helpers/netns-process.js';
import { lines, stackTraceLines } from '../helpers/cli.js';

const skip = deviceTestSkipReason();
const ECHO = 'parse | icmp-echo | checksum';

/** Interfaces in the namespace other than lo. */
function devices(ns: Netns): string[] {
  return ns
    .run('ip', ['-o', 'link', 'show'])
    .split('\n')
    .map((l) => /^\d+:\s+([^:@]+)/.exec(l)?.[1])
    .filter((n): n is string => n !== undefined && n !== 'lo');
}

function assertOneLineError(r: { code: number | string; stderr: string }, code: number, re: RegExp): void {
  assert.equal(r.code, code, r.stderr);
  assert.deepEqual(stackTraceLines(r.stderr), [], 'no stack trace');
  const l = lines(r.stderr);
  assert.equal(l.length, 1, `one line:\n${r.stderr}`);
  assert.match(l[0], /^tunpipe: /);
  assert.match(l[0], re);
}

test('a second tunpipe on a --dev in use fails with EBUSY (exit 1) and the first goes on', { skip }, async () => {
  await withNetns(async (ns) => {
    const first = startTunpipeWith(ns, ['--dev', 'tpe0', '--addr', '198.18.0.1/24', ECHO]);
    try {
      await first.waitFor(/reading/);
      const second = await runTunpipeIn(ns, ['--dev', 'tpe0', '--addr', '198.18.0.1/24', ECHO]);
      assertOneLineError(second, 1, /tpe0.*EBUSY/);
      assert.equal(first.child.exitCode, null, 'the first is still running');
      assert.equal(pingIn(ns, ['-c', '3', '-i', '0.05', '-w', '5', '198.18.0.2']).received, 3, 'and still answering');
      assert.equal(await first.stop('SIGINT'), 0, first.stderr());
    } finally {
      await first.stop('SIGKILL', 1000);
    }
  }, 'tpbusy');
});

test('an invalid --addr (198.18.0.1/40) is a clear error and no device is left', { skip }, async () => {
  await withNetns(async (ns) => {
    for (const addr of ['198.18.0.1/40', '198.18.0.300/24', '2001:db8::1/129', '198.18.0.1/']) {
      const r = await runTunpipeIn(ns, ['--dev', 'tpa0', '--addr', addr, ECHO]);
      assert.notEqual(r.code, 0);
      assertOneLineError(r, r.code as number, new RegExp(addr.replace(/[.]/g, '\\.')));
      assert.deepEqual(devices(ns), [], `no device left after --addr ${addr}`);
    }
  }, 'tpaddr');
});

test('a configuration the kernel refuses after the device is made (IPv6 on MTU 100) leaves no device', { skip }, async () => {
  await withNetns(async (ns) => {
    const r = await runTunpipeIn(ns, ['--dev', 'tpa1', '--mtu', '100', '--addr', '2001:db8::1/64', ECHO]);
    assertOneLineError(r, 1, /2001:db8::1\/64/);
    assert.deepEqual(devices(ns), []);
  }, 'tprefuse');
});

test('a --dev name longer than 15 characters is refused, nothing is created', { skip }, async () => {
  await withNetns(async (ns) => {
    const r = await runTunpipeIn(ns, ['--dev', 'tp-name-too-long0', '--addr', '198.18.0.1/24', ECHO]);
    assertOneLineError(r, 2, /tp-name-too-long0.*too long/);
    assert.deepEqual(devices(ns), []);
    // 15 characters is the longest name the kernel takes: that one works.
    const ok = startTunpipeWith(ns, ['--dev', 'tp-fifteen-chr0', '--addr', '198.18.0.1/24', ECHO]);
    try {
      await ok.waitFor(/reading/);
      assert.ok(linkExists(ns, 'tp-fifteen-chr0'));
      assert.equal(await ok.stop('SIGINT'), 0, ok.stderr());
    } finally {
      await ok.stop('SIGKILL', 1000);
    }
  }, 'tplong');
});

test('a pipeline typo with --dev creates no device (exit 2, caret block)', { skip }, async () => {
  await withNetns(async (ns) => {
    const r = await runTunpipeIn(ns, ['--dev', 'tpu0', '--addr', '198.18.0.1/24', 'parse | icmp-echoo | checksum']);
    assert.equal(r.code, 2, r.stderr);
    assert.match(r.stderr, /unknown stage 'icmp-echoo'/);
    assert.match(r.stderr, /\n {10}\^/, 'the caret under the stage name');
    assert.deepEqual(stackTraceLines(r.stderr), []);
    assert.deepEqual(devices(ns), []);
  }, 'tptypo');
});

// The worker thread (the CLI's default), and the event-loop path with each readiness implementation.
const ENGINES: [string, Record<string, string>][] = [
  ['worker thread', {}],
  ['event loop, pipe readiness', { TUNPIPE_THREAD: 'main', TUNPIPE_READINESS: 'pipe' }],
  ['event loop, poll readiness', { TUNPIPE_THREAD: 'main', TUNPIPE_READINESS: 'poll' }],
];

for (const [engine, env] of ENGINES) {
  test(`a device deleted under a running tunpipe ends it with exit 1 and one clear line (${engine})`, { skip }, async () => {
    await withNetns(async (ns) => {
      const tp = startTunpipeWith(ns, ['--dev', 'tpd0', '--addr', '198.18.0.1/24', ECHO], { env });
      try {
        await tp.waitFor(/reading/);
        ns.run('ip', ['link', 'del', 'dev', 'tpd0']);
        const ended = await Promise.race([tp.exited(), new Promise((r) => setTimeout(() => r('still running after 3 s'), 3000))]);
        assert.equal(ended, 1, tp.stderr());
        assert.match(tp.stderr(), /tpd0 went away/);
        assert.deepEqual(stackTraceLines(tp.stderr()), []);
      } finally {
        await tp.stop('SIGKILL', 1000);
      }
    }, 'tpgone');
  });
}
