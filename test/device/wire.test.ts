/**
 * One tunpipe joining two network namespaces: `--dev tpa0 --netns A ... --dev tpb0 --netns B ...
 * 'from tpa0 | to tpb0; from tpb0 | to tpa0'`. tunpipe itself runs in a third namespace of its own, so
 * that a bug could never put a device in the host's namespace. A ping from A is answered by B's kernel
 * (not by tunpipe), iperf3 TCP and UDP run across with data, and the kernel counters on both sides show
 * no checksum errors. Once over io_uring (the default here) and once over poll().
 */
import { test } from 'node:test';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import assert from 'node:assert/strict';
import { deviceTestSkipReason, withWireNamespaces, type Netns } from '../helpers/netns.js';
import { iperfIn, pingIn, startTunpipeWith } from '../helpers/netns-process.js';

const skip = deviceTestSkipReason();

const WIRE = 'from tpa0 | to tpb0; from tpb0 | to tpa0';

/** Namespaces A and B for the two ends, and S for tunpipe itself; all deleted afterwards. */
const withWire = (fn: (a: Netns, b: Netns, self: Netns) => Promise<void>) => withWireNamespaces(['tpwa', 'tpwb', 'tpws'], fn);

function wireArgs(a: Netns, b: Netns, extra: string[] = []): string[] {
  return ['--dev', 'tpa0', '--netns', a.name, '--addr', '198.18.0.1/24', '--dev', 'tpb0', '--netns', b.name, '--addr', '198.18.0.2/24', ...extra, WIRE];
}

for (const io of ['uring', 'poll'] as const) {
  test(`a wire between two namespaces (${io}): the far kernel answers, iperf3 TCP and UDP cross, nothing is corrupt`, { skip }, async () => {
    await withWire(async (a, b, self) => {
      const beforeA = a.nstat();
      const beforeB = b.nstat();
      const tp = startTunpipeWith(self, wireArgs(a, b), { env: { TUNPIPE_IO: io } });
      try {
        await tp.waitFor(/reading/);
        assert.deepEqual(self.run('ip', ['-o', 'link', 'show']).trim().split('\n').map((l) => l.split(':')[1].trim()), ['lo'], "no device in tunpipe's own namespace");
        assert.match(a.run('ip', ['-o', 'addr', 'show', 'dev', 'tpa0']), /198\.18\.0\.1\/24/);
        assert.match(b.run('ip', ['-o', 'addr', 'show', 'dev', 'tpb0']), /198\.18\.0\.2\/24/);

        const ping = pingIn(a, ['-c', '10', '-i', '0.01', '-w', '10', '198.18.0.2']);
        assert.equal(ping.received, 10, ping.output);
        const midA = a.nstat();
        const midB = b.nstat();
        assert.equal(midB.IcmpOutEchoReps - beforeB.IcmpOutEchoReps, 10, "B's kernel answered the pings");
        assert.equal(midA.IcmpInEchoReps - beforeA.IcmpInEchoReps, 10, 'A received the replies');

        const tcp = await iperfIn(a, b, []);
        const tcpBytes = tcp.end.sum_received.bytes as number;
        assert.ok(tcpBytes > 1_000_000, `TCP carried ${tcpBytes} bytes`);
        const udp = await iperfIn(a, b, ['-u', '-b', '50M', '-l', '1200']);
        const udpPackets = udp.end.sum.packets as number;
        const lost = udp.end.sum.lost_packets as number;
        assert.ok(udpPackets > 1000, `UDP sent ${udpPackets} datagrams`);
        // Loss is not corruption: under load a UDP sender outruns any forwarder; most datagrams must still arrive.
        assert.ok(lost <= udpPackets * 0.2, `UDP lost ${lost} of ${udpPackets}`);

        const afterA = a.nstat();
        const afterB = b.nstat();
        for (const [name, before, after] of [['A', beforeA, afterA], ['B', beforeB, afterB]] as const) {
          for (const counter of ['IcmpInCsumErrors', 'TcpInCsumErrors', 'UdpInCsumErrors', 'IpInHdrErrors']) {
            assert.equal(typeof after[counter], 'number', `nstat has ${counter}`);
            assert.equal(after[counter], before[counter], `${counter} in ${name}`);
          }
        }
        assert.equal(await tp.stop('SIGINT'), 0, tp.stderr());
        const err = tp.stderr();
        assert.match(err, io === 'uring' ? /\(io_uring\)/ : /\(poll\)/);
        const read = [...err.matchAll(/device (tp[ab]0): read (\d+), written (\d+), write errors (\d+)/g)].map((m) => ({ dev: m[1], read: Number(m[2]), written: Number(m[3]), errors: Number(m[4]) }));
        assert.equal(read.length, 2, err);
        const [da, db] = read;
        assert.equal(da.written, db.read, 'what B gave, A got');
        assert.equal(db.written, da.read, 'what A gave, B got');
        assert.equal(da.errors + db.errors, 0);
      } finally {
        await tp.stop('SIGKILL', 1000);
      }
    });
  });
}

test('--netns with a namespace that does not exist: one line, exit 1, no device anywhere', { skip }, async () => {
  await withWire(async (a, _b, self) => {
    const r = startTunpipeWith(self, ['--dev', 'tpa0', '--netns', a.name, '--addr', '198.18.0.1/24', '--dev', 'tpb0', '--netns', 'tp-no-such-ns', WIRE]);
    const code = await r.exited();
    assert.equal(code, 1, r.stderr());
    assert.match(r.stderr(), /tp-no-such-ns.*no such network namespace/);
    assert.doesNotMatch(r.stderr(), /\n\s+at /);
    assert.equal(a.run('ip', ['-o', 'link', 'show']).includes('tpa0'), false, 'the first device is gone again');
  });
});

test('a capture of both directions of a wire in one pcapng file: one interface per device, directions told apart', { skip }, async () => {
  await withWire(async (a, b, self) => {
    const dir = mkdtempSync(join(tmpdir(), 'tunpipe-wirecap-'));
    try {
      const file = join(dir, 'wire.pcapng');
      const tp = startTunpipeWith(self, ['--dev', 'tpa0', '--netns', a.name, '--addr', '198.18.0.1/24', '--dev', 'tpb0', '--netns', b.name, '--addr', '198.18.0.2/24', `from tpa0 | pcap ${file} | to tpb0; from tpb0 | pcap ${file} | to tpa0`]);
      try {
        await tp.waitFor(/reading/);
        assert.equal(pingIn(a, ['-c', '5', '-i', '0.05', '-w', '5', '198.18.0.2']).received, 5);
        assert.equal(await tp.stop('SIGINT'), 0, tp.stderr());
      } finally {
        await tp.stop('SIGKILL', 1000);
      }
      const out = execFileSync('tshark', ['-r', file, '-Y', 'icmp', '-T', 'fields', '-e', 'frame.interface_name', '-e', 'frame.packet_flags_direction', '-e', 'icmp.type'], { encoding: 'utf8' });
      const rows = out.trim().split('\n').map((l) => l.split('\t'));
      const requests = rows.filter((r) => r[2] === '8');
      const replies = rows.filter((r) => r[2] === '0');
      assert.equal(requests.length, 5, out);
      assert.equal(replies.length, 5, out);
      assert.ok(requests.every((r) => r[0] === 'tpa0' && Number(r[1]) === 1), `requests inbound on tpa0:\n${out}`);
      assert.ok(replies.every((r) => r[0] === 'tpb0' && Number(r[1]) === 1), `replies inbound on tpb0:\n${out}`);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

test('--offload: a wire of TCP super-packets (IFF_VNET_HDR, TUNSETOFFLOAD) carries iperf3 TCP and UDP with nothing corrupt', { skip }, async () => {
  await withWire(async (a, b, self) => {
    const beforeA = a.nstat();
    const beforeB = b.nstat();
    const tp = startTunpipeWith(self, wireArgs(a, b, ['--offload']));
    try {
      await tp.waitFor(/reading/);
      assert.match(a.run('ethtool', ['-k', 'tpa0']), /tcp-segmentation-offload: on/, 'the kernel may hand over super-packets');
      assert.equal(pingIn(a, ['-c', '5', '-i', '0.05', '-w', '5', '198.18.0.2']).received, 5);
      const tcp = await iperfIn(a, b, []);
      assert.ok((tcp.end.sum_received.bytes as number) > 1_000_000, `TCP carried ${tcp.end.sum_received.bytes} bytes`);
      const udp = await iperfIn(a, b, ['-u', '-b', '50M', '-l', '1200']);
      assert.ok((udp.end.sum.packets as number) > 1000);
      assert.ok((udp.end.sum.lost_packets as number) <= (udp.end.sum.packets as number) * 0.2);
      const afterA = a.nstat();
      const afterB = b.nstat();
      for (const [before, after] of [[beforeA, afterA], [beforeB, afterB]]) {
        for (const counter of ['TcpInCsumErrors', 'UdpInCsumErrors', 'IpInHdrErrors']) {
          assert.equal(typeof after[counter], 'number', `nstat has ${counter}`);
          assert.equal(after[counter], before[counter], counter);
        }
      }
      assert.equal(await tp.stop('SIGINT'), 0, tp.stderr());
      // Super-packets: fewer packets moved than the segments iperf3's bytes make at the MTU.
      const moved = [...tp.stderr().matchAll(/device tpa0: read (\d+)/g)].map((m) => Number(m[1]))[0];
      assert.ok(moved < (tcp.end.sum_received.bytes as number) / 1500, `${moved} packets read from tpa0 for ${tcp.end.sum_received.bytes} bytes`);
    } finally {
      await tp.stop('SIGKILL', 1000);
    }
  });
});

test('a tee that sends its copies to a device under a burst: every copy keeps its own bytes until written (no duplicates)', { skip }, async () => {
  await withWire(async (a, b, self) => {
    const tp = startTunpipeWith(self, ['--dev', 'tpa0', '--netns', a.name, '--addr', '198.18.0.1/24', '--dev', 'tpb0', '--netns', b.name, '--addr', '198.18.0.2/24', 'from tpa0 | tee { to tpb0 } | drop; from tpb0 | to tpa0']);
    try {
      await tp.waitFor(/reading/);
      // 32 requests in flight: several reach one io_uring batch, whose writes are submitted together.
      const ping = pingIn(a, ['-f', '-l', '32', '-c', '2000', '-w', '15', '198.18.0.2'], 30_000);
      assert.doesNotMatch(ping.output, /duplicates/, ping.output);
      assert.ok(ping.received >= 1900, ping.output);
      assert.equal(await tp.stop('SIGINT'), 0, tp.stderr());
    } finally {
      await tp.stop('SIGKILL', 1000);
    }
  });
});
