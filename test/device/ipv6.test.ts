/**
 * IPv6 and addresses on a real TUN device, each test in a namespace of its own, the kernel as the judge:
 * `ping -6` plain, with `-s 3000` (fragments both ways over a 1500-byte MTU) and as a bounded flood, judged by
 * nstat (Icmp6InEchoReplies rising, Icmp6InCsumErrors unchanged; both counters must exist); echo requests
 * with code 1 and 255 answered exactly as the namespace's kernel answers the same requests sent to its own
 * address; a flood of junk fragments followed by fragmented pings in both families; repeated --addr leaving
 * every address; a new device sending nothing of its own (`--count 3` answers 3 pings), IPv4 only or with IPv6.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { fileURLToPath } from 'node:url';
import { deviceTestSkipReason, withNetns, type Netns } from '../helpers/netns.js';
import { pingIn, startTunpipeWith } from '../helpers/netns-process.js';
import { parseCounters, stageRow } from '../helpers/counters.js';
import { echoWithCode, junkFragments, type ReceivedReply } from '../helpers/raw-icmp.js';

const skip = deviceTestSkipReason();
const ECHO = 'parse | icmp-echo | checksum';
const BOTH = ['--dev', 'tpt0', '--addr', '198.18.0.1/24', '--addr', '2001:db8::1/64'];

/** A counter that must exist: a missing one fails the test instead of counting as 0. */
function counter(c: Record<string, number>, name: string): number {
  assert.equal(typeof c[name], 'number', `nstat reports ${name}`);
  return c[name];
}

async function withEcho(fn: (ns: Netns) => Promise<void>, args = BOTH, prefix = 'tpv6'): Promise<string> {
  let stderr = '';
  await withNetns(async (ns) => {
    const tp = startTunpipeWith(ns, [...args, ECHO]);
    try {
      await tp.waitFor(/reading/);
      await fn(ns);
      assert.equal(await tp.stop('SIGINT'), 0, tp.stderr());
      stderr = tp.stderr();
    } finally {
      await tp.stop('SIGKILL', 1000);
    }
  }, prefix);
  return stderr;
}

test('ping -6 is answered; the kernel counts valid replies and no checksum error', { skip }, async () => {
  const err = await withEcho(async (ns) => {
    const before = ns.nstat();
    const ping = pingIn(ns, ['-6', '-c', '20', '-i', '0.01', '-w', '10', '2001:db8::2']);
    assert.equal(ping.received, 20, ping.output);
    const after = ns.nstat();
    assert.ok(counter(after, 'Icmp6InEchoReplies') - counter(before, 'Icmp6InEchoReplies') >= 20);
    assert.equal(counter(after, 'Icmp6InCsumErrors'), counter(before, 'Icmp6InCsumErrors'), 'no reply had a bad checksum');
    assert.equal(counter(after, 'Icmp6OutEchoReplies'), counter(before, 'Icmp6OutEchoReplies'), 'the kernel answered none itself');
  });
  const rows = parseCounters(err);
  assert.ok(stageRow(rows, 'checksum').out >= 20);
  // The kernel's own router solicitation on the new device is named, not "not IPv4".
  for (const r of rows) for (const reason of r.reasons.keys()) assert.doesNotMatch(reason, /^not IPv4/);
});

test('ping -6 -s 3000 over a 1500-byte MTU is reassembled and answered (and ping -s 3000 on IPv4 alike)', { skip }, async () => {
  await withEcho(async (ns) => {
    const before = ns.nstat();
    const six = pingIn(ns, ['-6', '-c', '5', '-i', '0.05', '-s', '3000', '-w', '10', '2001:db8::2']);
    assert.equal(six.received, 5, six.output);
    const four = pingIn(ns, ['-c', '5', '-i', '0.05', '-s', '3000', '-w', '10', '198.18.0.2']);
    assert.equal(four.received, 5, four.output);
    const after = ns.nstat();
    assert.ok(counter(after, 'Icmp6InEchoReplies') - counter(before, 'Icmp6InEchoReplies') >= 5);
    assert.equal(counter(after, 'Icmp6InCsumErrors'), counter(before, 'Icmp6InCsumErrors'));
    assert.equal(counter(after, 'IcmpInCsumErrors'), counter(before, 'IcmpInCsumErrors'));
  }, [...BOTH, '--mtu', '1500']);
});

test('with `| fragment mtu=1280` the replies to ping -6 -s 3000 leave in fragments the kernel reassembles', { skip }, async () => {
  await withNetns(async (ns) => {
    const tp = startTunpipeWith(ns, [...BOTH, `${ECHO} | fragment mtu=1280`]);
    try {
      await tp.waitFor(/reading/);
      const before = ns.nstat();
      const six = pingIn(ns, ['-6', '-c', '4', '-i', '0.1', '-s', '3000', '-w', '10', '2001:db8::2']);
      assert.equal(six.received, 4, six.output);
      const after = ns.nstat();
      assert.ok(counter(after, 'Ip6ReasmOKs') - counter(before, 'Ip6ReasmOKs') >= 4, 'the kernel put the reply fragments together');
      assert.equal(counter(after, 'Ip6ReasmFails'), counter(before, 'Ip6ReasmFails'));
      assert.equal(counter(after, 'Icmp6InCsumErrors'), counter(before, 'Icmp6InCsumErrors'));
      assert.equal(await tp.stop('SIGINT'), 0, tp.stderr());
      assert.ok(stageRow(parseCounters(tp.stderr()), 'fragment').out >= 4);
    } finally {
      await tp.stop('SIGKILL', 1000);
    }
  }, 'tpfrag6');
});

test('a bounded ping -6 flood is answered in full; nstat judges every reply', { skip }, async () => {
  await withEcho(async (ns) => {
    const before = ns.nstat();
    const ping = pingIn(ns, ['-6', '-f', '-c', '2000', '-q', '-w', '20', '2001:db8::2'], 30_000);
    assert.equal(ping.received, 2000, ping.output);
    const after = ns.nstat();
    assert.ok(counter(after, 'Icmp6InEchoReplies') - counter(before, 'Icmp6InEchoReplies') >= 2000);
    assert.equal(counter(after, 'Icmp6InCsumErrors'), counter(before, 'Icmp6InCsumErrors'), 'no reply had a bad checksum');
  });
});

/** The fields a pinging host sees, compared between tunpipe's reply and the kernel's. */
function fields(r: ReceivedReply): Omit<ReceivedReply, 'from'> {
  const { from: _from, ...rest } = r;
  return rest;
}

test('echo requests with code 1 and 255 get the same replies from tunpipe as from the kernel itself', { skip }, async () => {
  await withEcho(async (ns) => {
    for (const code of [1, 255]) {
      for (const [family, peer, own] of [[4, '198.18.0.2', '198.18.0.1'], [6, '2001:db8::2', '2001:db8::1']] as const) {
        const replies = echoWithCode(ns, family, code, 0x4242 + family, code, [peer, own]);
        const ours = replies.find((r) => r.from === peer);
        const kernel = replies.find((r) => r.from === own);
        assert.ok(kernel, `the kernel answered code ${code} over IPv${family}: ${JSON.stringify(replies)}`);
        assert.ok(ours, `tunpipe answered code ${code} over IPv${family}: ${JSON.stringify(replies)}`);
        assert.equal(ours.code, code);
        // Type, code, id, sequence, data, TTL or hop limit, flags (DF clear) or traffic class, header length.
        assert.deepEqual(fields(ours), fields(kernel), `IPv${family} code ${code}: tunpipe's reply against the kernel's`);
      }
    }
  });
});

test('IPv4 options: the reply carries the options the kernel\'s own reply carries (record route echoed, router alert not)', { skip }, async () => {
  await withEcho(async (ns) => {
    // Router alert, then record route with 8 slots (35 bytes), then End of Options: 40 bytes.
    const options = '94040000' + '0723' + '04' + '00'.repeat(32) + '00';
    const replies = echoWithCode(ns, 4, 0, 0x4343, 7, ['198.18.0.2', '198.18.0.1'], options);
    const ours = replies.find((r) => r.from === '198.18.0.2');
    const kernel = replies.find((r) => r.from === '198.18.0.1');
    assert.ok(ours && kernel, JSON.stringify(replies));
    // Entries: the pinging host on sending, the replier on receipt and on sending, the pinging host on
    // receipt. The kernel's replier is 198.18.0.1 (c6120001); ours stands for 198.18.0.2 (c6120002).
    assert.equal(kernel.options.slice(0, 4), '0723', kernel.options);
    assert.equal(ours.ihl, kernel.ihl, `header length: ${ours.options} against ${kernel.options}`);
    assert.equal(ours.options, kernel.options.replace(/^(0723..c6120001)c6120001c6120001/, '$1c6120002c6120002'));
    assert.deepEqual({ ...fields(ours), options: '' }, { ...fields(kernel), options: '' });
  });
});

test('after 20,000 junk fragments in each family, fragmented pings are answered at once; the table stayed bounded', { skip }, async () => {
  const err = await withEcho(async (ns) => {
    const before = ns.nstat();
    assert.equal(junkFragments(ns, 4, 20_000, '198.18.0.1', '198.18.0.2'), 20_000);
    assert.equal(junkFragments(ns, 6, 20_000, '2001:db8::1', '2001:db8::2'), 20_000);
    const four = pingIn(ns, ['-c', '3', '-i', '0.1', '-s', '3000', '-w', '5', '198.18.0.2']);
    assert.equal(four.received, 3, four.output);
    const six = pingIn(ns, ['-6', '-c', '3', '-i', '0.1', '-s', '3000', '-w', '5', '2001:db8::2']);
    assert.equal(six.received, 3, six.output);
    const after = ns.nstat();
    assert.equal(counter(after, 'IcmpInCsumErrors'), counter(before, 'IcmpInCsumErrors'));
    assert.equal(counter(after, 'Icmp6InCsumErrors'), counter(before, 'Icmp6InCsumErrors'));
  });
  const report = /(\d+) datagrams reassembled, (\d+) in progress, fragments discarded: (\d+) timed out, (\d+) evicted/.exec(err);
  assert.ok(report, err);
  assert.ok(Number(report[1]) >= 6, 'the six fragmented pings were reassembled');
  assert.ok(Number(report[2]) <= 64, 'at most 64 datagrams held');
  assert.ok(Number(report[4]) >= 10_000, `the flood reached the table and was evicted (${report[4]})`);
});

const NETLINK = fileURLToPath(new URL('../../src/device/netlink.js', import.meta.url));

/** The device's addresses as listAddresses (RTM_GETADDR) reports them, run inside the namespace. */
function listedAddresses(ns: Netns): string[] {
  const script = `import(${JSON.stringify(NETLINK)}).then((m) => console.log(JSON.stringify(m.listAddresses('tpt0').map((a) => a.text))))`;
  return JSON.parse(ns.run(process.execPath, ['-e', script])) as string[];
}

test('repeated --addr leaves every address; on a persistent device they are added beside what it has', { skip }, async () => {
  await withEcho(async (ns) => {
    const shown = ns.run('ip', ['-o', 'addr', 'show', 'dev', 'tpt0']);
    assert.match(shown, /inet 198\.18\.0\.1\/24/);
    assert.match(shown, /inet 198\.18\.1\.1\/24/);
    assert.match(shown, /inet6 2001:db8::1\/64/);
    assert.equal(pingIn(ns, ['-c', '2', '-i', '0.1', '-w', '5', '198.18.1.2']).received, 2, 'the second subnet is answered too');
    assert.deepEqual(listedAddresses(ns).filter((a) => !a.startsWith('fe80')), ['198.18.0.1/24', '198.18.1.1/24', '2001:db8::1/64']);
  }, ['--dev', 'tpt0', '--addr', '198.18.0.1/24', '--addr', '198.18.1.1/24', '--addr', '2001:db8::1/64']);

  await withNetns(async (ns) => {
    ns.run('ip', ['tuntap', 'add', 'dev', 'tpt0', 'mode', 'tun']);
    ns.run('ip', ['addr', 'add', '198.18.5.1/24', 'dev', 'tpt0']);
    const tp = startTunpipeWith(ns, ['--dev', 'tpt0', '--addr', '198.18.0.1/24', ECHO]);
    try {
      await tp.waitFor(/reading/);
      const shown = ns.run('ip', ['-o', 'addr', 'show', 'dev', 'tpt0']);
      assert.match(shown, /inet 198\.18\.5\.1\/24/, 'the address the device had is kept');
      assert.match(shown, /inet 198\.18\.0\.1\/24/);
      assert.deepEqual(listedAddresses(ns).filter((a) => a.includes('.')), ['198.18.5.1/24', '198.18.0.1/24']);
    } finally {
      await tp.stop('SIGKILL', 1000);
    }
  }, 'tpaddr');
});

test('a new device given IPv4 only has IPv6 off: no packet of the kernel\'s own, --count 3 answers 3 pings', { skip }, async () => {
  await withNetns(async (ns) => {
    const tp = startTunpipeWith(ns, ['--dev', 'tpt0', '--addr', '198.18.0.1/24', '--count', '3', ECHO]);
    try {
      await tp.waitFor(/reading/);
      assert.equal(ns.run('cat', ['/proc/sys/net/ipv6/conf/tpt0/disable_ipv6']).trim(), '1');
      assert.doesNotMatch(ns.run('ip', ['-o', 'addr', 'show', 'dev', 'tpt0']), /inet6/);
      // Longer than the kernel takes to send its router solicitation on a device that has IPv6.
      await new Promise((r) => setTimeout(r, 300));
      const ping = pingIn(ns, ['-c', '3', '-i', '0.2', '-w', '5', '198.18.0.2']);
      assert.equal(ping.received, 3, ping.output);
      assert.equal(await tp.exited(), 0, tp.stderr());
      assert.match(tp.stderr(), /stopped after --count 3: 3 packets in, 3 out/);
    } finally {
      await tp.stop('SIGKILL', 1000);
    }
  }, 'tpquiet');
});

test('a new device with IPv6 sends no router solicitation of its own: --count 3 answers 3 pings -6', { skip }, async () => {
  await withNetns(async (ns) => {
    const tp = startTunpipeWith(ns, [...BOTH, '--count', '3', ECHO]);
    try {
      await tp.waitFor(/reading/);
      assert.equal(ns.run('cat', ['/proc/sys/net/ipv6/conf/tpt0/router_solicitations']).trim(), '0');
      assert.match(ns.run('ip', ['-o', 'addr', 'show', 'dev', 'tpt0']), /inet6 fe80::/, 'IPv6 is on (link-local address)');
      // Longer than the kernel takes to solicit a router on a device that comes up.
      await new Promise((r) => setTimeout(r, 1500));
      const ping = pingIn(ns, ['-6', '-c', '3', '-i', '0.2', '-w', '5', '2001:db8::2']);
      assert.equal(ping.received, 3, ping.output);
      assert.equal(await tp.exited(), 0, tp.stderr());
      assert.match(tp.stderr(), /stopped after --count 3: 3 packets in, 3 out/);
    } finally {
      await tp.stop('SIGKILL', 1000);
    }
  }, 'tpquiet6');
});
