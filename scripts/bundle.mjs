#!/usr/bin/env node
// Writes the two bundles the CLI runs from, each a module and everything it imports (stages and lazy
// imports included) as one ES module:
// - dist/src/cli/main.bundle.js, from dist/src/cli/main.js: what bin/tunpipe.ts loads;
// - dist/src/pipeline/device-worker.bundle.js, from dist/src/pipeline/device-worker.js: what a device
//   pipeline's worker thread runs (a thread has modules of its own, so it needs a bundle of its own).
// Node's loader resolves, reads and links ES modules one at a time; for the ~60 a run needs, that was most of
// what tunpipe added to Node's own start-up, and a whole run gained more than its start-up (README, Design,
// Start-up). The library (dist/src/index.js) stays as separate modules.
// Part of `npm run build`, after tsc.
//
// Checked here, so that a bundle behaves as the modules do:
// - packages are not bundled but loaded when needed (koffi with require() in the device layer and libpcap,
//   yargs with import() for --help); the CLI's bundle may import at its top neither a package (an offline
//   run must not load koffi) nor a built-in module that an offline run would not load otherwise;
// - a module's `new URL('relative', import.meta.url)` must name the same file from the bundle's directory
//   as from its own (a worker's entry, package.json); `new URL(import.meta.url)` never.
import { build } from 'esbuild';
import { readFileSync } from 'node:fs';
import { dirname, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));

// The built-in modules an offline run loads anyway; any other (node:crypto, node:stream, node:worker_threads
// cost milliseconds each) and every package is loaded where it is needed.
const EAGER_BUILTINS = new Set(['node:fs', 'node:path', 'node:url', 'node:module', 'node:net', 'node:timers/promises']);

/** Bundles `entry` into `outfile`; returns what would make the bundle behave otherwise than the modules. */
async function bundle(entry, outfile, { offline }) {
  const result = await build({
    entryPoints: [resolve(root, entry)],
    outfile: resolve(root, outfile),
    bundle: true,
    platform: 'node',
    format: 'esm',
    target: 'node20',
    external: ['koffi', 'yargs'],
    metafile: true,
    logLevel: 'warning',
  });
  const problems = [];
  const out = readFileSync(resolve(root, outfile), 'utf8');
  for (const m of out.matchAll(/^import\s[^;]*?from\s*["']([^"']+)["']/gm)) {
    const builtin = m[1].startsWith('node:');
    if (!builtin || (offline && !EAGER_BUILTINS.has(m[1]))) problems.push(`it imports '${m[1]}' at its top: load it where it is needed (src/lazy-require.ts, or import())`);
  }
  for (const input of Object.keys(result.metafile.inputs)) {
    const file = resolve(root, input);
    const text = readFileSync(file, 'utf8');
    const where = relative(root, file);
    for (const m of text.matchAll(/import\.meta(\.\w+)?/g)) {
      const rest = text.slice(m.index + 'import.meta'.length, m.index + 200);
      const before = text.slice(Math.max(0, m.index - 200), m.index);
      const url = /new URL\(\s*(['"])([^'"]+)\1\s*,\s*$/.exec(before);
      if (m[1] === '.url' && url) {
        const fromOwn = resolve(dirname(file), url[2]);
        const fromBundle = resolve(dirname(resolve(root, outfile)), url[2]);
        if (fromOwn !== fromBundle) problems.push(`${where}: new URL('${url[2]}', import.meta.url) names ${relative(root, fromOwn)}, but ${relative(root, fromBundle)} from the bundle`);
      } else if (m[1] === '.url' && /^\.url\s*\)/.test(rest) && /createRequire\(\s*$/.test(before)) {
        // createRequire(import.meta.url): packages are found the same from anywhere in the package.
      } else if (m[1] === '.resolve' && /^\.resolve\(\s*['"][^./]/.test(rest)) {
        // import.meta.resolve('package'): the same from anywhere in the package.
      } else {
        problems.push(`${where}: a use of import.meta the bundle may not keep: import.meta${rest.split('\n')[0]}`);
      }
    }
  }
  return problems.map((p) => `${outfile}: ${p}`);
}

const problems = [
  ...(await bundle('dist/src/cli/main.js', 'dist/src/cli/main.bundle.js', { offline: true })),
  ...(await bundle('dist/src/pipeline/device-worker.js', 'dist/src/pipeline/device-worker.bundle.js', { offline: false })),
];
if (problems.length > 0) {
  process.stderr.write(`scripts/bundle.mjs: a bundle would not behave as the modules do:\n${problems.map((p) => `  ${p}\n`).join('')}`);
  process.exit(1);
}
