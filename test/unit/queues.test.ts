/**
 * Several queues (src/pipeline/queues.ts, src/pipeline/queue-driver.ts, --queues in src/cli/args.ts): the
 * option per device and its limits, the stages refused on several queues (at their column), which worker
 * runs which pipeline, the shared --count, and how the workers' counters add up.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { splitDeviceOptions, parseQueues, MAX_QUEUES } from '../../src/cli/args.js';
import { UsageError } from '../../src/errors.js';
import { resolveProgram, programSpec } from '../../src/pipeline/resolve.js';
import { routeProgram } from '../../src/pipeline/routing.js';
import { PipelineSyntaxError } from '../../src/pipeline/language.js';
import { Engine } from '../../src/pipeline/engine.js';
import { Packet } from '../../src/packet/packet.js';
import { StageStats } from '../../src/pipeline/stage.js';
import { SharedCountDriver } from '../../src/pipeline/queue-driver.js';
import {
  checkQueuedProgram,
  deviceTotals,
  mergeIo,
  mergeReports,
  mergeStageStats,
  noCounters,
  queueCounters,
  queueFdFor,
  readsOf,
  specForWorker,
  workerCount,
} from '../../src/pipeline/queues.js';

test('--queues belongs to the --dev before it, like the other device options', () => {
  const { devices, rest } = splitDeviceOptions(['--dev', 'tpa0', '--queues', '2', '--dev', 'tpb0', '--queues=4', '--dev', 'tpc0', 'drop']);
  assert.deepEqual(devices.map((d) => [d.name, d.queues]), [['tpa0', 2], ['tpb0', 4], ['tpc0', undefined]]);
  assert.deepEqual(rest, ['drop']);
  // Before the first --dev: the first device's.
  assert.equal(splitDeviceOptions(['--queues', '3', '--dev', 'tpa0', 'x']).devices[0].queues, 3);
  assert.equal(splitDeviceOptions(['--queues', '1', 'x']).devices[0].queues, 1);
});

test('--queues: a whole number from 1 to the cap; above the kernel limit and above the cap, each says why', () => {
  for (const bad of ['0', '-1', '1.5', 'abc', '', '0x2', ' 2', '1e1']) {
    assert.throws(() => parseQueues(bad), (e: unknown) => e instanceof UsageError && /--queues takes a whole number of queues, at least 1/.test(e.message), bad);
  }
  assert.throws(() => parseQueues('257'), /the kernel allows at most 256 queues per device \(MAX_TAP_QUEUES\)/);
  assert.throws(() => parseQueues(String(MAX_QUEUES + 1)), /one worker thread per queue and takes at most 64/);
  assert.equal(parseQueues('1'), 1);
  assert.equal(parseQueues(String(MAX_QUEUES)), MAX_QUEUES);
  assert.throws(() => splitDeviceOptions(['--dev', 'tpa0', '--queues', '2', '--queues', '3', 'x']), /--queues is given twice for tpa0/);
  assert.throws(() => splitDeviceOptions(['--dev', 'tpa0', '--queues']), /--queues needs a value/);
});

async function routed(text: string, names: string[]) {
  const program = await resolveProgram(text);
  return { program, routing: routeProgram(program, names) };
}

test('stages whose state must be one per device are refused on several queues, at their column; elsewhere they run', async () => {
  const cases: [string, string][] = [
    ['from a | rate 10mbit | to b; from b | to a', 'rate'],
    ['from a | tee { pcap /tmp/x.pcap } | to b; from b | to a', 'pcap'],
    ['from a | parse | filter icmp else { print } | to b; from b | to a', 'print'],
  ];
  for (const [text, stage] of cases) {
    const { program, routing } = await routed(text, ['a', 'b']);
    assert.throws(
      () => checkQueuedProgram(program, routing.pipelineOf, [2, 2], ['a', 'b']),
      (e: unknown) => {
        assert.ok(e instanceof PipelineSyntaxError, String(e));
        assert.match(e.message, new RegExp(`'${stage}' cannot run on --queues 2 \\(a\\)`));
        assert.equal(text.slice(e.pos, e.pos + stage.length), stage, 'the caret is under the stage');
        assert.match(e.hint ?? '', /one queue/);
        return true;
      },
    );
    // The same pipeline reading a device of one queue is fine.
    checkQueuedProgram(program, routing.pipelineOf, [1, 2], ['a', 'b']);
  }
  // Stages with per-flow or per-packet state are allowed.
  const { program, routing } = await routed('from a | parse | reassemble | delay 1ms | loss 1% | filter icmp | to b; from b | to a', ['a', 'b']);
  checkQueuedProgram(program, routing.pipelineOf, [4, 4], ['a', 'b']);
});

test('worker k reads the devices with a queue k; a pipeline keeps its stages only where its device is read', async () => {
  assert.equal(workerCount([2, 1, 4]), 4);
  assert.deepEqual(readsOf([2, 1, 4], 0), [true, true, true]);
  assert.deepEqual(readsOf([2, 1, 4], 1), [true, false, true]);
  assert.deepEqual(readsOf([2, 1, 4], 3), [false, false, true]);
  assert.equal(queueFdFor([10, 11], 3), 11);
  assert.equal(queueFdFor([10], 3), 10);
  const { program, routing } = await routed('from a | parse | to b; from b | pcap /tmp/q.pcap | to a', ['a', 'b']);
  const spec = programSpec(program);
  assert.equal(specForWorker(spec, routing.pipelineOf, [true, true]), spec, 'a worker that reads everything runs the program as it is');
  const second = specForWorker(spec, routing.pipelineOf, [true, false]);
  const els = second.pipelines.map((pl) => (pl as { elements: unknown[] }).elements.length);
  assert.deepEqual(els, [1, 0], 'the pcap of the device this worker does not read is not created there');
  assert.deepEqual(second.pipelines.map((pl) => (pl as { sink: unknown }).sink), spec.pipelines.map((pl) => (pl as { sink: unknown }).sink));
});

const counters = (rx: number, tx: number, errors = 0) => ({ ...noCounters(), rxPackets: rx, rxBytes: rx * 100, txPackets: tx, txBytes: tx * 100, txErrors: errors });

test('counters: per queue from each worker, per device their sum; a worker past a device\'s queues writes through queue k mod N', () => {
  // Three workers; device 0 has 3 queues, device 1 has 2 (worker 2 writes to it through queue 0).
  const perWorker = [
    [counters(10, 1), counters(5, 7)],
    [counters(20, 2), counters(6, 8, 1)],
    [counters(30, 3), counters(0, 9)],
  ];
  const pq = queueCounters(perWorker, [3, 2]);
  assert.deepEqual(pq[0].map((c) => [c.rxPackets, c.txPackets]), [[10, 1], [20, 2], [30, 3]]);
  assert.deepEqual(pq[1].map((c) => [c.rxPackets, c.txPackets, c.txErrors]), [[5, 16, 0], [6, 8, 1]]);
  const totals = deviceTotals(pq);
  assert.deepEqual(totals.map((c) => [c.rxPackets, c.rxBytes, c.txPackets, c.txBytes, c.txErrors]), [[60, 6000, 6, 600, 0], [11, 1100, 24, 2400, 1]]);
});

function stats(name: string, inn: number, out: number, dropped: Record<string, number> = {}): StageStats {
  const s = new StageStats(name);
  s.packetsIn = inn;
  s.packetsOut = out;
  for (const [r, n] of Object.entries(dropped)) {
    s.dropped += n;
    s.reasons.set(r, n);
  }
  return s;
}

test('stage counters add up by label, in the first worker\'s order; reasons too; reports and I/O paths merge', () => {
  const merged = mergeStageStats([
    [stats('1:parse', 10, 9, { 'not IPv4': 1 }), stats('2:drop', 0, 0)],
    [stats('1:parse', 5, 3, { 'not IPv4': 1, 'bad header': 1 }), stats('2:drop', 2, 0), stats('2:extra', 1, 1)],
  ]);
  assert.deepEqual(merged.map((s) => [s.name, s.packetsIn, s.packetsOut, s.dropped]), [['1:parse', 15, 12, 3], ['2:drop', 2, 0, 0], ['2:extra', 1, 1, 0]]);
  assert.deepEqual([...merged[0].reasons], [['not IPv4', 2], ['bad header', 1]]);
  const reports = mergeReports([new Map([['loss', 'seed 7'], ['x', 'a']]), new Map([['loss', 'seed 7'], ['x', 'b']])]);
  assert.equal(reports.get('loss'), 'seed 7');
  assert.equal(reports.get('x'), 'queue 0: a; queue 1: b');
  assert.equal(mergeIo(['io_uring', 'io_uring'], 2), 'io_uring, 2 workers');
  assert.equal(mergeIo(['io_uring', 'poll'], 2), 'queue 0: io_uring, queue 1: poll, 2 workers');
});

test('--count over queues: exactly N packets enter, whichever driver takes them, and every driver stops', async () => {
  const program = await resolveProgram('drop');
  const shared = new SharedArrayBuffer(4);
  const sunk: number[] = [0, 0, 0];
  const drivers = [0, 1, 2].map((k) => new SharedCountDriver(new Engine(program, { sink: () => sunk[k]++ }), shared, 50));
  let offered = 0;
  for (let i = 0; i < 200 && drivers.some((d) => !d.stopped); i++) {
    const d = drivers[i % 3];
    if (d.stopped) continue;
    offered++;
    d.push(0, new Packet(Buffer.alloc(20)));
  }
  assert.equal(drivers.reduce((n, d) => n + d.packetsIn, 0), 50);
  assert.ok(offered <= 52, `at most one packet per other driver is offered past the count (${offered})`);
  assert.ok(drivers.every((d) => d.stoppedBy === 'count'));
  assert.ok(new SharedCountDriver(new Engine(program, { sink: () => {} }), new SharedArrayBuffer(4), 0).stopped, '--count 0 stops at once');
});

test('--stats with queues: each device has its queues in the JSON line and a row per queue in the table', async () => {
  const { LiveStats } = await import('../../src/cli/stats.js');
  const live = new LiveStats(() => ['tpa0', 'tpb0']);
  const pq = [[counters(3, 4), counters(5, 6)], [counters(7, 8)]];
  const { json, table } = live.next({ stages: [stats('1:drop', 8, 0)], counters: deviceTotals(pq), queued: new Map(), queueCounters: pq });
  const line = JSON.parse(json);
  assert.equal(line.devices[0].read, 8);
  assert.deepEqual(line.devices[0].queues.map((q: { queue: number; read: number; written: number }) => [q.queue, q.read, q.written]), [[0, 3, 4], [1, 5, 6]]);
  assert.equal(line.devices[1].queues, undefined, 'a device of one queue has no queue list');
  assert.match(table, /^device tpa0\s+8 .*\n {2}queue 0\s+3\s+-\s+4 .*\n {2}queue 1\s+5\s+-\s+6 .*\ndevice tpb0\s+7 /m);
});
