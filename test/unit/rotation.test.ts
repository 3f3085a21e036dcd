/**
 * Rotation and limits of the pcap stage (src/pcap/rotation.ts): size, time (on the file's clock, aligned to
 * the period, with a quiet period rotated by tick()), files (a ring), limit, each with the exact set of
 * files left and every file read on its own by tcpdump or tshark.
 */
process.env.TZ = 'UTC';
import { after, beforeEach, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Packet } from '../../src/packet/packet.js';
import type { StageInstance } from '../../src/pipeline/stage.js';
import type { StandaloneContext } from '../../src/pipeline/standalone.js';
import { echoRequest, readPcapRecords } from '../helpers/packets.js';
import { tcpdumpRead } from '../helpers/pcap-tools.js';
import { stageAlone, tsharkFields } from '../helpers/capture-tools.js';

let dir = '';
const dirs: string[] = [];
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'tunpipe-unit-rotation-'));
  dirs.push(dir);
});
after(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

/** 2023-11-15 00:00:00 UTC: a whole day, so whole hours and minutes too. */
const T0 = 1_700_006_400;

/** Feeds one packet at `t` seconds after T0 the way a driver does offline: the clock first, then the stage. */
function feed(stage: StageInstance, ctx: StandaloneContext, t: number, seq: number): void {
  const sec = T0 + Math.floor(t);
  const nsec = Math.round((t - Math.floor(t)) * 1e9);
  ctx.clock.advanceTo(sec, nsec);
  const p = new Packet(echoRequest({ seq }), sec, nsec);
  assert.equal(stage.process(p), p, 'the packet passes');
}

const files = () => readdirSync(dir).sort();
const seqs = (file: string) => tcpdumpRead(file).map((l) => Number(/seq (\d+)/.exec(l)![1]));

test('size=2kB files=3: exactly the three newest files are left, each at most 2000 bytes, each read alone', async () => {
  const { stage, ctx } = await stageAlone(`pcap ${join(dir, 'cap.pcap')} size=2kB files=3`);
  // Records of 16 + 81 bytes after a 24-byte header: 20 per file.
  for (let i = 0; i < 100; i++) feed(stage, ctx, 0, i);
  await stage.close!();
  assert.deepEqual(files(), ['cap-00003.pcap', 'cap-00004.pcap', 'cap-00005.pcap']);
  for (const [k, f] of files().entries()) {
    assert.ok(statSync(join(dir, f)).size <= 2000);
    assert.equal(statSync(join(dir, f)).size, 24 + 20 * 97);
    assert.deepEqual(seqs(join(dir, f)), Array.from({ length: 20 }, (_, i) => 40 + 20 * k + i));
  }
  assert.match(stage.report!(), /^100 packets written to 5 files, the newest 3 kept \(.*cap-00003\.pcap, .*cap-00004\.pcap, .*cap-00005\.pcap\)$/);
});

test('pcapng size rotation: each file is a section of its own with its interface, none larger than size=', async () => {
  const { stage, ctx } = await stageAlone(`pcap ${join(dir, 'ring.pcapng')} size=1500`, { input: { name: 'tun3', linkType: 101, kind: 'device' } });
  for (let i = 0; i < 30; i++) feed(stage, ctx, i / 10, i);
  await stage.close!();
  const names = files();
  assert.ok(names.length >= 3, names.join());
  assert.equal(names[0], 'ring-00001.pcapng');
  let all: string[] = [];
  for (const f of names) {
    assert.ok(statSync(join(dir, f)).size <= 1500, `${f}: ${statSync(join(dir, f)).size}`);
    const rows = tsharkFields(join(dir, f), ['frame.interface_name', 'icmp.seq']);
    assert.ok(rows.every(([n]) => n === 'tun3'));
    all = all.concat(rows.map(([, s]) => s));
  }
  assert.deepEqual(all, Array.from({ length: 30 }, (_, i) => String(i)));
});

test('time=10s on the file clock: one file per period, aligned to the clock, named by strftime at the period start', async () => {
  const { stage, ctx } = await stageAlone(`pcap '${join(dir, 'cap-%Y%m%d-%H%M%S.pcap')}' time=10s`);
  // Created at start-up with the wall clock's name; the first packet renames it after its own period.
  assert.equal(files().length, 1);
  const times = [3, 5.5, 9.999, 10, 25, 29.9, 31];
  times.forEach((t, i) => feed(stage, ctx, t, i));
  await stage.close!();
  assert.deepEqual(files(), ['cap-20231115-000000.pcap', 'cap-20231115-000010.pcap', 'cap-20231115-000020.pcap', 'cap-20231115-000030.pcap']);
  assert.deepEqual(files().map((f) => seqs(join(dir, f))), [[0, 1, 2], [3], [4, 5], [6]]);
});

test('a quiet period still rotates: nextDue() is the next boundary on the ctx.now() scale, tick() opens its file once', async () => {
  const { stage, ctx } = await stageAlone(`pcap ${join(dir, 'q.pcap')} time=1s`);
  feed(stage, ctx, 0.5, 0);
  const due = stage.nextDue!();
  assert.equal(due, ctx.clock.timeOf({ sec: T0 + 1, nsec: 0 }));
  stage.tick!(due - 1);
  assert.deepEqual(files(), ['q-00001.pcap']);
  // 2.7 s of silence: the driver wakes at the due time, or later; one file for the period it is in.
  ctx.clock.advanceTo(T0 + 3, 200_000_000);
  stage.tick!(ctx.now());
  assert.deepEqual(files(), ['q-00001.pcap', 'q-00002.pcap']);
  assert.equal(stage.nextDue!(), ctx.clock.timeOf({ sec: T0 + 4, nsec: 0 }));
  stage.tick!(Infinity);
  feed(stage, ctx, 3.5, 1);
  await stage.close!();
  assert.deepEqual(files(), ['q-00001.pcap', 'q-00002.pcap']);
  assert.deepEqual(seqs(join(dir, 'q-00001.pcap')), [0]);
  assert.deepEqual(seqs(join(dir, 'q-00002.pcap')), [1]);
});

test('size and time count apart: a size rotation does not move the next time boundary', async () => {
  const { stage, ctx } = await stageAlone(`pcap ${join(dir, 'st.pcap')} size=1024 time=10s`);
  // 10 packets per file by size (24 + 10 * 97 = 994).
  for (let i = 0; i < 15; i++) feed(stage, ctx, 5 + i * 0.1, i);
  feed(stage, ctx, 10, 15);
  await stage.close!();
  assert.deepEqual(files(), ['st-00001.pcap', 'st-00002.pcap', 'st-00003.pcap']);
  assert.deepEqual(files().map((f) => seqs(join(dir, f))), [[0, 1, 2, 3, 4, 5, 6, 7, 8, 9], [10, 11, 12, 13, 14], [15]]);
});

test('limit=1kB: capturing stops before the file passes 1000 bytes; packets still pass; the report says so', async () => {
  const file = join(dir, 'lim.pcap');
  const { stage, ctx } = await stageAlone(`pcap ${file} limit=1kB`);
  for (let i = 0; i < 30; i++) feed(stage, ctx, i, i);
  await stage.close!();
  const size = statSync(file).size;
  assert.equal(size, 24 + 10 * 97);
  assert.equal(readPcapRecords(readFileSync(file)).packets.length, 10);
  assert.match(stage.report!(), /^10 packets written to .*lim\.pcap; capture stopped at limit=1000 bytes, the pipeline went on$/);
});

test('a packet larger than size= alone is cut to fit (its length recorded); the file stays within size=', async () => {
  const file = join(dir, 'big.pcap');
  const { stage, ctx } = await stageAlone(`pcap ${file} size=1KiB`);
  ctx.clock.advanceTo(T0, 0);
  stage.process(new Packet(echoRequest({ payload: Buffer.alloc(3000, 7) }), T0, 0));
  await stage.close!();
  assert.equal(statSync(file.replace('big.pcap', 'big-00001.pcap')).size, 1024);
  const f = readFileSync(join(dir, 'big-00001.pcap'));
  assert.deepEqual([f.readUInt32LE(24 + 8), f.readUInt32LE(24 + 12)], [1024 - 24 - 16, 3028]);
  assert.match(stage.report!(), /1 cut to fit size=1 KiB/);
});

test('arguments that cannot work are refused before any file is made', async () => {
  const cases: Array<[string, RegExp]> = [
    [`pcap ${join(dir, 'a.pcap')} files=3`, /files=N keeps the last N files of a rotation: add size= or time=/],
    [`pcap ${join(dir, 'a.pcap')} size=10kB append=true`, /append=true cannot be combined with size= or time=/],
    [`pcap '${join(dir, 'a-%Q.pcap')}' time=1h`, /unknown conversion %Q/],
    ['pcap - size=10kB', /need a file name, not stdout/],
    [`pcap ${join(dir, 'a.pcap')} size=100`, /pcap size: 100 is out of range 1024B\.\.inf/],
    [`pcap ${join(dir, 'a.pcap')} time=1x`, /expected a duration/],
  ];
  for (const [text, re] of cases) await assert.rejects(stageAlone(text), re, text);
  assert.deepEqual(files(), []);
});

test('on the wall clock (a device): the first packet of the start-up period keeps the first file and its name', async () => {
  const { stage, ctx } = await stageAlone(`pcap '${join(dir, 'w-%s.pcap')}' time=1h`);
  const now = Date.now() / 1000;
  const sec = Math.floor(now);
  ctx.clock.advanceTo(sec, 0);
  stage.process(new Packet(echoRequest({ seq: 1 }), sec, 0));
  await stage.close!();
  assert.deepEqual(files(), [`w-${Math.floor(sec / 3600) * 3600}.pcap`]);
  assert.deepEqual(seqs(join(dir, files()[0])), [1]);
});
