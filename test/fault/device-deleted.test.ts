/**
 * The device is deleted under a running tunpipe (`ip link del`): it must say so in one line, flush the
 * capture it was writing (every request seen before is in it, readable by tcpdump), exit non-zero, and not
 * hang.
 */
import { it } from 'node:test';
import assert from 'node:assert/strict';
import { deviceTestSkipReason } from '../helpers/netns.js';
import { exitWithin, inScene, PEER, ping, soundCapture, stackLines } from './support.js';

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
