/**
 * What an offline run reports and where it writes: the counters on stderr, --count, --quiet, `--write -`
 * into `tcpdump -r -`, and a reader of stdout that goes away.
 */
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { echoRequest, readPcapRecords, referenceChecksum, writePcap } from '../helpers/packets.js';
import { lines, runCli, stackTraceLines, tempDir, TUNPIPE_BIN } from '../helpers/cli.js';
import { parseCounters, reasonCount, stageRow } from '../helpers/counters.js';

const dir = tempDir('tunpipe-run-');
after(() => dir.remove());

function requests(n: number, firstSeq = 1): Buffer[] {
  return Array.from({ length: n }, (_, i) => echoRequest({ seq: firstSeq + i }));
}

/** Sequence numbers of the echo replies in a capture. */
function seqs(file: string): number[] {
  return readPcapRecords(readFileSync(file)).packets.map((p) => p.readUInt16BE((p[0] & 0x0f) * 4 + 6));
}

/** Runs `tunpipe ARGS` with its stdout connected straight to `tcpdump -nn -r - TCPDUMP_ARGS`. */
function intoTcpdump(args: string[], tcpdumpArgs: string[] = []): Promise<{ code: number | null; stderr: string; tcpdumpCode: number | null; tcpdumpLines: string[] }> {
  return new Promise((resolve, reject) => {
    const tcpdump = spawn('tcpdump', ['-nn', '-r', '-', ...tcpdumpArgs], { stdio: ['pipe', 'pipe', 'pipe'] });
    const tunpipe = spawn(process.execPath, [TUNPIPE_BIN, ...args], { stdio: ['ignore', tcpdump.stdin, 'pipe'] });
    // Only the child holds the pipe now: tcpdump sees the end of the file when tunpipe exits.
    tcpdump.stdin.destroy();
    let seen = '';
    let stderr = '';
    tcpdump.stdout.on('data', (d: Buffer) => (seen += d.toString()));
    tunpipe.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
    const timer = setTimeout(() => (tunpipe.kill('SIGKILL'), tcpdump.kill('SIGKILL')), 20_000);
    const tp = new Promise<number | null>((r) => tunpipe.on('close', r));
    const td = new Promise<number | null>((r) => tcpdump.on('close', r));
    tunpipe.on('error', reject);
    tcpdump.on('error', reject);
    Promise.all([tp, td]).then(([code, tcpdumpCode]) => {
      clearTimeout(timer);
      resolve({ code, stderr, tcpdumpCode, tcpdumpLines: lines(seen) });
    });
  });
}

describe('counters on stderr at exit', () => {
  // 7 echo requests, 3 with a bad IPv4 header checksum, 2 echo replies, 1 UDP datagram.
  const good = requests(7);
  const badSum = requests(3, 50).map((p) => ((p[10] ^= 0xff), p));
  const replies = [echoRequest({ seq: 60, type: 0 }), echoRequest({ seq: 61, type: 0 })];
  const udp = echoRequest({ seq: 62 });
  udp[9] = 17; // protocol UDP, header checksum made right again
  udp.writeUInt16BE(0, 10);
  udp.writeUInt16BE(referenceChecksum(udp.subarray(0, 20)), 10);
  const input = [good[0], badSum[0], replies[0], good[1], good[2], udp, badSum[1], good[3], replies[1], good[4], badSum[2], good[5], good[6]];
  const inFile = dir.file('counters-in.pcap');
  writePcap(inFile, input);

  test('one row per stage with in, out, dropped and the reasons', async () => {
    const out = dir.file('counters-out.pcap');
    const r = await runCli(['--read', inFile, '--write', out, 'parse | filter-icmp-echo | swap-addrs | to-reply | checksum']);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stderr, /end of input: 13 packets in, 7 out/);
    const rows = parseCounters(r.stderr);
    assert.deepEqual(
      rows.map((s) => s.name),
      ['parse', 'filter-icmp-echo', 'swap-addrs', 'to-reply', 'checksum'],
    );
    const parse = stageRow(rows, 'parse');
    assert.deepEqual([parse.in, parse.out, parse.dropped], [13, 10, 3]);
    assert.equal(reasonCount(parse, /checksum/i), 3, 'the three bad header checksums, under a reason that says so');
    const filter = stageRow(rows, 'filter-icmp-echo');
    assert.deepEqual([filter.in, filter.out, filter.dropped], [10, 7, 3]);
    assert.equal(reasonCount(filter, /echo request/i), 2, 'the two echo replies');
    assert.equal(reasonCount(filter, /^(?!.*echo).*\bICMP\b/), 1, 'the UDP datagram, dropped as not ICMP');
    for (const name of ['swap-addrs', 'to-reply', 'checksum']) {
      const s = stageRow(rows, name);
      assert.deepEqual([s.in, s.out, s.dropped], [7, 7, 0], name);
    }
    for (const s of rows) {
      let sum = 0;
      for (const n of s.reasons.values()) sum += n;
      assert.equal(sum, s.dropped, `${s.name}: the reasons add up to the drops`);
    }
    assert.deepEqual(seqs(out), [1, 2, 3, 4, 5, 6, 7]);
  });

  test('a compound stage shows its parts as icmp-echo/NAME, and the counts chain', async () => {
    const r = await runCli(['--read', inFile, 'parse | icmp-echo | checksum']);
    assert.equal(r.code, 0, r.stderr);
    const rows = parseCounters(r.stderr);
    assert.equal(rows[0].name, 'parse');
    assert.equal(rows[rows.length - 1].name, 'checksum');
    const inner = rows.slice(1, -1).map((s) => s.name);
    assert.ok(inner.every((n) => n.startsWith('icmp-echo/')), inner.join(', '));
    const order = ['icmp-echo/filter-icmp-echo', 'icmp-echo/swap-addrs', 'icmp-echo/to-reply'].map((n) => inner.indexOf(n));
    assert.ok(order.every((i, k) => i >= 0 && (k === 0 || i > order[k - 1])), `parts in order: ${inner.join(', ')}`);
    for (let i = 1; i < rows.length; i++) assert.equal(rows[i].in, rows[i - 1].out, `${rows[i].name} gets what ${rows[i - 1].name} passed`);
    for (const s of rows) assert.equal(s.in, s.out + s.dropped + (s.reasons.get('held') ?? 0), `${s.name}: in = out + dropped (+ held)`);
    assert.equal(rows[rows.length - 1].out, 7);
  });

  test('--quiet prints no counters', async () => {
    const r = await runCli(['--quiet', '--read', inFile, 'parse | icmp-echo | checksum']);
    assert.equal(r.code, 0);
    assert.equal(r.stderr, '');
  });
});

describe('--count', () => {
  test('stops after N packets have entered and says so', async () => {
    const inFile = dir.file('count-in.pcap');
    const out = dir.file('count-out.pcap');
    writePcap(inFile, requests(10));
    const r = await runCli(['--read', inFile, '--write', out, '--count', '4', 'parse | icmp-echo | checksum']);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stderr, /--count 4/);
    assert.equal(stageRow(parseCounters(r.stderr), 'parse').in, 4);
    assert.deepEqual(seqs(out), [1, 2, 3, 4]);
  });
});

describe('writing to stdout', () => {
  const input = requests(25);
  const inFile = dir.file('stdout-in.pcap');
  writePcap(inFile, input);

  for (const form of [['--write', '-'], ['--write=-']]) {
    test(`${form.join(' ')} piped into tcpdump -r - gives the replies`, async () => {
      const r = await intoTcpdump(['--read', inFile, ...form, 'parse | icmp-echo | checksum']);
      assert.equal(r.code, 0, r.stderr);
      assert.equal(r.tcpdumpCode, 0);
      assert.equal(r.tcpdumpLines.length, input.length, r.tcpdumpLines.join('\n'));
      r.tcpdumpLines.forEach((l, i) => assert.match(l, new RegExp(`198\\.18\\.0\\.1 > 198\\.18\\.0\\.2: ICMP echo reply, id 4660, seq ${i + 1},`)));
    });
  }

  test('--write - writes the same bytes as --write FILE', async () => {
    const file = dir.file('stdout-file.pcap');
    await runCli(['--read', inFile, '--write', file, 'parse | icmp-echo | checksum']);
    const r = await runCli(['--read', inFile, '--write', '-', 'parse | icmp-echo | checksum']);
    assert.equal(r.code, 0, r.stderr);
    assert.ok(r.stdout.equals(readFileSync(file)), 'stdout holds the capture');
  });

  test('a reader of stdout that goes away ends the run quietly with exit 0', async () => {
    const big = dir.file('stdout-big.pcap');
    writePcap(big, Array.from({ length: 20000 }, (_, i) => echoRequest({ seq: i & 0xffff })));
    const r = await intoTcpdump(['--read', big, '--write=-', 'parse | icmp-echo | checksum'], ['-c', '3']);
    assert.equal(r.tcpdumpLines.length, 3);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stderr, /reader of stdout went away/);
    assert.deepEqual(stackTraceLines(r.stderr), []);
  });
});
