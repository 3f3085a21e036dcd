/**
 * The link is set down and up again under a running tunpipe (`ip link set down/up`, as a network manager
 * might): tunpipe keeps running and answers again once the link and its route are back.
 */
import { it } from 'node:test';
import assert from 'node:assert/strict';
import { deviceTestSkipReason } from '../helpers/netns.js';
import { exitWithin, inScene, PEER, ping, sleep, stackLines } from './support.js';

it('link down and up while running: tunpipe stays up and answers again', { skip: deviceTestSkipReason(), timeout: 30_000 }, () =>
  inScene('link', async ({ ns, startEcho }) => {
    const tp = await startEcho('tpf17', 'parse | icmp-echo | checksum');
    assert.equal((await ping(ns, ['-c', '2', '-i', '0.2', '-w', '5', PEER])).received, 2);
    ns.run('ip', ['link', 'set', 'dev', 'tpf17', 'down']);
    await sleep(300);
    assert.equal(await exitWithin(tp, 200), 'timeout', `tunpipe exited when the link went down:\n${tp.stderr()}`);
    ns.run('ip', ['link', 'set', 'dev', 'tpf17', 'up']);
    const again = await ping(ns, ['-c', '3', '-i', '0.2', '-w', '5', PEER]);
    assert.equal(again.received, 3, `${again.output}\n${tp.stderr()}`);
    assert.equal(await tp.stop('SIGINT'), 0, tp.stderr());
    assert.deepEqual(stackLines(tp.stderr()), []);
  }),
);
