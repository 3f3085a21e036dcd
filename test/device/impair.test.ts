/**
 * Impairment stages on a real TUN device, in a namespace of their own, with the echo responder as the far
 * end (the kernel's ping is the peer): loss seen as ping loss and counted exactly, duplicates seen by ping
 * as DUP!, corruption counted by the kernel as ICMP checksum errors, a fast flood into a slow rate bounded
 * in bytes, and a delay seen in the round trip. Each bounded in count and time.
 * The two-namespace wire tests of the issue (delay, loss and rate across `from A | ... | to B`, iperf3) wait
 * for the wire syntax (issue 8).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { deviceTestSkipReason, withNetns, type Netns } from '../helpers/netns.js';
import { pingIn, startTunpipeWith } from '../helpers/netns-process.js';
import { parseCounters, stageRow } from '../helpers/counters.js';

const skip = deviceTestSkipReason();

/** Runs `pipeline` on a new tpi0 (198.18.0.1/24) in a fresh namespace, calls `fn`, stops, returns stderr. */
async function withResponder(pipeline: string, fn: (ns: Netns) => Promise<void> | void): Promise<string> {
  return withNetns(async (ns) => {
    const tp = startTunpipeWith(ns, ['--dev', 'tpi0', '--addr', '198.18.0.1/24', pipeline]);
    try {
      await tp.waitFor(/reading/);
      await fn(ns);
      assert.equal(await tp.stop('SIGINT'), 0, tp.stderr());
      return tp.stderr();
    } finally {
      await tp.stop('SIGKILL', 1000);
    }
  }, 'tpimp');
}

test('loss 20% seed=1: ping loses about a fifth, exactly the packets the stage counts as lost', { skip }, async () => {
  let ping = { output: '', transmitted: 0, received: 0 };
  const err = await withResponder('parse | loss 20% seed=1 | icmp-echo | checksum', (ns) => {
    // No -w: with a deadline, ping -c waits for 400 replies instead of sending 400 requests.
    ping = pingIn(ns, ['-c', '400', '-i', '0.005', '-W', '1', '198.18.0.2'], 30_000);
  });
  assert.equal(ping.transmitted, 400, ping.output);
  const n = 400;
  const half = 2.5758 * Math.sqrt(n * 0.2 * 0.8);
  assert.ok(Math.abs(ping.received - n * 0.8) <= half, `received ${ping.received} of 400 (99% interval ${n * 0.8 - half}..${n * 0.8 + half})`);
  const loss = stageRow(parseCounters(err), 'loss');
  assert.equal(loss.reasons.get('lost (random)'), n - ping.received, 'every ping lost is a packet the stage counted');
});

test('duplicate 100%: every reply arrives twice (ping counts the duplicates)', { skip }, async () => {
  let ping = { output: '', transmitted: 0, received: 0 };
  await withResponder('parse | icmp-echo | checksum | duplicate 100% seed=1', (ns) => {
    ping = pingIn(ns, ['-c', '50', '-i', '0.01', '-W', '1', '198.18.0.2']);
  });
  assert.equal(ping.received, 50, ping.output);
  // ping exits on its 50th reply, the copy of the last one: its twin arrives after ping has gone.
  assert.match(ping.output, /\+49 duplicates/);
  for (let seq = 1; seq <= 49; seq++) assert.match(ping.output, new RegExp(`icmp_seq=${seq} .*\\(DUP!\\)`), `seq ${seq} twice`);
});

test('corrupt 100% after checksum: the kernel counts every reply as an ICMP checksum error', { skip }, async () => {
  let ping = { output: '', transmitted: 0, received: 0 };
  let csumErrors = 0;
  await withResponder('parse | icmp-echo | checksum | corrupt 100% seed=1', (ns) => {
    const before = ns.nstat();
    ping = pingIn(ns, ['-c', '30', '-i', '0.01', '-W', '1', '198.18.0.2']);
    csumErrors = ns.nstat().IcmpInCsumErrors - before.IcmpInCsumErrors;
  });
  assert.equal(ping.transmitted, 30, ping.output);
  assert.equal(csumErrors, 30, `IcmpInCsumErrors rose by one per reply:\n${ping.output}`);
  // Root's ping reads a raw socket, which gets its copy before the kernel checks the checksum: it sees the
  // damaged bytes (or a damaged timestamp) itself.
  assert.match(ping.output, /wrong data byte/);
});

test('1428-byte pings faster than the rate into rate 1mbit limit=30kB: at most 30 kB held, the overflow counted', { skip }, async () => {
  // A fixed interval, not -f: a flood ping waits for each reply, so it would slow down to the rate (ping
  // -i 0.001 also slows itself while replies are outstanding, but stays above 1 Mbit/s).
  const err = await withResponder('parse | rate 1mbit limit=30kB | icmp-echo | checksum', (ns) => {
    pingIn(ns, ['-i', '0.001', '-s', '1400', '-w', '4', '198.18.0.2'], 15_000);
  });
  const row = stageRow(parseCounters(err), 'rate');
  assert.ok((row.reasons.get('rate queue full (limit)') ?? 0) > 10, `overflow counted:\n${err}`);
  const peak = /at most (\d+) bytes; limit 30000 bytes/.exec(err);
  assert.ok(peak, `the rate report line:\n${err}`);
  assert.ok(Number(peak[1]) <= 30_000 && Number(peak[1]) > 30_000 - 1428, `held at most ${peak[1]} bytes`);
});

test('delay 10ms: every round trip takes 10 ms more, not more than a millisecond beyond', { skip }, async () => {
  let ping = { output: '', transmitted: 0, received: 0 };
  await withResponder('parse | delay 10ms | icmp-echo | checksum', (ns) => {
    ping = pingIn(ns, ['-c', '50', '-i', '0.05', '-w', '10', '198.18.0.2']);
  });
  assert.equal(ping.received, 50, ping.output);
  const m = /rtt min\/avg\/max\/mdev = ([\d.]+)\/([\d.]+)\/([\d.]+)/.exec(ping.output);
  assert.ok(m, ping.output);
  assert.ok(Number(m[1]) >= 10, `min RTT ${m[1]} ms`);
  assert.ok(Number(m[2]) < 11, `mean RTT ${m[2]} ms`);
});
