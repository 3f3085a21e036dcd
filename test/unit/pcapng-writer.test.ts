/**
 * pcapng written by tunpipe (src/pcap/pcapng-writer.ts through the pcap stage), judged by tshark, capinfos
 * and tcpdump: interfaces, directions, µs and ns times, comments, whole blocks after a failed write or a
 * SIGKILL, and append after a cut file (classic and pcapng).
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, statSync, truncateSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Packet } from '../../src/packet/packet.js';
import { PcapngWriter } from '../../src/pcap/pcapng-writer.js';
import { PcapWriter } from '../../src/pcap/writer.js';
import { openCaptureReader } from '../../src/pcap/open-reader.js';
import { TunpipeError } from '../../src/errors.js';
import { echoRequest, readPcapRecords } from '../helpers/packets.js';
import { tcpdumpRead } from '../helpers/pcap-tools.js';
import { runWithFileLimit } from '../helpers/cli.js';
import { capinfos, stageAlone, tsharkFields } from '../helpers/capture-tools.js';

let dir = '';
before(() => {
  dir = mkdtempSync(join(tmpdir(), 'tunpipe-unit-pcapng-'));
});
after(() => {
  if (dir) rmSync(dir, { recursive: true, force: true });
});

const T0 = 1_700_000_000;
const tun7 = { name: 'tun7', linkType: 101, kind: 'device' as const };
const tun8 = { name: 'tun8', linkType: 101, kind: 'device' as const };

function packets(n: number, nsec = 123_456_789): Packet[] {
  return Array.from({ length: n }, (_, i) => new Packet(echoRequest({ seq: i }), T0 + i, nsec + i));
}

/** Block types and lengths of a little-endian pcapng file; throws where a block does not add up. */
function blocks(f: Buffer): Array<[number, number]> {
  const out: Array<[number, number]> = [];
  for (let o = 0; o < f.length; ) {
    const len = f.readUInt32LE(o + 4);
    assert.ok(len >= 12 && o + len <= f.length, `block at ${o} of ${len} bytes inside a ${f.length}-byte file`);
    assert.equal(f.readUInt32LE(o + len - 4), len, `trailing length of the block at ${o}`);
    out.push([f.readUInt32LE(o), len]);
    o += len;
  }
  return out;
}

test('the pcap stage writes pcapng for a .pcapng name: tshark sees the interface, inbound, µs times; capinfos and tcpdump read it', async () => {
  const file = join(dir, 'in.pcapng');
  const { stage } = await stageAlone(`pcap ${file}`, { input: tun7, direction: 'in' });
  for (const p of packets(4)) assert.ok(stage.process(p) instanceof Packet);
  await stage.close!();
  const rows = tsharkFields(file, ['frame.interface_name', 'frame.packet_flags_direction', 'frame.time_epoch', 'icmp.seq']);
  assert.deepEqual(
    rows.map(([name, dir, t, seq]) => [name, Number(dir), t, seq]),
    [0, 1, 2, 3].map((i) => ['tun7', 1, `${T0 + i}.123456000`, String(i)]),
  );
  assert.deepEqual(blocks(readFileSync(file)).map(([t]) => t), [0x0a0d0d0a, 1, 6, 6, 6, 6]);
  const info = capinfos(file);
  if (info) {
    assert.equal(info.status, 0, info.stderr);
    assert.match(info.info.get('File type') ?? '', /pcapng/);
    assert.equal(info.info.get('Number of packets'), '4');
    assert.match(info.info.get('File encapsulation') ?? '', /Raw IP|rawip/);
  }
  const lines = tcpdumpRead(file);
  assert.equal(lines.length, 4);
  assert.match(lines[0], /IP 198\.18\.0\.2 > 198\.18\.0\.1: ICMP echo request, id 4660, seq 0/);
});

test('nanos=true: if_tsresol 9 and nanosecond times exact in tshark, capinfos and tcpdump --nano', async () => {
  const file = join(dir, 'ns.pcapng');
  const { stage } = await stageAlone(`pcap ${file} nanos=true`, { input: tun7 });
  for (const p of packets(3, 999_999_997)) stage.process(p);
  await stage.close!();
  assert.deepEqual(
    tsharkFields(file, ['frame.time_epoch']).map(([t]) => t),
    ['1700000000.999999997', '1700000001.999999998', '1700000002.999999999'],
  );
  const info = capinfos(file);
  if (info) assert.match(info.info.get('File timestamp precision') ?? '', /nanoseconds \(9\)/);
  assert.deepEqual(
    tcpdumpRead(file, ['-tt', '--nano']).map((l) => l.split(' ')[0]),
    ['1700000000.999999997', '1700000001.999999998', '1700000002.999999999'],
  );
});

test('after a stage that turned packets around: outbound, on the output port (or the input port without one)', async () => {
  const a = join(dir, 'out.pcapng');
  const s1 = await stageAlone(`pcap ${a}`, { input: tun7, output: tun8, direction: 'out' });
  s1.stage.process(packets(1)[0]);
  await s1.stage.close!();
  assert.deepEqual(tsharkFields(a, ['frame.interface_name', 'frame.packet_flags_direction']).map(([n, d]) => [n, Number(d)]), [['tun8', 2]]);
  const b = join(dir, 'out-same.pcapng');
  const s2 = await stageAlone(`pcap ${b}`, { input: tun7, direction: 'out' });
  s2.stage.process(packets(1)[0]);
  await s2.stage.close!();
  assert.deepEqual(tsharkFields(b, ['frame.interface_name', 'frame.packet_flags_direction']).map(([n, d]) => [n, Number(d)]), [['tun7', 2]]);
  // No port known at all (a library caller): a name that says which side.
  const c = join(dir, 'out-none.pcapng');
  const s3 = await stageAlone(`pcap ${c}`, { direction: 'in' });
  s3.stage.process(packets(1)[0]);
  await s3.stage.close!();
  assert.deepEqual(tsharkFields(c, ['frame.interface_name']), [['input']]);
});

test('comment= is the section comment; format=pcapng for any name; the link type is the pipeline\'s (Ethernet)', async () => {
  const file = join(dir, 'eth.cap');
  const { stage } = await stageAlone(`pcap ${file} format=pcapng comment='echo test, run 1'`, { input: { name: 'tap0', linkType: 1, kind: 'device' }, linkType: 1 });
  const frame = Buffer.concat([Buffer.from('02000000000102000000000208 00'.replace(/ /g, ''), 'hex'), echoRequest()]);
  stage.process(new Packet(frame, T0, 0));
  await stage.close!();
  assert.deepEqual(tsharkFields(file, ['frame.comment', 'eth.type', 'icmp.type', 'frame.interface_name'], ['-Y', 'icmp']).map((r) => r.slice(1)), [['0x0800', '8', 'tap0']]);
  const info = capinfos(file);
  if (info) {
    assert.equal(info.info.get('Capture comment'), 'echo test, run 1');
    assert.match(info.info.get('File encapsulation') ?? '', /Ethernet|ether/);
  }
  await assert.rejects(async () => (await stageAlone(`pcap ${join(dir, 'c.pcap')} comment=x`)).stage, /comment= needs format=pcapng/);
});

test('records are buffered: the file holds the head blocks until a flush; a lazy flush waits for 64 KiB', async () => {
  const file = join(dir, 'lazy.pcapng');
  const { stage } = await stageAlone(`pcap ${file}`, { input: tun7 });
  const head = statSync(file).size;
  for (const p of packets(10)) stage.process(p);
  stage.flush!(true);
  assert.equal(statSync(file).size, head);
  assert.equal(stage.pending!(), true);
  stage.flush!();
  assert.equal(blocks(readFileSync(file)).length, 2 + 10);
  await stage.close!();
});

test('times round trip through our reader at the corners: sec 0 and 2^32-1, nsec 0 and 999999999, µs and ns', () => {
  for (const nanos of [false, true]) {
    const file = join(dir, `corner-${nanos}.pcapng`);
    const w = new PcapngWriter(file, { nanos });
    const times: Array<[number, number]> = [
      [0, 0],
      [1, 999_999_999],
      [T0, 1000],
      [0xffffffff, 999_999_999],
    ];
    for (const [s, n] of times) w.write(Buffer.from([0x45]), s, n);
    w.close();
    const r = openCaptureReader(file);
    const got: Array<[number, number]> = [];
    while (r.readBatch(10, (_d, s, n) => got.push([s, n])) > 0);
    r.close();
    assert.equal(r.header.nanos, nanos);
    assert.deepEqual(got, times.map(([s, n]) => [s, nanos ? n : Math.floor(n / 1000) * 1000]));
  }
});

test('a full disk: /dev/full gives ENOSPC at once; a write cut part way (ulimit -f) leaves whole blocks that tshark reads', () => {
  assert.throws(() => new PcapngWriter('/dev/full'), (e: Error) => e instanceof TunpipeError && /disk is full \(ENOSPC\)/.test(e.message));
  const script = join(dir, 'efbig.mjs');
  const out = join(dir, 'efbig.pcapng');
  const url = new URL('../../src/pcap/pcapng-writer.js', import.meta.url).href;
  const result = runWithFileLimit(
    script,
    `import { PcapngWriter } from ${JSON.stringify(url)};
const w = new PcapngWriter(${JSON.stringify(out)}, { interfaces: [{ name: 'tun0', linkType: 101 }] });
let msg = '';
try { for (let n = 0; n < 100; n++) w.write(Buffer.alloc(100 + (n % 7), 0x45), 1e9 + n, 0, 0, 1); w.flush(); } catch (e) { msg = e.message; }
console.log(JSON.stringify({ msg, packets: w.packets, broken: w.broken }));
`,
    2,
  );
  assert.match(result.msg, /EFBIG|too large/);
  assert.equal(result.broken, true);
  const f = readFileSync(out);
  assert.ok(f.length <= 2048);
  const b = blocks(f);
  assert.equal(b.filter(([t]) => t === 6).length, result.packets, 'the packets counted are the blocks in the file');
  assert.ok(result.packets > 5);
  assert.equal(tsharkFields(out, ['frame.number']).length, result.packets);
});

test('killed with SIGKILL while writing: the file ends on a whole block and tshark reads every packet in it', async () => {
  const script = join(dir, 'kill.mjs');
  const out = join(dir, 'kill.pcapng');
  const url = new URL('../../src/pcap/pcapng-writer.js', import.meta.url).href;
  writeFileSync(
    script,
    `import { PcapngWriter } from ${JSON.stringify(url)};
const w = new PcapngWriter(${JSON.stringify(out)}, { bufferSize: 65536 });
let n = 0;
const pause = new Int32Array(new SharedArrayBuffer(4));
for (;;) { w.write(Buffer.alloc(60 + (n % 50), 0x45), 1e9 + n, n, 0, 1); if (++n === 200) console.log('going'); if (n % 100 === 0) Atomics.wait(pause, 0, 0, 1); }
`,
  );
  const child = spawn(process.execPath, [script], { stdio: ['ignore', 'pipe', 'inherit'] });
  await new Promise<void>((resolve) => child.stdout.once('data', () => resolve()));
  await new Promise((r) => setTimeout(r, 200));
  child.kill('SIGKILL');
  await new Promise((r) => child.once('close', r));
  let f = readFileSync(out);
  // The buffer is written in whole blocks, but SIGKILL can cut a write() short: the kernel stops copying
  // at a page boundary once a fatal signal is pending. Then, and only then, the file ends inside a block, at
  // a multiple of the page size, after whole blocks (append=true cuts such a file back, tested below).
  let whole = 0;
  for (let len = 0; whole + 8 <= f.length; whole += len) {
    len = f.readUInt32LE(whole + 4);
    if (len < 12 || whole + len > f.length) break;
  }
  if (whole < f.length) {
    assert.equal(f.length % 4096, 0, `a ${f.length}-byte file ends inside a block at ${whole}, not at a page boundary`);
    assert.ok(f.length - whole < 65536, `${f.length - whole} bytes past the last whole block`);
    f = f.subarray(0, whole);
    writeFileSync(out, f);
  }
  const b = blocks(f);
  assert.ok(b.length > 100, `${b.length} blocks`);
  assert.equal(tsharkFields(out, ['frame.number']).length, b.length - 2);
});

test('append=true onto a pcapng file cut short: cut back to its last whole block (said once), joining its last section', async () => {
  const file = join(dir, 'append.pcapng');
  const first = await stageAlone(`pcap ${file}`, { input: tun7 });
  for (const p of packets(3)) first.stage.process(p);
  await first.stage.close!();
  truncateSync(file, statSync(file).size - 10);
  const second = await stageAlone(`pcap ${file} append=true`, { input: tun8 });
  assert.equal(second.ctx.warnings.length, 1);
  assert.match(second.ctx.warnings[0], /ended inside a block .*cut back from \d+ to \d+ bytes, the last whole block, before appending/);
  for (const p of packets(2)) second.stage.process(p);
  await second.stage.close!();
  assert.deepEqual(blocks(readFileSync(file)).map(([t]) => t), [0x0a0d0d0a, 1, 6, 6, 1, 6, 6]);
  assert.deepEqual(tsharkFields(file, ['frame.interface_name', 'icmp.seq']), [['tun7', '0'], ['tun7', '1'], ['tun8', '0'], ['tun8', '1']]);
  // The classic format on a pcapng file, and the other way round, are refused and leave it alone.
  // Appending again as tun7 reuses interface 0: no new block but the packets.
  const third = await stageAlone(`pcap ${file} append=true`, { input: tun7 });
  third.stage.process(packets(1)[0]);
  await third.stage.close!();
  assert.deepEqual(blocks(readFileSync(file)).map(([t]) => t), [0x0a0d0d0a, 1, 6, 6, 1, 6, 6, 6]);
  assert.deepEqual(tsharkFields(file, ['frame.interface_name']).pop(), ['tun7']);
  const size = statSync(file).size;
  await assert.rejects(stageAlone(`pcap ${file} format=pcap append=true`), /is a pcapng file; add format=pcapng/);
  assert.equal(statSync(file).size, size);
});

test('append=true onto a classic pcap cut by SIGKILL: cut back to its last whole record, tcpdump reads every record', async () => {
  const file = join(dir, 'append.pcap');
  const w = new PcapWriter(file);
  for (const p of packets(3)) w.write(p.data, p.sec, p.nsec);
  w.close();
  truncateSync(file, statSync(file).size - 5);
  const { stage, ctx } = await stageAlone(`pcap ${file} append=true`);
  assert.match(ctx.warnings.join('\n'), /ended inside a record .*cut back from \d+ to \d+ bytes/);
  for (const p of packets(2)) stage.process(p);
  await stage.close!();
  const recs = readPcapRecords(readFileSync(file));
  assert.equal(recs.trailing, 0);
  assert.equal(recs.packets.length, 4);
  assert.deepEqual(
    tcpdumpRead(file).map((l) => /seq (\d+)/.exec(l)?.[1]),
    ['0', '1', '0', '1'],
  );
  // A whole file is appended to without a word.
  const again = await stageAlone(`pcap ${file} append=true`);
  await again.stage.close!();
  assert.deepEqual(again.ctx.warnings, []);
});

test('mode= takes permission bits only: setuid, setgid and sticky are refused before anything is created', async () => {
  for (const mode of ['6777', '4755', '1777', '2600', '999', '0x1ff', '-1', '']) {
    await assert.rejects(stageAlone(`pcap ${join(dir, 'm.pcap')} mode='${mode}'`), (e: Error) => /expected permission bits in octal, 0 to 777/.test(e.message), mode);
  }
  const file = join(dir, 'm644.pcapng');
  const { stage } = await stageAlone(`pcap ${file} mode=0644`);
  await stage.close!();
  assert.equal(statSync(file).mode & 0o7777, 0o644 & ~process.umask());
});
