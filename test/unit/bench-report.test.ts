/**
 * The README's performance tables from a small results file (test/fixtures/bench-results-small.json: two
 * io_uring blocks, one block of a process that fell back to poll, and one block whose flood the kernel did not
 * count as valid), through the module and through `node dist/bench/report-readme.js` on a copy of a README.
 */
import { strict as assert } from 'node:assert';
import { execFileSync, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { test } from 'node:test';
import { BEGIN_MARKER, END_MARKER, parseResults, readmeTables, replaceBetweenMarkers } from '../../bench/lib/readme-tables.js';
import { REPO_ROOT, tempDir } from '../helpers/cli.js';

const FIXTURE = path.join(REPO_ROOT, 'test', 'fixtures', 'bench-results-small.json');
const SCRIPT = path.join(REPO_ROOT, 'dist', 'bench', 'report-readme.js');
const FALLBACK = '**poll, fell back from io_uring: io_uring_setup: Operation not permitted**';

function tables(): string {
  return readmeTables([parseResults(fs.readFileSync(FIXTURE, 'utf8'), 'test/fixtures/bench-results-small.json')], { seed: 1 });
}

function row(md: string, start: string): string {
  const found = md.split('\n').find((l) => l.startsWith(start));
  assert.ok(found, `no row starting with ${start} in:\n${md}`);
  return found;
}

test('the tables name their results file and machine, and the io_uring rows pool only io_uring blocks', () => {
  const md = tables();
  assert.match(md, /from `test\/fixtures\/bench-results-small\.json`/);
  assert.match(md, /#### AMD EPYC 7B13 64-Core Processor \(2 cores\)/);
  assert.match(md, /kernel 6\.18\.0, Node v20\.20\.2, tree abc1234\): 4 blocks pooled/);
  // Blocks 0 and 1: 196000/200000 = 0.98, 189000/210000 = 0.90; the fall-back's 0.95 is not among them.
  assert.equal(
    row(md, '| replies/s [`tunpipe`, io_uring]'),
    '| replies/s [`tunpipe`, io_uring] | 200,000 | 192,500 | 0.94 [0.90..0.98] | 0.900 to 0.980 | ≥ 0.95 × ref: not met (1/2 blocks) |',
  );
  assert.equal(
    row(md, '| µs CPU per reply [`tunpipe`, io_uring]'),
    '| µs CPU per reply [`tunpipe`, io_uring] | 3.00 | 3.18 | 1.06 [1.02..1.10] | 1.020 to 1.100 | ≤ 1.3 × ref: met (2/2 blocks) |',
  );
  assert.equal(
    row(md, '| low-load RTT avg µs [`tunpipe`, io_uring]'),
    '| low-load RTT avg µs [`tunpipe`, io_uring] | 60.0 | 72.5 | +11.5 µs [+10.0..+13.0] | +10.00 to +13.00 | ≤ ref + 20 µs: met (2/2 blocks) |',
  );
});

test('a process that fell back to poll is labelled so, and its invalid block is a failed block of n', () => {
  const md = tables();
  const r = row(md, `| replies/s [\`tunpipe\`, ${FALLBACK}]`);
  assert.match(r, /\| 0\.95 \[0\.95\.\.0\.95\] \|/);
  assert.match(r, /not met \(1\/2 blocks, 1 failed\)/, 'one valid block meets 0.95, the failed one does not; the bar is not met');
  assert.equal(row(md, '| measurements whose replies').includes('7/8'), true);
  assert.ok(!/replies\/s \[`tunpipe`, io_uring\][^\n]*0\.95 \[/.test(md), 'no poll figure under io_uring');
});

test('bench:report rewrites only the README section between the markers, the same way every time', () => {
  const dir = tempDir('bench-report-');
  try {
    const readme = dir.file('README.md');
    const before = `# x\n\n## Performance\n\nintro\n\n${BEGIN_MARKER}\nold table\n${END_MARKER}\n\nafter\n`;
    fs.writeFileSync(readme, before);
    const run = () => execFileSync(process.execPath, [SCRIPT, FIXTURE, '--write-readme', '--readme', readme], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
    run();
    const once = fs.readFileSync(readme, 'utf8');
    assert.ok(once.startsWith(`# x\n\n## Performance\n\nintro\n\n${BEGIN_MARKER}\n`));
    assert.ok(once.endsWith(`${END_MARKER}\n\nafter\n`));
    assert.ok(!once.includes('old table'));
    assert.ok(once.includes(row(tables(), '| replies/s [`tunpipe`, io_uring]')), 'the same table as the module makes');
    run();
    assert.equal(fs.readFileSync(readme, 'utf8'), once, 'a second run changes nothing (seeded bootstrap)');
    const printed = execFileSync(process.execPath, [SCRIPT, FIXTURE], { encoding: 'utf8' });
    assert.equal(printed, tables());

    fs.writeFileSync(readme, '# no markers\n');
    const bad = spawnSync(process.execPath, [SCRIPT, FIXTURE, '--write-readme', '--readme', readme], { encoding: 'utf8' });
    assert.equal(bad.status, 2);
    assert.match(bad.stderr, /README has no <!-- bench:begin -->/);
    const notResults = dir.file('other.json');
    fs.writeFileSync(notResults, '{"rows": []}');
    const wrong = spawnSync(process.execPath, [SCRIPT, notResults], { encoding: 'utf8' });
    assert.equal(wrong.status, 2);
    assert.match(wrong.stderr, /not a tunpipe bench results file/);
  } finally {
    dir.remove();
  }
});

test('replaceBetweenMarkers keeps the markers and everything outside them', () => {
  const text = `a\n${BEGIN_MARKER}\nb\n${END_MARKER}\nc`;
  assert.equal(replaceBetweenMarkers(text, 'new\n'), `a\n${BEGIN_MARKER}\nnew\n${END_MARKER}\nc`);
});
