#!/usr/bin/env node
/**
 * The `tunpipe` command. Everything is in src/cli/main.ts; this file only runs it and sets the exit code.
 *
 * First of all, before any module loads: a SIGUSR1 listener. Without one, Node answers SIGUSR1 by opening
 * its inspector on 127.0.0.1:9229, which in a process running as root would let any local user run code as
 * root. The CLI later makes SIGUSR1 print the live counters.
 */
process.on('SIGUSR1', () => {});

const { main } = await import('../src/cli/main.js');
main().then(
  (code) => {
    process.exitCode = code;
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
