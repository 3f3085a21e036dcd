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

/**
 * Runs iputils ping in the namespace; returns its output and summary even when replies were lost. The kernel
 * judges too (`judge`, the default): the namespace's ICMP layer must have taken at least as many echo replies
 * as ping counted, with no checksum error in between (IcmpInEchoReps and IcmpInCsumErrors, or their ICMPv6
 * names for `-6`), else it throws: ping alone would count a reply the kernel found corrupt (root's ping reads
 * a raw socket, which gets its copy before the kernel checks the checksum). A test that corrupts replies on
 * purpose passes `judge: false` and reads the counters itself.
 */
export function pingIn(ns: Netns, args: string[], timeoutMs = 20_000, judge = true): { output: string; transmitted: number; received: number } {
  const before = judge ? ns.nstat() : null;
  let output: string;
  try {
    output = ns.run('ping', args, timeoutMs);
  } catch (err) {
    output = String((err as { stdout?: string }).stdout ?? '') + String((err as { stderr?: string }).stderr ?? '');
  }
  const summary = pingSummary(output);
  if (before) judgeReplies(before, ns.nstat(), args, summary.received, output);
  return { output, ...summary };
}

/** Throws unless the kernel took every reply ping counted, and none with a bad checksum. */
export function judgeReplies(before: Record<string, number>, after: Record<string, number>, args: string[], received: number, output: string): void {
  const v6 = args.includes('-6') || args.some((a) => a.includes(':'));
  const reps = v6 ? 'Icmp6InEchoReplies' : 'IcmpInEchoReps';
  const csum = v6 ? 'Icmp6InCsumErrors' : 'IcmpInCsumErrors';
  const took = after[reps] - before[reps];
  const bad = after[csum] - before[csum];
  if (took < received || bad !== 0) {
    throw new Error(`the kernel took ${took} echo replies (${reps}) with ${bad} checksum errors (${csum}) where ping counted ${received}:\n${output}`);
  }
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

/**
 * iperf3 from namespace `a` to a one-off server in `b` (198.18.0.2), for 2 s with `args`; its JSON result.
 * The server is stopped afterwards, also on failure.
 */
export async function iperfIn(a: Netns, b: Netns, args: string[]): Promise<{ end: Record<string, any> }> {
  const server = watchProcess(spawnInNetns(b, ['iperf3', '-s', '-1', '-B', '198.18.0.2', '--forceflush']));
  try {
    await waitUntil(() => /listening/i.test(server.stdout()), () => `iperf3 server to listen:\n${server.stdout()}${server.stderr()}`, 5000);
    return JSON.parse(a.run('iperf3', ['-c', '198.18.0.2', '-J', '-t', '2', ...args], 30_000));
  } finally {
    await server.stop('SIGTERM', 2000);
  }
}
