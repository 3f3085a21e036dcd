/**
 * Device options, each in a namespace of its own: without --dev the kernel picks the name and tunpipe says
 * which; an existing persistent device is attached to and outlives tunpipe; --mtu sets the MTU; an IPv6
 * --addr appears on the device; --persist leaves the device it made; --up brings a link up with no address.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { deviceTestSkipReason, withNetns } from '../helpers/netns.js';
import { linkExists, pingIn, startTunpipeWith } from '../helpers/netns-process.js';

const skip = deviceTestSkipReason();
const ECHO = 'parse | icmp-echo | checksum';

test('without --dev the kernel picks tunN and tunpipe prints the name; the device goes away with tunpipe', { skip }, async () => {
  await withNetns(async (ns) => {
    const tp = startTunpipeWith(ns, ['--addr', '198.18.0.1/24', ECHO]);
    try {
      await tp.waitFor(/reading/);
      const m = /device (\S+) open/.exec(tp.stderr());
      assert.ok(m, tp.stderr());
      const name = m[1];
      assert.match(name, /^tun\d+$/);
      assert.ok(linkExists(ns, name), `${name} exists in the namespace`);
      assert.equal(pingIn(ns, ['-c', '3', '-i', '0.05', '-w', '5', '198.18.0.2']).received, 3);
      assert.equal(await tp.stop('SIGINT'), 0, tp.stderr());
      assert.equal(linkExists(ns, name), false, 'a device tunpipe created is gone after it exits');
    } finally {
      await tp.stop('SIGKILL', 1000);
    }
  }, 'tpname');
});

test('attaches to a persistent device made with ip tuntap, answers pings, and leaves it in place', { skip }, async () => {
  await withNetns(async (ns) => {
    ns.run('ip', ['tuntap', 'add', 'dev', 'tpp0', 'mode', 'tun']);
    const tp = startTunpipeWith(ns, ['--dev', 'tpp0', '--addr', '198.18.0.1/24', ECHO]);
    try {
      await tp.waitFor(/reading/);
      assert.match(tp.stderr(), /device tpp0 open/);
      const ping = pingIn(ns, ['-c', '5', '-i', '0.05', '-w', '5', '198.18.0.2']);
      assert.equal(ping.received, 5, ping.output);
      assert.equal(await tp.stop('SIGINT'), 0, tp.stderr());
      assert.ok(linkExists(ns, 'tpp0'), 'the persistent device is still there');
    } finally {
      await tp.stop('SIGKILL', 1000);
    }
    // Attaching again, with the address the device already has, works the same.
    const again = startTunpipeWith(ns, ['--dev', 'tpp0', '--addr', '198.18.0.1/24', ECHO]);
    try {
      await again.waitFor(/reading/);
      assert.equal(pingIn(ns, ['-c', '3', '-i', '0.05', '-w', '5', '198.18.0.2']).received, 3);
      assert.equal(await again.stop('SIGINT'), 0, again.stderr());
      assert.ok(linkExists(ns, 'tpp0'));
    } finally {
      await again.stop('SIGKILL', 1000);
    }
  }, 'tppers');
});

test('--mtu 1400 sets the MTU and an IPv6 --addr appears on the device', { skip }, async () => {
  await withNetns(async (ns) => {
    const tp = startTunpipeWith(ns, ['--dev', 'tpm0', '--mtu', '1400', '--addr', '198.18.0.1/24', '--addr', '2001:db8::1/64', ECHO]);
    try {
      await tp.waitFor(/reading/);
      assert.match(ns.run('ip', ['link', 'show', 'dev', 'tpm0']), /\bmtu 1400\b/);
      const v6 = ns.run('ip', ['-6', 'addr', 'show', 'dev', 'tpm0']);
      assert.match(v6, /inet6 2001:db8::1\/64 /, v6);
      const v4 = ns.run('ip', ['-4', 'addr', 'show', 'dev', 'tpm0']);
      assert.match(v4, /inet 198\.18\.0\.1\/24 /, v4);
      assert.match(ns.run('ip', ['link', 'show', 'dev', 'tpm0']), /[<,]UP[,>]/, 'the link is up');
      assert.equal(pingIn(ns, ['-c', '3', '-i', '0.05', '-w', '5', '198.18.0.2']).received, 3);
      assert.equal(await tp.stop('SIGINT'), 0, tp.stderr());
    } finally {
      await tp.stop('SIGKILL', 1000);
    }
  }, 'tpmtu');
});

test('--count 3 on a device: tunpipe stops by itself after 3 packets, exit 0', { skip }, async () => {
  await withNetns(async (ns) => {
    const tp = startTunpipeWith(ns, ['--dev', 'tpn0', '--addr', '198.18.0.1/24', '--count', '3', ECHO]);
    try {
      await tp.waitFor(/reading/);
      const ping = pingIn(ns, ['-c', '6', '-i', '0.1', '-w', '2', '198.18.0.2']);
      const ended = await Promise.race([tp.exited(), new Promise((r) => setTimeout(() => r('still running'), 2000))]);
      assert.equal(ended, 0, tp.stderr());
      assert.match(tp.stderr(), /--count 3: 3 packets in/);
      assert.ok(ping.received >= 1 && ping.received <= 3, ping.output);
    } finally {
      await tp.stop('SIGKILL', 1000);
    }
  }, 'tpcount');
});

test('--persist: the device tunpipe creates outlives it (as ip tuntap add would leave it) and is attached to again', { skip }, async () => {
  await withNetns(async (ns) => {
    const tp = startTunpipeWith(ns, ['--dev', 'tpp1', '--addr', '198.18.0.1/24', '--persist', ECHO]);
    try {
      await tp.waitFor(/reading/);
      assert.equal(pingIn(ns, ['-c', '3', '-i', '0.05', '-w', '5', '198.18.0.2']).received, 3);
      assert.equal(await tp.stop('SIGINT'), 0, tp.stderr());
    } finally {
      await tp.stop('SIGKILL', 1000);
    }
    assert.ok(linkExists(ns, 'tpp1'), 'still there after tunpipe exited');
    // The kernel's view: a persistent tun device with no process attached.
    assert.match(ns.run('ip', ['tuntap', 'show']), /^tpp1: tun .*persist/m);
    const again = startTunpipeWith(ns, ['--dev', 'tpp1', ECHO]);
    try {
      await again.waitFor(/reading/);
      assert.equal(pingIn(ns, ['-c', '3', '-i', '0.05', '-w', '5', '198.18.0.2']).received, 3, 'its address stayed with it');
      assert.equal(await again.stop('SIGINT'), 0, again.stderr());
    } finally {
      await again.stop('SIGKILL', 1000);
    }
    ns.run('ip', ['tuntap', 'del', 'dev', 'tpp1', 'mode', 'tun']);
  }, 'tppersist');
});

test('--up without --addr: the link is up with no IPv4 address; without --up a new device stays down', { skip }, async () => {
  await withNetns(async (ns) => {
    for (const [dev, extra, up] of [
      ['tpu0', ['--up'], true],
      ['tpu1', [], false],
    ] as const) {
      const tp = startTunpipeWith(ns, ['--dev', dev, ...extra, ECHO]);
      try {
        await tp.waitFor(/reading/);
        const link = ns.run('ip', ['-o', 'link', 'show', 'dev', dev]);
        const flags = /<([^>]*)>/.exec(link)?.[1].split(',') ?? [];
        assert.equal(flags.includes('UP'), up, `${dev} flags ${flags.join(',')}`);
        assert.equal(ns.run('ip', ['-o', '-4', 'addr', 'show', 'dev', dev]).trim(), '', 'no IPv4 address');
        assert.equal(await tp.stop('SIGINT'), 0, tp.stderr());
      } finally {
        await tp.stop('SIGKILL', 1000);
      }
    }
  }, 'tpup');
});
