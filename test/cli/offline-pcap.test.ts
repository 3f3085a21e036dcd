/**
 * pcap files in and out of an offline run: the pcap stage's micro- and nanosecond formats, timestamps
 * carried over from the input file exactly, appending to a capture, big-endian input, and an input cut short.
 */
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { echoRequest, readPcapRecords, writePcap } from '../helpers/packets.js';
import { expectedReply } from '../helpers/echo-corpus.js';
import { lines, runCli, stackTraceLines, tempDir } from '../helpers/cli.js';
import { tcpdumpNanoTimes, tcpdumpRead } from '../helpers/pcap-tools.js';

const dir = tempDir('tunpipe-pcap-');
after(() => dir.remove());

function requests(n: number, firstSeq = 1): Buffer[] {
  return Array.from({ length: n }, (_, i) => echoRequest({ seq: firstSeq + i }));
}

/** Rewrites the record timestamps of a classic little-endian pcap file. */
function setTimes(file: string, times: [number, number][]): void {
  const b = readFileSync(file);
  let o = 24;
  for (const [sec, frac] of times) {
    b.writeUInt32LE(sec, o);
    b.writeUInt32LE(frac, o + 4);
    o += 16 + b.readUInt32LE(o + 8);
  }
  writeFileSync(file, b);
}

/** The same capture written big-endian (as a big-endian machine's tcpdump -w writes it). */
function toBigEndian(le: Buffer): Buffer {
  const b = Buffer.from(le);
  const swap32 = (o: number) => b.writeUInt32BE(le.readUInt32LE(o), o);
  const swap16 = (o: number) => b.writeUInt16BE(le.readUInt16LE(o), o);
  swap32(0);
  swap16(4);
  swap16(6);
  for (const o of [8, 12, 16, 20]) swap32(o);
  let o = 24;
  while (o + 16 <= le.length) {
    const len = le.readUInt32LE(o + 8);
    for (const f of [0, 4, 8, 12]) swap32(o + f);
    o += 16 + len;
  }
  return b;
}

describe('the pcap stage and timestamps', () => {
  const input = requests(6);
  const times: [number, number][] = [
    [1_700_000_000, 0],
    [1_700_000_000, 1],
    [1_700_000_001, 7],
    [1_700_000_002, 14],
    [1_700_000_003, 500_000],
    [1_700_000_004, 999_999],
  ];
  const inFile = dir.file('ts-in.pcap');
  writePcap(inFile, input);
  setTimes(inFile, times);

  test('pcap FILE writes microsecond captures (magic a1b2c3d4) holding the packets that passed', async () => {
    const tap = dir.file('tap-micro.pcap');
    const r = await runCli(['--read', inFile, 'parse | pcap ' + tap]);
    assert.equal(r.code, 0, r.stderr);
    const cap = readPcapRecords(readFileSync(tap));
    assert.equal(cap.magic, 0xa1b2c3d4);
    assert.deepEqual(cap.packets, input);
    assert.equal(tcpdumpRead(tap).length, input.length);
  });

  test('pcap FILE nanos=true writes the nanosecond magic (a1b23c4d) and tcpdump reads it', async () => {
    const tap = dir.file('tap-nanos.pcap');
    const r = await runCli(['--read', inFile, `parse | pcap ${tap} nanos=true`]);
    assert.equal(r.code, 0, r.stderr);
    const cap = readPcapRecords(readFileSync(tap));
    assert.equal(cap.magic, 0xa1b23c4d);
    assert.deepEqual(cap.packets, input);
    const seen = tcpdumpRead(tap);
    assert.equal(seen.length, input.length);
    for (const l of seen) assert.match(l, /ICMP echo request/);
  });

  test('--write keeps the timestamps of the input records exactly (microseconds)', async () => {
    const out = dir.file('ts-out.pcap');
    const r = await runCli(['--read', inFile, '--write', out, 'parse | icmp-echo | checksum']);
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(readPcapRecords(readFileSync(out)).packets, input.map((p) => expectedReply(p)));
    assert.deepEqual(tcpdumpNanoTimes(out), tcpdumpNanoTimes(inFile));
  });

  test('pcap FILE nanos=true keeps the timestamps of microsecond input records exactly', async () => {
    const tap = dir.file('ts-tap-nanos.pcap');
    const r = await runCli(['--read', inFile, `parse | pcap ${tap} nanos=true`]);
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(tcpdumpNanoTimes(tap), tcpdumpNanoTimes(inFile));
  });

  test('--write keeps nanosecond timestamps of a nanosecond input exactly', async () => {
    const nanoIn = dir.file('ts-in-nanos.pcap');
    writePcap(nanoIn, input, { nanos: true });
    setTimes(nanoIn, [
      [1_700_000_000, 1],
      [1_700_000_000, 999_999_999],
      [1_700_000_001, 123_456_789],
      [1_700_000_002, 500_000_000],
      [1_700_000_003, 7],
      [1_700_000_004, 999_000_001],
    ]);
    const out = dir.file('ts-out-nanos.pcap');
    const r = await runCli(['--read', nanoIn, '--write', out, 'parse | icmp-echo | checksum']);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(readPcapRecords(readFileSync(out)).magic, 0xa1b23c4d, 'a nanosecond input gives a nanosecond output');
    assert.deepEqual(tcpdumpNanoTimes(out), tcpdumpNanoTimes(nanoIn));
  });
});

describe('appending to a capture (pcap FILE append=true)', () => {
  const input = requests(4);
  const inFile = dir.file('append-in.pcap');
  writePcap(inFile, input);
  // Whole milliseconds, so that these tests do not depend on sub-millisecond precision (tested above).
  setTimes(inFile, [
    [1_700_000_000, 0],
    [1_700_000_001, 250_000],
    [1_700_000_002, 500_000],
    [1_700_000_003, 750_000],
  ]);

  test('adds the packets after those already in a capture of the same format', async () => {
    const cap = dir.file('append-same.pcap');
    for (const extra of ['', ' append=true']) {
      const r = await runCli(['--read', inFile, `parse | pcap ${cap}${extra}`]);
      assert.equal(r.code, 0, r.stderr);
    }
    assert.deepEqual(readPcapRecords(readFileSync(cap)).packets, [...input, ...input]);
    assert.equal(tcpdumpRead(cap).length, 8);
  });

  test('appending to a nanosecond capture keeps the appended timestamps right', async () => {
    const cap = dir.file('append-nanos.pcap');
    const first = await runCli(['--read', inFile, `parse | pcap ${cap} nanos=true`]);
    assert.equal(first.code, 0, first.stderr);
    const r = await runCli(['--read', inFile, `parse | pcap ${cap} append=true`]);
    // Either refused (the formats differ) or written in the file's own format; never silently wrong times.
    if (r.code !== 0) {
      assert.deepEqual(stackTraceLines(r.stderr), []);
      assert.equal(readPcapRecords(readFileSync(cap)).packets.length, 4, 'the capture is left as it was');
      return;
    }
    const times = tcpdumpNanoTimes(cap);
    const expected = tcpdumpNanoTimes(inFile);
    assert.deepEqual(times.slice(4), expected, 'the appended records have the input times');
  });

  test('appending to a file that is not a pcap capture is refused and leaves it alone', async () => {
    const notPcap = dir.file('append-notes.txt');
    writeFileSync(notPcap, 'my notes, not a capture\n');
    const r = await runCli(['--read', inFile, `parse | pcap ${notPcap} append=true`]);
    assert.notEqual(r.code, 0, `refused:\n${r.stderr}`);
    assert.deepEqual(stackTraceLines(r.stderr), []);
    assert.equal(readFileSync(notPcap, 'utf8'), 'my notes, not a capture\n');
  });
});

describe('other inputs', () => {
  test('a big-endian capture is read: replies and timestamps as from the little-endian one', async () => {
    const input = requests(5);
    const le = dir.file('le.pcap');
    writePcap(le, input);
    const be = dir.file('be.pcap');
    writeFileSync(be, toBigEndian(readFileSync(le)));
    assert.equal(tcpdumpRead(be).length, 5, 'tcpdump reads the big-endian file (the test builds it right)');
    const out = dir.file('be-out.pcap');
    const r = await runCli(['--read', be, '--write', out, 'parse | icmp-echo | checksum']);
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(readPcapRecords(readFileSync(out)).packets, input.map((p) => expectedReply(p)));
    assert.equal(tcpdumpRead(out).length, 5);
  });

  test('a capture cut short in its last record: the whole records are answered, one warning, exit 0', async () => {
    const input = requests(5);
    const full = dir.file('cut-full.pcap');
    writePcap(full, input);
    const cut = dir.file('cut.pcap');
    const bytes = readFileSync(full);
    writeFileSync(cut, bytes.subarray(0, bytes.length - 20));
    const out = dir.file('cut-out.pcap');
    const r = await runCli(['--read', cut, '--write', out, 'parse | icmp-echo | checksum']);
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(readPcapRecords(readFileSync(out)).packets, input.slice(0, 4).map((p) => expectedReply(p)));
    const warnings = lines(r.stderr).filter((l) => /cut short/.test(l));
    assert.equal(warnings.length, 1, r.stderr);
    assert.ok(warnings[0].includes(cut), 'the warning names the file');
  });
});
