/**
 * The bench's private network namespaces `tpbench-<pid>-<n>` (one per responder, so that the responders can be
 * alive together, each with its own tpb0 and its own kernel counters) and its temp dir: creating them, running
 * commands inside a namespace, and removing all of them on every way out (normal end, failure,
 * SIGINT/SIGTERM/SIGHUP), after the child processes are stopped. Nothing is ever configured in the host namespace.
 */
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import {
  beginShutdown,
  isShuttingDown,
  killAllChildrenSync,
  runCommand,
  stopAllChildren,
  type CommandResult,
} from './children.js';
import { log } from './log.js';
import { listNetns, removeNetns, removeStaleNetns } from '../../test/helpers/netns-remove.js';

const NAME_PREFIX = 'tpbench-';

/** Namespaces created and not yet removed. */
const created = new Set<string>();
let tmpDir: string | null = null;

export function ensureRoot(): void {
  if (process.getuid?.() !== 0) {
    console.error('bench: needs root (network namespaces and TUN devices); run it with sudo');
    process.exit(1);
  }
}

/**
 * A bench killed with SIGKILL cannot clean up; its namespaces are named after its pid, so remove the ones whose
 * bench is gone, with the responders it left running in them. Only names of exactly this form are touched:
 * other people's namespaces are none of our business.
 */
export function removeStaleNamespaces(): void {
  const removed = removeStaleNetns(/^tpbench-(\d+)(-\d+)?$/, (name) => log(`could not remove the stale namespace ${name}`));
  for (const name of removed) log(`removed stale namespace ${name} (its bench process is gone)`);
}

/** Creates namespace number n with lo up and IPv6 off; exits the bench if it cannot. */
export function createNamespace(n: number): string {
  const name = `${NAME_PREFIX}${process.pid}-${n}`;
  try {
    execFileSync('ip', ['netns', 'add', name], { stdio: ['ignore', 'ignore', 'pipe'] });
  } catch (err) {
    const msg = String((err as { stderr?: Buffer }).stderr ?? err).trim().split('\n')[0];
    console.error(`bench: cannot create network namespace ${name} (ip netns add: ${msg})`);
    process.exit(1); // the 'exit' handler removes the ones created before
  }
  created.add(name);
  const sh = (args: string[]) => execFileSync('ip', ['netns', 'exec', name, ...args], { stdio: 'ignore' });
  sh(['ip', 'link', 'set', 'lo', 'up']);
  // Keep the device quiet: with IPv6 on, the kernel sends router solicitations and MLD reports into it, and
  // the responder would read packets that are not ours.
  sh(['sysctl', '-qw', 'net.ipv6.conf.all.disable_ipv6=1', 'net.ipv6.conf.default.disable_ipv6=1']);
  return name;
}

/** Runs a command inside a namespace (`ip netns exec` execs it, so its pid is the command's). */
export function nsExec(ns: string, args: string[], timeoutMs: number): Promise<CommandResult> {
  return runCommand('ip', ['netns', 'exec', ns, ...args], timeoutMs);
}

export function makeTmpDir(): string {
  tmpDir = fs.mkdtempSync(path.join(os.tmpdir(), NAME_PREFIX));
  return tmpDir;
}

function removeNamespacesSync(): void {
  if (created.size === 0) return;
  for (const ns of created) {
    try {
      removeNetns(ns);
    } catch {
      // Reported below.
    }
  }
  const left = listNetns().filter((ns) => created.has(ns));
  created.clear();
  for (const ns of left) log(`bench: WARNING: namespace ${ns} is still there; remove it: ip netns del ${ns}`);
}

function removeTmpDirSync(): void {
  if (tmpDir === null) return;
  fs.rmSync(tmpDir, { recursive: true, force: true });
  tmpDir = null;
}

/** The single way out once the namespace exists: children first, then the namespace, then the temp dir. */
export async function shutdown(code: number): Promise<never> {
  if (!beginShutdown()) return new Promise<never>(() => {}); // the first caller exits the process
  await stopAllChildren();
  removeNamespacesSync();
  removeTmpDirSync();
  process.exit(code);
}

export function installCleanupOnSignals(): void {
  const onSignal = (sig: NodeJS.Signals, code: number) => {
    if (isShuttingDown()) return;
    log(`\nbench: ${sig}: stopping child processes, removing namespaces ${[...created].join(', ') || '(none)'}`);
    void shutdown(code);
  };
  process.on('SIGINT', () => onSignal('SIGINT', 130));
  process.on('SIGTERM', () => onSignal('SIGTERM', 143));
  process.on('SIGHUP', () => onSignal('SIGHUP', 129));
  // Last resort for paths that bypass shutdown() (an exception thrown from a callback): synchronous cleanup.
  process.on('exit', () => {
    killAllChildrenSync();
    removeNamespacesSync();
    removeTmpDirSync();
  });
}
