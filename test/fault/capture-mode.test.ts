/**
 * Captures hold other people's traffic: a capture file tunpipe creates is mode 0600 whatever the umask
 * (here 000, which would otherwise give 0666), on a device and offline (--write and a pcap stage).
 */
import { it } from 'node:test';
import assert from 'node:assert/strict';
import { statSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { deviceTestSkipReason, TUNPIPE } from '../helpers/netns.js';
import { watchProcess } from '../helpers/netns-process.js';
import { echoRequest, writePcap } from '../helpers/packets.js';
import { captureEchoPipeline, DEVICE_ADDR, inScene, PEER, ping, shq, tempDir } from './support.js';

const mode = (path: string) => (statSync(path).mode & 0o777).toString(8);

it('a capture file created on a device is mode 0600, even with umask 000', { skip: deviceTestSkipReason(), timeout: 30_000 }, () =>
  inScene('mode', async ({ ns, dir, atEnd }) => {
    const cap = join(dir, 'cap.pcap');
    const tp = watchProcess(ns.spawn('sh', ['-c', `umask 000; exec ${shq(process.execPath)} ${shq(TUNPIPE)} --dev tpf11 --addr ${DEVICE_ADDR} ${shq(captureEchoPipeline(cap))}`]));
    atEnd(() => tp.stop('SIGKILL'));
    await tp.waitFor(/device \S+ open/);
    const pings = await ping(ns, ['-c', '1', '-w', '5', PEER]);
    assert.equal(pings.received, 1, tp.stderr());
    assert.equal(mode(cap), '600');
    assert.equal(await tp.stop('SIGINT'), 0, tp.stderr());
    assert.equal(mode(cap), '600');
  }),
);

it('capture files created offline (--write and a pcap stage) are mode 0600, even with umask 000', () => {
  const { dir, cleanup } = tempDir('modeoff');
  try {
    const input = join(dir, 'in.pcap');
    writePcap(input, [echoRequest({ seq: 1 }), echoRequest({ seq: 2 })]);
    const out = join(dir, 'out.pcap');
    const tap = join(dir, 'tap.pcap');
    const r = spawnSync('sh', ['-c', `umask 000; exec ${shq(process.execPath)} ${shq(TUNPIPE)} --read ${shq(input)} --write ${shq(out)} ${shq(captureEchoPipeline(tap))}`], { encoding: 'utf8', timeout: 20_000 });
    assert.equal(r.status, 0, r.stderr);
    assert.equal(mode(out), '600', '--write');
    assert.equal(mode(tap), '600', 'pcap stage');
  } finally {
    cleanup();
  }
});
