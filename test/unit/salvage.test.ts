/**
 * src/pcap/salvage.ts on its own: rows in the shared table, what writeUnwritten() writes out and what it
 * leaves alone (a file inside a write of its own, a full pipe, a socket that would block), the fds of its
 * own a table may hold, and the words the error says.
 */
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import { execFileSync, spawnSync } from 'node:child_process';
import { SALVAGE_LAYOUT, SalvageRow, salvagedFds, salvageWords, startSalvage, writeUnwritten, type SalvageIo } from '../../src/pcap/salvage.js';
import { tempDir } from '../helpers/cli.js';

const dir = tempDir('tunpipe-unit-salvage-');
after(() => dir.remove());

const buffers = new Map<number, SharedArrayBuffer>();
const table = startSalvage((id, buffer) => (buffer === null ? buffers.delete(id) : buffers.set(id, buffer)));
const io = (sendNow: SalvageIo['sendNow'] = () => -1): SalvageIo => ({ ...fs, sendNow });

/** A row for `fd` whose buffer holds `text` as whole records, going at `at` (-1: the fd's offset). */
function rowWith(fd: number, text: string, at = -1): SalvageRow {
  const row = new SalvageRow(fd);
  const buf = row.allocate(256);
  row.fill(buf, at);
  buf.write(text);
  row.filled(Buffer.byteLength(text));
  return row;
}

test('a regular file gets what its buffer holds at the position the row says; a closed row is left out', () => {
  const file = dir.file('regular');
  fs.writeFileSync(file, 'head|');
  const fd = fs.openSync(file, 'r+');
  const row = rowWith(fd, 'records', 5);
  const goneFd = fs.openSync(dir.file('closed'), 'w');
  rowWith(goneFd, 'never written').close();
  fs.closeSync(goneFd);
  assert.deepEqual(salvagedFds(table), [fd]);
  assert.deepEqual(writeUnwritten(SALVAGE_LAYOUT, table, buffers, io()), { files: 1, skipped: 0 });
  assert.equal(fs.readFileSync(file, 'utf8'), 'head|records');
  assert.equal(fs.readFileSync(dir.file('closed'), 'utf8'), '');
  row.close();
  fs.closeSync(fd);
});

test('left alone and counted: a file inside a write of its own, a full pipe; the rest is written out', () => {
  const inWrite = fs.openSync(dir.file('in-write'), 'w');
  const writing = rowWith(inWrite, 'half a record');
  writing.writing(true);
  // A FIFO nobody reads, already full: its fd here is both ends, so opening it for writing does not block.
  const fifo = dir.file('fifo');
  execFileSync('mkfifo', [fifo]);
  const pipe = fs.openSync(fifo, fs.constants.O_RDWR | fs.constants.O_NONBLOCK);
  const fill = Buffer.alloc(1 << 16);
  for (;;) {
    try {
      fs.writeSync(pipe, fill);
    } catch {
      break;
    }
  }
  const full = rowWith(pipe, 'does not fit');
  const ok = fs.openSync(dir.file('ok'), 'w');
  const fine = rowWith(ok, 'written');
  const kept = writeUnwritten(SALVAGE_LAYOUT, table, buffers, io());
  assert.deepEqual(kept, { files: 1, skipped: 2 });
  assert.equal(fs.readFileSync(dir.file('in-write'), 'utf8'), '', 'a second writer would interleave');
  assert.equal(fs.readFileSync(dir.file('ok'), 'utf8'), 'written');
  assert.equal(salvageWords(kept, ' first'), "2 output(s) could not be written out (inside a write of their own, a reader not reading, an error) and keep only what was written before; what the others still held was written out first");
  for (const r of [writing, full, fine]) r.close();
  for (const fd of [inWrite, pipe, ok]) fs.closeSync(fd);
});

test('a blocking socket is written with sendNow, never with a write that could block; one that would block is counted', () => {
  // Node gives a child's stdout as a socket (one end of a socketpair): the case of print's stdout under a test.
  const script = `
    import * as fs from 'node:fs';
    import { SALVAGE_LAYOUT, SalvageRow, startSalvage, writeUnwritten } from ${JSON.stringify(new URL('../../src/pcap/salvage.js', import.meta.url).href)};
    const buffers = new Map();
    const table = startSalvage((id, b) => (b === null ? buffers.delete(id) : buffers.set(id, b)));
    const row = new SalvageRow(1);
    const buf = row.allocate(16);
    row.fill(buf, -1);
    buf.write('line');
    row.filled(4);
    const calls = [];
    const kept = writeUnwritten(SALVAGE_LAYOUT, table, buffers, { ...fs, sendNow: (fd, data) => (calls.push(fd + ':' + Buffer.from(data)), -1) });
    fs.writeSync(2, JSON.stringify({ kept, calls, socket: fs.fstatSync(1).isSocket() }));
  `;
  const r = spawnSync(process.execPath, ['--input-type=module', '-e', script], { stdio: ['ignore', 'pipe', 'pipe'], encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  assert.deepEqual(JSON.parse(r.stderr), { kept: { files: 0, skipped: 1 }, calls: ['1:line'], socket: true });
  assert.equal(r.stdout, '', 'nothing written to the socket but through sendNow');
});

test('with fds of its own the table holds each file under the fd hold() gave, and close() lets it go', () => {
  const held: number[] = [];
  const letGo: number[] = [];
  startSalvage((id, buffer) => (buffer === null ? buffers.delete(id) : buffers.set(id, buffer)), {
    hold: (fd) => {
      const dup = fs.openSync(`/proc/self/fd/${fd}`, 'r+');
      held.push(dup);
      return dup;
    },
    letGo: (fd) => {
      letGo.push(fd);
      fs.closeSync(fd);
    },
  });
  const file = dir.file('held');
  const fd = fs.openSync(file, 'w');
  const row = rowWith(fd, 'kept', 0);
  assert.equal(held.length, 1);
  assert.deepEqual(salvagedFds(table), held, 'the table gives out its own fd, not the file\'s');
  fs.closeSync(fd);
  assert.deepEqual(writeUnwritten(SALVAGE_LAYOUT, table, buffers, io()), { files: 1, skipped: 0 }, 'written through the fd it holds, the file\'s own being closed');
  assert.equal(fs.readFileSync(file, 'utf8'), 'kept');
  row.close();
  assert.deepEqual(letGo, held);
  assert.deepEqual(salvagedFds(table), []);
  // A hold that fails leaves the row taken with no fd: nothing is written out, nothing closed.
  startSalvage(() => {}, { hold: () => -1, letGo: (f) => letGo.push(f) });
  const unheld = fs.openSync(dir.file('unheld'), 'w');
  const none = new SalvageRow(unheld);
  assert.deepEqual(salvagedFds(table), []);
  none.close();
  fs.closeSync(unheld);
  assert.equal(letGo.length, 1);
});

test('the words: nothing to say, all written out, some left alone', () => {
  assert.equal(salvageWords({ files: 0, skipped: 0 }, ' first'), '');
  assert.equal(salvageWords({ files: 2, skipped: 0 }, ''), 'what its captures and printed lines still held was written out');
  assert.match(salvageWords({ files: 0, skipped: 1 }, ''), /^1 output\(s\) could not be written out .* and keep only what was written before$/);
});
