/**
 * `checksum` after a user's stage that edits bytes (issue: it used to apply only the changes built-in stages
 * recorded, and sent replies with bad checksums): `parse | icmp-echo | ./edit.mjs | checksum`, offline, on
 * IPv4 and IPv6 requests, and the same with the edit in a `tee` branch and ahead of an `else` branch: every
 * reply leaves with checksums that verify, by the reference checksum and by tshark.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { echoRequest, echoRequest6, pseudoHeader6And, readPcapRecords, referenceChecksum, writePcap } from '../helpers/packets.js';
import { runCli, tempDir } from '../helpers/cli.js';
import { hasCommand } from '../helpers/pcap-tools.js';

function assertValid(p: Buffer, what: string): void {
  if (p[0] >> 4 === 4) {
    const ihl = (p[0] & 15) * 4;
    assert.equal(referenceChecksum(p.subarray(0, ihl)), 0, `${what}: IPv4 header checksum`);
    assert.equal(referenceChecksum(p.subarray(ihl, p.readUInt16BE(2))), 0, `${what}: ICMP checksum`);
  } else {
    assert.equal(referenceChecksum(pseudoHeader6And(p.subarray(8, 24), p.subarray(24, 40), 58, p.subarray(40))), 0, `${what}: ICMPv6 checksum`);
  }
}

describe('checksum after a stage that edits bytes without recording them', () => {
  const dir = tempDir('tunpipe-csum-');
  const edit = dir.file('edit.mjs');
  const inFile = dir.file('in.pcap');
  const requests = [echoRequest({ seq: 1 }), echoRequest({ seq: 2, payload: Buffer.alloc(301, 9) }), echoRequest6({ seq: 3 }), echoRequest6({ seq: 4, payload: Buffer.alloc(77, 1) })];

  before(() => {
    // Flips the last byte of the payload and the ICMP sequence number: bytes the checksum covers.
    writeFileSync(edit, 'export default function edit(p) { p.data[p.end - 1] ^= 0x5a; p.data[p.l4 + 7] ^= 0x01; return p; }\n');
    writePcap(inFile, requests);
  });
  after(() => dir.remove());

  for (const [name, pipeline] of [
    ['straight line', `parse | icmp-echo | ${'EDIT'} | checksum`],
    ['in a tee branch that writes its own file', `parse | icmp-echo | tee { EDIT | checksum | pcap TEEFILE } | checksum`],
    ['mode=incremental after the edit', `parse | icmp-echo | EDIT | checksum mode=incremental`],
  ] as const) {
    test(name, async () => {
      const outFile = dir.file(`out-${name.replace(/\W+/g, '-')}.pcap`);
      const teeFile = dir.file(`tee-${name.replace(/\W+/g, '-')}.pcap`);
      const text = pipeline.replace('EDIT', edit).replace('TEEFILE', teeFile);
      const r = await runCli(['--read', inFile, '--write', outFile, text]);
      assert.equal(r.code, 0, r.stderr);
      const files = name.includes('tee') ? [outFile, teeFile] : [outFile];
      for (const f of files) {
        const out = readPcapRecords(readFileSync(f)).packets;
        assert.equal(out.length, requests.length, `${f}: ${r.stderr}`);
        out.forEach((p, i) => assertValid(p, `${name}, reply ${i}`));
        if (hasCommand('tshark')) {
          const bad = execFileSync('tshark', ['-r', f, '-o', 'ip.check_checksum:TRUE', '-Y', 'ip.checksum.status == "Bad" || icmp.checksum.status == "Bad" || icmpv6.checksum.status == "Bad"'], { encoding: 'utf8', timeout: 30_000 });
          assert.equal(bad.trim(), '', `tshark finds bad checksums in ${f}`);
        }
      }
      if (!name.includes('tee')) {
        // The edit is there: the sequence number was flipped.
        const out = readPcapRecords(readFileSync(outFile)).packets;
        assert.equal(out[0].readUInt16BE(26), 1 ^ 1);
      }
    });
  }
});
