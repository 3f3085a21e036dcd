/**
 * Removing the network namespaces that tests and the bench make, with whatever still runs in them. `ip netns
 * del` removes only the name: a process left inside (a tunpipe, an `iperf3 -D`, a ping of a test that was
 * killed) goes on running, and keeps the devices it holds, in namespaces of their own. So the processes
 * inside are killed first. Shared by test/helpers/netns.ts and bench/lib/namespace.ts; importing it does
 * nothing.
 */
import { execFileSync } from 'node:child_process';

function pidsIn(name: string): number[] {
  try {
    return execFileSync('ip', ['netns', 'pids', name], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] })
      .split('\n')
      .filter((l) => /^\d+$/.test(l.trim()))
      .map(Number);
  } catch {
    return [];
  }
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** SIGKILLs every process in namespace `name` and waits (a second at most) until they are gone. */
export function killProcessesIn(name: string): void {
  const pids = pidsIn(name).filter((pid) => pid !== process.pid);
  for (const pid of pids) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      /* gone already */
    }
  }
  const deadline = Date.now() + 1000;
  while (pids.some(isAlive) && Date.now() < deadline) execFileSync('sleep', ['0.01']);
}

/** Kills what runs in namespace `name`, then deletes it. Throws what `ip netns del` says when it cannot. */
export function removeNetns(name: string): void {
  killProcessesIn(name);
  execFileSync('ip', ['netns', 'del', name], { stdio: ['ignore', 'ignore', 'pipe'] });
}

/** The namespaces `ip netns list` shows, by name. */
export function listNetns(): string[] {
  return execFileSync('ip', ['netns', 'list'], { encoding: 'utf8' })
    .split('\n')
    .map((line) => line.split(' ')[0] ?? '')
    .filter(Boolean);
}

/**
 * Removes the namespaces named PREFIX-PID-N (`pattern` captures PID first) whose maker, process PID, is
 * gone: a run killed with SIGKILL could not remove its own. Returns the names removed; `onFail` hears of
 * each that could not be.
 */
export function removeStaleNetns(pattern: RegExp, onFail: (name: string, err: unknown) => void = () => {}): string[] {
  const removed: string[] = [];
  for (const name of listNetns()) {
    const m = pattern.exec(name);
    if (!m || isAlive(Number(m[1]))) continue;
    try {
      removeNetns(name);
      removed.push(name);
    } catch (err) {
      onFail(name, err);
    }
  }
  return removed;
}
