/**
 * The CLI run from its modules, where bin/tunpipe.ts runs it from its bundle (scripts/bundle.mjs): for the
 * tests that look at what a run loads, module by module (test/cli/lazy-loading.test.ts). What main.ts
 * imports lazily is what the bundle evaluates lazily.
 */
process.on('SIGUSR1', () => {});
const { main } = await import('../../src/cli/main.js');
const code = await main();
process.exitCode = code;
setImmediate(() => process.exit(code));
