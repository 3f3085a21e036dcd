/**
 * `--queues N` on real devices (IFF_MULTI_QUEUE, a worker per queue), tunpipe in a namespace of its own and
 * each device in another: the wire `from tpa0 | to tpb0; from tpb0 | to tpa0` with 2 queues on both carries
 * iperf3 TCP `-P 4` and UDP from many ports, with nothing corrupt (nstat); the kernel spreads the flows over
 * both queues, queue k of one device forwards to queue k of the other (the exit report per queue), and the
 * totals are the sums of the queues. The echo on 2 queues answers pings from many peers; `--count` over
 * queues lets exactly N in. Usage errors: a single-queue persistent device asked for queues (the kernel's
 * EINVAL, explained), stages refused on several queues, --queues with --read, TUNPIPE_THREAD=main. A device
 * deleted under two workers stops both; a wire of 2 queues to 1 keeps the single-queue side's capture whole.
 */
import { test } from 'node:test';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { pathToFileURL } from 'node:url';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import assert from 'node:assert/strict';
import { deviceTestSkipReason, withNetns, withWireNamespaces, type Netns } from '../helpers/netns.js';
import { iperfIn, pingIn, runTunpipeIn, spawnInNetns, startTunpipeWith, waitUntil, watchProcess } from '../helpers/netns-process.js';
import { parseCounters, stageRow } from '../helpers/counters.js';
import { REPO_ROOT } from '../helpers/cli.js';

const skip = deviceTestSkipReason();
const WIRE = 'from tpa0 | to tpb0; from tpb0 | to tpa0';

const withWire = (fn: (a: Netns, b: Netns, self: Netns) => Promise<void>) => withWireNamespaces(['tpqa', 'tpqb', 'tpqs'], fn);

interface QueueCount {
  read: number;
  written: number;
}

/** The exit report of a device: its totals, and per queue. */
function deviceReport(stderr: string, dev: string): { read: number; written: number; errors: number; queues: QueueCount[] } {
  const total = new RegExp(`^device ${dev}: read (\\d+), written (\\d+), write errors (\\d+)`, 'm').exec(stderr);
  const per = new RegExp(`^device ${dev} per queue: (.*)$`, 'm').exec(stderr);
  assert.ok(total && per, `exit report of ${dev} in:\n${stderr}`);
  const queues = per[1].split('; ').map((q, k) => {
    const m = /^(\d+): read (\d+), written (\d+)$/.exec(q);
    assert.ok(m && Number(m[1]) === k, q);
    return { read: Number(m[2]), written: Number(m[3]) };
  });
  return { read: Number(total[1]), written: Number(total[2]), errors: Number(total[3]), queues };
}

const sum = (qs: QueueCount[], k: keyof QueueCount) => qs.reduce((n, q) => n + q[k], 0);

/** 64 UDP datagrams from A to B, each from a socket of its own (64 source ports: 64 flows for the queue hash). */
function udpFromManyPorts(a: Netns): void {
  a.run('python3', ['-c', "import socket\nfor i in range(64):\n  s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.sendto(b'q' * 100, ('198.18.0.2', 9)); s.close()"]);
}

for (const [io, offload] of [['uring', false], ['poll', false], ['uring', true]] as const) {
  test(`--queues 2 on both ends of a wire (${io}${offload ? ', --offload' : ''}): iperf3 -P 4 crosses, both queues carry flows, queue k feeds queue k, totals add up, nothing corrupt`, { skip }, async () => {
    await withWire(async (a, b, self) => {
      const dir = mkdtempSync(join(tmpdir(), 'tunpipe-queues-'));
      const statsFile = join(dir, 'stats.jsonl');
      const beforeA = a.nstat();
      const beforeB = b.nstat();
      let tcpBytes = 0;
      const args = ['--dev', 'tpa0', '--netns', a.name, '--addr', '198.18.0.1/24', '--queues', '2', '--dev', 'tpb0', '--netns', b.name, '--addr', '198.18.0.2/24', '--queues', '2', '--stats-json', statsFile, '--stats', '200ms', ...(offload ? ['--offload'] : []), WIRE];
      const tp = startTunpipeWith(self, args, { env: { TUNPIPE_IO: io } });
      try {
        await tp.waitFor(/reading/);
        assert.match(tp.stderr(), /device tpa0 in namespace \S+ open with 198\.18\.0\.1\/24, 2 queues/);
        assert.deepEqual(self.run('ip', ['-o', 'link', 'show']).trim().split('\n').map((l) => l.split(':')[1].trim()), ['lo'], "no device in tunpipe's own namespace");
        for (const [ns, dev] of [[a, 'tpa0'], [b, 'tpb0']] as const) {
          assert.equal((Number.parseInt(ns.run('cat', [`/sys/class/net/${dev}/tun_flags`]), 16) & 0x100) !== 0, true, `${dev} is multi-queue`);
          assert.deepEqual(ns.run('ls', [`/sys/class/net/${dev}/queues`]).split(/\s+/).filter((q) => q.startsWith('rx-')), ['rx-0', 'rx-1']);
        }
        assert.equal(pingIn(a, ['-c', '5', '-i', '0.02', '-w', '5', '198.18.0.2']).received, 5);
        const tcp = await iperfIn(a, b, ['-P', '4']);
        assert.ok((tcp.end.sum_received.bytes as number) > 1_000_000, `TCP carried ${tcp.end.sum_received.bytes} bytes`);
        tcpBytes = tcp.end.sum_received.bytes as number;
        udpFromManyPorts(a);
        // The stats file has a line with the queues once the last datagrams are counted.
        await waitUntil(
          () => {
            const last = readFileSync(statsFile, 'utf8').trim().split('\n').at(-1);
            return last !== undefined && last !== '' && JSON.parse(last).devices[0].queues?.length === 2;
          },
          () => `per-queue counters in ${statsFile}`,
          3000,
        );
        const afterA = a.nstat();
        const afterB = b.nstat();
        for (const [name, before, after] of [['A', beforeA, afterA], ['B', beforeB, afterB]] as const) {
          for (const counter of ['IcmpInCsumErrors', 'TcpInCsumErrors', 'UdpInCsumErrors', 'IpInHdrErrors']) assert.equal(after[counter], before[counter], `${counter} in ${name}`);
        }
        assert.ok(afterB.UdpNoPorts - beforeB.UdpNoPorts >= 60, 'the datagrams from many ports reached B (port 9: no listener)');
        assert.equal(await tp.stop('SIGINT'), 0, tp.stderr());
      } finally {
        await tp.stop('SIGKILL', 1000);
      }
      const err = tp.stderr();
      assert.match(err, io === 'uring' ? /\(io_uring, 2 workers\)/ : /\(poll, 2 workers\)/);
      const da = deviceReport(err, 'tpa0');
      const db = deviceReport(err, 'tpb0');
      for (const d of [da, db]) {
        assert.equal(d.queues.length, 2);
        assert.equal(sum(d.queues, 'read'), d.read, 'a device reads the sum of its queues');
        assert.equal(sum(d.queues, 'written'), d.written);
        assert.equal(d.errors, 0);
      }
      assert.ok(da.queues.every((q) => q.read > 0), `the kernel spread A's flows over both queues: ${JSON.stringify(da.queues)}`);
      // With offloads every queue moves super-packets: far fewer reads than the segments the bytes make.
      if (offload) assert.ok(da.read < tcpBytes / 1500, `${da.read} packets read from tpa0 for ${tcpBytes} bytes`);
      for (let k = 0; k < 2; k++) {
        assert.equal(db.queues[k].written, da.queues[k].read, `queue ${k} of tpa0 forwards to queue ${k} of tpb0`);
        assert.equal(da.queues[k].written, db.queues[k].read, `queue ${k} of tpb0 forwards to queue ${k} of tpa0`);
      }
      // The stage table adds both workers up: what entered is what both devices read.
      assert.match(err, new RegExp(`stopped by signal: ${da.read + db.read} packets in, ${da.written + db.written} out`));
      const lines = readFileSync(statsFile, 'utf8').trim().split('\n').map((l) => JSON.parse(l));
      const last = lines.at(-1).devices as { name: string; read: number; queues: { queue: number; read: number }[] }[];
      assert.deepEqual(last.map((d) => d.name), ['tpa0', 'tpb0']);
      for (const d of last) assert.equal(d.queues.reduce((n, q) => n + q.read, 0), d.read, `--stats-json: ${d.name}'s total is its queues' sum`);
      rmSync(dir, { recursive: true, force: true });
    });
  });
}

/**
 * Pings `peers` addresses of 198.18.0.0/24 (from .2 up), `each` requests each; returns the replies. With
 * `untilGone`, unjudged, and it ends when the device has gone (tunpipe stopped at its --count).
 */
function pingPeers(ns: Netns, peers: number, each: number, untilGone = false): number {
  let replies = 0;
  for (let i = 0; i < peers; i++) {
    try {
      replies += pingIn(ns, ['-c', String(each), '-i', '0.01', '-w', '2', `198.18.0.${2 + i}`], 10_000, !untilGone).received;
    } catch (err) {
      if (untilGone && /Network is unreachable/.test(String(err))) break;
      throw err;
    }
  }
  return replies;
}

test('the echo on --queues 2 answers pings to many peers (flows on both queues); --count over the queues lets exactly N in', { skip }, async () => {
  await withNetns(async (ns) => {
    const tp = startTunpipeWith(ns, ['--dev', 'tpq0', '--addr', '198.18.0.1/24', '--queues', '2', 'parse | icmp-echo | checksum']);
    try {
      await tp.waitFor(/reading/);
      // Each peer address is a flow of its own for the kernel's hash; 16 of them land on both queues.
      assert.equal(pingPeers(ns, 16, 3), 48, 'every ping answered, judged by the kernel');
      assert.equal(await tp.stop('SIGINT'), 0, tp.stderr());
    } finally {
      await tp.stop('SIGKILL', 1000);
    }
    const d = deviceReport(tp.stderr(), 'tpq0');
    assert.equal(d.written, 48);
    assert.ok(d.queues.every((q) => q.read > 0 && q.written === q.read), `each queue answers what it read: ${JSON.stringify(d.queues)}`);
    assert.equal(stageRow(parseCounters(tp.stderr()), 'checksum').out, 48, 'the stage table is both workers added up');

    const counted = startTunpipeWith(ns, ['--dev', 'tpq0', '--addr', '198.18.0.1/24', '--queues', '2', '--count', '20', 'parse | icmp-echo | checksum']);
    try {
      await counted.waitFor(/reading/);
      // 16 peers × 2: more than the count; once it is reached the rest go unanswered (not judged).
      pingPeers(ns, 16, 2, true);
      assert.equal(await counted.exited(), 0, counted.stderr());
    } finally {
      await counted.stop('SIGKILL', 1000);
    }
    assert.match(counted.stderr(), /stopped after --count 20: 20 packets in, 20 out/);
    const c = deviceReport(counted.stderr(), 'tpq0');
    assert.equal(c.written, 20, 'exactly 20 answered');
    assert.ok(c.queues.every((q) => q.read > 0), `the 20 came in over both queues (10 peers): ${JSON.stringify(c.queues)}`);
  }, 'tpqe');
});

test('--queues usage errors: a single-queue persistent device (EINVAL explained), refused stages, --read, the event loop; a multi-queue one opens', { skip }, async () => {
  await withNetns(async (ns) => {
    ns.run('ip', ['tuntap', 'add', 'dev', 'tpq1', 'mode', 'tun']);
    const single = await runTunpipeIn(ns, ['--dev', 'tpq1', '--queues', '2', 'drop']);
    assert.equal(single.code, 2, single.stderr);
    assert.match(single.stderr, /cannot open tpq1 with --queues 2 \(EINVAL\): tpq1 already exists as a TUN device with one queue, and the kernel adds queues only to a device created with IFF_MULTI_QUEUE; leave out --queues/);

    ns.run('ip', ['tuntap', 'add', 'dev', 'tpq2', 'mode', 'tun', 'multi_queue']);
    for (const q of ['1', '3']) {
      const tp = startTunpipeWith(ns, ['--dev', 'tpq2', '--queues', q, 'drop']);
      try {
        await tp.waitFor(/reading/);
        assert.equal(await tp.stop('SIGINT'), 0, tp.stderr());
      } finally {
        await tp.stop('SIGKILL', 1000);
      }
    }

    const cases: [string[], RegExp, Record<string, string>?][] = [
      [['--dev', 'tpq3', '--queues', '0', 'drop'], /--queues takes a whole number of queues, at least 1, got '0'/],
      [['--dev', 'tpq3', '--queues', 'two', 'drop'], /--queues takes a whole number of queues, at least 1, got 'two'/],
      [['--dev', 'tpq3', '--queues', '300', 'drop'], /at most 256 queues per device \(MAX_TAP_QUEUES\)/],
      [['--dev', 'tpq3', '--queues', '65', 'drop'], /at most 64/],
      [['--queues', '2', '--read', '/dev/null', 'drop'], /--queues is for devices/],
      [['--dev', 'tpq3', '--queues', '2', 'rate 10mbit | drop'], /'rate' cannot run on --queues 2 \(tpq3\): rate on N queues would be N token buckets/],
      [['--dev', 'tpq3', '--queues', '2', 'parse | pcap /tmp/tpq.pcap | drop'], /'pcap' cannot run on --queues 2/],
      [['--dev', 'tpq3', '--queues', '2', 'drop'], /--queues runs a worker thread per queue: leave out TUNPIPE_THREAD=main/, { TUNPIPE_THREAD: 'main' }],
    ];
    for (const [args, re, env] of cases) {
      const p = startTunpipeWith(ns, args, { env });
      assert.equal(await p.exited(), 2, `${args.join(' ')}: ${p.stderr()}`);
      await new Promise((r) => setImmediate(r));
      assert.match(p.stderr(), re);
      assert.doesNotMatch(p.stderr(), /\n\s+at /);
    }
    assert.doesNotMatch(ns.run('ip', ['-o', 'link', 'show']), /tpq3/, 'no usage error left a device behind');
  }, 'tpqu');
});

test('a device deleted under a run on 2 queues: the worker that sees it stops the others, one clear line, exit 1', { skip }, async () => {
  await withNetns(async (ns) => {
    const tp = startTunpipeWith(ns, ['--dev', 'tpq4', '--addr', '198.18.0.1/24', '--queues', '2', 'parse | icmp-echo | checksum']);
    try {
      await tp.waitFor(/reading/);
      assert.equal(pingPeers(ns, 4, 2), 8);
      ns.run('ip', ['link', 'del', 'tpq4']);
      const code = await Promise.race([tp.exited(), new Promise((r) => setTimeout(() => r('still running'), 5000))]);
      assert.equal(code, 1, tp.stderr());
    } finally {
      await tp.stop('SIGKILL', 1000);
    }
    assert.match(tp.stderr(), /device tpq4 went away \(\w+\): it was deleted or its driver detached \(the worker of queue \d; the other queues were stopped\)/);
    assert.match(tp.stderr(), /stopped by an error: \d+ packets in/);
    assert.doesNotMatch(tp.stderr(), /\n\s+at /);
  }, 'tpqf');
});

test('a wire of 2 queues to 1: the single-queue side keeps its capture (created in one worker only, read by tcpdump), the other spreads', { skip }, async () => {
  await withWire(async (a, b, self) => {
    const dir = mkdtempSync(join(tmpdir(), 'tunpipe-queues-mixed-'));
    try {
      const file = join(dir, 'b.pcap');
      const tp = startTunpipeWith(self, ['--dev', 'tpa0', '--netns', a.name, '--addr', '198.18.0.1/24', '--queues', '2', '--dev', 'tpb0', '--netns', b.name, '--addr', '198.18.0.2/24', `from tpa0 | to tpb0; from tpb0 | pcap ${file} | to tpa0`]);
      try {
        await tp.waitFor(/reading/);
        assert.equal(pingIn(a, ['-c', '5', '-i', '0.02', '-w', '5', '198.18.0.2']).received, 5);
        udpFromManyPorts(a);
        assert.equal(await tp.stop('SIGINT'), 0, tp.stderr());
      } finally {
        await tp.stop('SIGKILL', 1000);
      }
      const err = tp.stderr();
      const da = deviceReport(err, 'tpa0');
      assert.ok(da.queues.every((q) => q.read > 0), `tpa0's flows on both queues: ${JSON.stringify(da.queues)}`);
      const captured = stageRow(parseCounters(err), '2:pcap').out;
      assert.ok(captured >= 5, err);
      const records = execFileSync('tcpdump', ['-n', '-r', file], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim().split('\n');
      assert.equal(records.length, captured, 'every packet the stage counted is in the file, once');
      assert.equal(records.filter((l) => /ICMP echo reply/.test(l)).length, 5);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

test('the library: openTun({ queues: 2 }) runs a worker per queue with thread: worker, and is refused on the event loop', { skip }, async () => {
  const dir = mkdtempSync(join(tmpdir(), 'tunpipe-queues-lib-'));
  const tunpipe = pathToFileURL(join(REPO_ROOT, 'dist', 'src', 'index.js')).href;
  const file = join(dir, 'queues.mjs');
  writeFileSync(
    file,
    `import { openTun, runPipeline } from '${tunpipe}';
const tun = openTun({ name: 'tplq0', addresses: ['198.18.0.1/24'], queues: 2 });
try {
  await runPipeline({ device: tun, pipeline: 'parse | icmp-echo | checksum' });
  process.stderr.write('event loop: ran\\n');
} catch (err) {
  process.stderr.write('event loop: ' + err.message + '\\n');
}
const controller = new AbortController();
process.once('SIGINT', () => controller.abort());
const result = await runPipeline({ device: tun, pipeline: 'parse | icmp-echo | checksum', thread: 'worker', signal: controller.signal, onReady: () => process.stderr.write('answering on ' + tun.queueFds.length + ' queues\\n') });
tun.closeFd();
process.stdout.write(JSON.stringify({ in: result.packetsIn, out: result.packetsOut, io: result.io, counters: tun.counters, queues: tun.queueCounters }));
`,
  );
  try {
    await withNetns(async (ns) => {
      const p = watchProcess(spawnInNetns(ns, [process.execPath, file]));
      try {
        await p.waitFor(/answering on 2 queues/);
        assert.match(p.stderr(), /event loop: tplq0 has 2 queues: run it with thread: 'worker'/);
        assert.equal(pingPeers(ns, 16, 2), 32);
        assert.equal(await p.stop('SIGINT', 3000), 0, p.stderr());
      } finally {
        await p.stop('SIGKILL', 1000);
      }
      const r = JSON.parse(p.stdout());
      assert.equal(r.out, 32);
      assert.match(r.io, /2 workers/);
      assert.equal(r.queues.length, 2);
      assert.ok(r.queues.every((q: { rxPackets: number }) => q.rxPackets > 0), JSON.stringify(r.queues));
      assert.equal(r.queues[0].txPackets + r.queues[1].txPackets, r.counters.txPackets);
    }, 'tpql');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
