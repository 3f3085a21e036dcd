/**
 * TAP devices for real, each test in a namespace of its own, the kernel as the judge: `parse | neighbor |
 * icmp-echo | checksum` answers ping, ping -6 and arping; the kernel's neighbour table shows the peers
 * REACHABLE; nstat shows the kernel took our advertisements and replies with no error; a capture on TAP is
 * Ethernet to tshark, and the replies go to the tap's own MAC; --kernel-filter keeps what it rejects out of
 * the pipeline (the device's TX drops rise); an existing device of another kind is named in the error.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { deviceTestSkipReason, withNetns, type Netns } from '../helpers/netns.js';
import { pingIn, runTunpipeIn, startTunpipeWith } from '../helpers/netns-process.js';
import { parseCounters, stageRow } from '../helpers/counters.js';
import { tsharkFields } from '../helpers/capture-tools.js';
import { lines } from '../helpers/cli.js';

const skip = deviceTestSkipReason();
const TAP = ['--tap', '--dev', 'tpt0', '--addr', '198.18.0.1/24', '--addr', '2001:db8::1/64'];
const ECHO = 'parse | neighbor | icmp-echo | checksum';

/** A counter that must exist: a missing one fails the test instead of counting as 0. */
function counter(c: Record<string, number>, name: string): number {
  assert.equal(typeof c[name], 'number', `nstat reports ${name}`);
  return c[name];
}

function macOf(ns: Netns, dev: string): string {
  const [link] = JSON.parse(ns.run('ip', ['-j', 'link', 'show', 'dev', dev])) as { address: string }[];
  return link.address.toLowerCase();
}

function txDropped(ns: Netns, dev: string): number {
  const [link] = JSON.parse(ns.run('ip', ['-j', '-s', 'link', 'show', 'dev', dev])) as { stats64: { tx: { dropped: number } } }[];
  return link.stats64.tx.dropped;
}

async function withTap(args: string[], fn: (ns: Netns) => Promise<void>): Promise<string> {
  let stderr = '';
  await withNetns(async (ns) => {
    const tp = startTunpipeWith(ns, args);
    try {
      await tp.waitFor(/reading/);
      await fn(ns);
      assert.equal(await tp.stop('SIGINT'), 0, tp.stderr());
      stderr = tp.stderr();
    } finally {
      await tp.stop('SIGKILL', 1000);
    }
  }, 'tptap');
  return stderr;
}

test('TAP: ping, ping -6 and arping answered; the peers REACHABLE; nstat clean; a capture is Ethernet with the replies sent to the tap', { skip }, async () => {
  const dir = mkdtempSync(join(tmpdir(), 'tunpipe-tap-'));
  const file = join(dir, 'out.pcap');
  try {
    let tapMac = '';
    const err = await withTap([...TAP, `${ECHO} | pcap ${file}`], async (ns) => {
      tapMac = macOf(ns, 'tpt0');
      const before = ns.nstat();
      const four = pingIn(ns, ['-c', '5', '-i', '0.05', '-w', '10', '198.18.0.2']);
      assert.equal(four.received, 5, four.output);
      const six = pingIn(ns, ['-6', '-c', '5', '-i', '0.05', '-w', '10', '2001:db8::2']);
      assert.equal(six.received, 5, six.output);
      const arping = ns.run('arping', ['-c', '3', '-w', '5', '-I', 'tpt0', '198.18.0.2']);
      assert.match(arping, /Received 3 response\(s\)/, arping);
      assert.match(arping, /reply from 198\.18\.0\.2 \[02:/i, 'answered from a locally administered MAC');
      const neigh = ns.run('ip', ['neigh', 'show', 'dev', 'tpt0']);
      assert.match(neigh, /^198\.18\.0\.2 lladdr (\S+) REACHABLE/m, neigh);
      assert.match(neigh, /^2001:db8::2 lladdr (\S+) REACHABLE/m, neigh);
      assert.doesNotMatch(ns.run('ip', ['-6', 'addr', 'show', 'dev', 'tpt0']), /dadfailed/, "the device's own addresses passed DAD");
      const after = ns.nstat();
      assert.ok(counter(after, 'IcmpInEchoReps') - counter(before, 'IcmpInEchoReps') >= 5);
      assert.ok(counter(after, 'Icmp6InEchoReplies') - counter(before, 'Icmp6InEchoReplies') >= 5);
      assert.ok(counter(after, 'Icmp6InNeighborAdvertisements') - counter(before, 'Icmp6InNeighborAdvertisements') >= 1, 'the kernel took our advertisement');
      for (const name of ['IcmpInCsumErrors', 'IcmpInErrors', 'Icmp6InCsumErrors', 'Icmp6InErrors', 'IpInHdrErrors', 'Ip6InHdrErrors', 'IpInAddrErrors', 'Ip6InAddrErrors']) {
        assert.equal(counter(after, name), counter(before, name), `${name} unchanged`);
      }
      assert.equal(counter(after, 'IcmpOutEchoReps'), counter(before, 'IcmpOutEchoReps'), 'the kernel answered none itself');
    });
    const rows = parseCounters(err);
    assert.ok(stageRow(rows, 'checksum').out >= 10);
    const neighbor = err.split('\n').find((l) => /answered \d+ ARP requests/.test(l));
    assert.ok(neighbor, err);
    assert.ok(Number(/answered (\d+) ARP/.exec(neighbor)![1]) >= 4, neighbor);
    assert.ok(Number(/(\d+) neighbour solicitations/.exec(neighbor)![1]) >= 1, neighbor);
    // tshark reads the capture as Ethernet; every echo reply goes to the tap's own MAC.
    const recs = tsharkFields(file, ['frame.encap_type', 'eth.dst', 'eth.src', 'icmp.type', 'icmpv6.type'], ['-Y', 'icmp.type == 0 or icmpv6.type == 129']);
    assert.equal(recs.length, 10, recs.join('\n'));
    for (const [encap, dst, src] of recs) {
      assert.equal(encap, '1', 'Ethernet');
      assert.equal(dst, tapMac);
      assert.match(src, /^02:/);
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('--kernel-filter: what it rejects never reaches the pipeline, and the device counts it as TX drops', { skip }, async () => {
  const dir = mkdtempSync(join(tmpdir(), 'tunpipe-tapf-'));
  const file = join(dir, 'seen.pcap');
  try {
    let dropped = 0;
    const err = await withTap([...TAP, '--kernel-filter', 'arp or icmp', `parse | pcap ${file} | neighbor | icmp-echo | checksum`], async (ns) => {
      const before = txDropped(ns, 'tpt0');
      const four = pingIn(ns, ['-c', '3', '-i', '0.05', '-w', '10', '198.18.0.2']);
      assert.equal(four.received, 3, four.output);
      const six = pingIn(ns, ['-6', '-c', '3', '-i', '0.05', '-w', '3', '2001:db8::2']);
      assert.equal(six.received, 0, 'IPv6 is kept out in the kernel, so no neighbour is ever found');
      dropped = txDropped(ns, 'tpt0') - before;
      assert.ok(dropped >= 3, `TX drops rose by ${dropped}`);
    });
    assert.match(err, /kernel filter 'arp or icmp'/);
    const kernel = /dropped in the kernel (\d+)/.exec(err);
    assert.ok(kernel && Number(kernel[1]) >= dropped, err);
    const seen = tsharkFields(file, ['eth.type']);
    assert.ok(seen.length >= 4, 'ARP and the pings arrived');
    for (const [type] of seen) assert.match(type, /^0x0*(800|806)$/, `only ARP and IPv4 reached the pipeline: ${type}`);
    assert.equal(stageRow(parseCounters(err), 'parse').in, seen.length);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('an existing device of another kind under the name is named in the error', { skip }, async () => {
  await withNetns(async (ns) => {
    ns.run('ip', ['tuntap', 'add', 'dev', 'tpx0', 'mode', 'tap']);
    ns.run('ip', ['tuntap', 'add', 'dev', 'tpx1', 'mode', 'tun', 'multi_queue']);
    ns.run('ip', ['link', 'add', 'tpx2', 'type', 'veth', 'peer', 'name', 'tpx3']);
    const cases: [string[], RegExp][] = [
      [['--dev', 'tpx0'], /cannot open tpx0 as a TUN device \(EINVAL\): tpx0 already exists as a TAP device; add --tap/],
      [['--tap', '--dev', 'tpx1'], /cannot open tpx1 as a TAP device \(EINVAL\): tpx1 already exists as a multi-queue TUN device; leave out --tap/],
      [['--dev', 'tpx1'], /tpx1 already exists as a multi-queue TUN device \(IFF_MULTI_QUEUE\), which the kernel opens only as queues: give it --queues N/],
      [['--dev', 'tpx2'], /cannot create tpx2 \(EINVAL\): an interface that is not a TUN\/TAP device/],
    ];
    for (const [args, re] of cases) {
      const r = await runTunpipeIn(ns, [...args, 'drop']);
      assert.equal(r.code, 1, r.stderr);
      const l = lines(r.stderr);
      assert.equal(l.length, 1, r.stderr);
      assert.match(l[0], re);
      assert.doesNotMatch(l[0], /may be taken/);
    }
  }, 'tptapx');
});
