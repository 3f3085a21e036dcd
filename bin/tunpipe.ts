#!/usr/bin/env node
/** The `tunpipe` command. Everything is in src/cli/main.ts; this file only runs it and sets the exit code. */
import { main } from '../src/cli/main.js';

main().then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    // A bug, not a user error: keep the stack so it can be reported.
    process.stderr.write(`tunpipe: internal error: ${(err as Error)?.stack ?? String(err)}\n`);
    process.exitCode = 70;
  },
);
