/**
 * `tsc` alone (without `npm run build`) leaves the bundles missing or older than the modules they are made
 * from. The CLI and a device's worker then run the modules, not old code, and the CLI says so. Each case
 * runs a copy of dist/ whose stale bundle throws if it is loaded at all.
 */
import { it } from 'node:test';
import assert from 'node:assert/strict';
import { cpSync, existsSync, readFileSync, rmSync, symlinkSync, utimesSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { spawnSync } from 'node:child_process';
import { tempDir } from '../helpers/cli.js';
import { echoRequest, readPcapRecords, writePcap } from '../helpers/packets.js';
import { deviceTestSkipReason, withNetns, watchProcess } from '../helpers/netns.js';

const ROOT = fileURLToPath(new URL('../../../', import.meta.url));
const CLI_BUNDLE = 'dist/src/cli/main.bundle.js';
const WORKER_BUNDLE = 'dist/src/pipeline/device-worker.bundle.js';
const BROKEN = "throw new Error('the stale bundle was loaded');\n";

/**
 * A plain copy of the built package in `dir` (every file gets the time it was copied, in no particular
 * order), then `stale` bundles replaced and made a minute older, `copied` ones made a second older than
 * the modules (what a copy in the wrong order gives).
 */
function copyOfDist(dir: string, stale: { file: string; remove?: boolean }[], copied: string[] = []): string {
  cpSync(join(ROOT, 'dist'), join(dir, 'dist'), { recursive: true });
  cpSync(join(ROOT, 'package.json'), join(dir, 'package.json'));
  symlinkSync(join(ROOT, 'node_modules'), join(dir, 'node_modules'));
  const now = new Date();
  for (const file of copied) {
    const before = new Date(now.getTime() - 1000);
    utimesSync(join(dir, file), before, before);
  }
  for (const { file, remove } of stale) {
    const path = join(dir, file);
    if (remove) rmSync(path);
    else {
      writeFileSync(path, BROKEN);
      const before = new Date(now.getTime() - 60_000);
      utimesSync(path, before, before);
    }
  }
  return join(dir, 'dist/bin/tunpipe.js');
}

function offlineEcho(bin: string, dir: string): { code: number | null; stderr: string; replies: number } {
  const input = join(dir, 'in.pcap');
  const output = join(dir, 'out.pcap');
  writePcap(input, [echoRequest(), echoRequest(), echoRequest()]);
  const r = spawnSync(process.execPath, [bin, '--read', input, '--write', output, 'parse | icmp-echo | checksum'], { encoding: 'utf8', timeout: 20_000 });
  const replies = existsSync(output) ? readPcapRecords(readFileSync(output)).packets.length : 0;
  return { code: r.status, stderr: r.stderr, replies };
}

const SAYS_STALE = /^tunpipe: .*dist\/src\/cli\/main\.bundle\.js is missing or older than the compiled modules \(tsc without `npm run build`\?\): running the modules instead$/m;

for (const [what, stale] of [
  ['a CLI bundle older than the modules', { file: CLI_BUNDLE }],
  ['no CLI bundle at all', { file: CLI_BUNDLE, remove: true }],
] as const) {
  it(`${what}: the modules run, and the CLI says so`, () => {
    const tmp = tempDir('tunpipe-stale-');
    try {
      const r = offlineEcho(copyOfDist(tmp.path, [stale]), tmp.path);
      assert.equal(r.code, 0, r.stderr);
      assert.match(r.stderr, SAYS_STALE);
      assert.doesNotMatch(r.stderr, /stale bundle was loaded/);
      assert.equal(r.replies, 3);
    } finally {
      tmp.remove();
    }
  });
}

it('a plain copy of a build (cp -r: times in copy order), or a package whose files share one time: the bundle runs, nothing is said', () => {
  const tmp = tempDir('tunpipe-stale-');
  try {
    const r = offlineEcho(copyOfDist(tmp.path, [], [CLI_BUNDLE]), tmp.path);
    assert.equal(r.code, 0, r.stderr);
    assert.doesNotMatch(r.stderr, /older than the compiled modules/);
    assert.equal(r.replies, 3);
  } finally {
    tmp.remove();
  }
});

it("on a device, a worker bundle older than the modules: the worker runs the module, pings are answered", { skip: deviceTestSkipReason(), timeout: 30_000 }, async () => {
  const tmp = tempDir('tunpipe-stale-');
  try {
    const bin = copyOfDist(tmp.path, [{ file: WORKER_BUNDLE }]);
    await withNetns(async (ns) => {
      const tp = watchProcess(ns.spawn(process.execPath, [bin, '--dev', 'tpst0', '--addr', '198.18.0.1/24', 'parse | icmp-echo | checksum']));
      try {
        await tp.waitFor(/device \S+ open/);
        const ping = ns.run('ping', ['-c', '2', '-i', '0.2', '-W', '2', '198.18.0.2']);
        assert.match(ping, /2 packets transmitted, 2 received/);
        assert.equal(await tp.stop('SIGINT', 10_000), 0, tp.stderr());
        assert.doesNotMatch(tp.stderr(), /stale bundle was loaded/);
      } finally {
        await tp.stop('SIGKILL');
      }
    }, 'tpstale');
  } finally {
    tmp.remove();
  }
});
