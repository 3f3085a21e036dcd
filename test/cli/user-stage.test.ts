/**
 * User stages named by path in the pipeline: examples/drop-big.mjs drops the packets longer than max=N,
 * counted under its reason; a user module that throws for some packets has those dropped and counted, its
 * error printed once on stderr with the stage name, and the other packets pass.
 */
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { echoRequest, readPcapRecords, writePcap } from '../helpers/packets.js';
import { expectedReply } from '../helpers/echo-corpus.js';
import { REPO_ROOT, runCli, stackTraceLines, tempDir } from '../helpers/cli.js';
import { parseCounters, reasonCount, stageRow, type StageCounters } from '../helpers/counters.js';

const dir = tempDir('tunpipe-user-');
after(() => dir.remove());

const DROP_BIG = join(REPO_ROOT, 'examples', 'drop-big.mjs');

/** Echo requests whose IPv4 total lengths are exactly `lengths` (28 bytes of headers plus the payload). */
function requestsOfLength(lengths: number[]): Buffer[] {
  return lengths.map((len, i) => echoRequest({ seq: i + 1, payload: Buffer.alloc(len - 28, 0x61 + i) }));
}

describe('examples/drop-big.mjs', () => {
  const lengths = [28, 100, 199, 200, 201, 576, 1500, 150, 4000];
  const input = requestsOfLength(lengths);
  const inFile = dir.file('sizes.pcap');
  writePcap(inFile, input);
  const big = lengths.filter((l) => l > 200).length;

  for (const [how, stage, cwd] of [
    ['by absolute path', DROP_BIG, undefined],
    ['by ./ path from the repository, as in its comment', './examples/drop-big.mjs', REPO_ROOT],
  ] as const) {
    test(`max=200 drops the packets longer than 200 bytes (${how})`, async () => {
      const out = dir.file(`sizes-out-${cwd ? 'rel' : 'abs'}.pcap`);
      const r = await runCli(['--read', inFile, '--write', out, `parse | ${stage} max=200 | icmp-echo | checksum`], { cwd });
      assert.equal(r.code, 0, r.stderr);
      const replies = readPcapRecords(readFileSync(out)).packets;
      assert.deepEqual(replies, input.filter((p) => p.length <= 200).map((p) => expectedReply(p)), 'replies to the packets of at most 200 bytes, 200 included');
      const row = stageRow(parseCounters(r.stderr), 'drop-big');
      assert.deepEqual([row.in, row.out, row.dropped], [input.length, input.length - big, big]);
      assert.equal(reasonCount(row, /longer than 200 bytes/), big, 'counted under its own reason');
    });
  }

  test('the positional form (drop-big.mjs 576) and the default (1000)', async () => {
    const r1 = await runCli(['--read', inFile, `parse | ${DROP_BIG} 576`]);
    assert.equal(r1.code, 0, r1.stderr);
    assert.equal(stageRow(parseCounters(r1.stderr), 'drop-big').dropped, lengths.filter((l) => l > 576).length);
    const r2 = await runCli(['--read', inFile, `parse | ${DROP_BIG}`]);
    assert.equal(r2.code, 0, r2.stderr);
    assert.equal(stageRow(parseCounters(r2.stderr), 'drop-big').dropped, lengths.filter((l) => l > 1000).length);
  });

  test('a bad max is a pipeline error with a caret (exit 2)', async () => {
    const text = `parse | ${DROP_BIG} max=huge`;
    const r = await runCli(['--read', inFile, text]);
    assert.equal(r.code, 2, r.stderr);
    assert.match(r.stderr, /expected a number/);
    assert.deepEqual(stackTraceLines(r.stderr), []);
  });
});

describe('a user stage that throws for some packets', () => {
  const input = Array.from({ length: 10 }, (_, i) => echoRequest({ seq: i + 1 }));
  const inFile = dir.file('throw-in.pcap');
  writePcap(inFile, input);
  const even = input.filter((_, i) => (i + 1) % 2 === 0);

  /** Writes a stage module that throws for odd sequence numbers; `message` is a JS expression for the error text. */
  function thrower(file: string, opts: { async: boolean; message: string }): string {
    const path = dir.file(file);
    writeFileSync(
      path,
      `export const summary = 'throws for odd sequence numbers';
export default ${opts.async ? 'async ' : ''}function (packet) {
  ${opts.async ? 'await new Promise((r) => setImmediate(r));' : ''}
  const seq = packet.data.readUInt16BE(packet.l4 + 6);
  if (seq % 2 === 1) throw new Error(${opts.message});
  return packet;
}
`,
    );
    return path;
  }

  /** Lines of stderr other than the counters table that mention `text`. */
  function warnings(stderr: string, text: string, rows: StageCounters[]): string[] {
    return stderr.split('\n').filter((l) => l.includes(text) && !rows.some((s) => l.startsWith(`${s.name} `)));
  }

  for (const kind of ['sync', 'async'] as const) {
    test(`${kind}: the packets it throws for are dropped and counted, the error printed once, the rest pass`, async () => {
      const stage = thrower(`odd-${kind}.mjs`, { async: kind === 'async', message: "'odd sequence numbers are not welcome'" });
      const out = dir.file(`throw-out-${kind}.pcap`);
      const r = await runCli(['--read', inFile, '--write', out, `parse | ${stage} | icmp-echo | checksum`]);
      assert.equal(r.code, 0, r.stderr);
      assert.deepEqual(stackTraceLines(r.stderr), []);
      assert.deepEqual(readPcapRecords(readFileSync(out)).packets, even.map((p) => expectedReply(p)));
      const rows = parseCounters(r.stderr);
      const row = stageRow(rows, `odd-${kind}`);
      assert.deepEqual([row.in, row.out, row.dropped], [10, 5, 5]);
      assert.equal(reasonCount(row, /odd sequence numbers are not welcome/), 5);
      const w = warnings(r.stderr, 'odd sequence numbers are not welcome', rows);
      assert.equal(w.length, 1, `printed once:\n${r.stderr}`);
      assert.match(w[0], new RegExp(`odd-${kind}`), 'with the stage name');
    });
  }

  test('an error whose message differs for each packet is still printed once', async () => {
    const stage = thrower('odd-varying.mjs', { async: false, message: '`sequence number ${seq} is odd`' });
    const r = await runCli(['--read', inFile, `parse | ${stage} | icmp-echo | checksum`]);
    assert.equal(r.code, 0, r.stderr);
    const rows = parseCounters(r.stderr);
    assert.equal(stageRow(rows, 'odd-varying').dropped, 5);
    const w = warnings(r.stderr, 'is odd', rows);
    assert.equal(w.length, 1, `one warning for the stage, not one per packet:\n${r.stderr}`);
  });

  test('a module that fails to load is a pipeline error naming it (exit 2)', async () => {
    const path = dir.file('broken.mjs');
    writeFileSync(path, 'export default function (packet) { return packet; ');
    const r = await runCli(['--read', inFile, `parse | ${path}`]);
    assert.equal(r.code, 2, r.stderr);
    assert.match(r.stderr, /cannot load stage module/);
    assert.ok(r.stderr.includes(path));
    assert.deepEqual(stackTraceLines(r.stderr), []);
  });

  test('a module path that does not exist is a pipeline error (exit 2)', async () => {
    const r = await runCli(['--read', inFile, `parse | ${dir.file('missing.mjs')}`]);
    assert.equal(r.code, 2, r.stderr);
    assert.match(r.stderr, /not found/);
  });
});

describe("a user's stage that makes packets with the library (another copy of its modules than the CLI's bundle)", () => {
  // Imported by file URL from dist/src, the library's modules: the CLI runs from dist/src/cli/main.bundle.js.
  const lib = (path: string) => JSON.stringify(new URL(`../../src/${path}`, import.meta.url).href);
  const header = `import { Packet } from ${lib('packet/packet.js')};\nimport { EXIT } from ${lib('pipeline/stage.js')};\n`;
  const inFile = dir.file('library-in.pcap');
  const requests = Array.from({ length: 6 }, (_, i) => echoRequest({ seq: i + 1 }));
  writePcap(inFile, requests);

  const run = async (name: string, body: string, pipeline: (stage: string) => string) => {
    const stage = dir.file(`${name}.mjs`);
    writeFileSync(stage, header + body);
    const out = dir.file(`${name}-out.pcap`);
    const r = await runCli(['--read', inFile, '--write', out, pipeline(stage)]);
    assert.equal(r.code, 0, r.stderr);
    return readPcapRecords(readFileSync(out)).packets;
  };

  test('a function that returns a new Packet: it goes on as one', async () => {
    const out = await run('new-packet-fn', 'export default (p) => new Packet(Buffer.from(p.data));\n', (s) => `${s} | parse | icmp-echo | checksum`);
    assert.deepEqual(out, requests.map((q) => expectedReply(q)));
  });

  test('a full definition whose process() returns a new Packet: it goes on as one', async () => {
    const body = "export default { name: 'copy', create: () => ({ process: (p) => new Packet(Buffer.from(p.data)) }) };\n";
    const out = await run('new-packet-def', body, (s) => `${s} | parse | icmp-echo | checksum`);
    assert.deepEqual(out, requests.map((q) => expectedReply(q)));
  });

  test("EXIT from the library: the packet goes straight out, past icmp-echo", async () => {
    const out = await run('exit', 'export default () => EXIT;\n', (s) => `parse | ${s} | icmp-echo | checksum`);
    assert.deepEqual(out, requests);
  });
});
