/** src/pcap/writer.ts: round trip through the reader, buffering, timestamps, and whole records on failure. */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PcapWriter } from '../../src/pcap/writer.js';
import { PcapReader } from '../../src/pcap/reader.js';
import { TunpipeError } from '../../src/errors.js';
import { readPcapRecords } from '../helpers/packets.js';
import { runWithFileLimit } from '../helpers/cli.js';
import { withSeed } from './seeded-random.js';

let dir = '';
before(() => {
  dir = mkdtempSync(join(tmpdir(), 'tunpipe-unit-pcap-writer-'));
});
after(() => {
  if (dir) rmSync(dir, { recursive: true, force: true });
});

test('round trip, microseconds and nanoseconds: the reader gets back the bytes and times', () =>
  withSeed((rng) => {
    for (const nanos of [false, true]) {
      const path = join(dir, `rt-${nanos}.pcap`);
      const w = new PcapWriter(path, { nanos, linkType: 1, snaplen: 4000 });
      const packets = Array.from({ length: 50 }, () => rng.bytes(rng.int(2000)));
      const times = packets.map((_, i): [number, number] => [1_700_000_000 + i, (i * 1_234_567_891) % 1_000_000_000]);
      packets.forEach((p, i) => w.write(p, times[i][0], times[i][1]));
      // Counted once written to the file, not when buffered.
      assert.equal(w.packets, 0);
      w.close();
      assert.equal(w.packets, 50);
      const r = new PcapReader(path);
      assert.deepEqual(r.header, { bigEndian: false, nanos, snaplen: 4000, linkType: 1 });
      const got: Array<[Buffer, number, number]> = [];
      while (r.readBatch(7, (d, s, ns) => got.push([Buffer.from(d), s, ns])) > 0);
      r.close();
      assert.deepEqual(
        got.map(([d]) => d),
        packets,
      );
      // Nanosecond files keep the time exactly; microsecond files truncate to the microsecond.
      got.forEach(([, s, ns], i) => assert.deepEqual([s, ns], [times[i][0], nanos ? times[i][1] : Math.floor(times[i][1] / 1000) * 1000], `time ${i}`));
      const f = readFileSync(path);
      assert.equal(f.readUInt32LE(0), nanos ? 0xa1b23c4d : 0xa1b2c3d4);
      assert.equal(f.readUInt32LE(24 + 4), 0);
      assert.equal(f.readUInt32LE(24 + 16 + packets[0].length + 4), nanos ? 234_567_891 : 234_567);
    }
  }));

test('microsecond timestamps survive a read and a write: record fields are written back exactly', () => {
  // What an offline run does: the reader gives (secs, nanoseconds), the writer turns it back into microseconds.
  const path = join(dir, 'us.pcap');
  const w = new PcapWriter(path);
  const fields: Array<[number, number]> = [];
  for (let i = 0; i < 500; i++) fields.push([1_700_000_000 + i, (i * 7919) % 1_000_000]);
  for (const [s, us] of fields) w.write(Buffer.from([0x45]), s, us * 1000);
  w.close();
  const f = readFileSync(path);
  const wrong: string[] = [];
  fields.forEach(([s, us], i) => {
    const o = 24 + i * 17;
    const got: [number, number] = [f.readUInt32LE(o), f.readUInt32LE(o + 4)];
    if (got[0] !== s || got[1] !== us) wrong.push(`${s}.${us} -> ${got[0]}.${got[1]}`);
  });
  assert.deepEqual(wrong.slice(0, 5), [], `${wrong.length} of 500 timestamps changed`);
});

test('a tiny bufferSize and packets larger than the buffer still give whole, ordered records', () =>
  withSeed((rng) => {
    const path = join(dir, 'tiny.pcap');
    const w = new PcapWriter(path, { bufferSize: 1 });
    const packets = Array.from({ length: 400 }, () => rng.bytes(rng.int(1500)));
    packets.splice(100, 0, rng.bytes(100_000), rng.bytes(70_000));
    packets.push(rng.bytes(200_000));
    packets.forEach((p, i) => {
      w.write(p, 1_700_000_000, i);
      if (i % 50 === 0) w.flush();
    });
    w.close();
    assert.deepEqual(readPcapRecords(readFileSync(path)).packets, packets);
  }));

test('snaplen cuts records; header and record lengths say so', () => {
  const path = join(dir, 'snap.pcap');
  const w = new PcapWriter(path, { snaplen: 10 });
  w.write(Buffer.alloc(25, 1), 0, 0);
  w.write(Buffer.alloc(10, 2), 0, 0);
  w.write(Buffer.alloc(3, 3), 0, 0);
  w.close();
  const f = readFileSync(path);
  assert.equal(f.readUInt32LE(16), 10);
  assert.deepEqual(readPcapRecords(f).packets, [Buffer.alloc(10, 1), Buffer.alloc(10, 2), Buffer.alloc(3, 3)]);
  assert.deepEqual([f.readUInt32LE(24 + 8), f.readUInt32LE(24 + 12)], [10, 25]);
});

test('append adds to an existing capture; a new file is mode 0600; close twice is harmless', () => {
  const path = join(dir, 'append.pcap');
  const a = new PcapWriter(path);
  a.write(Buffer.from([1]), 0, 0);
  a.close();
  a.close();
  assert.equal(statSync(path).mode & 0o777, 0o600);
  const b = new PcapWriter(path, { append: true });
  b.write(Buffer.from([2]), 0, 0);
  b.close();
  assert.deepEqual(readPcapRecords(readFileSync(path)).packets, [Buffer.from([1]), Buffer.from([2])]);
  const fresh = join(dir, 'append-new.pcap');
  const c = new PcapWriter(fresh, { append: true });
  c.write(Buffer.from([3]), 0, 0);
  c.close();
  assert.deepEqual(readPcapRecords(readFileSync(fresh)), { linkType: 101, magic: 0xa1b2c3d4, packets: [Buffer.from([3])], trailing: 0 });
});

test('errors are TunpipeErrors that say why: missing directory, a directory, a full disk', () => {
  assert.throws(() => new PcapWriter(join(dir, 'nope', 'x.pcap')), (e: Error) => e instanceof TunpipeError && /its directory does not exist/.test(e.message) && (e as TunpipeError).code === 'ENOENT');
  assert.throws(() => new PcapWriter(dir), (e: Error) => e instanceof TunpipeError && /it is a directory/.test(e.message));
  // /dev/full: every write fails with ENOSPC, the global header already.
  assert.throws(() => new PcapWriter('/dev/full'), (e: Error) => e instanceof TunpipeError && /the disk is full \(ENOSPC\)/.test(e.message) && (e as TunpipeError).code === 'ENOSPC');
});

test('a write that fails part way leaves only whole records, and the writer refuses more', () => {
  // A child with a 2 KiB file size limit (ulimit -f 2): the write that crosses it is cut short, then EFBIG.
  const script = join(dir, 'efbig.mjs');
  const out = join(dir, 'efbig.pcap');
  const writerUrl = new URL('../../src/pcap/writer.js', import.meta.url).href;
  const result = runWithFileLimit(
    script,
    `import { PcapWriter } from ${JSON.stringify(writerUrl)};
const w = new PcapWriter(${JSON.stringify(out)});
let n = 0, msg = '';
try { for (; n < 100; n++) w.write(Buffer.alloc(100 + (n % 7), n), 1_700_000_000); w.flush(); } catch (e) { msg = e.message; }
let again = '';
try { w.write(Buffer.alloc(1), 0); } catch (e) { again = e.message; }
try { w.close(); } catch {}
console.log(JSON.stringify({ msg, again, broken: w.broken }));
`,
    2,
  );
  assert.match(result.msg, /EFBIG|too large/);
  assert.equal(result.again, result.msg, 'the same error again after the failure');
  assert.equal(result.broken, true);
  const f = readFileSync(out);
  assert.ok(f.length <= 2048);
  const n = wholeRecords(f);
  assert.ok(n > 5, `${n} records kept`);
});

test('write-behind: buffers written on the threadpool, also behind a write in flight, give the same file as writes at once', async () =>
  withSeed(async (rng) => {
    const packets = Array.from({ length: 3000 }, () => rng.bytes(1 + rng.int(1500)));
    const plain = join(dir, 'behind-plain.pcap');
    const behind = join(dir, 'behind.pcap');
    const a = new PcapWriter(plain, { bufferSize: 1 << 16 });
    packets.forEach((p, i) => a.write(p, 1_700_000_000 + i, i * 1000));
    a.close();
    const b = new PcapWriter(behind, { bufferSize: 1 << 16, background: true });
    let started = 0;
    for (let i = 0; i < packets.length; i++) {
      b.write(packets[i], 1_700_000_000 + i, i * 1000);
      // Runs without a turn of the event loop fill buffers while one is in flight (written behind it);
      // the turns in between let flights land.
      if (i % 700 === 699) await new Promise((r) => setImmediate(r));
      if (i % 50 === 0 && b.writeBehind(1 << 15)) started++;
    }
    await b.settle();
    b.close();
    assert.ok(started > 0, 'writes went to the threadpool');
    assert.deepEqual(readFileSync(behind), readFileSync(plain));
    assert.equal(b.packets, packets.length);
  }));

test('write-behind: a failure part way leaves only whole records, in flight or behind it; settle() raises it', () => {
  const script = join(dir, 'efbig-behind.mjs');
  const out = join(dir, 'efbig-behind.pcap');
  const writerUrl = new URL('../../src/pcap/writer.js', import.meta.url).href;
  // 200 KiB: several 64 KiB buffers fit, the next crosses the limit.
  const result = runWithFileLimit(
    script,
    `import { PcapWriter } from ${JSON.stringify(writerUrl)};
const w = new PcapWriter(${JSON.stringify(out)}, { bufferSize: 1 << 16, background: true });
let msg = '';
try {
  for (let n = 0; n < 20000; n++) {
    w.write(Buffer.alloc(100 + (n % 7), n), 1_700_000_000);
    if (n % 300 === 0) { w.writeBehind(1 << 14); await new Promise((r) => setImmediate(r)); }
  }
  await w.settle();
  w.flush();
} catch (e) { msg = e.message; }
try { await w.settle(); } catch (e) { msg ||= e.message; }
try { w.close(); } catch {}
console.log(JSON.stringify({ msg, broken: w.broken, packets: w.packets }));
`,
    200,
  );
  assert.match(result.msg, /EFBIG|too large/);
  assert.equal(result.broken, true);
  const f = readFileSync(out);
  assert.ok(f.length <= 200 * 1024);
  const n = wholeRecords(f);
  assert.ok(n > 1000, `${n} records kept`);
  assert.equal(result.packets, n, 'the count is what the file holds');
});

/**
 * Walks a pcap file of the records these tests write (caplen 100 + n % 7): asserts that it ends exactly at
 * a record boundary, and returns how many records it holds.
 */
function wholeRecords(f: Buffer): number {
  let o = 24;
  let n = 0;
  while (o < f.length) {
    assert.ok(o + 16 <= f.length, 'a record header cut short');
    const cap = f.readUInt32LE(o + 8);
    assert.equal(cap, 100 + (n % 7));
    o += 16 + cap;
    n++;
  }
  assert.equal(o, f.length, 'the file ends on a whole record');
  return n;
}
