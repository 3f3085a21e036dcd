#!/usr/bin/env node
/**
 * The `tunpipe` command. Everything is in src/cli/main.ts (run from its bundle); this file only runs it and
 * sets the exit code.
 *
 * First of all, before any module loads: a SIGUSR1 listener. Without one, Node answers SIGUSR1 by opening
 * its inspector on 127.0.0.1:9229, which in a process running as root would let any local user run code as
 * root. The CLI later makes SIGUSR1 print the live counters.
 */
process.on('SIGUSR1', () => {});

import { statSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

// The CLI's modules as one file (scripts/bundle.mjs, written by `npm run build`): loaded one by one, they
// cost more start-up than all the rest tunpipe adds to Node's. Named through a variable: tsc has no source
// for it.
const bundle: string = '../src/cli/main.bundle.js';
const STALE_MS = 2000;
const modules = '../src/cli/main.js';
// `tsc` alone leaves no bundle, or one older than the modules it was made from: they run instead, slower,
// rather than old code.
const stale = isOlder(bundle, modules);
if (stale) process.stderr.write(`tunpipe: ${fileURLToPath(fileOf(bundle))} is missing or older than the compiled modules (tsc without \`npm run build\`?): running the modules instead\n`);
const { main } = (await import(stale ? modules : bundle)) as typeof import('../src/cli/main.js');
main().then(
  (code) => {
    // Everything is written and closed by now; what may be left is a read of live input (`--read -` from a
    // writer that went quiet) waiting on the threadpool, which must not keep tunpipe from exiting.
    process.exitCode = code;
    setImmediate(() => process.exit(code));
  },
  (err: unknown) => {
    // A bug, not a user error: keep the stack so it can be reported.
    try {
      process.stderr.write(`tunpipe: internal error: ${(err as Error)?.stack ?? String(err)}\n`);
    } catch {
      /* stderr is gone */
    }
    process.exitCode = 70;
  },
);

/**
 * True when file `a` (relative to this one) is missing, or older than `b` by more than STALE_MS; false when
 * `b` is missing. The margin: a copy (`cp -r`, without -p) gives every file the time it was copied, in no
 * particular order, within moments; `tsc` after a build writes the modules seconds after the bundle.
 */
function isOlder(a: string, b: string): boolean {
  const mtime = (f: string) => statSync(fileOf(f), { throwIfNoEntry: false })?.mtimeMs;
  const newer = mtime(b);
  if (newer === undefined) return false;
  const older = mtime(a);
  return older === undefined || older < newer - STALE_MS;
}

function fileOf(relative: string): URL {
  return new URL(relative, import.meta.url);
}
