/**
 * TAP devices with offloads, for real: two namespaces joined like a cable by `--offload` TAP devices
 * (`from tpa0 | to tpb0; from tpb0 | to tpa0`), tunpipe itself in a third namespace. ARP crosses, the far
 * kernel answers ping, iperf3 TCP crosses as Ethernet super-packets behind their virtio_net_hdr, and the
 * kernels count no checksum error. Then the same with stages that need segments on the way (`parse |
 * checksum`): user-space GSO splits the Ethernet super-packets, ARP passes `checksum` untouched, and the
 * data is still intact. On io_uring and on poll.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { deviceTestSkipReason, withWireNamespaces, type Netns } from '../helpers/netns.js';
import { iperfIn, pingIn, startTunpipeWith } from '../helpers/netns-process.js';
import { parseCounters, stageRow } from '../helpers/counters.js';

const skip = deviceTestSkipReason();

const withTapWire = (fn: (a: Netns, b: Netns, self: Netns) => Promise<void>) => withWireNamespaces(['tpoa', 'tpob', 'tpos'], fn);

const CSUM_COUNTERS = ['IcmpInCsumErrors', 'TcpInCsumErrors', 'UdpInCsumErrors', 'IpInHdrErrors'];

const CASES = [
  ['a plain wire', 'from tpa0 | to tpb0; from tpb0 | to tpa0'],
  ['parse | checksum on the way (segments)', 'from tpa0 | parse | checksum | to tpb0; from tpb0 | parse | checksum | to tpa0'],
] as const;

for (const io of ['uring', 'poll'] as const) {
  for (const [what, wire] of CASES) {
    test(`TAP with --offload (${io}), ${what}: ARP and ping cross, iperf3 TCP crosses with nothing corrupt`, { skip, timeout: 60_000 }, async () => {
      await withTapWire(async (a, b, self) => {
        const before = [a.nstat(), b.nstat()];
        const args = ['--offload', '--dev', 'tpa0', '--tap', '--netns', a.name, '--addr', '198.18.0.1/24', '--dev', 'tpb0', '--tap', '--netns', b.name, '--addr', '198.18.0.2/24', wire];
        const tp = startTunpipeWith(self, args, { env: { TUNPIPE_IO: io } });
        try {
          await tp.waitFor(/reading/);
          const ping = pingIn(a, ['-c', '5', '-i', '0.05', '-w', '10', '198.18.0.2']);
          assert.equal(ping.received, 5, ping.output);
          const tcp = await iperfIn(a, b, []);
          const bytes = tcp.end.sum_received.bytes as number;
          assert.ok(bytes > 10_000_000, `TCP carried ${bytes} bytes`);
          const after = [a.nstat(), b.nstat()];
          for (const [i, name] of ['A', 'B'].entries()) {
            for (const c of CSUM_COUNTERS) assert.equal(after[i][c], before[i][c], `${c} in ${name}`);
          }
          assert.equal(await tp.stop('SIGINT'), 0, tp.stderr());
          const err = tp.stderr();
          assert.match(err, io === 'uring' ? /\(io_uring\)/ : /\(poll\)/);
          if (wire.includes('checksum')) {
            const rows = parseCounters(err);
            const checksum = stageRow(rows, '1:checksum');
            assert.equal(checksum.dropped, 0, `checksum dropped nothing (ARP included):\n${err}`);
            // The sender's super-packets were split before checksum saw them: more written to B than read from A.
            const read = Number(/device tpa0: read (\d+)/.exec(err)![1]);
            const written = Number(/device tpb0: read \d+, written (\d+)/.exec(err)![1]);
            assert.ok(written > read, `segments written to tpb0 (${written}) outnumber what tpa0 handed over (${read}):\n${err}`);
          }
        } finally {
          await tp.stop('SIGKILL', 1000);
        }
      });
    });
  }
}
