/**
 * require(), for a package or a costly built-in module that a module needs only once it runs. The CLI runs
 * from one bundle (scripts/bundle.mjs), where every static import sits at the bundle's top and loads on every
 * run, offline ones too: koffi, `node:crypto`, `node:stream`, `node:worker_threads`. Called in a module's
 * top level, what it loads loads when that module is first evaluated; in a function, when that is called.
 */
import { createRequire } from 'node:module';

export const lazyRequire = createRequire(import.meta.url);
