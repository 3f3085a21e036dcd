/**
 * `filter EXPR` offline, judged by tcpdump: `tunpipe --read in.pcap --write out.pcap "filter 'EXPR'"`
 * writes the same file, byte for byte, as `tcpdump -r in.pcap -w out.pcap 'EXPR'` (RAW and Ethernet
 * captures of seeded packets); a bad expression exits 2 with libpcap's message under a caret and creates
 * nothing.
 */
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { readPcapRecords, writePcap } from '../helpers/packets.js';
import { lines, runCli, stackTraceLines, tempDir } from '../helpers/cli.js';
import { hasCommand } from '../helpers/pcap-tools.js';
import { Rng } from '../fuzz/rng.js';
import { filterPacket } from '../fuzz/filter-corpus.js';

const dir = tempDir('tunpipe-filter-');
after(() => dir.remove());
const noTcpdump = hasCommand('tcpdump') ? false : 'tcpdump is not installed';

function capture(name: string, linkType: number, n: number, snaplen?: number): string {
  const rng = new Rng(`cli ${name}`);
  const file = dir.file(name);
  writePcap(file, Array.from({ length: n }, () => filterPacket(rng, linkType)), { linkType });
  if (snaplen !== undefined) {
    const b = readFileSync(file);
    b.writeUInt32LE(snaplen, 16);
    writeFileSync(file, b);
  }
  return file;
}

function tcpdumpWrite(input: string, output: string, expr: string): void {
  execFileSync('tcpdump', ['-r', input, '-w', output, expr], { stdio: ['ignore', 'ignore', 'pipe'] });
}

const RAW_EXPRESSIONS = [
  'icmp and src host 198.18.0.2',
  'udp and (port 53 or port 5353) and not src host 198.18.0.1',
  'tcp[tcpflags] & tcp-syn != 0',
  'ip6 protochain 6',
  'ip[2:2] - 20 > 100 or len < 40',
  'ip6 net 2001:db8::/32 and not icmp6',
];
const ETHERNET_EXPRESSIONS = ['vlan and ip', 'arp or rarp', 'ether broadcast and not ip6', 'ip6 multicast', 'vlan 100 and udp port 53 or icmp'];

describe('filter offline, against tcpdump', { skip: noTcpdump }, () => {
  for (const [linkType, exprs] of [[101, RAW_EXPRESSIONS], [1, ETHERNET_EXPRESSIONS]] as const) {
    const input = capture(`in-${linkType}.pcap`, linkType, 2000);
    for (const expr of exprs) {
      test(`link type ${linkType}: "filter '${expr}'" writes what tcpdump -w writes`, async () => {
        const ours = dir.file(`ours-${linkType}.pcap`);
        const theirs = dir.file(`theirs-${linkType}.pcap`);
        const r = await runCli(['--read', input, '--write', ours, `filter '${expr}'`]);
        assert.equal(r.code, 0, r.stderr);
        tcpdumpWrite(input, theirs, expr);
        const a = readFileSync(ours);
        const b = readFileSync(theirs);
        const records = readPcapRecords(b).packets.length;
        assert.ok(records > 0 && records < 2000, `the expression matches some packets, not all (${records})`);
        assert.ok(a.equals(b), `the files differ (${a.length} and ${b.length} bytes; ${readPcapRecords(a).packets.length} and ${records} records)`);
        assert.match(r.stderr, new RegExp(`filter +2000 +${records} +${2000 - records} +filtered out: ${2000 - records}`));
      });
    }
  }

  test("tee { filter 'EXPR' | pcap FILE } captures what tcpdump -w captures; filter else { } routes all the rest", async () => {
    const input = capture('graph.pcap', 101, 2000);
    const dns = dir.file('dns.pcap');
    const rest = dir.file('rest.pcap');
    const ours = dir.file('graph-out.pcap');
    const r = await runCli(['--read', input, '--write', ours, `tee { filter 'udp port 53' | pcap ${dns} } | filter 'icmp' else { pcap ${rest} }`]);
    assert.equal(r.code, 0, r.stderr);
    const records = (file: string) => readPcapRecords(readFileSync(file)).packets;
    const theirs = (expr: string) => {
      const file = dir.file('graph-ref.pcap');
      tcpdumpWrite(input, file, expr);
      return records(file);
    };
    assert.deepEqual(records(dns), theirs('udp port 53'));
    assert.deepEqual(records(ours), theirs('icmp'));
    // The rest is every packet 'icmp' does not match, more than 'not icmp' matches: libpcap rejects a
    // packet too short for a load under `not` too.
    const icmp = new Set(theirs('icmp').map((p) => p.toString('hex')));
    const all = records(input);
    assert.deepEqual(records(rest), all.filter((p) => !icmp.has(p.toString('hex'))));
    assert.ok(theirs('not icmp').length < records(rest).length);
  });

  test('an input with another snap length: same records; tcpdump copies the snap length, tunpipe writes 262144', async () => {
    const input = capture('snap.pcap', 101, 500, 65535);
    const ours = dir.file('snap-ours.pcap');
    const theirs = dir.file('snap-theirs.pcap');
    const expr = 'udp or icmp';
    assert.equal((await runCli(['--read', input, '--write', ours, `filter '${expr}'`])).code, 0);
    tcpdumpWrite(input, theirs, expr);
    const a = readFileSync(ours);
    const b = readFileSync(theirs);
    assert.equal(b.readUInt32LE(16), 65535);
    assert.equal(a.readUInt32LE(16), 262144);
    assert.ok(a.subarray(24).equals(b.subarray(24)), 'the records are identical');
    assert.ok(a.subarray(0, 16).equals(b.subarray(0, 16)) && a.readUInt32LE(20) === b.readUInt32LE(20), 'the rest of the header too');
  });
});

describe('filter errors', () => {
  const input = capture('err.pcap', 101, 3);
  for (const [expr, message] of [
    ['icmp and and udp', /syntax error/],
    ['udp port 99999', /illegal port number 99999 > 65535/],
    ['ip broadcast', /netmask not known, so 'ip broadcast' not supported/],
    ['tcp[100000:4] = 1 or', /syntax error/],
  ] as const) {
    test(`"filter '${expr}'" exits 2 with libpcap's message under a caret, creating nothing`, async () => {
      const out = dir.file('never.pcap');
      const r = await runCli(['--read', input, '--write', out, `parse | filter '${expr}'`]);
      assert.equal(r.code, 2, r.stderr);
      assert.deepEqual(stackTraceLines(r.stderr), []);
      const l = lines(r.stderr);
      assert.match(l[0], /^tunpipe: pipeline error at column 16: filter expr: /);
      assert.match(l[0], message);
      assert.equal(l[1], `  parse | filter '${expr}'`);
      assert.equal(l[2], `  ${' '.repeat(15)}^`);
      assert.equal(existsSync(out), false, 'no output file');
    });
  }

  test('an expression for Ethernet on a RAW capture exits 2 under a caret, naming the link type, creating nothing', async () => {
    const out = dir.file('never.pcap');
    const r = await runCli(['--read', input, '--write', out, "filter 'ether broadcast'"]);
    assert.equal(r.code, 2, r.stderr);
    const l = lines(r.stderr);
    assert.match(l[0], /^tunpipe: pipeline error at column 8: filter expr: .*\(compiling for RAW packets\)$/);
    assert.equal(l[2], `  ${' '.repeat(7)}^`);
    assert.equal(existsSync(out), false, 'no output file');
  });

  test('tunpipe --list filter explains the stage with examples', async () => {
    const r = await runCli(['--list', 'filter']);
    assert.equal(r.code, 0);
    const text = r.stdout.toString();
    assert.match(text, /^filter EXPR \[show=none\|bpf\|js\] \[optimize=BOOL\]/);
    assert.match(text, /filter 'icmp and src host 198\.18\.0\.2'/);
    assert.match(text, /tee \{ filter 'udp port 53' \| pcap dns\.pcap \}/);
  });

  test('show=bpf prints the program as tcpdump -d does', { skip: noTcpdump }, async () => {
    const r = await runCli(['--read', input, "filter 'udp port 53' show=bpf"]);
    assert.equal(r.code, 0, r.stderr);
    const listing = execFileSync('tcpdump', ['-d', '-y', 'RAW', 'udp port 53'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] });
    assert.ok(r.stderr.includes(`filter 'udp port 53' for RAW packets`), r.stderr);
    assert.ok(r.stderr.includes(listing), r.stderr);
  });
});
