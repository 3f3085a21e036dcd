/**
 * Running the compiled CLI as a child process for end-to-end tests: its exit code, stdout and stderr, plus
 * temporary directories under os.tmpdir() and the checks every user-facing error must pass.
 */
import { execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** The compiled CLI entry (dist/bin/tunpipe.js). */
export const TUNPIPE_BIN = fileURLToPath(new URL('../../bin/tunpipe.js', import.meta.url));

/** The repository root (where package.json and examples/ are), seen from dist/test/helpers. */
export const REPO_ROOT = fileURLToPath(new URL('../../../', import.meta.url));

export interface CliResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: Buffer;
  stderr: string;
}

export interface CliOptions {
  cwd?: string;
  env?: NodeJS.ProcessEnv;
  /** Killed with SIGKILL after this long (a hung CLI fails the test instead of hanging the suite). */
  timeoutMs?: number;
}

/** Runs `node dist/bin/tunpipe.js ARGS` and collects what it printed. */
export function runCli(args: string[], opts: CliOptions = {}): Promise<CliResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [TUNPIPE_BIN, ...args], {
      cwd: opts.cwd,
      env: opts.env ?? process.env,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const out: Buffer[] = [];
    let err = '';
    child.stdout!.on('data', (d: Buffer) => out.push(d));
    child.stderr!.on('data', (d: Buffer) => (err += d.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), opts.timeoutMs ?? 20_000);
    child.on('error', reject);
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout: Buffer.concat(out), stderr: err });
    });
  });
}

/** A fresh directory under os.tmpdir(); `remove()` deletes it with everything in it. */
export function tempDir(prefix = 'tunpipe-test-'): { path: string; file(name: string): string; remove(): void } {
  const path = mkdtempSync(join(tmpdir(), prefix));
  return { path, file: (name) => join(path, name), remove: () => rmSync(path, { recursive: true, force: true }) };
}

/** Lines of a JavaScript stack trace ("    at fn (file:line)"): a user-facing error must have none. */
export function stackTraceLines(text: string): string[] {
  return text.split('\n').filter((l) => /^\s+at\s/.test(l));
}

/** The non-empty lines of a text. */
export function lines(text: string): string[] {
  return text.split('\n').filter((l) => l.trim() !== '');
}

/**
 * Writes `source` (an ES module that prints one line of JSON) to `script` and runs it as a child whose
 * files may grow to `kib` KiB at most (`ulimit -f`): a write that crosses the limit is cut short, the next
 * fails with EFBIG. Returns what it printed, parsed.
 */
export function runWithFileLimit(script: string, source: string, kib: number): Record<string, any> {
  writeFileSync(script, source);
  return JSON.parse(execFileSync('bash', ['-c', `ulimit -f ${kib} && exec "${process.execPath}" "${script}"`], { encoding: 'utf8' }));
}
