/**
 * The bench's statistics: the seeded bootstrap, k/n with failed blocks, the paired comparison's validity
 * rule (the kernel's nstat verdict), and the I/O path read from tunpipe's exit line.
 */
import { strict as assert } from 'node:assert';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { test } from 'node:test';
import { fellBack, ioLabel, ioPathFromOutput } from '../../bench/lib/io-path.js';
import { barMet, blocksMeeting, compareWithRef } from '../../bench/lib/paired.js';
import { bootstrapMedianInterval, pool, seededRandom } from '../../bench/lib/pooled.js';
import { cpuSlug, readMachine, resultsPath } from '../../bench/lib/results.js';
import type { Measurement } from '../../bench/lib/session.js';

test('seededRandom: the same seed gives the same sequence, another seed another one, all in [0, 1)', () => {
  const a = seededRandom(42);
  const b = seededRandom(42);
  const c = seededRandom(43);
  const xa = Array.from({ length: 1000 }, a);
  assert.deepEqual(xa, Array.from({ length: 1000 }, b));
  assert.notDeepEqual(xa, Array.from({ length: 1000 }, c));
  assert.ok(xa.every((x) => x >= 0 && x < 1));
  const mean = xa.reduce((s, x) => s + x, 0) / xa.length;
  assert.ok(Math.abs(mean - 0.5) < 0.05, `mean ${mean}`);
});

test('bootstrap interval of the median: reproducible with a seed, around the median, degenerate on a constant sample', () => {
  const xs = Array.from({ length: 101 }, (_, i) => i + 1); // median 51
  const one = bootstrapMedianInterval(xs, 7);
  assert.deepEqual(bootstrapMedianInterval(xs, 7), one);
  assert.ok(one.low < 51 && one.high > 51, JSON.stringify(one));
  // The median of 101 uniform order statistics: its 95% interval is about ±10 ranks wide.
  assert.ok(one.low >= 38 && one.high <= 64, JSON.stringify(one));
  const other = bootstrapMedianInterval(xs, 8);
  assert.ok(Math.abs(other.low - one.low) <= 3 && Math.abs(other.high - one.high) <= 3, 'seeds differ only by resampling noise');
  assert.deepEqual(bootstrapMedianInterval([0.97, 0.97, 0.97], 1), { low: 0.97, high: 0.97 });
  const empty = bootstrapMedianInterval([NaN, Infinity], 1);
  assert.ok(Number.isNaN(empty.low) && Number.isNaN(empty.high));
});

test('pool: a block with no value, NaN or infinity is a failed block: in n, never in k, and the bar is not met', () => {
  const bar = (v: number) => v >= 0.95;
  const p = pool([0.97, null, NaN, Infinity, 0.96], 1, bar);
  assert.equal(p.n, 5);
  assert.equal(p.valid, 2);
  assert.equal(p.failed, 3);
  assert.equal(p.meeting, 2);
  assert.equal(p.median, 0.965);
  assert.equal(p.met, false, 'a failed block keeps the bar from being met');
  const clean = pool([0.97, 0.94, 0.96], 1, bar);
  assert.deepEqual([clean.n, clean.failed, clean.meeting, clean.met], [3, 0, 2, true]);
  const none = pool([null, null], 1, bar);
  assert.deepEqual([none.n, none.valid, none.meeting, none.met], [2, 0, 0, false]);
});

function meas(label: string, block: number, rps: number, valid = true, ok = true): Measurement {
  const nstat = { valid: true, echoReps: 1, pingReceived: 1, pingTransmitted: 1, icmpCsumErrors: 0, ipCsumErrors: 0 };
  return {
    label,
    session: 0,
    block,
    position: 0,
    ok,
    flood: { repliesPerSec: rps, usCpuPerReply: 3, nstat: { ...nstat, valid } } as Measurement['flood'],
    latency: { avgUs: 60, p99Us: 100, nstat } as Measurement['latency'],
  };
}

test('compareWithRef: blocks the kernel did not count valid, failed runs and blocks without a reference are failed blocks of n', () => {
  const ms = [
    meas('ref', 0, 200_000),
    meas('tunpipe', 0, 196_000),
    meas('ref', 1, 200_000),
    meas('tunpipe', 1, 199_000, false), // nstat: invalid replies
    meas('ref', 2, 200_000, true, false), // the reference failed
    meas('tunpipe', 2, 199_000),
    meas('tunpipe', 3, 0), // no reference measurement at all; 0 replies/s
    meas('ref', 4, 0),
    meas('tunpipe', 4, 0), // 0 / 0 = NaN
  ];
  const cmp = compareWithRef(ms, 'tunpipe');
  assert.equal(cmp.blocks, 5);
  assert.equal(cmp.pairs, 2, 'blocks 0 and 4 pair validly (4 then gives NaN)');
  assert.deepEqual(cmp.repliesPerSec.perBlock.map((b) => b.valid), [true, false, false, false, false]);
  assert.equal(cmp.repliesPerSec.summary.n, 1);
  const bar = (v: number) => v >= 0.95;
  assert.equal(blocksMeeting(cmp.repliesPerSec, bar), 1);
  assert.equal(barMet(cmp.repliesPerSec, bar), false, '1 of 5 blocks valid: not met');
  const clean = compareWithRef(ms.slice(0, 2), 'tunpipe');
  assert.equal(barMet(clean.repliesPerSec, bar), true);
});

test('the I/O path from the exit line: io_uring, poll asked for, and a fall-back with its reason', () => {
  const line = (io: string) => `tunpipe: stopping\nicmp-echo: replied 5\ndevice tpb0: read 5, written 5, write errors 0 (${io})\n`;
  assert.equal(ioPathFromOutput(line('io_uring')), 'io_uring');
  assert.equal(ioPathFromOutput(line('poll')), 'poll');
  const fb = 'poll (io_uring: io_uring_setup: Operation not permitted)';
  assert.equal(ioPathFromOutput(line(fb)), fb);
  assert.equal(ioPathFromOutput('killed before it printed anything'), undefined);
  assert.equal(fellBack(fb), true);
  assert.equal(fellBack('poll'), false);
  assert.equal(fellBack('io_uring'), false);
  assert.equal(ioLabel(fb), 'poll, fell back from io_uring: io_uring_setup: Operation not permitted');
  assert.equal(ioLabel(undefined), 'I/O path not reported');
});

test('results file names: date and CPU, quick runs marked, never an existing file', () => {
  assert.equal(cpuSlug('AMD EPYC 7B13 64-Core Processor'), 'amd-epyc-7b13');
  assert.equal(cpuSlug('Intel(R) Xeon(R) CPU @ 2.20GHz'), 'intel-xeon-2-20ghz');
  const machine = readMachine('processor\t: 0\nmodel name\t: AMD EPYC 7B13 64-Core Processor\n');
  assert.equal(machine.cpuModel, 'AMD EPYC 7B13 64-Core Processor');
  assert.ok(machine.cores >= 1 && machine.kernel && machine.node.startsWith('v'));
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'bench-results-'));
  try {
    const date = new Date('2026-12-01T10:00:00Z');
    const first = resultsPath(date, machine, false, dir);
    assert.equal(path.basename(first), '2026-12-01-amd-epyc-7b13.json');
    fs.writeFileSync(first, '{}');
    assert.equal(path.basename(resultsPath(date, machine, false, dir)), '2026-12-01-amd-epyc-7b13-2.json');
    assert.equal(path.basename(resultsPath(date, machine, true, dir)), '2026-12-01-amd-epyc-7b13-quick.json');
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
