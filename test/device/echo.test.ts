/**
 * The main job on a real TUN device, in a namespace of its own: `tunpipe --dev tpt0 --addr 198.18.0.1/24
 * 'parse | icmp-echo | checksum'` answers the system ping, the kernel of the namespace counts the replies with
 * no checksum error, and SIGINT stops it at once (exit 0, counters on stderr). Run once for each way of
 * moving packets, each checked to be the one in use: the worker on io_uring (the default on this kernel),
 * the worker on poll() (TUNPIPE_IO=poll, the fallback), the event-loop path (TUNPIPE_THREAD=main) and its
 * readiness fallback (TUNPIPE_READINESS=poll).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { deviceTestSkipReason, withNetns } from '../helpers/netns.js';
import { pingIn, startTunpipeWith } from '../helpers/netns-process.js';
import { parseCounters, stageRow } from '../helpers/counters.js';

const skip = deviceTestSkipReason();
const ECHO = 'parse | icmp-echo | checksum';

/** Kernel wait channels of a process's threads ('0' or '' where the kernel does not tell). */
function wchans(pid: number): string[] {
  return readdirSync(`/proc/${pid}/task`).map((t) => {
    try {
      return readFileSync(`/proc/${pid}/task/${t}/wchan`, 'utf8').trim();
    } catch {
      return '';
    }
  });
}

/** `io`: how the device line on exit says packets moved. */
async function answersPings(env: Record<string, string> | undefined, io: string, onRunning?: (pid: number) => Promise<void>): Promise<void> {
  await withNetns(async (ns) => {
    const before = ns.nstat();
    const tp = startTunpipeWith(ns, ['--dev', 'tpt0', '--addr', '198.18.0.1/24', ECHO], { env });
    try {
      await tp.waitFor(/reading/);
      const ping = pingIn(ns, ['-c', '20', '-i', '0.01', '-w', '10', '198.18.0.2']);
      assert.equal(ping.transmitted, 20, ping.output);
      assert.equal(ping.received, 20, ping.output);
      const after = ns.nstat();
      assert.ok(after.IcmpInEchoReps - before.IcmpInEchoReps >= 20, `IcmpInEchoReps rose by ${after.IcmpInEchoReps - before.IcmpInEchoReps}`);
      assert.equal(typeof after.IcmpInCsumErrors, 'number', 'nstat reports IcmpInCsumErrors');
      assert.equal(after.IcmpInCsumErrors, before.IcmpInCsumErrors, 'no reply had a bad checksum');
      assert.equal(after.IcmpOutEchoReps, before.IcmpOutEchoReps, 'the kernel answered none of the pings itself');
      await onRunning?.(tp.child.pid!);

      const t0 = Date.now();
      const code = await tp.stop('SIGINT');
      const ms = Date.now() - t0;
      assert.equal(code, 0, tp.stderr());
      assert.ok(ms < 1000, `SIGINT to exit took ${ms} ms`);

      const err = tp.stderr();
      assert.match(err, /stopped by signal/);
      const rows = parseCounters(err);
      assert.ok(stageRow(rows, 'parse').in >= 20);
      assert.ok(stageRow(rows, 'icmp-echo/filter-icmp-echo').out >= 20);
      assert.ok(stageRow(rows, 'checksum').out >= 20);
      const dev = /device tpt0: read (\d+), written (\d+), write errors (\d+) \((.*)\)/.exec(err);
      assert.ok(dev, `device counters on stderr:\n${err}`);
      assert.ok(Number(dev[2]) >= 20);
      assert.equal(Number(dev[3]), 0, 'no write errors');
      assert.equal(dev[4], io, 'the way packets moved');
    } finally {
      await tp.stop('SIGKILL', 1000);
    }
  }, 'tpecho');
}

test('answers 20 pings on a new device; nstat counts the replies, no checksum errors; SIGINT exits 0 in < 1 s', { skip }, async () => {
  await answersPings(undefined, 'io_uring');
});

test('the same in the worker with the poll() fallback instead of io_uring (TUNPIPE_IO=poll)', { skip }, async () => {
  await answersPings({ TUNPIPE_IO: 'poll' }, 'poll');
});

test('the same on the event loop instead of a worker thread (TUNPIPE_THREAD=main, pipe readiness)', { skip }, async () => {
  await answersPings({ TUNPIPE_THREAD: 'main' }, 'event loop, pipe readiness');
});

test('the same on the event loop with the readiness fallback (TUNPIPE_THREAD=main TUNPIPE_READINESS=poll)', { skip }, async (t) => {
  // The exit line names the readiness in use (asserted by answersPings); the wait channel confirms it where
  // the kernel shows one: the fallback parks a thread in poll(2), the fast path has none (only epoll).
  await answersPings({ TUNPIPE_THREAD: 'main', TUNPIPE_READINESS: 'poll' }, 'event loop, poll readiness', async (pid) => {
    let seen: string[] = [];
    for (let i = 0; i < 25; i++) {
      seen = wchans(pid);
      if (seen.some((w) => /poll/.test(w) && !/epoll/.test(w))) return;
      await new Promise((r) => setTimeout(r, 20));
    }
    if (seen.every((w) => w === '0' || w === '')) t.diagnostic('this kernel hides wait channels: the exit line alone says poll readiness');
    else assert.fail(`no thread waits in poll(2); wait channels: ${seen.join(', ')}`);
  });
});

test('io_uring: replies a stage hands back as a view of the received bytes (keepsPackets: false) are written whole', { skip }, async () => {
  const dir = mkdtempSync(join(tmpdir(), 'tunpipe-view-'));
  try {
    // Hands the reply on in a new view of its bytes, part of the receive buffer: the worker must keep that
    // buffer until the write completes, as for a reply in the packet's own view.
    const module = join(dir, 'view.mjs');
    writeFileSync(
      module,
      `export default { name: 'view', summary: 'reply as a view', args: [], keepsPackets: false, readsTime: false,
  create: () => ({ process: (p) => { p.data = p.data.subarray(0, p.end); return p; } }) };\n`,
    );
    await withNetns(async (ns) => {
      const before = ns.nstat();
      const tp = startTunpipeWith(ns, ['--dev', 'tpt0', '--addr', '198.18.0.1/24', `${ECHO} | ${module}`], { env: { TUNPIPE_IO: 'uring' } });
      try {
        await tp.waitFor(/reading/);
        const ping = pingIn(ns, ['-c', '200', '-i', '0.002', '-s', '500', '-w', '10', '198.18.0.2']);
        assert.equal(ping.received, 200, ping.output);
        const after = ns.nstat();
        assert.ok(after.IcmpInEchoReps - before.IcmpInEchoReps >= 200);
        assert.equal(after.IcmpInCsumErrors, before.IcmpInCsumErrors, 'no reply had a bad checksum');
        assert.equal(await tp.stop('SIGINT'), 0, tp.stderr());
        assert.match(tp.stderr(), /write errors 0 \(io_uring\)/);
      } finally {
        await tp.stop('SIGKILL', 1000);
      }
    }, 'tpview');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

for (const [io, buffers] of [
  ['uring', '128'],
  ['uring', '8'],
  ['poll', '-'],
]) {
  test(`a burst of 400 requests is answered in full (TUNPIPE_IO=${io}${io === 'uring' ? `, ${buffers} receive buffers` : ''})`, { skip }, async () => {
    await withNetns(async (ns) => {
      const before = ns.nstat();
      const env: Record<string, string> = { TUNPIPE_IO: io };
      // Fewer buffers than the burst: the multishot read runs out of them (ENOBUFS) and must be re-armed.
      if (io === 'uring') env.TUNPIPE_IO_BUFFERS = buffers;
      const tp = startTunpipeWith(ns, ['--dev', 'tpt0', '--addr', '198.18.0.1/24', ECHO], { env });
      try {
        await tp.waitFor(/reading/);
        // Once the worker waits (its read armed, no packet seen yet), the burst: -l 400 sends 400 requests
        // at once, then one per reply; the device's queue (500) holds them all, so one wake finds more
        // packets than there are buffers.
        await new Promise((r) => setTimeout(r, 500));
        const ping = pingIn(ns, ['-f', '-l', '400', '-c', '4000', '-q', '-w', '20', '198.18.0.2']);
        assert.ok(ping.received >= 4000, `every request answered until ping stopped:\n${ping.output}`);
        const after = ns.nstat();
        assert.equal(after.IcmpInCsumErrors, before.IcmpInCsumErrors, 'no reply had a bad checksum');
        assert.equal(await tp.stop('SIGINT'), 0, tp.stderr());
        const err = tp.stderr();
        const dev = /device tpt0: read (\d+), written (\d+), write errors (\d+) \((.*)\)$/m.exec(err);
        assert.ok(dev, err);
        assert.equal(Number(dev[3]), 0, 'no write errors');
        assert.equal(dev[4], io === 'uring' ? 'io_uring' : 'poll', 'the way packets moved');
        const after2 = ns.nstat();
        assert.ok(after2.IcmpInEchoReps - before.IcmpInEchoReps >= ping.received, 'the kernel took every reply ping counted');
        // The out-of-buffers path: with 8 buffers the 400-request burst must have ended the read at least once.
        const rearmed = /device tpt0: every receive buffer taken (\d+) times, the read re-armed/.exec(err);
        if (buffers === '8') assert.ok(rearmed && Number(rearmed[1]) >= 1, `the read never ran out of its 8 buffers:\n${err}`);
        if (io === 'poll') assert.equal(rearmed, null, 'no io_uring read to re-arm on poll');
      } finally {
        await tp.stop('SIGKILL', 1000);
      }
    }, 'tpburst');
  });
}

/** A user stage that counts the packets between its flushes (one flush ends each batch) and reports the largest. */
const BATCH_COUNTER = `export default { keepsPackets: false, create() {
  let n = 0, max = 0, batches = 0;
  return { process: (p) => { n++; return p; }, flush() { if (n) { batches++; if (n > max) max = n; } n = 0; },
    report: () => 'largest batch ' + max + ' packets, ' + batches + ' batches' };
} };
`;

test('no wake takes more than 256 packets into one batch: io_uring with 1024 buffers, poll, the event loop', { skip }, async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'tunpipe-batch-'));
  const stage = join(dir, 'batch.mjs');
  writeFileSync(stage, BATCH_COUNTER);
  try {
    const envs: Record<string, string>[] = [{ TUNPIPE_IO: 'uring', TUNPIPE_IO_BUFFERS: '1024' }, { TUNPIPE_IO: 'poll' }, { TUNPIPE_THREAD: 'main' }];
    for (const env of envs) {
      await withNetns(async (ns) => {
        const tp = startTunpipeWith(ns, ['--dev', 'tpt0', '--addr', '198.18.0.1/24', `parse | ${stage} | icmp-echo | checksum`], { env });
        try {
          await tp.waitFor(/reading/);
          // 1000 requests at once: more than the device's queue (500), far more than a batch may take.
          const ping = pingIn(ns, ['-f', '-l', '1000', '-c', '3000', '-q', '-w', '10', '198.18.0.2']);
          assert.ok(ping.received > 0, ping.output);
          assert.equal(await tp.stop('SIGINT'), 0, tp.stderr());
          const m = /largest batch (\d+) packets, (\d+) batches/.exec(tp.stderr());
          assert.ok(m, tp.stderr());
          t.diagnostic(`${JSON.stringify(env)}: largest batch ${m[1]} in ${m[2]} batches`);
          assert.ok(Number(m[1]) <= 256, `${JSON.stringify(env)}: a batch of ${m[1]} packets`);
          assert.ok(Number(m[1]) > 1, 'the burst gave batches of more than one packet');
        } finally {
          await tp.stop('SIGKILL', 1000);
        }
      }, 'tpbatch');
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
