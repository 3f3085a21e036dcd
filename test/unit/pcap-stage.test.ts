/** transforms/pcap.ts: the tee into a capture file, read back with the independent helper reader. */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pipe } from 'it-pipe';
import { Packet } from '../../src/packet/packet.js';
import { pcapTap } from '../../src/library/stages.js';
import { resolvePipeline } from '../../src/pipeline/resolve.js';
import { Engine } from '../../src/pipeline/engine.js';
import { echoRequest, readPcapRecords } from '../helpers/packets.js';

let dir = '';
before(() => {
  dir = mkdtempSync(join(tmpdir(), 'tunpipe-unit-pcap-stage-'));
});
after(() => {
  if (dir) rmSync(dir, { recursive: true, force: true });
});

const T0 = 1_700_000_000;

function packets(n: number): Packet[] {
  return Array.from({ length: n }, (_, i) => new Packet(echoRequest({ seq: i, payload: Buffer.alloc(i * 3, i) }), T0 + i, 250_000_000));
}

async function collect(source: AsyncIterable<Packet>): Promise<Packet[]> {
  const out: Packet[] = [];
  for await (const p of source) out.push(p);
  return out;
}

/** The timestamp fields of every record in a little-endian pcap file. */
function recordTimes(file: Buffer): Array<[number, number, number, number]> {
  const out: Array<[number, number, number, number]> = [];
  for (let o = 24; o + 16 <= file.length; o += 16 + file.readUInt32LE(o + 8)) {
    out.push([file.readUInt32LE(o), file.readUInt32LE(o + 4), file.readUInt32LE(o + 8), file.readUInt32LE(o + 12)]);
  }
  return out;
}

test('every packet is written whole and passed on unchanged; link type 101, microseconds, mode 0600', async () => {
  const file = join(dir, 'tee.pcap');
  const input = packets(5);
  const copies = input.map((p) => Buffer.from(p.data));
  const tap = pcapTap(file);
  const out = await pipe(input, tap, collect);
  assert.deepEqual(
    out.map((p) => p.data),
    copies,
  );
  assert.equal(tap.lastStats[0].packetsIn, 5);
  assert.equal(tap.lastStats[0].packetsOut, 5);
  const f = readFileSync(file);
  const { magic, linkType, packets: recs } = readPcapRecords(f);
  assert.equal(magic, 0xa1b2c3d4);
  assert.equal(linkType, 101);
  assert.equal(f.readUInt16LE(4), 2, 'version 2.4');
  assert.equal(f.readUInt16LE(6), 4);
  assert.equal(f.readUInt32LE(16), 262144, 'snaplen');
  assert.deepEqual(recs, copies);
  assert.deepEqual(
    recordTimes(f).map(([s, us]) => [s, us]),
    copies.map((_, i) => [1_700_000_000 + i, 250_000]),
  );
  assert.equal(statSync(file).mode & 0o777, 0o600);
});

test('nanos=true: nanosecond magic and timestamps', async () => {
  const file = join(dir, 'nanos.pcap');
  await pipe(packets(3), pcapTap(file, { nanos: true }), collect);
  const f = readFileSync(file);
  assert.equal(f.readUInt32LE(0), 0xa1b23c4d);
  assert.deepEqual(
    recordTimes(f).map(([s, ns]) => [s, ns]),
    [0, 1, 2].map((i) => [1_700_000_000 + i, 250_000_000]),
  );
});

test('snaplen cuts what is recorded (original length kept) but not what passes on', async () => {
  const file = join(dir, 'snap.pcap');
  const input = packets(4);
  const lengths = input.map((p) => p.data.length);
  const out = await pipe(input, pcapTap(file, { snaplen: 30 }), collect);
  assert.deepEqual(
    out.map((p) => p.data.length),
    lengths,
  );
  const f = readFileSync(file);
  assert.equal(f.readUInt32LE(16), 30);
  const times = recordTimes(f);
  assert.deepEqual(
    times.map(([, , cap, orig]) => [cap, orig]),
    lengths.map((l) => [Math.min(30, l), l]),
  );
  const recs = readPcapRecords(f).packets;
  recs.forEach((r, i) => assert.deepEqual(r, out[i].data.subarray(0, 30)));
});

test('append=true adds records after the existing ones without a second header', async () => {
  const file = join(dir, 'append.pcap');
  await pipe(packets(2), pcapTap(file), collect);
  await pipe(packets(3), pcapTap(file, { append: true }), collect);
  const { packets: recs } = readPcapRecords(readFileSync(file));
  assert.equal(recs.length, 5);
  assert.deepEqual(recs[2], packets(1)[0].data);
  // Without append, the file is replaced.
  await pipe(packets(1), pcapTap(file), collect);
  assert.equal(readPcapRecords(readFileSync(file)).packets.length, 1);
});

test('a packet without a timestamp is stamped with the wall clock', async () => {
  const file = join(dir, 'now.pcap');
  const before = Math.floor(Date.now() / 1000);
  await pipe([echoRequest()], pcapTap(file), collect);
  const afterSecs = Math.ceil(Date.now() / 1000);
  const [[secs]] = recordTimes(readFileSync(file));
  assert.ok(secs >= before && secs <= afterSecs, `${secs} not in ${before}..${afterSecs}`);
});

test('pcap in the fused engine: written by the batch flush, reported on close', async () => {
  const file = join(dir, 'engine.pcap');
  const stages = await resolvePipeline(`parse | pcap ${file} snaplen=64`);
  const sunk: Packet[] = [];
  const engine = new Engine(stages, { sink: (p) => sunk.push(p), warn: () => {} });
  for (const p of packets(4)) engine.push(p);
  engine.endBatch();
  assert.equal(readPcapRecords(readFileSync(file)).packets.length, 4, 'on disk after the batch');
  assert.deepEqual(await engine.close(), []);
  assert.equal(sunk.length, 4);
  assert.equal(engine.slots[1].instance.report?.(), `4 packets written to ${file}`);
});

test('a capture file that cannot be created fails at creation with the reason', async () => {
  await assert.rejects(
    async () => pipe(packets(1), pcapTap(join(dir, 'no-such-dir', 'x.pcap')), collect),
    /cannot create capture file .*its directory does not exist/,
  );
});

test('mode=644 makes a capture others may read; the default stays 0600', async () => {
  const shared = join(dir, 'shared.pcap');
  const own = join(dir, 'own.pcap');
  const old = process.umask(0o022);
  try {
    await pipe(packets(1), pcapTap(shared, { mode: '644' }), collect);
    await pipe(packets(1), pcapTap(own), collect);
  } finally {
    process.umask(old);
  }
  assert.equal(statSync(shared).mode & 0o777, 0o644);
  assert.equal(statSync(own).mode & 0o777, 0o600);
});
