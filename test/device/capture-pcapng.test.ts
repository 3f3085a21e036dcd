/**
 * pcapng, rotation and print on a real device (in a namespace of its own): the requests captured inbound
 * and the replies outbound with nanosecond times, read by tshark; `time=1s` files that each hold only their
 * own second of the wall clock; `print` lines for every ping.
 */
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync } from 'node:fs';
import { deviceTestSkipReason, withNetns } from '../helpers/netns.js';
import { pingIn, startTunpipeWith } from '../helpers/netns-process.js';
import { tempDir } from '../helpers/cli.js';
import { tsharkFields } from '../helpers/capture-tools.js';

const skip = deviceTestSkipReason();
const dir = tempDir('tunpipe-capture-ng-');
after(() => dir.remove());

test('pcapng on a device: requests inbound, replies outbound, ns times in order; print shows each ping', { skip }, async () => {
  const requests = dir.file('in.pcapng');
  const replies = dir.file('out.pcapng');
  await withNetns(async (ns) => {
    const tp = startTunpipeWith(ns, ['--dev', 'tpn0', '--addr', '198.18.0.1/24', `parse | pcap ${requests} | print | icmp-echo | checksum | pcap ${replies} nanos=true`]);
    try {
      await tp.waitFor(/reading/);
      const ping = pingIn(ns, ['-c', '10', '-i', '0.01', '-w', '10', '198.18.0.2']);
      assert.equal(ping.received, 10, ping.output);
      assert.equal(await tp.stop('SIGINT'), 0, tp.stderr());
      const inRows = tsharkFields(requests, ['frame.packet_flags_direction', 'icmp.type', 'icmp.seq'], ['-Y', 'icmp']);
      assert.deepEqual(
        inRows.map(([d, t, s]) => [Number(d), t, s]),
        Array.from({ length: 10 }, (_, i) => [1, '8', String(i + 1)]),
      );
      const outRows = tsharkFields(replies, ['frame.packet_flags_direction', 'icmp.type', 'frame.time_epoch'], ['-Y', 'icmp']);
      assert.equal(outRows.length, 10);
      assert.ok(outRows.every(([d, t]) => Number(d) === 2 && t === '0'), outRows.join('\n'));
      const times = outRows.map(([, , t]) => t);
      assert.ok(times.every((t) => /^\d+\.\d{9}$/.test(t)), 'nanosecond times');
      assert.deepEqual([...times].sort(), times, 'in order');
      assert.ok(Math.abs(Number(times[0]) - Date.now() / 1000) < 60, 'wall-clock times');
      const printed = tp.stdout().split('\n').filter((l) => /^\d\d:\d\d:\d\d\.\d{6} IP 198\.18\.0\.1 > 198\.18\.0\.2: ICMP echo request, id \d+, seq \d+, length 64$/.test(l));
      assert.equal(printed.length, 10, tp.stdout());
    } finally {
      await tp.stop('SIGKILL', 1000);
    }
  }, 'tpng');
});

test('pcapng on a device names its interface after the device (ctx.input)', { skip }, async () => {
  const file = dir.file('named.pcapng');
  await withNetns(async (ns) => {
    const tp = startTunpipeWith(ns, ['--dev', 'tpm0', '--addr', '198.18.0.1/24', `parse | pcap ${file} | icmp-echo | checksum`]);
    try {
      await tp.waitFor(/reading/);
      pingIn(ns, ['-c', '2', '-i', '0.01', '-w', '5', '198.18.0.2']);
      assert.equal(await tp.stop('SIGINT'), 0, tp.stderr());
      assert.deepEqual(new Set(tsharkFields(file, ['frame.interface_name']).map(([n]) => n)), new Set(['tpm0']));
    } finally {
      await tp.stop('SIGKILL', 1000);
    }
  }, 'tpnm');
});

test('time=1s on a device: each file holds only packets of its own second, is named by it, and quiet seconds get theirs', { skip }, async () => {
  const sub = tempDir('tunpipe-capture-rot-');
  try {
    await withNetns(async (ns) => {
      const tp = startTunpipeWith(ns, ['--dev', 'tpr0', '--addr', '198.18.0.1/24', `parse | pcap '${sub.file('r-%s.pcapng')}' time=1s | icmp-echo | checksum`]);
      try {
        await tp.waitFor(/reading/);
        const ping = pingIn(ns, ['-c', '6', '-i', '0.2', '-w', '10', '198.18.0.2']);
        assert.equal(ping.received, 6, ping.output);
        // A quiet spell of more than two seconds: the driver's timer still starts each second's file.
        await new Promise((r) => setTimeout(r, 2600));
        const again = pingIn(ns, ['-c', '6', '-i', '0.2', '-w', '10', '198.18.0.2']);
        assert.equal(again.received, 6, again.output);
        assert.equal(await tp.stop('SIGINT'), 0, tp.stderr());
      } finally {
        await tp.stop('SIGKILL', 1000);
      }
    });
    const files = readdirSync(sub.path).sort();
    assert.ok(files.length >= 3, files.join());
    let total = 0;
    for (const f of files) {
      const m = /^r-(\d+)\.pcapng$/.exec(f);
      assert.ok(m, files.join());
      const second = Number(m[1]);
      const times = tsharkFields(sub.file(f), ['frame.time_epoch'], ['-Y', 'icmp']).map(([t]) => Math.floor(Number(t)));
      total += times.length;
      assert.ok(times.every((t) => t === second), `${f}: ${times}`);
    }
    assert.equal(total, 12);
    const seconds = files.map((f) => Number(/^r-(\d+)\.pcapng$/.exec(f)![1]));
    assert.deepEqual(seconds, Array.from({ length: seconds.length }, (_, i) => seconds[0] + i), `a file for every second, quiet ones too: ${files}`);
  } finally {
    sub.remove();
  }
});
