/**
 * The pipeline as a graph, offline, with exact counters: `tee { }` copies into a branch (what the branch
 * changes does not touch the main line), `STAGE else { }` takes what the stage would drop (counted as
 * diverted, reasons kept), `drop` discards, a branch without a sink discards what reaches its end
 * (counted), and several outputs each get exactly their packets.
 */
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import { echoRequest, readPcapRecords, writePcap } from '../helpers/packets.js';
import { runCli, tempDir } from '../helpers/cli.js';
import { parseCounters, stageRow } from '../helpers/counters.js';
import { tcpdumpRead } from '../helpers/pcap-tools.js';

const dir = tempDir('tunpipe-graph-');
after(() => dir.remove());

/** 6 echo requests, 2 replies (type 0), 2 with a bad IPv4 header checksum: 10 packets. */
const input = dir.file('mixed.pcap');
const requests = [1, 2, 3, 4, 5, 6].map((seq) => echoRequest({ seq }));
const replies = [7, 8].map((seq) => echoRequest({ seq, type: 0 }));
const broken = [9, 10].map((seq) => {
  const b = echoRequest({ seq });
  b[10] ^= 0xff;
  return b;
});
writePcap(input, [...requests, replies[0], broken[0], ...replies.slice(1), broken[1]]);

function records(file: string): Buffer[] {
  return readPcapRecords(readFileSync(file)).packets;
}

function icmpTypes(file: string): number[] {
  return records(file).map((p) => p[20]);
}

test('tee copies every packet into its branch; the main line is not changed by what the branch does', async () => {
  const all = dir.file('tee-all.pcap');
  const out = dir.file('tee-out.pcap');
  const r = await runCli(['--read', input, '--write', out, `parse | tee { swap-addrs | pcap ${all} } | icmp-echo | checksum`]);
  assert.equal(r.code, 0, r.stderr);
  const rows = parseCounters(r.stderr);
  assert.equal(stageRow(rows, 'parse').in, 10);
  assert.equal(stageRow(rows, 'parse').out, 8, 'two bad header checksums dropped');
  assert.equal(stageRow(rows, 'tee').in, 8);
  assert.equal(stageRow(rows, 'tee/swap-addrs').in, 8);
  assert.equal(stageRow(rows, 'tee/pcap').out, 8);
  // The branch swapped the addresses of its copies: the capture has them swapped...
  const copies = records(all);
  assert.equal(copies.length, 8);
  for (const c of copies) assert.deepEqual([...c.subarray(12, 16)], [198, 18, 0, 1], 'source swapped in the copy');
  // ...while the main line saw the originals: its replies go back to 198.18.0.2 from 198.18.0.1.
  const answered = records(out);
  assert.equal(answered.length, 6);
  for (const a of answered) {
    assert.deepEqual([...a.subarray(12, 16)], [198, 18, 0, 1]);
    assert.deepEqual([...a.subarray(16, 20)], [198, 18, 0, 2]);
    assert.equal(a[20], 0, 'an echo reply');
  }
  assert.equal(tcpdumpRead(out).length, 6, 'tcpdump reads the replies');
});

test('STAGE else { } takes what the stage would drop, counted as diverted with its reasons', async () => {
  const other = dir.file('else-other.pcap');
  const out = dir.file('else-out.pcap');
  const r = await runCli(['--read', input, '--write', out, `parse | filter-icmp-echo else { pcap ${other} } | swap-addrs | to-reply | checksum`]);
  assert.equal(r.code, 0, r.stderr);
  const rows = parseCounters(r.stderr);
  const filter = stageRow(rows, 'filter-icmp-echo');
  assert.equal(filter.in, 8);
  assert.equal(filter.out, 6);
  assert.equal(filter.dropped, 0, 'nothing dropped: diverted instead');
  assert.equal(filter.reasons.get('diverted'), 2);
  assert.equal(filter.reasons.get('not an ICMP echo request'), 2, 'the reason is kept');
  assert.equal(stageRow(rows, 'filter-icmp-echo/else/pcap').in, 2);
  assert.deepEqual(icmpTypes(other), [0, 0], 'the replies went into the branch');
  assert.equal(records(out).length, 6);
});

test('else works on a compound stage and on a user stage', async () => {
  const other = dir.file('else-compound.pcap');
  const r = await runCli(['--read', input, `parse | icmp-echo else { pcap ${other} } | checksum | drop`]);
  assert.equal(r.code, 0, r.stderr);
  assert.deepEqual(icmpTypes(other), [0, 0]);
  const big = dir.file('else-user.pcap');
  const r2 = await runCli(['--read', input, `parse | ./examples/drop-big.mjs max=50 else { pcap ${big} } | drop`], { cwd: new URL('../../../', import.meta.url).pathname });
  assert.equal(r2.code, 0, r2.stderr);
  assert.equal(records(big).length, 8, 'every 84-byte packet was too big for max=50 and went into the branch');
  assert.equal(stageRow(parseCounters(r2.stderr), 'drop-big').reasons.get('diverted'), 8);
});

test('drop discards, counted; a branch without a sink discards what reaches its end, counted', async () => {
  const out = dir.file('drop-out.pcap');
  const r = await runCli(['--read', input, '--write', out, 'parse | tee { swap-addrs } | drop']);
  assert.equal(r.code, 0, r.stderr);
  const rows = parseCounters(r.stderr);
  assert.equal(stageRow(rows, 'drop').in, 8);
  assert.equal(stageRow(rows, 'drop').dropped, 8);
  assert.equal(stageRow(rows, 'tee/(end)').in, 8, 'the end of the branch counts what reached it');
  assert.equal(records(out).length, 0, 'nothing reached --write');
  assert.match(r.stderr, /10 packets in, 0 out/);
});

test('a capture-only pipeline ending in drop writes nothing to --write; without drop it writes everything', async () => {
  const cap = dir.file('only.pcap');
  const out = dir.file('only-out.pcap');
  const r = await runCli(['--read', input, '--write', out, `parse | pcap ${cap} | drop`]);
  assert.equal(r.code, 0, r.stderr);
  assert.equal(records(cap).length, 8);
  assert.equal(records(out).length, 0);
});

test('branches nest, and an else branch may tee', async () => {
  const a = dir.file('nest-a.pcap');
  const b = dir.file('nest-b.pcap');
  const r = await runCli(['--read', input, `parse | filter-icmp-echo else { tee { pcap ${a} } | pcap ${b} } | tee { tee { drop } } | drop`]);
  assert.equal(r.code, 0, r.stderr);
  assert.equal(records(a).length, 2);
  assert.equal(records(b).length, 2);
  const rows = parseCounters(r.stderr);
  assert.equal(stageRow(rows, 'tee/tee').in, 6);
  assert.equal(stageRow(rows, 'tee/tee/drop').in, 6);
});

test("pcap FILE filter=EXPR writes what tee { filter EXPR | pcap FILE } writes, and what tcpdump -w FILE EXPR writes", async () => {
  const short = dir.file('short.pcap');
  const long = dir.file('long.pcap');
  const td = dir.file('td.pcap');
  const r = await runCli(['--read', input, `parse | pcap ${short} filter='icmp[icmptype] == icmp-echoreply' | tee { filter 'icmp[icmptype] == icmp-echoreply' | pcap ${long} } | drop`]);
  assert.equal(r.code, 0, r.stderr);
  assert.deepEqual(records(short), records(long));
  assert.deepEqual(icmpTypes(short), [0, 0]);
  execFileSync('tcpdump', ['-r', input, '-w', td, 'icmp[icmptype] == icmp-echoreply'], { stdio: 'ignore' });
  assert.deepEqual(records(short), records(td));
  const bad = await runCli(['--read', input, `parse | pcap ${dir.file('bad.pcap')} filter='icmp and and'`]);
  assert.equal(bad.code, 2, bad.stderr);
  assert.match(bad.stderr, /syntax error/);
});

test('two pcap stages may share one pcapng file: requests inbound and replies outbound, in order, one interface each', async () => {
  const both = dir.file('both.pcapng');
  const r = await runCli(['--read', input, `parse | pcap ${both} | icmp-echo | checksum | pcap ${both}`]);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stderr, /shared with another pcap stage; 14 in the file/);
  const out = execFileSync('tshark', ['-r', both, '-T', 'fields', '-e', 'frame.interface_id', '-e', 'frame.packet_flags_direction', '-e', 'icmp.type', '-e', 'icmp.seq'], { encoding: 'utf8' });
  const rows = out.trim().split('\n').map((l) => l.split('\t'));
  assert.equal(rows.length, 8 + 6);
  // Each request is followed by its reply: the stages wrote in the order packets passed them.
  const requests = rows.filter((f) => f[2] === '8');
  const repliesOut = rows.filter((f) => f[0] === '1');
  assert.ok(requests.every((f) => f[0] === '0' && Number(f[1]) === 1), `requests on interface 0, inbound:\n${out}`);
  assert.equal(repliesOut.length, 6);
  assert.ok(repliesOut.every((f) => Number(f[1]) === 2 && f[2] === '0'), `replies on interface 1, outbound:\n${out}`);
  // Two different files, or a classic pcap, are still refused when they collide.
  const bad = await runCli(['--read', input, `parse | pcap ${dir.file('c.pcap')} | pcap ${dir.file('c.pcap')}`]);
  assert.equal(bad.code, 2, bad.stderr);
});
