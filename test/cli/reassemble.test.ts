/**
 * `reassemble` through the CLI, offline on a file whose records are one second apart (the pipeline's clock is
 * the file's): `max=1` evicts the datagram in progress for a new one, an overlapping fragment discards its
 * datagram, `timeout=2` expires a datagram whose rest never comes, and a complete datagram is put back
 * together; the exit report under the stage says each count.
 */
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { echoRequest, readPcapRecords, referenceChecksum, writePcap } from '../helpers/packets.js';
import { runCli, stackTraceLines, tempDir } from '../helpers/cli.js';
import { parseCounters, stageRow } from '../helpers/counters.js';

const dir = tempDir('tunpipe-reasm-');
after(() => dir.remove());

/** An unfragmented echo request with 1008 ICMP bytes and IP identification `id`. */
function whole(id: number): Buffer {
  const b = echoRequest({ payload: Buffer.alloc(1000, id), frag: 0, id });
  b.writeUInt16BE(id, 4);
  b.writeUInt16BE(0, 10);
  b.writeUInt16BE(referenceChecksum(b.subarray(0, 20)), 10);
  return b;
}

/** An IPv4 fragment of whole(id)'s ICMP bytes: [start, end) of them, and whether more follow. */
function fragment(id: number, start: number, end: number, more: boolean): Buffer {
  const w = whole(id);
  const body = w.subarray(20).subarray(start, end);
  const ip = Buffer.from(w.subarray(0, 20));
  ip.writeUInt16BE(20 + body.length, 2);
  ip.writeUInt16BE((more ? 0x2000 : 0) | (start / 8), 6);
  ip.writeUInt16BE(0, 10);
  ip.writeUInt16BE(referenceChecksum(ip), 10);
  return Buffer.concat([ip, body]);
}

test('reassemble timeout=2 max=1: eviction, overlap discard, expiry and a whole datagram, each in the exit report', async () => {
  const filler = echoRequest({ seq: 99 });
  const packets = [
    fragment(1, 0, 504, true), // t=0: A in progress
    fragment(2, 0, 504, true), // t=1: B, the table (max=1) is full: A evicted
    fragment(3, 0, 504, true), // t=2: C, B evicted
    fragment(3, 496, 1008, false), // t=3: overlaps C's first fragment: C discarded
    fragment(4, 0, 504, true), // t=4: D in progress
    filler, // t=5
    filler, // t=6
    filler, // t=7: D is 3 s old, past timeout=2: expired
    fragment(5, 0, 504, true), // t=8: E
    fragment(5, 504, 1008, false), // t=9: E complete
  ];
  const input = dir.file('frags.pcap');
  const output = dir.file('out.pcap');
  writePcap(input, packets);
  const r = await runCli(['--read', input, '--write', output, 'parse | reassemble timeout=2 max=1']);
  assert.equal(r.code, 0, r.stderr);
  assert.deepEqual(stackTraceLines(r.stderr), []);
  const row = stageRow(parseCounters(r.stderr), 'reassemble');
  assert.equal(row.in, packets.length, r.stderr);
  assert.equal(row.reasons.get('overlapping fragment (datagram discarded)'), 1, r.stderr);
  assert.match(r.stderr, /^\s+1 datagrams reassembled, 0 in progress, fragments discarded: 1 timed out, 2 evicted \(table full\), 1 overlap or too many$/m);
  const out = readPcapRecords(readFileSync(output)).packets;
  assert.equal(out.length, 4, 'three fillers and the reassembled datagram');
  assert.deepEqual(out[3], whole(5), 'E whole again, byte for byte');
});
