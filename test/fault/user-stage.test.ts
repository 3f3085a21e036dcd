/**
 * User stages that misbehave. One that throws (or rejects) for some packets: those packets are dropped and
 * counted under the error, the error is reported once with the stage's name, and other pings are answered.
 * One that is slow (awaits 5 ms a packet) under a flood: the queue in front of it is bounded (--queue 64),
 * what does not fit is dropped as "queue full", and memory stays bounded.
 */
import { it } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { deviceTestSkipReason, startTunpipe } from '../helpers/netns.js';
import { runCli, tempDir } from '../helpers/cli.js';
import { echoRequest, readPcapRecords, writePcap } from '../helpers/packets.js';
import { tcpdumpRead } from '../helpers/pcap-tools.js';
import { USER_CODE_STALL_MS } from '../../src/pipeline/user-code-watch.js';
import { parseCounters, reasonCount, stageRow } from '../helpers/counters.js';
import { inScene, PEER, ping, sleep, stackLines, vmRssKb } from './support.js';

const THROWS = `// Throws for packets longer than 200 bytes.
export default function (packet) {
  if (packet.length > 200) throw new Error('too long for picky');
  return packet;
}
`;

const REJECTS = `// An async stage that rejects for packets longer than 200 bytes.
export default async function (packet) {
  await null;
  if (packet.length > 200) throw new Error('too long for picky-async');
  return packet;
}
`;

const SLOW = `// Takes 5 ms a packet.
export default async function (packet) {
  await new Promise((resolve) => setTimeout(resolve, 5));
  return packet;
}
`;

/** `node -e UDP_BLAST ADDR RATE MS`: sends RATE UDP datagrams a second to ADDR:9 for MS milliseconds. */
const UDP_BLAST = `
const dgram = require('node:dgram');
const [addr, rate, ms] = process.argv.slice(1);
const sock = dgram.createSocket('udp4');
const payload = Buffer.alloc(64, 0x55);
const perTick = Math.ceil(Number(rate) / 100);
const timer = setInterval(() => { for (let i = 0; i < perTick; i++) sock.send(payload, 9, addr, () => {}); }, 10);
setTimeout(() => { clearInterval(timer); sock.close(); }, Number(ms));
`;

for (const [dev, name, source] of [
  ['tpf6', 'picky', THROWS],
  ['tpf7', 'picky-async', REJECTS],
] as const) {
  it(`a user stage that ${name === 'picky' ? 'throws' : 'rejects'} for some packets: dropped, counted, reported once, other pings answered`, { skip: deviceTestSkipReason(), timeout: 30_000 }, () =>
    inScene('userthrow', async ({ ns, dir, startEcho }) => {
      const module = join(dir, `${name}.mjs`);
      writeFileSync(module, source);
      const tp = await startEcho(dev, `parse | ${module} | icmp-echo | checksum`);
      const big = await ping(ns, ['-s', '300', '-c', '3', '-i', '0.2', '-w', '1', PEER]);
      assert.equal(big.received, 0, `requests the stage throws for are not answered:\n${big.output}`);
      const small = await ping(ns, ['-c', '3', '-i', '0.2', '-w', '5', PEER]);
      assert.equal(small.received, 3, `other requests are answered:\n${small.output}\n${tp.stderr()}`);
      assert.equal(await tp.stop('SIGINT'), 0, tp.stderr());

      const err = tp.stderr();
      const reports = err.split('\n').filter((l) => l.includes(`too long for ${name}`) && !/^\S+\s+\d+\s+\d+\s+\d+/.test(l));
      assert.equal(reports.length, 1, `the error is reported once:\n${err}`);
      assert.match(reports[0], new RegExp(`'${name}'`), 'with the stage name');
      assert.deepEqual(stackLines(err), []);
      const row = stageRow(parseCounters(err), name);
      // ping -w keeps sending unanswered requests until its deadline: count what it sent.
      assert.equal(row.in, big.transmitted + small.transmitted);
      assert.equal(row.out, small.transmitted);
      assert.equal(row.dropped, big.transmitted);
      assert.equal(reasonCount(row, new RegExp(`too long for ${name}`)), big.transmitted);
    }),
  );
}

it('a slow user stage under a flood: bounded queue, "queue full" drops counted, memory bounded', { skip: deviceTestSkipReason(), timeout: 40_000 }, (t) =>
  inScene('slow', async ({ ns, dir, startEcho, startFlood, atEnd }) => {
    const module = join(dir, 'slow.mjs');
    writeFileSync(module, SLOW);
    const tp = await startEcho('tpf8', `parse | ${module} | icmp-echo | checksum`, ['--queue', '64']);
    const pid = tp.child.pid!;
    // ping paces itself by the replies, so on its own it never outruns a slow stage for long. Next to a
    // ping flood, 2000 UDP datagrams a second that nobody answers (open loop) keep the stage, which
    // passes 200 a second, overloaded for the whole run.
    const flood = startFlood(100000, 5);
    const blaster = ns.spawn(process.execPath, ['-e', UDP_BLAST, PEER, '2000', '4500']);
    atEnd(() => blaster.kill('SIGKILL'));
    await sleep(1500);
    const early = vmRssKb(pid);
    await sleep(2500);
    const late = vmRssKb(pid);
    const answered = (await flood.done).received;
    t.diagnostic(`VmRSS ${early} KiB at 1.5 s, ${late} KiB at 4 s; ${answered} pings answered`);
    assert.ok(early < 200 * 1024 && late < 200 * 1024, `resident memory ${early} KiB, then ${late} KiB`);
    assert.ok(late - early < 5 * 1024, `memory grew from ${early} KiB to ${late} KiB in 2 s under a steady overload`);
    assert.ok(answered > 0, 'the slow stage still lets packets through');

    assert.equal(await tp.stop('SIGINT'), 0, tp.stderr());
    const row = stageRow(parseCounters(tp.stderr()), 'slow');
    const full = reasonCount(row, /^queue full/);
    t.diagnostic(`slow stage: in ${row.in}, out ${row.out}, queue-full drops ${full}`);
    assert.ok(full > 0, `drops for a full queue expected:\n${tp.stderr()}`);
    assert.equal(row.in, row.out + row.dropped, `counters of the slow stage add up:\n${tp.stderr()}`);
    assert.ok(row.out >= answered, `${row.out} passed the slow stage, ${answered} replies`);
  }),
);

const SPINS = `// Never returns once a packet longer than 200 bytes arrives.
export default function (packet) {
  if (packet.length > 200) for (;;) {}
  return packet;
}
`;

// The worker it holds is ended; the main thread then writes out what the worker's captures and print still
// held: here the request that reached them just before the stage got stuck, which a device's capture
// writes only once the traffic pauses, and print at the end of the batch.
it('a user stage that never returns: SIGINT still ends tunpipe within the grace time, with an error that says why, the capture written out', { skip: deviceTestSkipReason(), timeout: 30_000 }, () =>
  inScene('userspin', async ({ ns, dir, startEcho }) => {
    const module = join(dir, 'spins.mjs');
    writeFileSync(module, SPINS);
    const capture = join(dir, 'seen.pcap');
    const tp = await startEcho('tpf9', `parse | print | pcap file=${capture} | ${module} | icmp-echo | checksum`);
    assert.equal((await ping(ns, ['-c', '2', '-i', '0.2', '-w', '3', PEER])).received, 2, 'answers before the stage hangs');
    await ping(ns, ['-s', '300', '-c', '1', '-W', '1', PEER]);
    const t0 = Date.now();
    const code = await tp.stop('SIGINT', 15_000);
    const took = Date.now() - t0;
    assert.equal(code, 1, tp.stderr());
    assert.ok(took < 12_000, `stopped after ${took} ms`);
    assert.match(tp.stderr(), /did not stop within 5 s of being asked: a stage that never returns.*; what its captures and printed lines still held was written out$/m);
    assert.deepEqual(stackLines(tp.stderr()), []);
    const requests = tcpdumpRead(capture, ['icmp[icmptype] = 8']);
    assert.equal(requests.length, 3, requests.join('\n'));
    assert.match(requests[2], /ICMP echo request, .*length 308$/, 'the request that got the stage stuck');
    // print's line for it, which the worker had not written yet either.
    const printed = tp.stdout().split('\n').filter((l) => / ICMP echo request/.test(l));
    assert.equal(printed.length, 3, tp.stdout());
    assert.match(printed[2], /length 308$/);
  }),
);

const SPINS_ON_THIRD = `// Never returns from its third packet.
let n = 0;
export default function (packet) {
  if (++n === 3) for (;;) {}
  return packet;
}
`;

const SPINS_AFTER_AWAIT = `// An async stage whose third packet's continuation, after an await, never returns.
let n = 0;
export default async function (packet) {
  if (++n === 3) {
    await null;
    for (;;) {}
  }
  return packet;
}
`;

const SPINS_AT_IMPORT = `// Never finishes loading.
for (;;) {}
export default (packet) => packet;
`;

const SPINS_IN_CREATE = `// A stage definition whose create() never returns.
export default { name: 'stuck', create() { for (;;) {} } };
`;

const SPINS_FROZEN = `// A frozen instance (its methods cannot be reassigned) that never returns from its second packet.
export default { name: 'frozen', create() { let n = 0; return Object.freeze({ process(p) { if (++n === 2) for (;;) {} return p; } }); } };
`;

/** A capture of five echo requests (RAW). */
function fivePackets(path: string): void {
  writePcap(path, Array.from({ length: 5 }, () => echoRequest()));
}

// Offline the stages run on the main thread, which a stuck one holds: Ctrl-C cannot be seen there. A second
// thread ends the run once one call has lasted USER_CODE_STALL_MS, or the event loop's beat has been missing
// as long (an async stage that loops after an await holds the thread outside any call). It writes out the
// records the captures held first, and print's lines: a capture in front of the stage holds every packet
// that reached it, and print a line for each; the output holds every reply made before it got stuck. The
// five run side by side (one wait).
it('offline, a user module that never returns (on a packet, at import, in create(), a frozen instance, after an await): one line naming it, exit 1, after the stall time, captures written out', { timeout: USER_CODE_STALL_MS + 20_000 }, async () => {
  const tmp = tempDir('tunpipe-stuck-');
  let reader: ChildProcess | null = null;
  try {
    const input = tmp.file('in.pcap');
    fivePackets(input);
    // Per case: packets the capture in front of the stage saw, replies written (null: no file to read).
    const cases = [
      ['third', SPINS_ON_THIRD, 3, 2],
      ['loading', SPINS_AT_IMPORT, null, null],
      ['creating', SPINS_IN_CREATE, 0, null],
      ['frozen', SPINS_FROZEN, 2, 1],
      // The capture sees the whole batch before the asynchronous stage takes its packets one by one.
      ['awaits', SPINS_AFTER_AWAIT, 5, 2],
    ] as const;
    // 'third' also captures to a FIFO, which its reader copies to a file: a blocking pipe, written out
    // through a non-blocking open of its own.
    const fifo = tmp.file('third.fifo');
    execFileSync('mkfifo', [fifo]);
    const fromFifo = tmp.file('third-fifo.pcap');
    reader = spawn('sh', ['-c', 'exec cat "$1" > "$2"', 'sh', fifo, fromFifo], { stdio: 'ignore' });
    const readerDone = new Promise((resolve) => reader!.once('close', resolve));
    const t0 = Date.now();
    const runs = await Promise.all(
      cases.map(([name, source]) => {
        const module = tmp.file(`${name}.mjs`);
        writeFileSync(module, source);
        const toFifo = name === 'third' ? ` | pcap file=${fifo}` : '';
        return runCli(['--read', input, '--write', tmp.file(`${name}.pcap`), `parse | print | pcap file=${tmp.file(`${name}-seen.pcap`)}${toFifo} | ${module} | icmp-echo | checksum`], { timeoutMs: USER_CODE_STALL_MS + 15_000 });
      }),
    );
    const took = Date.now() - t0;
    await readerDone;
    assert.equal(tcpdumpRead(fromFifo).length, 3, 'the capture to a FIFO, read by tcpdump');
    for (const [i, [name, , seen, replies]] of cases.entries()) {
      const r = runs[i];
      assert.equal(r.signal, null, `${name}: ended by ${r.signal} (the test's own kill):\n${r.stderr}`);
      assert.equal(r.code, 1, `${name}:\n${r.stderr}`);
      const said = r.stderr.trim().split('\n');
      assert.equal(said.length, 1, `${name}: one line:\n${r.stderr}`);
      assert.match(said[0], new RegExp(`^tunpipe: stage '${name}' \\(.*${name}\\.mjs\\) has not returned for ${USER_CODE_STALL_MS / 1000} s`));
      if (replies !== null) assert.match(said[0], /what its captures and printed lines still held was written out first$/, name);
      // Both files hold whole records only, as many as the packets that reached them; tcpdump reads them.
      for (const [file, want] of [[tmp.file(`${name}-seen.pcap`), seen], [tmp.file(`${name}.pcap`), replies]] as const) {
        if (want === null) {
          if (existsSync(file) && statSync(file).size > 0) assert.equal(readPcapRecords(readFileSync(file)).packets.length, 0, `${name}: ${file}`);
          continue;
        }
        const records = readPcapRecords(readFileSync(file));
        assert.equal(records.trailing, 0, `${name}: ${file}`);
        assert.equal(records.packets.length, want, `${name}: ${file}`);
        assert.equal(tcpdumpRead(file).length, want, `${name}: ${file}, read by tcpdump`);
      }
      const printed = r.stdout.toString('utf8').split('\n').filter((l: string) => / ICMP echo request/.test(l)).length;
      assert.equal(printed, seen ?? 0, `${name}: lines printed:\n${r.stdout}`);
      if (replies !== null && replies > 0) assert.ok(tcpdumpRead(tmp.file(`${name}.pcap`)).every((l) => /ICMP echo reply/.test(l)), name);
    }
    assert.ok(took >= USER_CODE_STALL_MS, `ended after ${took} ms, before a call had lasted ${USER_CODE_STALL_MS} ms`);
  } finally {
    // A run that never opened the FIFO leaves its reader waiting in open().
    reader?.kill('SIGKILL');
    tmp.remove();
  }
});

it('offline, a user module that works: the watch leaves it alone (every packet through, its report printed)', async () => {
  const tmp = tempDir('tunpipe-watched-');
  try {
    const input = tmp.file('in.pcap');
    fivePackets(input);
    const module = tmp.file('counts.mjs');
    writeFileSync(module, `export default { name: 'counts', create() { let n = 0; return Object.freeze({ process(p) { n++; return p; }, report() { return 'saw ' + n; } }); } };\n`);
    const r = await runCli(['--read', input, '--write', tmp.file('out.pcap'), `parse | ${module}`]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stderr, /saw 5/);
    assert.equal(readPcapRecords(readFileSync(tmp.file('out.pcap'))).packets.length, 5);
  } finally {
    tmp.remove();
  }
});

it('on a device, Ctrl-C while a user module is still loading (it never finishes): ends at once, one line, no device made', { skip: deviceTestSkipReason(), timeout: 30_000 }, () =>
  inScene('userload', async ({ ns, dir, atEnd }) => {
    const module = join(dir, 'loading.mjs');
    writeFileSync(module, SPINS_AT_IMPORT);
    const tp = startTunpipe(ns, ['--dev', 'tpfb', '--addr', '198.18.0.1/24', `parse | ${module} | icmp-echo | checksum`]);
    atEnd(() => tp.stop('SIGKILL'));
    await sleep(1500);
    const t0 = Date.now();
    const code = await tp.stop('SIGINT', 10_000);
    const took = Date.now() - t0;
    assert.equal(code, 1, tp.stderr());
    assert.ok(took < 2000, `stopped after ${took} ms`);
    assert.match(tp.stderr(), /^tunpipe: stopped by a signal while the stages were being created/m);
    assert.deepEqual(stackLines(tp.stderr()), []);
    assert.doesNotMatch(ns.run('ip', ['link', 'show']), /tpfb/, 'the device was never made');
  }),
);
