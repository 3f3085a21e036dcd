/** src/pipeline/run.ts offline: pcap in, pipeline, pcap out; count, signal, link types, errors. */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { runPipeline } from '../../src/pipeline/run.js';
import { TunpipeError } from '../../src/errors.js';
import { PipelineSyntaxError } from '../../src/pipeline/language.js';
import { parseIPv4 } from '../../src/library/stages.js';
import { icmpEcho } from '../../src/library/stages.js';
import { recomputeChecksum } from '../../src/library/stages.js';
import { echoRequest, readPcapRecords, referenceChecksum, writePcap } from '../helpers/packets.js';
import { ipv4Packet, udpSegment } from './builders.js';

let dir = '';
before(() => {
  dir = mkdtempSync(join(tmpdir(), 'tunpipe-unit-run-'));
});
after(() => {
  if (dir) rmSync(dir, { recursive: true, force: true });
});

const path = (name: string) => join(dir, name);

function requests(n: number): Buffer[] {
  return Array.from({ length: n }, (_, i) => echoRequest({ seq: i, id: 0x4000 + i, payload: Buffer.alloc(i % 70, i) }));
}

function assertReplies(reqs: Buffer[], replies: Buffer[], l3 = 0): void {
  assert.equal(replies.length, reqs.length);
  replies.forEach((r, i) => {
    const ip = r.subarray(l3);
    const q = reqs[i].subarray(l3);
    assert.equal(ip[20], 0, `reply ${i} type`);
    assert.equal(ip[8], 64);
    assert.deepEqual(ip.subarray(12, 16), q.subarray(16, 20));
    assert.deepEqual(ip.subarray(16, 20), q.subarray(12, 16));
    assert.equal(referenceChecksum(ip.subarray(0, 20)), 0);
    assert.equal(referenceChecksum(ip.subarray(20)), 0);
    assert.deepEqual(ip.subarray(24), q.subarray(24));
    if (l3 >= 14) {
      // Ethernet: the reply goes back to the sender, from the address the request was sent to.
      assert.deepEqual(r.subarray(0, 6), reqs[i].subarray(6, 12), 'MACs swapped');
      assert.deepEqual(r.subarray(6, 12), reqs[i].subarray(0, 6), 'MACs swapped');
      assert.deepEqual(r.subarray(12, l3), reqs[i].subarray(12, l3), 'EtherType kept');
    } else assert.deepEqual(r.subarray(0, l3), reqs[i].subarray(0, l3), 'link header kept');
  });
}

test('offline: requests in, replies out; counters, stop reason, link type and magic', async () => {
  const reqs = requests(50);
  const input = [...reqs.slice(0, 25), ipv4Packet({ proto: 17, payload: udpSegment(Buffer.alloc(3)) }), Buffer.from([0x45]), ...reqs.slice(25)];
  writePcap(path('in.pcap'), input);
  const warnings: string[] = [];
  const result = await runPipeline({ pipeline: 'parse | icmp-echo | checksum', read: path('in.pcap'), write: path('out.pcap'), warn: (m) => warnings.push(m) });
  assert.equal(result.error, null);
  assert.equal(result.stoppedBy, 'end');
  assert.equal(result.packetsIn, 52);
  assert.equal(result.packetsOut, 50);
  assert.deepEqual(
    result.stages.map((s) => [s.name, s.packetsIn, s.packetsOut, s.dropped]),
    [
      ['parse', 52, 51, 1],
      ['icmp-echo/reassemble', 51, 51, 0],
      ['icmp-echo/filter-icmp-echo', 51, 50, 1],
      ['icmp-echo/swap-addrs', 50, 50, 0],
      ['icmp-echo/to-reply', 50, 50, 0],
      ['checksum', 50, 50, 0],
    ],
  );
  assert.deepEqual(warnings, []);
  const out = readPcapRecords(readFileSync(path('out.pcap')));
  assert.equal(out.linkType, 101);
  assert.equal(out.magic, 0xa1b2c3d4);
  assertReplies(reqs, out.packets);
});

test('count stops after that many packets have entered', async () => {
  writePcap(path('count.pcap'), requests(10));
  const three = await runPipeline({ pipeline: 'parse | icmp-echo | checksum', read: path('count.pcap'), write: path('count-out.pcap'), count: 3 });
  assert.equal(three.stoppedBy, 'count');
  assert.equal(three.packetsIn, 3);
  assert.equal(three.packetsOut, 3);
  assertReplies(requests(3), readPcapRecords(readFileSync(path('count-out.pcap'))).packets);

  const zero = await runPipeline({ pipeline: 'parse', read: path('count.pcap'), count: 0 });
  assert.equal(zero.stoppedBy, 'count');
  assert.equal(zero.packetsIn, 0);

  const more = await runPipeline({ pipeline: 'parse', read: path('count.pcap'), count: 1000 });
  assert.equal(more.stoppedBy, 'end');
  assert.equal(more.packetsIn, 10);
  assert.equal(more.packetsOut, 10, 'no --write: packets go nowhere but are counted');
});

test('onReady is called once, when the stages are set up and before the first packet enters', async () => {
  writePcap(path('ready.pcap'), requests(4));
  const events: string[] = [];
  const spy = path('spy.mjs');
  writeFileSync(spy, `export default { name: 'spy', summary: 's', args: [], create: () => ({ process: (p) => { globalThis.__spy?.('packet'); return p; } }) };\n`);
  (globalThis as { __spy?: (e: string) => void }).__spy = (e) => events.push(e);
  try {
    const result = await runPipeline({ pipeline: `parse | ${spy}`, read: path('ready.pcap'), onReady: () => events.push('ready') });
    assert.equal(result.packetsIn, 4);
    assert.deepEqual(events, ['ready', 'packet', 'packet', 'packet', 'packet']);
    // A pipeline that cannot start never says it is ready.
    events.length = 0;
    await assert.rejects(runPipeline({ pipeline: 'parse', read: path('missing.pcap'), onReady: () => events.push('ready') }));
    assert.deepEqual(events, []);
  } finally {
    delete (globalThis as { __spy?: unknown }).__spy;
  }
});

test('a file bigger than one read batch is read whole', async () => {
  const reqs = Array.from({ length: 9000 }, (_, i) => echoRequest({ seq: i & 0xffff, payload: Buffer.alloc(8) }));
  writePcap(path('big.pcap'), reqs);
  const result = await runPipeline({ pipeline: [parseIPv4(), icmpEcho(), recomputeChecksum()], read: path('big.pcap'), write: path('big-out.pcap') });
  assert.equal(result.packetsIn, 9000);
  assert.equal(result.packetsOut, 9000);
  const out = readPcapRecords(readFileSync(path('big-out.pcap'))).packets;
  assert.equal(out.length, 9000);
  assert.equal(out[8999].readUInt16BE(26), 8999);
});

test('nanosecond input gives nanosecond output; Ethernet captures are parsed past their 14-byte header', async () => {
  writePcap(path('ns.pcap'), requests(3), { nanos: true });
  await runPipeline({ pipeline: 'parse | icmp-echo | checksum', read: path('ns.pcap'), write: path('ns-out.pcap') });
  const ns = readPcapRecords(readFileSync(path('ns-out.pcap')));
  assert.equal(ns.magic, 0xa1b23c4d);
  assertReplies(requests(3), ns.packets);

  const eth = Buffer.from('02000000000102000000000208004500', 'hex').subarray(0, 14);
  const ethReqs = requests(4).map((r) => Buffer.concat([eth, r]));
  writePcap(path('eth.pcap'), ethReqs, { linkType: 1 });
  const result = await runPipeline({ pipeline: 'parse | icmp-echo | checksum', read: path('eth.pcap'), write: path('eth-out.pcap') });
  assert.equal(result.packetsOut, 4);
  const out = readPcapRecords(readFileSync(path('eth-out.pcap')));
  assert.equal(out.linkType, 1);
  assertReplies(ethReqs, out.packets, 14);
});

test('a pass-through pipeline writes the input capture back unchanged, timestamps included', async () => {
  // Microsecond fractions that are not whole milliseconds, as tcpdump writes them.
  const input = path('same.pcap');
  writePcap(input, requests(40));
  const bytes = readFileSync(input);
  for (let i = 0, o = 24; i < 40; i++, o += 16 + bytes.readUInt32LE(o + 8)) bytes.writeUInt32LE((i * 104_729) % 1_000_000, o + 4);
  writeFileSync(input, bytes);
  await runPipeline({ pipeline: 'parse', read: input, write: path('same-out.pcap') });
  const out = readFileSync(path('same-out.pcap'));
  assert.equal(out.length, bytes.length);
  const diffs: string[] = [];
  for (let i = 0, o = 24; i < 40; i++, o += 16 + bytes.readUInt32LE(o + 8)) {
    if (!out.subarray(o, o + 16).equals(bytes.subarray(o, o + 16))) diffs.push(`record ${i}: usec ${bytes.readUInt32LE(o + 4)} -> ${out.readUInt32LE(o + 4)}`);
  }
  assert.deepEqual(diffs, []);
  assert.ok(out.equals(bytes));
});

test('a truncated last record is skipped with a warning', async () => {
  writePcap(path('cut.pcap'), requests(5));
  const bytes = readFileSync(path('cut.pcap'));
  writeFileSync(path('cut.pcap'), bytes.subarray(0, bytes.length - 10));
  const warnings: string[] = [];
  const result = await runPipeline({ pipeline: 'parse', read: path('cut.pcap'), warn: (m) => warnings.push(m) });
  assert.equal(result.packetsIn, 4);
  assert.equal(warnings.length, 1);
  assert.match(warnings[0], /cut\.pcap: the last record is cut short .* it was skipped/);
});

test('an aborted signal stops before reading; reports come back by label', async () => {
  writePcap(path('sig.pcap'), requests(5));
  const ac = new AbortController();
  ac.abort();
  const aborted = await runPipeline({ pipeline: 'parse', read: path('sig.pcap'), signal: ac.signal });
  assert.equal(aborted.stoppedBy, 'signal');
  assert.equal(aborted.packetsIn, 0);

  const tee = path('tee.pcap');
  const result = await runPipeline({ pipeline: `parse | pcap ${tee}`, read: path('sig.pcap') });
  assert.equal(result.reports.get('pcap'), `5 packets written to ${tee}`);
  assert.equal(readPcapRecords(readFileSync(tee)).packets.length, 5);
});

test('setup errors are thrown: no source, bad pipeline, missing file, unsupported link type', async () => {
  await assert.rejects(runPipeline({ pipeline: 'parse' }), (e: Error) => e instanceof TunpipeError && /nothing to read from/.test(e.message));
  await assert.rejects(runPipeline({ pipeline: 'parse |', read: path('sig.pcap') }), PipelineSyntaxError);
  await assert.rejects(runPipeline({ pipeline: 'parse', read: path('absent.pcap') }), /cannot read .*absent\.pcap: no such file/);
  writePcap(path('lt.pcap'), requests(1), { linkType: 105 });
  await assert.rejects(runPipeline({ pipeline: 'parse', read: path('lt.pcap'), write: path('lt-out.pcap') }), /has link type 105; tunpipe reads RAW IP \(101, 228, 229\) and Ethernet \(1\)/);
});

test('a setup error after the files were opened closes them again', async () => {
  const { readdirSync } = await import('node:fs');
  const openFds = () => readdirSync('/proc/self/fd').length;
  writePcap(path('lt2.pcap'), requests(1), { linkType: 105 });
  const before = openFds();
  for (let i = 0; i < 5; i++) {
    await assert.rejects(runPipeline({ pipeline: `parse | pcap ${path('lt2-tee.pcap')}`, read: path('lt2.pcap'), write: path('lt2-out.pcap') }), /link type 105/);
  }
  assert.equal(openFds(), before, 'file descriptors left open by the failed runs');
});
