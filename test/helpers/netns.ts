/**
 * Network namespaces for device tests. Every test that opens a real device runs inside a namespace it
 * creates here and deletes afterwards, also when the test fails or the process exits early: nothing is
 * ever configured in the host's namespace. Deleting one kills what still runs in it first
 * (./netns-remove.ts). A test process ended by SIGINT, SIGTERM or SIGHUP (a cancelled run) removes its
 * namespaces before it dies; one killed with SIGKILL cannot, so the next one to load this module removes
 * the namespaces of processes that are gone (they are named PREFIX-PID-N).
 *
 * Without root and outside CI the device tests are skipped with a clear message; with CI=true a missing
 * capability is a failure, never a skip.
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { removeNetns, removeStaleNetns } from './netns-remove.js';

const created = new Set<string>();
let counter = 0;

/** What createNetns names a namespace: PREFIX-PID-N, the prefix `tp` and letters or digits. */
const OUR_NAMES = /^tp[a-z0-9]*-(\d+)-\d+$/;

function removeAllCreated(): void {
  for (const name of created) {
    try {
      removeNetns(name);
    } catch {
      /* already gone */
    }
  }
  created.clear();
}

process.on('exit', removeAllCreated);
for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
  process.once(signal, () => {
    removeAllCreated();
    // Die of the signal, as without this listener: the runner that sent it reads how the process ended.
    process.kill(process.pid, signal);
  });
}
if (process.getuid?.() === 0) removeStaleNetns(OUR_NAMES, (name) => process.stderr.write(`test: cannot remove the stale namespace ${name}\n`));

/** Why device tests cannot run here, or null when they can. Only used to skip outside CI. */
export function deviceTestSkipReason(): string | false {
  if (process.env.CI === 'true') return false;
  if (process.getuid?.() !== 0) return 'device tests need root (network namespaces and /dev/net/tun); run as root or with CI=true';
  if (!existsSync('/dev/net/tun')) return 'device tests need /dev/net/tun (modprobe tun)';
  return false;
}

/** The CLI entry, compiled. */
export const TUNPIPE = fileURLToPath(new URL('../../bin/tunpipe.js', import.meta.url));

export interface Netns {
  readonly name: string;
  /** Runs a command in the namespace and returns its stdout; throws with stderr on a non-zero exit. */
  run(cmd: string, args: string[], timeoutMs?: number): string;
  /** Starts a long-running command in the namespace. */
  spawn(cmd: string, args: string[]): ChildProcess;
  /** The kernel's SNMP counters in the namespace, absolute values by name (`nstat -asz`: -s leaves root's
   * shared history file alone). Compare two readings to count what happened in between. Reading a counter
   * the kernel did not print (a misspelt name, a kernel without it) throws: it is never taken as 0. */
  nstat(): Record<string, number>;
  /** Deletes the namespace (and with it any device left in it). */
  delete(): void;
}

/**
 * The counters, where reading a name nstat did not print throws. Counter names start with a capital letter
 * (IcmpInEchoReps, Ip6InReceives); other keys (then, toJSON, symbols) pass, so the object can still be
 * printed, spread and awaited.
 */
export function requireCounters(counters: Record<string, number>): Record<string, number> {
  return new Proxy(counters, {
    get(target, key, receiver) {
      if (typeof key === 'string' && /^[A-Z][A-Za-z0-9]*$/.test(key) && !Object.hasOwn(target, key)) {
        throw new Error(`nstat printed no counter ${key} (it has ${Object.keys(target).length} others): a missing counter is not 0`);
      }
      return Reflect.get(target, key, receiver);
    },
  });
}

/** Creates a namespace with `lo` up. */
export function createNetns(prefix = 'tptest'): Netns {
  const name = `${prefix}-${process.pid}-${++counter}`;
  execFileSync('ip', ['netns', 'add', name]);
  created.add(name);
  const run = (cmd: string, args: string[], timeoutMs = 30_000): string =>
    execFileSync('ip', ['netns', 'exec', name, cmd, ...args], { encoding: 'utf8', timeout: timeoutMs, stdio: ['ignore', 'pipe', 'pipe'] });
  run('ip', ['link', 'set', 'lo', 'up']);
  return {
    name,
    run,
    spawn: (cmd, args) => spawn('ip', ['netns', 'exec', name, cmd, ...args], { stdio: ['ignore', 'pipe', 'pipe'] }),
    nstat() {
      const out = run('nstat', ['-asz']);
      const counters: Record<string, number> = {};
      for (const line of out.split('\n')) {
        const m = /^(\w+)\s+(\d+)/.exec(line);
        if (m) counters[m[1]] = Number(m[2]);
      }
      return requireCounters(counters);
    },
    delete() {
      if (!created.has(name)) return;
      removeNetns(name);
      created.delete(name);
    },
  };
}

/** Deletes every one of `namespaces`, also when deleting one fails (the first failure is thrown after). */
export function deleteAll(namespaces: readonly Netns[]): void {
  let first: unknown = null;
  for (const ns of namespaces) {
    try {
      ns.delete();
    } catch (err) {
      first ??= err;
    }
  }
  if (first !== null) throw first;
}

/** Runs `fn` with a fresh namespace, deleting it afterwards whatever happens. */
export async function withNetns<T>(fn: (ns: Netns) => Promise<T>, prefix?: string): Promise<T> {
  const ns = createNetns(prefix);
  try {
    return await fn(ns);
  } finally {
    ns.delete();
  }
}

/**
 * The two ends of a wire and tunpipe's own namespace (`prefixes`: their name prefixes), made fresh and
 * deleted when `fn` ends, passed or failed, also when making one of them failed.
 */
export async function withWireNamespaces<T>(prefixes: readonly [string, string, string], fn: (a: Netns, b: Netns, self: Netns) => Promise<T>): Promise<T> {
  const made: Netns[] = [];
  try {
    for (const p of prefixes) made.push(createNetns(p));
    return await fn(made[0], made[1], made[2]);
  } finally {
    deleteAll(made);
  }
}

/** A tunpipe process started in a namespace, with its stderr collected. */
export interface TunpipeProcess {
  child: ChildProcess;
  stderr(): string;
  stdout(): string;
  /** Resolves when stderr has a line matching `re`; rejects after `timeoutMs` or if the process exits first. */
  waitFor(re: RegExp, timeoutMs?: number): Promise<void>;
  /** Resolves with the exit code (or the signal name) when the process ends. */
  exited(): Promise<number | string>;
  /** Sends a signal and waits for the exit; SIGKILLs after `timeoutMs`. Resolves with the exit code. */
  stop(signal?: NodeJS.Signals, timeoutMs?: number): Promise<number | string>;
}

/** Collects a process's stderr (and stdout if piped) and watches it: waitFor, exited, stop. */
export function watchProcess(child: ChildProcess): TunpipeProcess {
  let err = '';
  let out = '';
  child.stderr?.on('data', (d: Buffer) => (err += d.toString()));
  child.stdout?.on('data', (d: Buffer) => (out += d.toString('latin1')));
  const exit = new Promise<number | string>((resolve) => child.on('exit', (code, sig) => resolve(code ?? sig ?? 'unknown')));
  return {
    child,
    stderr: () => err,
    stdout: () => out,
    exited: () => exit,
    waitFor(re, timeoutMs = 10_000) {
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => done(new Error(`timed out waiting for ${re} in stderr:\n${err}`)), timeoutMs);
        const check = () => re.test(err) && done();
        const onExit = () => setImmediate(() => (re.test(err) ? done() : done(new Error(`process exited before ${re}:\n${err}`))));
        function done(e?: Error) {
          clearTimeout(timer);
          child.stderr?.off('data', check);
          child.off('exit', onExit);
          if (e) reject(e);
          else resolve();
        }
        child.stderr?.on('data', check);
        child.on('exit', onExit);
        check();
      });
    },
    async stop(signal = 'SIGINT', timeoutMs = 5000) {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
      const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
      const code = await exit;
      clearTimeout(timer);
      return code;
    },
  };
}

/** Starts `tunpipe ARGS` inside the namespace. */
export function startTunpipe(ns: Netns, args: string[]): TunpipeProcess {
  return watchProcess(ns.spawn(process.execPath, [TUNPIPE, ...args]));
}

/** Parses iputils ping's summary: transmitted and received counts. */
export function pingSummary(output: string): { transmitted: number; received: number } {
  const m = /(\d+) packets transmitted, (\d+) received/.exec(output);
  if (!m) throw new Error(`no ping summary in:\n${output}`);
  return { transmitted: Number(m[1]), received: Number(m[2]) };
}
