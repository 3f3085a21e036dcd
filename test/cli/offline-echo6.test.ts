/**
 * `tunpipe --read in.pcap --write out.pcap 'parse | icmp-echo | checksum'` on hand-built IPv6 packets: the
 * output holds exactly the replies Linux would send, byte for byte as built by hand (test/helpers/
 * echo-corpus.ts), and tshark reads them as ICMPv6 echo replies with good checksums.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { readPcapRecords, writePcap } from '../helpers/packets.js';
import { answerableRequests6, unanswerablePackets } from '../helpers/echo-corpus.js';
import { runCli, stackTraceLines, tempDir } from '../helpers/cli.js';
import { hasCommand, tcpdumpRead } from '../helpers/pcap-tools.js';

describe('offline IPv6 echo: --read in.pcap --write out.pcap', () => {
  const dir = tempDir('tunpipe-echo6-');
  const requests = answerableRequests6();
  const junk = unanswerablePackets().filter((j) => j.packet.length > 0 && j.packet[0] >> 4 === 6);
  const input = [...requests.map((r) => r.packet), ...junk.map((j) => j.packet)];
  const inFile = dir.file('in.pcap');
  const outFile = dir.file('out.pcap');
  let run: Awaited<ReturnType<typeof runCli>>;

  before(async () => {
    writePcap(inFile, input);
    run = await runCli(['--read', inFile, '--write', outFile, 'parse | icmp-echo | checksum']);
  });
  after(() => dir.remove());

  test('exits 0; the output holds exactly the replies, in order, byte for byte as built by hand', () => {
    assert.equal(run.code, 0, run.stderr);
    assert.deepEqual(stackTraceLines(run.stderr), []);
    const out = readPcapRecords(readFileSync(outFile));
    assert.equal(out.packets.length, requests.length, run.stderr);
    requests.forEach((r, i) => assert.deepEqual(out.packets[i], r.reply, `reply to: ${r.name}`));
  });

  test('tcpdump reads one ICMPv6 echo reply per request', () => {
    const seen = tcpdumpRead(outFile);
    assert.equal(seen.length, requests.length, seen.join('\n'));
    for (const line of seen) assert.match(line, /ICMP6, echo reply/);
  });

  test('tshark finds every ICMPv6 checksum good', { skip: hasCommand('tshark') ? false : 'tshark is not installed' }, () => {
    const status = execFileSync('tshark', ['-r', outFile, '-T', 'fields', '-e', 'icmpv6.checksum.status', '-e', 'icmpv6.type', '-e', 'icmpv6.code'], { encoding: 'utf8', timeout: 30_000 })
      .split('\n')
      .filter((l) => l !== '');
    assert.equal(status.length, requests.length);
    status.forEach((s, i) => {
      const [sum, type, code] = s.split('\t');
      assert.equal(sum, '1', `checksum of reply ${i}`);
      assert.equal(type, '129');
      assert.equal(Number(code), requests[i].reply[41], `code of reply ${i}`);
    });
    // The same check sees a bad checksum in the input, so it is not blind.
    const bad = execFileSync('tshark', ['-r', inFile, '-Y', 'icmpv6.checksum.status == "Bad"'], { encoding: 'utf8', timeout: 30_000 }).split('\n').filter((l) => l !== '');
    assert.ok(bad.length >= 1, 'tshark flags the planted bad checksum');
  });
});
