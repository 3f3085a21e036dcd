/**
 * The disk under a capture fills up. A small tmpfs is mounted in a private mount namespace (unshare -m)
 * inside the test's network namespace, so nothing on the host is mounted; the shell that runs tunpipe copies
 * the capture out after tunpipe exits, before the mount goes away.
 *
 * Default (onerror=stop): a clear "disk is full" message, the pipeline stops, non-zero exit, and the file
 * holds only whole packets: every one it reports as written. With onerror=continue the capture stops but
 * pings are still answered.
 */
import { it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, readFileSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { deviceTestSkipReason, TUNPIPE, type TunpipeProcess } from '../helpers/netns.js';
import { watchProcess } from '../helpers/netns-process.js';
import { DEVICE_ADDR, exitWithin, inScene, killPidFile, PEER, ping, reportedWritten, shq, soundCapture, stackLines, tcpdumpRead, type Scene } from './support.js';

/**
 * Starts, in a private mount namespace: a 64 KiB tmpfs on DIR/mnt, tunpipe capturing to it, and after
 * tunpipe's exit a copy of the capture to DIR/cap.pcap; waits until the device is open. tunpipe's pid is
 * written to DIR/pid; tunpipe and the shell are killed when the test ends.
 */
async function startOnSmallDisk({ ns, dir, atEnd }: Scene, dev: string, pcapArgs: string, file = 'cap.pcap'): Promise<TunpipeProcess> {
  const mnt = join(dir, 'mnt');
  mkdirSync(mnt);
  const pipeline = `parse | pcap ${mnt}/${file} ${pcapArgs} | icmp-echo | checksum`;
  const script = [
    `mount -t tmpfs -o size=64k tunpipe-fault ${shq(mnt)} || exit 97`,
    `${shq(process.execPath)} ${shq(TUNPIPE)} --dev ${dev} --addr ${DEVICE_ADDR} ${shq(pipeline)} &`,
    `echo $! > ${shq(join(dir, 'pid'))}`,
    'wait $!',
    'rc=$?',
    `cp ${shq(mnt)}/${file} ${shq(join(dir, file))}`,
    'exit $rc',
  ].join('\n');
  const tp = watchProcess(ns.spawn('unshare', ['-m', 'sh', '-c', script]));
  atEnd(() => tp.stop('SIGKILL'));
  atEnd(() => killPidFile(join(dir, 'pid')));
  await tp.waitFor(/device \S+ open/);
  return tp;
}

it('disk full with onerror=stop: "disk is full", pipeline stops, non-zero exit, file holds whole packets', { skip: deviceTestSkipReason(), timeout: 30_000 }, () =>
  inScene('diskfull', async (scene) => {
    const tp = await startOnSmallDisk(scene, 'tpf1', '');
    // 2000 requests at 100 bytes a record: about three times what 64 KiB holds.
    const flood = scene.startFlood(2000, 10);
    const code = await exitWithin(tp, 10_000);
    await flood.stop();
    assert.notEqual(code, 'timeout', `tunpipe kept running with a full disk:\n${tp.stderr()}`);
    assert.notEqual(code, 0, `exit ${code}: a capture that cannot be written stops the run with a failure\n${tp.stderr()}`);
    assert.notEqual(code, 97, 'the tmpfs could not be mounted');
    const err = tp.stderr();
    assert.match(err, /^tunpipe: .*disk is full/m);
    assert.deepEqual(stackLines(err), []);

    const { td } = soundCapture(join(scene.dir, 'cap.pcap'));
    assert.ok(td.count > 0, 'packets written before the disk filled are kept');
    // Never lose a packet reported as captured: what the counters call written is what the file holds.
    assert.equal(reportedWritten(err), td.count, `reported written vs. in the file:\n${err}`);
  }),
);

it('disk full with onerror=continue: the capture stops, pings after the fill are still answered', { skip: deviceTestSkipReason(), timeout: 30_000 }, () =>
  inScene('diskcont', async (scene) => {
    const { ns, dir } = scene;
    const tp = await startOnSmallDisk(scene, 'tpf2', 'onerror=continue');
    const flood = await scene.startFlood(1500, 10).done;
    await tp.waitFor(/disk is full/, 5000);
    assert.equal(flood.received, flood.transmitted, `every request of the flood answered, the fill included:\n${flood.output}`);

    const after = await ping(ns, ['-c', '3', '-i', '0.2', '-w', '5', PEER]);
    assert.equal(after.received, 3, `pings after the disk filled:\n${after.output}\n${tp.stderr()}`);

    // SIGTERM, not SIGINT: sh starts background jobs with SIGINT ignored.
    const pid = Number(readFileSync(join(dir, 'pid'), 'utf8'));
    process.kill(pid, 'SIGTERM');
    const code = await exitWithin(tp, 5000);
    assert.equal(code, 0, `onerror=continue: a normal stop\n${tp.stderr()}`);
    const err = tp.stderr();
    assert.equal(err.split('\n').filter((l) => /disk is full/.test(l)).length, 1, `reported once:\n${err}`);
    assert.deepEqual(stackLines(err), []);

    const { records, td } = soundCapture(join(dir, 'cap.pcap'));
    assert.ok(records.length > 0);
    assert.equal(reportedWritten(err), td.count, `reported written vs. in the file:\n${err}`);
  }),
);

it('disk full under a pcapng capture: the file ends on a whole block, tshark and tcpdump read every packet reported written', { skip: deviceTestSkipReason(), timeout: 30_000 }, () =>
  inScene('diskng', async (scene) => {
    const tp = await startOnSmallDisk(scene, 'tpf3', '', 'cap.pcapng');
    const flood = scene.startFlood(2000, 10);
    const code = await exitWithin(tp, 10_000);
    await flood.stop();
    assert.notEqual(code, 'timeout', tp.stderr());
    assert.notEqual(code, 0, tp.stderr());
    assert.notEqual(code, 97, 'the tmpfs could not be mounted');
    const err = tp.stderr();
    assert.match(err, /^tunpipe: .*disk is full/m);
    const file = join(scene.dir, 'cap.pcapng');
    const td = tcpdumpRead(file);
    assert.equal(td.status, 0, `tcpdump reads it to its end:\n${td.stderr}`);
    assert.ok(td.count > 0);
    assert.equal(reportedWritten(err), td.count, `reported written vs. in the file:\n${err}`);
    // tshark reads the file to its end without complaint (a cut block would be an error).
    const tshark = spawnSync('tshark', ['-r', file, '-T', 'fields', '-e', 'frame.number'], { encoding: 'utf8' });
    assert.equal(tshark.status, 0, tshark.stderr);
    assert.equal(tshark.stdout.trim().split('\n').length, td.count);
  }),
);
