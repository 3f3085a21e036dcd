/**
 * Starting and waiting for child processes. Every child goes through spawnTracked so that an interrupted bench
 * can stop them all before it deletes their namespace: a responder left running would keep its device (and the
 * namespace) alive after `ip netns del`.
 */
import { spawn, type ChildProcess, type SpawnOptions } from 'node:child_process';
import { performance } from 'node:perf_hooks';

const children = new Set<ChildProcess>();
let shuttingDown = false;

export function isShuttingDown(): boolean {
  return shuttingDown;
}

/** Returns false if shutdown had already begun (the first caller does the cleanup). */
export function beginShutdown(): boolean {
  if (shuttingDown) return false;
  shuttingDown = true;
  return true;
}

export function spawnTracked(cmd: string, args: string[], options: SpawnOptions): ChildProcess {
  // Once shutdown has begun, starting anything new would race with the namespace deletion.
  if (shuttingDown) throw new Error('shutting down');
  const child = spawn(cmd, args, options);
  children.add(child);
  child.once('exit', () => children.delete(child));
  child.once('error', () => children.delete(child));
  return child;
}

export function isRunning(child: ChildProcess): boolean {
  return child.exitCode === null && child.signalCode === null;
}

export function exitDescription(child: ChildProcess): string {
  return child.signalCode !== null ? `signal ${child.signalCode}` : `exit ${child.exitCode}`;
}

/** Resolves true when the child has exited, false if it is still running after timeoutMs. */
export function waitForExit(child: ChildProcess, timeoutMs: number): Promise<boolean> {
  if (!isRunning(child)) return Promise.resolve(true);
  return new Promise((resolve) => {
    const timer = setTimeout(() => {
      child.off('exit', onExit);
      resolve(false);
    }, timeoutMs);
    const onExit = () => {
      clearTimeout(timer);
      resolve(true);
    };
    child.once('exit', onExit);
  });
}

export interface CommandResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  wallMs: number;
  timedOut: boolean;
}

/** Runs a command to completion; kills it after timeoutMs (a safety net: pings carry their own -w). */
export function runCommand(cmd: string, args: string[], timeoutMs: number): Promise<CommandResult> {
  return new Promise((resolve, reject) => {
    const started = performance.now();
    const child = spawnTracked(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    let timedOut = false;
    let settled = false;
    child.stdout?.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr?.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill('SIGKILL');
    }, timeoutMs);
    child.once('error', (err) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      reject(err);
    });
    child.once('close', (code, signal) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      resolve({ code, signal, stdout, stderr, wallMs: performance.now() - started, timedOut });
    });
  });
}

/** Like runCommand, but a non-zero exit is an error carrying the command's stderr. */
export async function runChecked(cmd: string, args: string[], timeoutMs = 10_000): Promise<string> {
  const r = await runCommand(cmd, args, timeoutMs);
  if (r.code !== 0) {
    const why = r.timedOut ? 'timed out' : `exit ${r.code ?? r.signal}`;
    throw new Error(`${cmd} ${args.join(' ')}: ${why}: ${r.stderr.trim()}`);
  }
  return r.stdout;
}

/** SIGTERM to every child still running, SIGKILL to the ones that ignore it. */
export async function stopAllChildren(): Promise<void> {
  const alive = [...children].filter(isRunning);
  for (const c of alive) c.kill('SIGTERM');
  await Promise.all(alive.map((c) => waitForExit(c, 1500)));
  const stubborn = alive.filter(isRunning);
  for (const c of stubborn) c.kill('SIGKILL');
  await Promise.all(stubborn.map((c) => waitForExit(c, 1000)));
}

/** For the process 'exit' handler, where nothing asynchronous runs any more. */
export function killAllChildrenSync(): void {
  for (const c of children) if (isRunning(c)) c.kill('SIGKILL');
}
