/** src/pcap/reader.ts: both byte orders and time units, truncated tails, and clear errors for non-pcap input. */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PcapReader } from '../../src/pcap/reader.js';
import { TunpipeError } from '../../src/errors.js';
import { writePcap } from '../helpers/packets.js';
import { withSeed } from './seeded-random.js';

let dir = '';
before(() => {
  dir = mkdtempSync(join(tmpdir(), 'tunpipe-unit-pcap-reader-'));
});
after(() => {
  if (dir) rmSync(dir, { recursive: true, force: true });
});

interface Rec {
  secs: number;
  frac: number;
  data: Buffer;
  orig?: number;
}

/** A classic pcap file built byte by byte, in either byte order. */
function handMadePcap(o: { bigEndian: boolean; nanos: boolean; linkType?: number; snaplen?: number; records: Rec[] }): Buffer {
  const u32 = (v: number) => {
    const b = Buffer.alloc(4);
    if (o.bigEndian) b.writeUInt32BE(v >>> 0);
    else b.writeUInt32LE(v >>> 0);
    return b;
  };
  const u16 = (v: number) => {
    const b = Buffer.alloc(2);
    if (o.bigEndian) b.writeUInt16BE(v);
    else b.writeUInt16LE(v);
    return b;
  };
  const parts: Buffer[] = [u32(o.nanos ? 0xa1b23c4d : 0xa1b2c3d4), u16(2), u16(4), u32(0), u32(0), u32(o.snaplen ?? 65535), u32(o.linkType ?? 101)];
  for (const r of o.records) parts.push(u32(r.secs), u32(r.frac), u32(r.data.length), u32(r.orig ?? r.data.length), r.data);
  return Buffer.concat(parts);
}

function readAll(r: PcapReader, batch = 1000): Array<{ data: Buffer; sec: number; nsec: number }> {
  const out: Array<{ data: Buffer; sec: number; nsec: number }> = [];
  while (r.readBatch(batch, (data, sec, nsec) => out.push({ data, sec, nsec })) > 0);
  return out;
}

function file(name: string, bytes: Buffer): string {
  const path = join(dir, name);
  writeFileSync(path, bytes);
  return path;
}

test('hand-made files in all four variants (LE/BE, micro/nano) read back with their header and times', () => {
  const records: Rec[] = [
    { secs: 1_700_000_000, frac: 0, data: Buffer.from([0x45, 1, 2, 3]) },
    { secs: 1_700_000_001, frac: 999_999, data: Buffer.alloc(0) },
    { secs: 4_000_000_000, frac: 123_456, data: Buffer.alloc(1500, 0x77) },
  ];
  for (const bigEndian of [false, true]) {
    for (const nanos of [false, true]) {
      const path = file(`v-${bigEndian}-${nanos}.pcap`, handMadePcap({ bigEndian, nanos, linkType: 228, snaplen: 9000, records }));
      const r = new PcapReader(path);
      assert.deepEqual(r.header, { bigEndian, nanos, snaplen: 9000, linkType: 228 });
      const got = readAll(r);
      r.close();
      assert.equal(got.length, 3);
      got.forEach((g, i) => {
        assert.deepEqual(g.data, records[i].data);
        assert.deepEqual([g.sec, g.nsec], [records[i].secs, records[i].frac * (nanos ? 1 : 1000)]);
      });
      assert.equal(r.truncatedTail, false);
    }
  }
});

test('the link type field drops the FCS bits above the low 28', () => {
  const path = file('fcs.pcap', handMadePcap({ bigEndian: false, nanos: false, linkType: 0x10000000 | 1, records: [] }));
  const r = new PcapReader(path);
  assert.equal(r.header.linkType, 1);
  assert.equal(r.readBatch(10, () => assert.fail('no records')), 0);
  r.close();
});

test('readBatch delivers at most `max` per call and in order, across chunk refills; views stay valid', () =>
  withSeed((rng) => {
    // More than 1 MiB so the reader refills its chunk several times, records straddling the boundaries.
    const packets = Array.from({ length: 3000 }, () => rng.bytes(rng.int(1500)));
    const path = join(dir, 'many.pcap');
    writePcap(path, packets);
    const r = new PcapReader(path);
    const got: Buffer[] = [];
    let calls = 0;
    for (;;) {
      const n = r.readBatch(97, (data) => got.push(data));
      assert.ok(n <= 97);
      if (n === 0) break;
      calls++;
    }
    r.close();
    assert.equal(calls, Math.ceil(3000 / 97));
    // Compared only now: views handed out earlier must not have been overwritten by later reads.
    assert.equal(got.length, packets.length);
    got.forEach((g, i) => assert.deepEqual(g, packets[i], `packet ${i}`));
  }));

test('a capture cut inside its last record: the whole records are read and truncatedTail is set', () => {
  const packets = [Buffer.alloc(100, 1), Buffer.alloc(200, 2), Buffer.alloc(300, 3)];
  const full = join(dir, 'whole.pcap');
  writePcap(full, packets);
  const whole = new PcapReader(full);
  assert.equal(readAll(whole).length, 3);
  assert.equal(whole.truncatedTail, false);
  whole.close();
  const bytes = handMadePcap({ bigEndian: false, nanos: false, records: packets.map((data, i) => ({ secs: i, frac: 0, data })) });
  // Cut in the last record's data, in its header, and right after the previous record plus one byte.
  const lastStart = 24 + 116 + 216;
  for (const cut of [bytes.length - 1, lastStart + 20, lastStart + 8, lastStart + 1]) {
    const r = new PcapReader(file(`cut-${cut}.pcap`, bytes.subarray(0, cut)));
    const got = readAll(r, 1);
    r.close();
    assert.deepEqual(
      got.map((g) => g.data),
      packets.slice(0, 2),
      `cut at ${cut}`,
    );
    assert.equal(r.truncatedTail, true, `cut at ${cut}`);
  }
  const headerOnly = new PcapReader(file('header-only.pcap', bytes.subarray(0, 24)));
  assert.equal(readAll(headerOnly).length, 0);
  assert.equal(headerOnly.truncatedTail, false);
  headerOnly.close();
});

test('a record claiming an absurd length is reported as corrupt', () => {
  const bytes = handMadePcap({ bigEndian: false, nanos: false, records: [{ secs: 1, frac: 0, data: Buffer.alloc(4) }] });
  bytes.writeUInt32LE(0x7fffffff, 24 + 8);
  const r = new PcapReader(file('corrupt.pcap', bytes));
  assert.throws(() => r.readBatch(10, () => {}), (err: Error) => err instanceof TunpipeError && /corrupt record/.test(err.message));
  r.close();
});

test('files that are not classic pcap get a clear TunpipeError', () => {
  const pcapng = Buffer.alloc(28);
  pcapng.writeUInt32LE(0x0a0d0d0a, 0);
  pcapng.writeUInt32LE(28, 4);
  pcapng.writeUInt32LE(0x1a2b3c4d, 8);
  const cases: Array<[string, Buffer | null, RegExp]> = [
    ['a.pcapng', pcapng, /is a pcapng file; PcapReader reads classic pcap: open it with openCaptureReader\(\), which reads both/],
    ['text.pcap', Buffer.from('this is certainly not a capture file\n'), /is not a pcap file \(magic 0x73696874\); expected a capture written by tcpdump -w, dumpcap or tunpipe/],
    ['short.pcap', Buffer.from('hello'), /is not a pcap file \(shorter than a pcap header\)/],
    ['short-magic.pcap', Buffer.from([0xd4, 0xc3, 0xb2, 0xa1, 2, 0]), /shorter than a pcap header/],
    ['empty.pcap', Buffer.alloc(0), /is empty, not a pcap file/],
    ['missing.pcap', null, /cannot read .*missing\.pcap: no such file/],
  ];
  for (const [name, bytes, message] of cases) {
    const path = bytes ? file(name, bytes) : join(dir, name);
    assert.throws(
      () => new PcapReader(path),
      (err: Error) => {
        assert.ok(err instanceof TunpipeError, `${name}: ${err}`);
        assert.match(err.message, message, name);
        return true;
      },
    );
  }
});

test('a directory given as the capture to read is reported as such, as a TunpipeError', () => {
  assert.throws(
    () => new PcapReader(dir),
    (err: Error) => {
      assert.ok(err instanceof TunpipeError, `got ${err.constructor.name}: ${err.message}`);
      assert.match(err.message, /is a directory/);
      return true;
    },
  );
});

test('reused chunks, read ahead on the threadpool or at once: every packet as written, small and large, across MiB boundaries', () =>
  withSeed(async (rng) => {
    // Sizes that straddle the chunk boundaries: small ones, ones larger than the room kept for a chunk's
    // unread end (64 KiB) and the scratch a packet is copied to, and some in between.
    const sizes = Array.from({ length: 900 }, (_, i) => (i % 97 === 0 ? 65_536 + rng.int(70_000) : i % 13 === 0 ? 20_000 + rng.int(40_000) : rng.int(1500)));
    const packets = sizes.map((n) => rng.bytes(n));
    const path = join(dir, 'reused.pcap');
    writePcap(path, packets);
    // With turns of the event loop between batches, reads ahead land in time; without, each refill reads
    // at once and the read ahead in flight is passed over.
    for (const turns of [true, false]) {
      const r = new PcapReader(path, { reuseChunks: true });
      let i = 0;
      for (;;) {
        // Each packet is valid until the next is read: compare it now.
        const n = r.readBatch(37, (data) => {
          assert.deepEqual(data, packets[i], `packet ${i} (turns ${turns})`);
          i++;
        });
        if (n === 0) break;
        if (turns) await new Promise((resolve) => setImmediate(resolve));
      }
      r.close();
      assert.equal(i, packets.length, `every packet (turns ${turns})`);
      assert.equal(r.truncatedTail, false);
    }
  }));
