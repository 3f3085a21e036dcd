/**
 * The impairment stages end to end, offline: `tunpipe --read in.pcap --write out.pcap 'delay 10ms'` and the
 * output read back by tcpdump (an independent reader): timestamps moved by the delay to the nanosecond,
 * order kept under jitter, a rate-limited stream spaced as the bucket allows, seeded runs identical, every
 * held packet written at the end of the input.
 */
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { echoRequest } from '../helpers/packets.js';
import { runCli, stackTraceLines, tempDir } from '../helpers/cli.js';
import { tcpdumpRead } from '../helpers/pcap-tools.js';

const dir = tempDir('tunpipe-impair-');
after(() => dir.remove());

const BASE = 1_700_000_000;

/** A nanosecond pcap file (RAW) of echo requests with sequence numbers 1..n at the given times (ns from BASE). */
function writeTimed(path: string, timesNs: bigint[], payload = 56, baseSec = BASE): void {
  const h = Buffer.alloc(24);
  h.writeUInt32LE(0xa1b23c4d, 0);
  h.writeUInt16LE(2, 4);
  h.writeUInt16LE(4, 6);
  h.writeUInt32LE(262144, 16);
  h.writeUInt32LE(101, 20);
  const parts: Buffer[] = [h];
  timesNs.forEach((t, i) => {
    const p = echoRequest({ seq: i + 1, payload: Buffer.alloc(payload, i) });
    const r = Buffer.alloc(16);
    r.writeUInt32LE(baseSec + Number(t / 1_000_000_000n), 0);
    r.writeUInt32LE(Number(t % 1_000_000_000n), 4);
    r.writeUInt32LE(p.length, 8);
    r.writeUInt32LE(p.length, 12);
    parts.push(r, p);
  });
  writeFileSync(path, Buffer.concat(parts));
}

/** What tcpdump reads from a capture: each packet's echo sequence number and time in ns from `baseSec`. */
function readBack(path: string, baseSec = BASE): { seq: number; ns: bigint }[] {
  return tcpdumpRead(path, ['-tt', '--nano']).map((line) => {
    const [sec, frac] = line.split(' ')[0].split('.');
    const seq = /seq (\d+)/.exec(line);
    assert.ok(seq, `an echo request: ${line}`);
    return { seq: Number(seq[1]), ns: (BigInt(sec) - BigInt(baseSec)) * 1_000_000_000n + BigInt(frac) };
  });
}

async function run(input: string, output: string, pipeline: string): Promise<string> {
  const r = await runCli(['--read', input, '--write', output, pipeline]);
  assert.equal(r.code, 0, r.stderr);
  return r.stderr;
}

/** Irregular times: bursts of packets 0 to 900 us apart, pauses of 40 ms. */
const irregular = Array.from({ length: 300 }, (_, i) => BigInt(i) * 1_000_000n + BigInt((i * 7919) % 900_000) + (BigInt(i) / 25n) * 40_000_000n);

test("'delay 10ms': every packet is written, in order, 10 ms later to the nanosecond", async () => {
  const input = dir.file('delay-in.pcap');
  const output = dir.file('delay-out.pcap');
  writeTimed(input, irregular);
  const stderr = await run(input, output, 'delay 10ms');
  const out = readBack(output);
  assert.deepEqual(out.map((o) => o.seq), irregular.map((_, i) => i + 1));
  out.forEach((o, i) => assert.equal(o.ns, irregular[i] + 10_000_000n, `packet ${i + 1}`));
  assert.match(stderr, /delay\s+300\s+/);
});

test("'delay 10ms jitter=3ms dist=normal seed=1': order kept, times never go back, the same file on every run", async () => {
  const input = dir.file('jitter-in.pcap');
  writeTimed(input, irregular);
  await run(input, dir.file('jitter-a.pcap'), 'delay 10ms jitter=3ms dist=normal seed=1');
  await run(input, dir.file('jitter-b.pcap'), 'delay 10ms jitter=3ms dist=normal seed=1');
  assert.ok(readFileSync(dir.file('jitter-a.pcap')).equals(readFileSync(dir.file('jitter-b.pcap'))), 'seeded runs identical');
  const out = readBack(dir.file('jitter-a.pcap'));
  assert.deepEqual(out.map((o) => o.seq), irregular.map((_, i) => i + 1));
  for (let i = 1; i < out.length; i++) assert.ok(out[i].ns >= out[i - 1].ns, `packet ${i + 1} not before ${i}`);
  assert.ok(out.some((o, i) => o.ns - irregular[i] !== 10_000_000n), 'jitter does move packets');
});

test("'rate 1mbit burst=1500': 1500-byte packets that arrive together leave 12 ms apart", async () => {
  const input = dir.file('rate-in.pcap');
  const output = dir.file('rate-out.pcap');
  const times = Array.from({ length: 20 }, (_, i) => BigInt(i) * 100_000n); // 0.1 ms apart: far faster than 1 Mbit/s
  writeTimed(input, times, 1472); // 1500 IP bytes each
  await run(input, output, 'rate 1mbit burst=1500 limit=1s');
  const out = readBack(output);
  assert.deepEqual(out.map((o) => o.seq), times.map((_, i) => i + 1));
  // 1500 bytes at 125 bytes/ms: 12 ms each; the first leaves at once on the full bucket.
  out.forEach((o, i) => assert.equal(o.ns, BigInt(i) * 12_000_000n, `packet ${i + 1}`));
});

test("'loss 10% seed=7': the same packets are lost on every run, counted under their reason", async () => {
  const input = dir.file('loss-in.pcap');
  writeTimed(input, Array.from({ length: 2000 }, (_, i) => BigInt(i) * 1000n));
  const e1 = await run(input, dir.file('loss-a.pcap'), 'loss 10% seed=7');
  await run(input, dir.file('loss-b.pcap'), 'loss 10% seed=7');
  assert.ok(readFileSync(dir.file('loss-a.pcap')).equals(readFileSync(dir.file('loss-b.pcap'))));
  const kept = readBack(dir.file('loss-a.pcap')).length;
  const lost = 2000 - kept;
  assert.ok(lost > 140 && lost < 260, `${lost} lost`);
  assert.match(e1, new RegExp(`lost \\(random\\)\\D*${lost}|${lost}\\D*lost \\(random\\)`));
});

test('a capture from just now, delay 60s: every held packet is written when the input ends (tick(Infinity))', async () => {
  // Timestamps near the wall clock: nothing is due before the input ends, so the driver must release all.
  const input = dir.file('now-in.pcap');
  const output = dir.file('now-out.pcap');
  const nowSec = Math.floor(Date.now() / 1000);
  const times = Array.from({ length: 10 }, (_, i) => BigInt(i) * 1_000_000n);
  writeTimed(input, times, 56, nowSec);
  await run(input, output, 'delay 60s');
  const out = readBack(output, nowSec);
  assert.deepEqual(out.map((o) => o.seq), times.map((_, i) => i + 1));
  out.forEach((o, i) => assert.equal(o.ns, times[i] + 60_000_000_000n));
});

test('argument mistakes are usage errors (exit 2, a caret, nothing written): a limit that is neither size nor time, another model\'s argument', async () => {
  const input = dir.file('args-in.pcap');
  writeTimed(input, [0n]);
  for (const [pipeline, message] of [
    ['rate 10mbit limit=fast', /rate: limit=fast: expected a size such as 100kB or 64KiB, or a time such as 50ms/],
    ['loss 1% r=20%', /loss: r= applies to model=gilbert only/],
    ['delay 10ms dist=gauss', /delay dist: expected one of uniform, normal, pareto, paretonormal/],
    ['loss 150%', /expected a probability/],
  ] as const) {
    const r = await runCli(['--read', input, '--write', dir.file('args-out.pcap'), pipeline]);
    assert.equal(r.code, 2, `${pipeline}: ${r.stderr}`);
    assert.match(r.stderr, message);
    assert.match(r.stderr, /\^/);
    assert.deepEqual(stackTraceLines(r.stderr), []);
  }
});
