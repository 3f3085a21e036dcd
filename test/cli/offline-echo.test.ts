/**
 * `tunpipe --read in.pcap --write out.pcap 'parse | icmp-echo | checksum'` on hand-built packets: the output
 * holds exactly the replies, byte for byte as built by hand, and tcpdump and tshark read them as valid echo
 * replies with right checksums.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { readPcapRecords, referenceChecksum, writePcap } from '../helpers/packets.js';
import { answerableRequests, unanswerablePackets } from '../helpers/echo-corpus.js';
import { runCli, stackTraceLines, tempDir } from '../helpers/cli.js';
import { hasCommand, tcpdumpChecksumComplaints, tcpdumpRead, tsharkBadChecksums, tsharkChecksumStatus } from '../helpers/pcap-tools.js';

const PIPELINE = 'parse | icmp-echo | checksum';

describe('offline echo: --read in.pcap --write out.pcap', () => {
  const dir = tempDir('tunpipe-echo-');
  const requests = answerableRequests();
  const junk = unanswerablePackets();
  // Interleaved so that a drop never takes a neighbour with it.
  const input: Buffer[] = [];
  const longest = Math.max(requests.length, junk.length);
  for (let i = 0; i < longest; i++) {
    if (i < requests.length) input.push(requests[i].packet);
    if (i < junk.length) input.push(junk[i].packet);
  }
  const inFile = dir.file('in.pcap');
  const outFile = dir.file('out.pcap');
  let run: Awaited<ReturnType<typeof runCli>>;

  before(async () => {
    writePcap(inFile, input);
    run = await runCli(['--read', inFile, '--write', outFile, PIPELINE]);
  });
  after(() => dir.remove());

  test('exits 0 without a stack trace', () => {
    assert.equal(run.code, 0, run.stderr);
    assert.deepEqual(stackTraceLines(run.stderr), []);
  });

  test('the output holds exactly the replies, in order, byte for byte as built by hand', () => {
    const out = readPcapRecords(readFileSync(outFile));
    assert.equal(out.linkType, 101);
    assert.equal(out.packets.length, requests.length, `expected ${requests.length} replies`);
    requests.forEach((r, i) => assert.deepEqual(out.packets[i], r.reply, `reply to: ${r.name}`));
  });

  test('every reply checksum is valid by the reference checksum', () => {
    for (const p of readPcapRecords(readFileSync(outFile)).packets) {
      const ihl = (p[0] & 0x0f) * 4;
      assert.equal(referenceChecksum(p.subarray(0, ihl)), 0, 'IPv4 header checksum');
      assert.equal(referenceChecksum(p.subarray(ihl, p.readUInt16BE(2))), 0, 'ICMP checksum');
      assert.equal(p[ihl], 0, 'ICMP type: echo reply');
    }
  });

  test('tcpdump reads one echo reply per request and finds no bad checksum', () => {
    const seen = tcpdumpRead(outFile);
    assert.equal(seen.length, requests.length, seen.join('\n'));
    for (const line of seen) assert.match(line, /ICMP echo reply/);
    assert.deepEqual(tcpdumpChecksumComplaints(outFile), []);
    // The same check sees the bad checksums planted in the input, so it is not blind.
    assert.ok(tcpdumpChecksumComplaints(inFile).length >= 2, 'tcpdump -vv flags the planted bad checksums');
  });

  test('tshark finds no bad checksum', { skip: hasCommand('tshark') ? false : 'tshark is not installed' }, () => {
    assert.deepEqual(tsharkBadChecksums(outFile), []);
    const status = tsharkChecksumStatus(outFile);
    assert.equal(status.length, requests.length);
    // 1 is "good" for both the IPv4 header and the ICMP checksum.
    for (const s of status) assert.deepEqual(s, ['1', '1']);
    // The filter flags the input's planted bad IPv4 header and ICMP checksums.
    assert.ok(tsharkBadChecksums(inFile).length >= 2, 'tshark flags the planted bad checksums');
  });
});
