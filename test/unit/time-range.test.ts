/**
 * Times a capture file cannot hold, and durations nobody means. A pcap record's seconds are 32 bits
 * (2106-02-07), a pcapng block's time 64 bits of units (2554 in nanoseconds): a packet stamped later would
 * be written with a wrapped, wrong time, so both writers refuse it with a message, and what they wrote
 * before stays whole. Durations are taken up to a year.
 */
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { PcapWriter } from '../../src/pcap/writer.js';
import { PcapngWriter } from '../../src/pcap/pcapng-writer.js';
import { PcapngReader } from '../../src/pcap/pcapng-reader.js';
import { TunpipeError } from '../../src/errors.js';
import { MAX_DURATION_MS, parseDuration } from '../../src/pipeline/units.js';
import { echoRequest, readPcapRecords } from '../helpers/packets.js';
import { tempDir } from '../helpers/cli.js';

const dir = tempDir('tunpipe-time-range-');
after(() => dir.remove());

test('pcap: the last second of 2106-02-07 is written; one second later, or before 1970, is refused and nothing of it is written', () => {
  const path = dir.file('range.pcap');
  const w = new PcapWriter(path);
  w.write(echoRequest(), 0xffffffff, 999_999_000);
  for (const sec of [0x100000000, 5e9, 1e20, -1, Number.NaN]) {
    assert.throws(() => w.write(echoRequest(), sec, 0), (e: unknown) => e instanceof TunpipeError && /pcap times end at 2106-02-07T06:28:15Z/.test(e.message), String(sec));
  }
  w.close();
  const { packets, trailing } = readPcapRecords(readFileSync(path));
  assert.equal(packets.length, 1);
  assert.equal(trailing, 0);
  assert.equal(readFileSync(path).readUInt32LE(24), 0xffffffff);
});

test('pcapng: a time in 2182 is written and read back; past the 64-bit field (2554 in nanoseconds) it is refused', () => {
  const path = dir.file('range.pcapng');
  const w = new PcapngWriter(path, { nanos: true });
  w.write(echoRequest(), 6_700_000_000, 123);
  assert.throws(() => w.write(echoRequest(), 2e10, 0), (e: unknown) => e instanceof TunpipeError && /pcapng \(nanosecond\) times end at 2554-/.test(e.message));
  w.close();
  const r = new PcapngReader(path);
  const got: [number, number][] = [];
  r.readBatch(10, (_d, sec, nsec) => void got.push([sec, nsec]));
  r.close();
  assert.deepEqual(got, [[6_700_000_000, 123]]);
});

test('durations: up to a year (8760h), more is refused with a message', () => {
  assert.equal(parseDuration('8760h'), MAX_DURATION_MS);
  assert.equal(parseDuration('31536000s'), MAX_DURATION_MS);
  for (const text of ['8761h', '99999999999999999999s', '1e400ms']) {
    const r = parseDuration(text);
    assert.equal(typeof r, 'string', text);
  }
  assert.match(String(parseDuration('8761h')), /longer than a year/);
});
