/**
 * Stages on the offload path (--offload): a wire between two namespaces whose devices hand over TCP
 * super-packets, with stages in it. `filter`, `pcap` and `delay` take super-packets whole (the capture holds
 * packets longer than the MTU, and tshark reads them); a user's stage gets segments no longer than the MTU
 * (a `segment` stage is put in front of it). iperf3 TCP and UDP cross, a TCP transfer arrives with the
 * digest it left with, and the kernels on both sides count no checksum errors. Over io_uring, over poll()
 * and on the event loop (TUNPIPE_THREAD=main). tunpipe runs in a namespace of its own.
 */
import { test } from 'node:test';
import { execFileSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import assert from 'node:assert/strict';
import { deviceTestSkipReason, withWireNamespaces, type Netns } from '../helpers/netns.js';
import { iperfIn, pingIn, spawnInNetns, startTunpipeWith, waitUntil } from '../helpers/netns-process.js';

const skip = deviceTestSkipReason();

async function withWire(fn: (a: Netns, b: Netns, self: Netns, dir: string) => Promise<void>): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'tunpipe-offload-'));
  try {
    await withWireNamespaces(['tpoa', 'tpob', 'tpos'], (a, b, self) => fn(a, b, self, dir));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

function wireArgs(a: Netns, b: Netns, pipeline: string): string[] {
  return ['--offload', '--dev', 'tpa0', '--netns', a.name, '--addr', '198.18.0.1/24', '--dev', 'tpb0', '--netns', b.name, '--addr', '198.18.0.2/24', pipeline];
}

const RECEIVER = `
const net = require('net'), crypto = require('crypto');
const h = crypto.createHash('sha256'); let n = 0;
const s = net.createServer((c) => {
  c.on('data', (d) => { h.update(d); n += d.length; });
  c.on('end', () => { console.log(JSON.stringify({ n, digest: h.digest('hex') })); s.close(); });
}).listen(5300, '198.18.0.2', () => console.log('listening'));`;

const SENDER = `
const net = require('net'), crypto = require('crypto');
const total = 24 << 20; const h = crypto.createHash('sha256'); let sent = 0;
const c = net.connect(5300, '198.18.0.2', () => {
  const step = () => {
    while (sent < total) {
      const b = crypto.randomBytes(65536); h.update(b); sent += b.length;
      if (!c.write(b)) { c.once('drain', step); return; }
    }
    c.end(() => console.log(JSON.stringify({ n: sent, digest: h.digest('hex') })));
  };
  step();
});`;

function stdoutOf(child: ChildProcess): Promise<string> {
  let out = '';
  child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => (child.kill('SIGKILL'), reject(new Error(`timed out: ${out}`))), 60_000);
    child.on('exit', () => (clearTimeout(timer), resolve(out)));
  });
}

/** 24 MiB of random bytes over TCP from A to B (node on both ends): what arrived is what left, by SHA-256. */
async function transfer(a: Netns, b: Netns): Promise<number> {
  const receiver = spawnInNetns(b, [process.execPath, '-e', RECEIVER]);
  const received = stdoutOf(receiver);
  let early = '';
  receiver.stdout!.on('data', (d: Buffer) => (early += d.toString()));
  await waitUntil(() => early.includes('listening'), () => `receiver to listen: ${early}`, 10_000);
  const sent = JSON.parse((await stdoutOf(spawnInNetns(a, [process.execPath, '-e', SENDER]))).trim());
  const got = JSON.parse((await received).split('\n').filter((l) => l.startsWith('{'))[0]);
  assert.equal(got.n, sent.n, 'every byte arrived');
  assert.equal(got.digest, sent.digest, 'the bytes that arrived are the bytes sent (SHA-256)');
  return got.n;
}

/**
 * A UDP sender that hands the kernel 12,000 bytes at a time with UDP_SEGMENT (gso_size 1200: "USO"), through
 * koffi (node's dgram has no such option): with offloads the device gets UDP super-packets. Datagram i holds
 * its index and bytes computed from it, so the receiver checks each one on its own.
 */
const USO_SENDER = `
const koffi = require(${JSON.stringify(createRequire(import.meta.url).resolve('koffi'))});
const libc = koffi.load('libc.so.6');
const socket = libc.func('int socket(int, int, int)');
const setsockopt = libc.func('int setsockopt(int, int, int, void *, uint32_t)');
const connect = libc.func('int connect(int, void *, uint32_t)');
const send = libc.func('intptr_t send(int, void *, size_t, int)');
const fd = socket(2, 2, 0);
const size = Buffer.alloc(4); size.writeInt32LE(1200);
if (setsockopt(fd, 17, 103, size, 4) < 0) throw new Error('UDP_SEGMENT refused: errno ' + koffi.errno());
const sa = Buffer.alloc(16); sa.writeUInt16LE(2, 0); sa.writeUInt16BE(5301, 2); Buffer.from([198, 18, 0, 2]).copy(sa, 4);
if (connect(fd, sa, 16) < 0) throw new Error('connect: errno ' + koffi.errno());
const pause = new Int32Array(new SharedArrayBuffer(4));
for (let k = 0; k < 150; k++) {
  const buf = Buffer.alloc(12000);
  for (let j = 0; j < 10; j++) {
    const i = k * 10 + j;
    buf.writeUInt32BE(i, j * 1200);
    for (let x = 4; x < 1200; x++) buf[j * 1200 + x] = (i * 31 + x) & 0xff;
  }
  if (send(fd, buf, buf.length, 0) !== buf.length) throw new Error('send: errno ' + koffi.errno());
  Atomics.wait(pause, 0, 0, 3);
}
console.log(JSON.stringify({ sent: 1500 }));`;

const UDP_RECEIVER = `
const s = require('dgram').createSocket('udp4');
let good = 0, bad = 0, timer = null;
const done = () => { console.log(JSON.stringify({ good, bad })); s.close(); };
s.on('message', (m) => {
  const i = m.length === 1200 ? m.readUInt32BE(0) : -1;
  let ok = i >= 0;
  for (let x = 4; ok && x < 1200; x++) ok = m[x] === ((i * 31 + x) & 0xff);
  ok ? good++ : bad++;
  clearTimeout(timer); timer = setTimeout(done, 1500);
});
s.bind(5301, '198.18.0.2', () => { console.log('listening'); timer = setTimeout(done, 15000); });`;

/** 1,500 datagrams of 1200 bytes sent as UDP super-packets from A to B: how many arrived whole, how many wrong. */
async function usoTransfer(a: Netns, b: Netns): Promise<{ good: number; bad: number }> {
  const receiver = spawnInNetns(b, [process.execPath, '-e', UDP_RECEIVER]);
  let early = '';
  receiver.stdout!.on('data', (d: Buffer) => (early += d.toString()));
  const received = stdoutOf(receiver);
  await waitUntil(() => early.includes('listening'), () => `UDP receiver to listen: ${early}`, 10_000);
  const sender = spawnInNetns(a, [process.execPath, '-e', USO_SENDER]);
  let senderErr = '';
  sender.stderr!.on('data', (d: Buffer) => (senderErr += d.toString()));
  const sent = await stdoutOf(sender);
  assert.match(sent, /"sent":1500/, senderErr);
  const got = JSON.parse((await received).split('\n').filter((l) => l.startsWith('{'))[0]) as { good: number; bad: number };
  assert.equal(got.bad, 0, 'no datagram arrived wrong');
  assert.ok(got.good >= 1500 * 0.9, `${got.good} of 1500 datagrams arrived`);
  return got;
}

function assertNoChecksumErrors(before: Record<string, number>[], after: Record<string, number>[]): void {
  after.forEach((counters, i) => {
    for (const c of ['TcpInCsumErrors', 'UdpInCsumErrors', 'IpInHdrErrors']) assert.equal(counters[c], before[i][c], `${c} in ${i === 0 ? 'A' : 'B'}`);
  });
}

function deviceCounters(stderr: string): Map<string, { read: number; written: number; errors: number }> {
  return new Map([...stderr.matchAll(/device (tp[ab]0): read (\d+), written (\d+), write errors (\d+)/g)].map((m) => [m[1], { read: Number(m[2]), written: Number(m[3]), errors: Number(m[4]) }]));
}

/** The worker's two loops, and the event loop (TUNPIPE_THREAD=main), with the exit line that names each. */
const PATHS = [
  { io: 'uring', env: { TUNPIPE_IO: 'uring' }, line: /\(io_uring\)/ },
  { io: 'poll', env: { TUNPIPE_IO: 'poll' }, line: /\(poll\)/ },
  { io: 'event loop', env: { TUNPIPE_THREAD: 'main' }, line: /\(event loop/ },
] as const;

for (const { io, env, line } of PATHS) {
  test(`--offload with filter, pcap and delay on the wire (${io}): super-packets pass whole, TCP and UDP cross intact, the capture holds super-packets tshark reads`, { skip }, async () => {
    await withWire(async (a, b, self, dir) => {
      const cap = join(dir, 'a.pcapng');
      const before = [a.nstat(), b.nstat()];
      const tp = startTunpipeWith(self, wireArgs(a, b, `from tpa0 | filter 'tcp or udp or icmp' | pcap ${cap} filter='tcp port 5300' | delay 1ms | to tpb0; from tpb0 | to tpa0`), { env });
      try {
        await tp.waitFor(/reading/);
        assert.equal(pingIn(a, ['-c', '5', '-i', '0.05', '-w', '5', '198.18.0.2']).received, 5);
        const tcp = await iperfIn(a, b, []);
        const tcpBytes = tcp.end.sum_received.bytes as number;
        assert.ok(tcpBytes > 1_000_000, `TCP carried ${tcpBytes} bytes`);
        const udp = await iperfIn(a, b, ['-u', '-b', '50M', '-l', '1200']);
        assert.ok((udp.end.sum.packets as number) > 1000);
        assert.ok((udp.end.sum.lost_packets as number) <= (udp.end.sum.packets as number) * 0.2, `UDP lost ${udp.end.sum.lost_packets} of ${udp.end.sum.packets}`);
        const moved = await transfer(a, b);
        await usoTransfer(a, b);
        assertNoChecksumErrors(before, [a.nstat(), b.nstat()]);
        assert.equal(await tp.stop('SIGINT'), 0, tp.stderr());
        const err = tp.stderr();
        assert.match(err, line);
        assert.doesNotMatch(err, /segment/, `no stage here needs segments, and both devices take super-packets:\n${err}`);
        const devices = deviceCounters(err);
        assert.equal(devices.get('tpa0')!.errors + devices.get('tpb0')!.errors, 0, err);
        // Super-packets: fewer packets read than TCP's bytes make at the MTU.
        assert.ok(devices.get('tpa0')!.read < (tcpBytes + moved) / 1500, `${devices.get('tpa0')!.read} packets read for ${tcpBytes + moved} bytes:\n${err}`);
      } finally {
        await tp.stop('SIGKILL', 1000);
      }
      const lengths = execFileSync('tshark', ['-r', cap, '-T', 'fields', '-e', 'frame.len', '-e', 'ip.len', '-Y', 'tcp'], { encoding: 'utf8', maxBuffer: 1 << 28, timeout: 60_000 })
        .trim()
        .split('\n')
        .map((l) => l.split('\t').map(Number));
      assert.ok(lengths.length > 100, `tshark read ${lengths.length} TCP packets`);
      const big = lengths.filter(([frame]) => frame > 1500);
      assert.ok(big.length > 0, 'the capture holds super-packets, longer than the MTU');
      assert.ok(big.every(([frame, ip]) => frame === ip), 'recorded whole: the IP length is the super-packet');
    });
  });

  test(`--offload: a user's stage gets segments no longer than the MTU while TCP crosses (${io})`, { skip }, async () => {
    await withWire(async (a, b, self, dir) => {
      const stage = join(dir, 'largest.mjs');
      const report = join(dir, 'largest.json');
      writeFileSync(
        stage,
        `import { writeFileSync } from 'node:fs';
export default {
  name: 'largest', summary: 'records the largest packet it saw',
  args: [{ name: 'out', type: 'string', positional: true, required: true, description: 'where to write it' }],
  create(args) {
    let max = 0, n = 0, gso = 0;
    return {
      process(p) { n++; if (p.data.length > max) max = p.data.length; if (p.gsoType !== 0) gso++; return p; },
      close() { writeFileSync(args.out, JSON.stringify({ max, n, gso })); },
    };
  },
};
`,
      );
      const before = [a.nstat(), b.nstat()];
      const tp = startTunpipeWith(self, wireArgs(a, b, `from tpa0 | filter tcp | ${stage} ${report} | to tpb0; from tpb0 | to tpa0`), { env });
      try {
        await tp.waitFor(/reading/);
        const moved = await transfer(a, b);
        const tcp = await iperfIn(a, b, []);
        assert.ok((tcp.end.sum_received.bytes as number) > 1_000_000);
        assertNoChecksumErrors(before, [a.nstat(), b.nstat()]);
        assert.equal(await tp.stop('SIGINT'), 0, tp.stderr());
        const err = tp.stderr();
        const seen = JSON.parse(readFileSync(report, 'utf8')) as { max: number; n: number; gso: number };
        assert.ok(seen.max <= 1500, `the largest packet the stage saw: ${seen.max} bytes`);
        assert.ok(seen.max >= 1400, `full-sized segments reached it: ${seen.max} bytes`);
        assert.equal(seen.gso, 0, 'no super-packet reached it');
        assert.ok(seen.n > moved / 1500, `${seen.n} segments for ${moved} bytes`);
        assert.match(err, /segment\b.*\n?/, `a segment stage was put in front of the user's stage:\n${err}`);
        const devices = deviceCounters(err);
        assert.ok(devices.get('tpa0')!.read < seen.n, `the device handed over super-packets (${devices.get('tpa0')!.read} read, ${seen.n} segments):\n${err}`);
        assert.equal(devices.get('tpa0')!.errors + devices.get('tpb0')!.errors, 0, err);
      } finally {
        await tp.stop('SIGKILL', 1000);
      }
    });
  });

  test(`--offload: stages that need segments on both directions (${io}): TCP and UDP super-packets segmented, checksums right, data intact`, { skip }, async () => {
    await withWire(async (a, b, self) => {
      const before = [a.nstat(), b.nstat()];
      const tp = startTunpipeWith(self, wireArgs(a, b, 'from tpa0 | parse | checksum | to tpb0; from tpb0 | parse | checksum | to tpa0'), { env });
      try {
        await tp.waitFor(/reading/);
        const uso = /tx-udp-segmentation: on/.test(a.run('ethtool', ['-k', 'tpa0']));
        assert.equal(pingIn(a, ['-c', '3', '-i', '0.05', '-w', '5', '198.18.0.2']).received, 3);
        const moved = await transfer(a, b);
        const udp = await usoTransfer(a, b);
        assertNoChecksumErrors(before, [a.nstat(), b.nstat()]);
        assert.equal(await tp.stop('SIGINT'), 0, tp.stderr());
        const err = tp.stderr();
        assert.match(err, line);
        // The segment stage put in front of checksum: packets in, segments emitted.
        const row = /^\s*1:segment\s+(\d+)\s+(\d+)\s+(\d+)/m.exec(err);
        assert.ok(row, `a segment row in the counters:\n${err}`);
        const devices = deviceCounters(err);
        const segments = devices.get('tpb0')!.written;
        assert.ok(segments > moved / 1500, `${segments} packets written to tpb0 for ${moved} bytes`);
        assert.ok(devices.get('tpa0')!.read < segments / 2, `super-packets were read from tpa0 (${devices.get('tpa0')!.read}) and split (${segments} written):\n${err}`);
        if (uso) assert.ok(udp.good > 0);
        assert.equal(devices.get('tpa0')!.errors + devices.get('tpb0')!.errors, 0, err);
      } finally {
        await tp.stop('SIGKILL', 1000);
      }
    });
  });
}

test('--offload with segment written before pcap: the capture holds segments no longer than the MTU whose checksums tshark verifies', { skip }, async () => {
  await withWire(async (a, b, self, dir) => {
    const cap = join(dir, 'seg.pcap');
    const before = [a.nstat(), b.nstat()];
    const tp = startTunpipeWith(self, wireArgs(a, b, `from tpa0 | segment | pcap ${cap} | to tpb0; from tpb0 | to tpa0`));
    let moved: number;
    try {
      await tp.waitFor(/reading/);
      moved = await transfer(a, b);
      assertNoChecksumErrors(before, [a.nstat(), b.nstat()]);
      assert.equal(await tp.stop('SIGINT'), 0, tp.stderr());
    } finally {
      await tp.stop('SIGKILL', 1000);
    }
    // One pass of tshark over the capture, every field the checks need (-n: no name lookups).
    const rows = execFileSync('tshark', ['-n', '-r', cap, '-o', 'tcp.check_checksum:TRUE', '-o', 'ip.check_checksum:TRUE', '-T', 'fields', '-E', 'separator=/t', '-e', 'frame.len', '-e', 'tcp.dstport', '-e', 'tcp.len', '-e', 'tcp.checksum.status', '-e', 'ip.checksum.status'], { encoding: 'utf8', maxBuffer: 1 << 28, timeout: 120_000 })
      .trim()
      .split('\n')
      .filter(Boolean)
      .map((l) => l.split('\t'));
    const data = rows.filter((f) => f[1] === '5300' && Number(f[2]) > 0).length;
    assert.ok(data > moved / 1500, `${data} TCP segments with data for ${moved} bytes`);
    assert.equal(rows.filter((f) => Number(f[0]) > 1500).length, 0, 'no packet longer than the MTU');
    // tshark's checksum status: 0 bad, 1 good, 2 not checked.
    assert.equal(rows.filter((f) => f[3] === '0' || f[4] === '0').length, 0, 'tshark finds every checksum right');
    assert.ok(rows.some((f) => f[3] === '1') && rows.some((f) => f[4] === '1'), 'tshark checked the checksums');
  });
});

test('--offload offline is a usage error', { skip }, async () => {
  await withWire(async (_a, _b, self, dir) => {
    const file = join(dir, 'none.pcap');
    writeFileSync(file, '');
    const r = startTunpipeWith(self, ['--offload', '--read', file, 'parse']);
    assert.equal(await r.exited(), 2, r.stderr());
    assert.match(r.stderr(), /--offload is for devices/);
  });
});
