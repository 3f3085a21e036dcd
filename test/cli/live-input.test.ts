/**
 * `--read -` (and a FIFO) from a writer that sends a packet and then goes quiet: the packet goes through at
 * once (not when 1 MiB has arrived), and SIGINT or SIGTERM still stops the run at once, exit 0, with the
 * counters and every record written. Stopping: a second Ctrl-C exits at once (130) while the first waits
 * for a stage's close; a packet inside a slow stage gets the README's half second, then counts as dropped.
 */
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { execFileSync } from 'node:child_process';
import { openSync, readFileSync, writeSync, closeSync, writeFileSync } from 'node:fs';
import { echoRequest, readPcapRecords, writePcap } from '../helpers/packets.js';
import { tempDir, TUNPIPE_BIN } from '../helpers/cli.js';
import { parseCounters, stageRow } from '../helpers/counters.js';

const dir = tempDir('tunpipe-live-');
after(() => dir.remove());

/** The bytes of a pcap file with these packets: the header, then each record. */
function pcapBytes(packets: Buffer[]): { header: Buffer; records: Buffer[] } {
  const file = dir.file(`tmp-${packets.length}.pcap`);
  writePcap(file, packets);
  const all = readFileSync(file);
  const records: Buffer[] = [];
  let o = 24;
  while (o < all.length) {
    const len = all.readUInt32LE(o + 8);
    records.push(all.subarray(o, o + 16 + len));
    o += 16 + len;
  }
  return { header: all.subarray(0, 24), records };
}

async function until(pred: () => boolean, what: string, ms = 5000): Promise<void> {
  const end = Date.now() + ms;
  while (!pred()) {
    if (Date.now() > end) throw new Error(`timed out: ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

for (const sig of ['SIGINT', 'SIGTERM'] as const) {
  test(`--read - from a quiet writer: packets flow one by one, and ${sig} stops the run at once`, async () => {
    const { header, records } = pcapBytes([echoRequest({ seq: 1 }), echoRequest({ seq: 2 })]);
    const child = spawn(process.execPath, [TUNPIPE_BIN, '--read', '-', '--write', '-', 'parse | icmp-echo | checksum'], { stdio: ['pipe', 'pipe', 'pipe'] });
    let out = Buffer.alloc(0);
    let err = '';
    child.stdout!.on('data', (d: Buffer) => (out = Buffer.concat([out, d])));
    child.stderr!.on('data', (d: Buffer) => (err += d));
    const exited = new Promise<number | null>((r) => child.on('close', r));
    child.stdin!.write(Buffer.concat([header, records[0]]));
    await until(() => out.length >= 24 + records[0].length, `the first reply on stdout:\n${err}`);
    child.stdin!.write(records[1]);
    await until(() => out.length >= 24 + records[0].length + records[1].length, `the second reply:\n${err}`);
    // The writer is quiet now, stdin still open.
    await new Promise((r) => setTimeout(r, 200));
    const t0 = Date.now();
    child.kill(sig);
    const code = await exited;
    assert.ok(Date.now() - t0 < 2000, `stopped in ${Date.now() - t0} ms`);
    assert.equal(code, 0, err);
    assert.equal(readPcapRecords(out).packets.length, 2);
    assert.equal(stageRow(parseCounters(err), 'checksum').out, 2);
    child.stdin!.destroy();
  });
}

test('a FIFO written a packet at a time is read the same way; its end ends the run', async () => {
  const fifo = dir.file('in.fifo');
  execFileSync('mkfifo', [fifo]);
  const outFile = dir.file('fifo-out.pcap');
  const child = spawn(process.execPath, [TUNPIPE_BIN, '--read', fifo, '--write', outFile, 'parse | icmp-echo | checksum'], { stdio: ['ignore', 'ignore', 'pipe'] });
  let err = '';
  child.stderr!.on('data', (d: Buffer) => (err += d));
  const exited = new Promise<number | null>((r) => child.on('close', r));
  const { header, records } = pcapBytes([echoRequest({ seq: 1 }), echoRequest({ seq: 2 }), echoRequest({ seq: 3 })]);
  const fd = openSync(fifo, 'w');
  writeSync(fd, header);
  for (const r of records) {
    writeSync(fd, r);
    await new Promise((res) => setTimeout(res, 100));
  }
  closeSync(fd);
  assert.equal(await exited, 0, err);
  assert.match(err, /end of input/);
  assert.equal(readPcapRecords(readFileSync(outFile)).packets.length, 3);
});

/** tunpipe on a quiet `--read -` with `pipeline`, after the first record went in: its process and output. */
async function quietRun(pipeline: string) {
  const { header, records } = pcapBytes([echoRequest({ seq: 1 })]);
  const child = spawn(process.execPath, [TUNPIPE_BIN, '--read', '-', pipeline], { stdio: ['pipe', 'ignore', 'pipe'] });
  let err = '';
  child.stderr!.on('data', (d: Buffer) => (err += d));
  const exited = new Promise<number | null>((r) => child.on('close', (code) => r(code)));
  child.stdin!.write(Buffer.concat([header, records[0]]));
  return { child, exited, stderr: () => err };
}

test('a second Ctrl-C exits at once (130) while the first is still closing a stage that never finishes', async () => {
  const stage = dir.file('close-hangs.mjs');
  writeFileSync(stage, 'export default { keepsPackets: false, create() { return { process: (p) => p, close: () => new Promise(() => {}) }; } };\n');
  const run = await quietRun(`parse | ${stage}`);
  await new Promise((r) => setTimeout(r, 700)); // started, the packet through
  run.child.kill('SIGINT');
  // The first stop waits (up to 2 s) for the close that never settles: still running well after it.
  await new Promise((r) => setTimeout(r, 400));
  assert.equal(run.child.exitCode, null, `the first SIGINT alone ended it:\n${run.stderr()}`);
  const t0 = Date.now();
  run.child.kill('SIGINT');
  const code = await run.exited;
  const ms = Date.now() - t0;
  assert.equal(code, 130, run.stderr());
  assert.ok(ms < 1000, `the second SIGINT took ${ms} ms to end it`);
  assert.match(run.stderr(), /^tunpipe: second SIGINT: exiting now$/m);
  run.child.stdin!.destroy();
});

test('on Ctrl-C a packet still inside a slow stage gets half a second, then counts as dropped', async () => {
  const stage = dir.file('very-slow.mjs');
  writeFileSync(stage, '// 5 s a packet\nexport default async function (packet) { await new Promise((r) => setTimeout(r, 5000)); return packet; }\n');
  const run = await quietRun(`parse | ${stage}`);
  await new Promise((r) => setTimeout(r, 700)); // the packet is in the stage now
  const t0 = Date.now();
  run.child.kill('SIGINT');
  const code = await run.exited;
  const ms = Date.now() - t0;
  assert.equal(code, 0, run.stderr());
  // The README's bound: at most half a second of draining (the stage would take 4 s more).
  assert.ok(ms >= 450, `exited after ${ms} ms: the packet was not given its half second`);
  assert.ok(ms < 2000, `exited after ${ms} ms: more than the half-second drain (and the exit around it)`);
  const row = stageRow(parseCounters(run.stderr()), 'very-slow');
  assert.equal(row.in, 1, run.stderr());
  assert.equal(row.reasons.get('stopped before the stage got to it'), 1, run.stderr());
  run.child.stdin!.destroy();
});
