/**
 * `filter EXPR` on a real TUN device, in a namespace of its own, in the worker thread (libpcap loaded
 * there): `parse | filter 'EXPR' | icmp-echo | checksum` answers the system ping when the expression
 * matches its requests, and answers none (each counted as "filtered out") when it does not.
 */
import { test } from 'node:test';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { readPcapRecords } from '../helpers/packets.js';
import assert from 'node:assert/strict';
import { deviceTestSkipReason, withNetns } from '../helpers/netns.js';
import { pingIn, startTunpipeWith } from '../helpers/netns-process.js';
import { parseCounters, reasonCount, stageRow } from '../helpers/counters.js';

const skip = deviceTestSkipReason();

/** Runs the echo behind `filter EXPR`, pings 198.18.0.2 `count` times; returns replies and the filter's counters. */
async function echoBehind(expr: string, count: number, env?: Record<string, string>, deadlineS = 5) {
  return withNetns(async (ns) => {
    const before = ns.nstat();
    const tp = startTunpipeWith(ns, ['--dev', 'tpf0', '--addr', '198.18.0.1/24', `parse | filter '${expr}' | icmp-echo | checksum`], { env });
    try {
      await tp.waitFor(/reading/);
      const ping = pingIn(ns, ['-c', String(count), '-i', '0.01', '-w', String(deadlineS), '198.18.0.2']);
      const after = ns.nstat();
      assert.equal(await tp.stop('SIGINT'), 0, tp.stderr());
      const filter = stageRow(parseCounters(tp.stderr()), 'filter');
      return { ping, filter, replies: after.IcmpInEchoReps - before.IcmpInEchoReps, csumErrors: after.IcmpInCsumErrors - before.IcmpInCsumErrors };
    } finally {
      await tp.stop('SIGKILL', 1000);
    }
  }, 'tpfilter');
}

test("a filter that matches the pings lets them through to the echo: 'icmp and src host 198.18.0.1'", { skip }, async () => {
  const r = await echoBehind('icmp[icmptype] == icmp-echo and src host 198.18.0.1 and dst host 198.18.0.2', 20);
  assert.equal(r.ping.received, 20, r.ping.output);
  assert.ok(r.replies >= 20, `IcmpInEchoReps rose by ${r.replies}`);
  assert.equal(r.csumErrors, 0);
  assert.ok(r.filter.in >= 20 && r.filter.out >= 20, JSON.stringify(r.filter));
});

test('a filter that matches none of them: no replies, each request counted as filtered out', { skip }, async () => {
  const r = await echoBehind('icmp and not src host 198.18.0.1', 10, undefined, 1);
  // Without replies ping sends until its deadline (-w), past -c.
  assert.ok(r.ping.transmitted >= 10, r.ping.output);
  assert.equal(r.ping.received, 0, r.ping.output);
  assert.equal(r.replies, 0);
  assert.ok(reasonCount(r.filter, /filtered out/) >= r.ping.transmitted, `${r.ping.transmitted} sent; filter ${JSON.stringify({ ...r.filter, reasons: [...r.filter.reasons] })}`);
  assert.equal(r.filter.out, 0);
});

test('the same on the event loop (TUNPIPE_THREAD=main)', { skip }, async () => {
  const r = await echoBehind('icmp', 10, { TUNPIPE_THREAD: 'main' });
  assert.equal(r.ping.received, 10, r.ping.output);
});

test('a tee capture by filter while the echo answers: the capture holds only what matches, every ping answered', { skip }, async () => {
  const dir = mkdtempSync(join(tmpdir(), 'tunpipe-teefilter-'));
  try {
    await withNetns(async (ns) => {
      const cap = join(dir, 'udp.pcap');
      const before = ns.nstat();
      const tp = startTunpipeWith(ns, ['--dev', 'tpf1', '--addr', '198.18.0.1/24', `parse | tee { filter 'udp port 9' | pcap ${cap} } | icmp-echo | checksum`]);
      try {
        await tp.waitFor(/reading/);
        for (let i = 0; i < 3; i++) ns.run(process.execPath, ['-e', "const s=require('dgram').createSocket('udp4');s.send('x',9,'198.18.0.2',()=>s.close())"]);
        const ping = pingIn(ns, ['-c', '10', '-i', '0.01', '-w', '5', '198.18.0.2']);
        assert.equal(ping.received, 10, ping.output);
        const after = ns.nstat();
        assert.ok(after.IcmpInEchoReps - before.IcmpInEchoReps >= 10);
        assert.equal(await tp.stop('SIGINT'), 0, tp.stderr());
      } finally {
        await tp.stop('SIGKILL', 1000);
      }
      const records = readPcapRecords(readFileSync(cap)).packets;
      assert.equal(records.length, 3, 'the three datagrams to port 9, and nothing else');
      assert.ok(records.every((r) => r[9] === 17 && r.readUInt16BE(22) === 9));
    }, 'tpteefilter');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
