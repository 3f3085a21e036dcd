/**
 * The device is deleted under a running tunpipe (`ip link del`): it must say so in one line, flush the
 * capture it was writing (every request seen before is in it, readable by tcpdump), exit non-zero, and not
 * hang.
 */
import { it } from 'node:test';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import assert from 'node:assert/strict';
import { deviceTestSkipReason } from '../helpers/netns.js';
import { pingIn, startTunpipeWith } from '../helpers/netns-process.js';
import { DEVICE_ADDR, exitWithin, inScene, PEER, ping, pingInBackground, soundCapture, stackLines } from './support.js';

it('device deleted while capturing: one-line message, capture flushed and valid, non-zero exit within 2 s', { skip: deviceTestSkipReason(), timeout: 30_000 }, () =>
  inScene('deleted', async ({ ns, startCaptureEcho }) => {
    const { tp, cap } = await startCaptureEcho('tpf0');
    const before = await ping(ns, ['-c', '3', '-i', '0.2', '-w', '5', PEER]);
    assert.equal(before.received, 3, before.output);

    ns.run('ip', ['link', 'del', 'tpf0']);
    const code = await exitWithin(tp, 2000);
    assert.notEqual(code, 'timeout', `tunpipe still running 2 s after its device was deleted:\n${tp.stderr()}`);
    assert.equal(typeof code, 'number', `ended by signal ${code}`);
    assert.notEqual(code, 0, 'a vanished device is a failure, not a normal stop');

    const err = tp.stderr();
    const about = err.split('\n').filter((l) => /tpf0/.test(l) && /deleted|went away|gone|vanished/i.test(l));
    assert.equal(about.length, 1, `one line about the device going away expected:\n${err}`);
    assert.match(about[0], /^tunpipe: /);
    assert.deepEqual(stackLines(err), [], 'no stack trace');

    const { td } = soundCapture(cap);
    assert.equal(td.count, before.received, `tcpdump read:\n${td.lines.join('\n')}`);
  }),
);

/**
 * A device that no pipeline reads (`to` only) has no read to fail when it is deleted: only the kernel's link
 * event (a netlink watch beside the devices) can tell. The same watch covers a read that was woken before
 * the device was detached and went back to sleep (the race the test above could lose).
 */
const LOOPS: [string, Record<string, string>, RegExp][] = [
  ['io_uring', {}, /\(io_uring\)/],
  ['poll', { TUNPIPE_IO: 'poll' }, /\(poll\)/],
  ['the event loop', { TUNPIPE_THREAD: 'main' }, /event loop, pipe readiness/],
  ['the event loop with poll readiness', { TUNPIPE_THREAD: 'main', TUNPIPE_READINESS: 'poll' }, /event loop, poll readiness/],
];
for (const [loop, env, io] of LOOPS) {
  it(`a device that is only written to, deleted (${loop}): the link event stops the run within 2 s, with one line and the counters`, { skip: deviceTestSkipReason(), timeout: 30_000 }, () =>
    inScene('deleted-out', async ({ ns, atEnd }) => {
      const tp = startTunpipeWith(ns, ['--dev', 'tpr0', '--addr', DEVICE_ADDR, '--dev', 'tpw0', '--addr', '198.18.1.1/24', 'from tpr0 | to tpw0'], { env });
      atEnd(() => tp.stop('SIGKILL'));
      await tp.waitFor(/reading/);
      // Packets cross first, so the run is under way: pings to a peer behind tpr0 leave through tpw0.
      pingIn(ns, ['-c', '3', '-i', '0.05', '-W', '0.2', PEER], 5_000, false);

      ns.run('ip', ['link', 'del', 'tpw0']);
      const code = await exitWithin(tp, 2000);
      assert.notEqual(code, 'timeout', `tunpipe still running 2 s after a device it writes to was deleted:\n${tp.stderr()}`);
      assert.equal(code, 1, tp.stderr());
      const err = tp.stderr();
      const about = err.split('\n').filter((l) => /tpw0/.test(l) && /went away/.test(l));
      assert.equal(about.length, 1, `one line about tpw0 going away expected:\n${err}`);
      assert.match(about[0], /^tunpipe: device tpw0 went away \(EBADFD\)/);
      assert.match(err, /device tpr0: read 3, written 0/, 'the exit report counts what was read');
      assert.match(err, io);
      assert.deepEqual(stackLines(err), [], 'no stack trace');
    }),
  );
}

it('a device of a multi-queue run (--queues 2), deleted: every queue worker stops within 2 s, with one line', { skip: deviceTestSkipReason(), timeout: 30_000 }, () =>
  inScene('deleted-queues', async ({ ns, atEnd }) => {
    const tp = startTunpipeWith(ns, ['--dev', 'tpq0', '--addr', DEVICE_ADDR, '--queues', '2', 'parse | icmp-echo | checksum']);
    atEnd(() => tp.stop('SIGKILL'));
    await tp.waitFor(/reading/);
    const before = await ping(ns, ['-c', '3', '-i', '0.2', '-w', '5', PEER]);
    assert.equal(before.received, 3, before.output);
    ns.run('ip', ['link', 'del', 'tpq0']);
    const code = await exitWithin(tp, 2000);
    assert.notEqual(code, 'timeout', `tunpipe still running 2 s after its device was deleted:\n${tp.stderr()}`);
    assert.equal(code, 1, tp.stderr());
    const err = tp.stderr();
    assert.equal(err.split('\n').filter((l) => /tpq0/.test(l) && /went away/.test(l)).length, 1, err);
    assert.deepEqual(stackLines(err), [], 'no stack trace');
  }),
);

for (const [loop, env, io] of LOOPS) {
  it(`links of the namespace that come and go beside a running echo (${loop}): it goes on answering, and stops cleanly`, { skip: deviceTestSkipReason(), timeout: 60_000 }, () =>
    inScene('churn', async ({ ns, atEnd }) => {
      const tp = startTunpipeWith(ns, ['--dev', 'tpk0', '--addr', DEVICE_ADDR, 'parse | icmp-echo | checksum'], { env });
      atEnd(() => tp.stop('SIGKILL'));
      await tp.waitFor(/reading/);
      const pings = pingInBackground(ns, ['-i', '0.002', '-c', '1500', '-w', '30', '-q', PEER]);
      // Every one is a link event the watch is woken by, and none is tpk0's deletion.
      for (let i = 0; i < 60 && pings.child.exitCode === null; i++) {
        ns.run('ip', ['tuntap', 'add', 'dev', `tpx${i}`, 'mode', 'tun']);
        ns.run('ip', ['link', 'set', `tpx${i}`, 'up']);
        ns.run('ip', ['link', 'del', `tpx${i}`]);
      }
      const r = await pings.done;
      assert.equal(r.received, 1500, r.output);
      assert.equal(await tp.stop('SIGINT'), 0, tp.stderr());
      assert.match(tp.stderr(), io);
      assert.match(tp.stderr(), /device tpk0: read 1500, written 1500, write errors 0/);
    }),
  );
}

/** Netlink sockets on RTMGRP_LINK in the namespace, and how many messages the kernel dropped for each (/proc/net/netlink). */
function linkWatchDrops(ns: { run(cmd: string, args: string[]): string }): number[] {
  return ns
    .run('cat', ['/proc/net/netlink'])
    .split('\n')
    .slice(1)
    .map((l) => l.trim().split(/\s+/))
    .filter((f) => f[1] === '0' && f[3] === '00000001')
    .map((f) => Number(f[8]));
}

for (const [loop, env, io] of LOOPS) {
  it(`a device that is only written to, deleted after its link watch overran (${loop}): still noticed, exit 1`, { skip: deviceTestSkipReason(), timeout: 60_000 }, () =>
    inScene('overrun', async ({ ns, dir, atEnd }) => {
      const tp = startTunpipeWith(ns, ['--dev', 'tpr0', '--addr', DEVICE_ADDR, '--dev', 'tpw0', '--addr', '198.18.1.1/24', 'from tpr0 | to tpw0'], { env });
      atEnd(() => tp.stop('SIGKILL'));
      await tp.waitFor(/reading/);
      // Stopped, tunpipe reads nothing while 600 link events arrive: more than a socket holds, so the kernel
      // drops some and the next read of the watch fails with ENOBUFS.
      const batch = join(dir, 'churn.batch');
      writeFileSync(batch, Array.from({ length: 300 }, (_, i) => `tuntap add dev tpy${i} mode tun\nlink del tpy${i}\n`).join(''));
      process.kill(tp.child.pid!, 'SIGSTOP');
      try {
        ns.run('ip', ['-batch', batch]);
      } finally {
        process.kill(tp.child.pid!, 'SIGCONT');
      }
      assert.ok(linkWatchDrops(ns).some((d) => d > 0), `the watch overran: ${linkWatchDrops(ns)}`);
      await new Promise((r) => setTimeout(r, 500));
      assert.equal(tp.child.exitCode, null, `tunpipe goes on after the overrun:\n${tp.stderr()}`);
      ns.run('ip', ['link', 'del', 'tpw0']);
      // Closing tpr0 after hundreds of links just went takes the kernel longer than usual.
      const code = await exitWithin(tp, 8000);
      assert.notEqual(code, 'timeout', `tunpipe still running 8 s after a device it writes to was deleted:\n${tp.stderr()}`);
      assert.equal(code, 1, tp.stderr());
      assert.match(tp.stderr(), /^tunpipe: device tpw0 went away \(EBADFD\)/m);
      assert.match(tp.stderr(), io);
    }),
  );
}
