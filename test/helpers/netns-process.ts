/**
 * More ways to run things in a test namespace than test/helpers/netns.ts offers: with extra environment
 * variables, with chosen stdio (one process's stdout into another's stdin), any program (not only tunpipe),
 * and ping whose summary is wanted even when replies are missing.
 */
import { execFileSync, spawn, type ChildProcess, type StdioOptions } from 'node:child_process';
import { TUNPIPE, pingSummary, watchProcess, type Netns, type TunpipeProcess } from './netns.js';

export { watchProcess };

export interface SpawnOptions {
  /** Variables set for the program only (through `env`). */
  env?: Record<string, string>;
  /** Default: stdin ignored, stdout and stderr piped. */
  stdio?: StdioOptions;
}

/** Starts `argv` inside the namespace: `ip netns exec NS [env K=V...] argv...` (exec all the way, one pid). */
export function spawnInNetns(ns: Netns, argv: string[], opts: SpawnOptions = {}): ChildProcess {
  const env = opts.env ? ['env', ...Object.entries(opts.env).map(([k, v]) => `${k}=${v}`)] : [];
  return spawn('ip', ['netns', 'exec', ns.name, ...env, ...argv], { stdio: opts.stdio ?? ['ignore', 'pipe', 'pipe'] });
}

/** The command line of the compiled CLI with `args`. */
export function tunpipeArgv(args: string[]): string[] {
  return [process.execPath, TUNPIPE, ...args];
}

/** Starts tunpipe in the namespace with extra environment or stdio. */
export function startTunpipeWith(ns: Netns, args: string[], opts: SpawnOptions = {}): TunpipeProcess {
  return watchProcess(spawnInNetns(ns, tunpipeArgv(args), opts));
}

/** Runs tunpipe in the namespace to its exit (SIGKILL after `timeoutMs`): exit code and stderr. */
export async function runTunpipeIn(ns: Netns, args: string[], timeoutMs = 10_000): Promise<{ code: number | string; stderr: string }> {
  const p = startTunpipeWith(ns, args);
  const timer = setTimeout(() => p.child.kill('SIGKILL'), timeoutMs);
  const code = await p.exited();
  clearTimeout(timer);
  // Let the last stderr chunk arrive.
  await new Promise((r) => setImmediate(r));
  return { code, stderr: p.stderr() };
}

/** Runs iputils ping in the namespace; returns its output and summary even when replies were lost. */
export function pingIn(ns: Netns, args: string[], timeoutMs = 20_000): { output: string; transmitted: number; received: number } {
  let output: string;
  try {
    output = ns.run('ping', args, timeoutMs);
  } catch (err) {
    output = String((err as { stdout?: string }).stdout ?? '') + String((err as { stderr?: string }).stderr ?? '');
  }
  return { output, ...pingSummary(output) };
}

/** True when the namespace has a network interface called `name`. */
export function linkExists(ns: Netns, name: string): boolean {
  try {
    execFileSync('ip', ['netns', 'exec', ns.name, 'ip', 'link', 'show', 'dev', name], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

/** Polls `pred` every 20 ms until it is true; rejects after `timeoutMs` saying `what` (computed then). */
export async function waitUntil(pred: () => boolean, what: () => string, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!pred()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what()}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}
