/**
 * `node --import dist/test/helpers/load-probe.js ...`: records what a process loads, in the file that
 * TUNPIPE_LOAD_PROBE names: a line `module URL` for every ES module (through a module hook, which runs in
 * Node's hooks thread and appends as it goes), and at exit a line `lib PATH` for every file mapped into the
 * process (/proc/self/maps: native addons such as koffi's, shared libraries such as libpcap). What a CLI
 * run loads can then be checked from outside it (see test/cli/lazy-loading.test.ts).
 */
import { register } from 'node:module';
import { appendFileSync, readFileSync } from 'node:fs';

const out = process.env.TUNPIPE_LOAD_PROBE;
if (out) {
  register(new URL('./load-probe-hooks.js', import.meta.url), { data: { out } });
  process.on('exit', () => {
    const paths = new Set<string>();
    for (const line of readFileSync('/proc/self/maps', 'utf8').split('\n')) {
      const path = line.trim().split(/\s+/)[5];
      if (path?.startsWith('/')) paths.add(path);
    }
    appendFileSync(out, [...paths].map((p) => `lib ${p}\n`).join(''));
  });
}
