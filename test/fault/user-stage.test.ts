/**
 * User stages that misbehave. One that throws (or rejects) for some packets: those packets are dropped and
 * counted under the error, the error is reported once with the stage's name, and other pings are answered.
 * One that is slow (awaits 5 ms a packet) under a flood: the queue in front of it is bounded (--queue 64),
 * what does not fit is dropped as "queue full", and memory stays bounded.
 */
import { it } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { deviceTestSkipReason } from '../helpers/netns.js';
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

it('a user stage that never returns: SIGINT still ends tunpipe within the grace time, with an error that says why', { skip: deviceTestSkipReason(), timeout: 30_000 }, () =>
  inScene('userspin', async ({ ns, dir, startEcho }) => {
    const module = join(dir, 'spins.mjs');
    writeFileSync(module, SPINS);
    const tp = await startEcho('tpf9', `parse | ${module} | icmp-echo | checksum`);
    assert.equal((await ping(ns, ['-c', '2', '-i', '0.2', '-w', '3', PEER])).received, 2, 'answers before the stage hangs');
    await ping(ns, ['-s', '300', '-c', '1', '-W', '1', PEER]);
    const t0 = Date.now();
    const code = await tp.stop('SIGINT', 15_000);
    const took = Date.now() - t0;
    assert.equal(code, 1, tp.stderr());
    assert.ok(took < 12_000, `stopped after ${took} ms`);
    assert.match(tp.stderr(), /did not stop within 5 s of being asked: a stage that never returns/);
    assert.deepEqual(stackLines(tp.stderr()), []);
  }),
);
