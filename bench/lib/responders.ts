/**
 * The responders under test (the table below), and one responder's life: start it inside its namespace, wait
 * until its device is usable, read the device's counters, stop it with SIGTERM and time the exit.
 */
import { execFileSync, type ChildProcess } from 'node:child_process';
import * as path from 'node:path';
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { exitDescription, isRunning, runChecked, runCommand, spawnTracked, waitForExit } from './children.js';
import { DEV, LOCAL_ADDR, LOCAL_CIDR, REF_SOURCE } from './constants.js';
import { oneLine } from './text.js';

/** How long a responder gets to exit after SIGTERM before it is killed (and its process counts as failed). */
export const STOP_GRACE_MS = 3000;
const DEVICE_READY_TIMEOUT_MS = 8000;

export interface RunFiles {
  /** The compiled bench/echo-ref.c. */
  refBinary: string;
  /** Where a capturing responder writes its pcap (a fresh path per process). */
  pcap: string;
}

/** Bars from the issue, relative to the C reference; absent = shown for information only. */
export interface Bars {
  minRepliesRatio?: number;
  maxCpuRatio?: number;
  maxRttExtraUs?: number;
}

export interface ResponderSpec {
  label: string;
  /** Command run inside the namespace (through `ip netns exec`, which execs it: its pid is the responder). */
  argv: (files: RunFiles) => string[];
  /** false: the harness adds the address and sets the link up once the device exists. */
  assignsAddress: boolean;
  /** Compare the pcap it writes with the number of requests it read. */
  checksCapture?: boolean;
  /** Also run the long flood that watches RSS. */
  soak?: boolean;
  usesCli: boolean;
  bars: Bars;
  /** Run only when named in --only (a comparison, not part of the default run). */
  optional?: boolean;
}

export const REF_LABEL = 'ref';

/** The reference comes first: blocks run in this order, then reversed. Add a row to compare another pipeline. */
export function responderTable(cli: string): ResponderSpec[] {
  const tunpipe = (pipeline: string) => [process.execPath, cli, '--dev', DEV, '--addr', LOCAL_CIDR, pipeline];
  return [
    { label: REF_LABEL, argv: (f) => [f.refBinary, DEV], assignsAddress: false, usesCli: false, bars: {} },
    {
      label: 'tunpipe',
      argv: () => tunpipe('parse | icmp-echo | checksum'),
      assignsAddress: true,
      soak: true,
      usesCli: true,
      bars: { minRepliesRatio: 0.95, maxCpuRatio: 1.3, maxRttExtraUs: 20 },
    },
    {
      label: 'tunpipe+pcap',
      argv: (f) => tunpipe(`parse | pcap ${f.pcap} | icmp-echo | checksum`),
      assignsAddress: true,
      checksCapture: true,
      usesCli: true,
      bars: { minRepliesRatio: 0.85 },
    },
    {
      // A filter in front of the echo (issue 10): it must keep the echo's bars.
      label: 'tunpipe+filter',
      argv: () => tunpipe("parse | filter icmp | icmp-echo | checksum"),
      assignsAddress: true,
      usesCli: true,
      bars: { minRepliesRatio: 0.95 },
    },
    {
      // The worker's fallback without io_uring: poll(), then read() and write() per packet.
      label: 'tunpipe-poll',
      argv: () => ['env', 'TUNPIPE_IO=poll', ...tunpipe('parse | icmp-echo | checksum')],
      assignsAddress: true,
      usesCli: true,
      bars: {},
      optional: true,
    },
  ];
}

export class UsageError extends Error {}

/** The responders named by --only (null: all); 'offline' is a known name too, handled by the caller. */
export function selectResponders(all: ResponderSpec[], only: Set<string> | null): ResponderSpec[] {
  if (only === null) return all.filter((s) => !s.optional);
  const known = new Set([...all.map((s) => s.label), 'offline', 'forward', 'queues', 'filter', 'impair', 'ipv6']);
  const unknown = [...only].filter((l) => !known.has(l));
  if (unknown.length) throw new UsageError(`--only: unknown ${unknown.join(', ')} (known: ${[...known].join(', ')})`);
  return all.filter((s) => only.has(s.label));
}

/** Compiled fresh each time with the machine's cc, so the reference is always built the same way. */
export function compileReference(tmpDir: string): string {
  const out = path.join(tmpDir, 'echo-ref');
  try {
    execFileSync('cc', ['-O2', '-Wall', '-Wextra', '-o', out, REF_SOURCE], { stdio: ['ignore', 'ignore', 'pipe'] });
  } catch (err) {
    const msg = String((err as { stderr?: Buffer }).stderr ?? err).trim();
    throw new Error(`cannot compile ${REF_SOURCE} with cc -O2:\n${msg}`);
  }
  return out;
}

export interface DeviceView {
  exists: boolean;
  up: boolean;
  hasAddress: boolean;
  /** Packets the kernel handed to the responder's read() (tun counts tx when user space reads). */
  txPackets: number;
  txDropped: number;
  /** Packets the responder wrote. */
  rxPackets: number;
}

export async function readDevice(ns: string): Promise<DeviceView> {
  const r = await runCommand('ip', ['-n', ns, '-j', '-s', 'addr', 'show', 'dev', DEV], 5000);
  const none = { exists: false, up: false, hasAddress: false, txPackets: 0, txDropped: 0, rxPackets: 0 };
  if (r.code !== 0) return none;
  type Link = {
    flags?: string[];
    addr_info?: { family?: string; local?: string }[];
    stats64?: { rx?: { packets?: number }; tx?: { packets?: number; dropped?: number } };
  };
  const [link] = JSON.parse(r.stdout) as Link[];
  if (!link) return none;
  return {
    exists: true,
    up: (link.flags ?? []).includes('UP'),
    hasAddress: (link.addr_info ?? []).some((a) => a.family === 'inet' && a.local === LOCAL_ADDR),
    txPackets: link.stats64?.tx?.packets ?? 0,
    txDropped: link.stats64?.tx?.dropped ?? 0,
    rxPackets: link.stats64?.rx?.packets ?? 0,
  };
}

export interface Responder {
  spec: ResponderSpec;
  /** The namespace it runs in, alone. */
  ns: string;
  child: ChildProcess;
  pid: number;
  output: () => string;
}

export function startResponder(spec: ResponderSpec, ns: string, files: RunFiles): Responder {
  const argv = spec.argv(files);
  const child = spawnTracked('ip', ['netns', 'exec', ns, ...argv], { stdio: ['ignore', 'pipe', 'pipe'] });
  if (child.pid === undefined) throw new Error(`cannot start ${spec.label}: ${argv.join(' ')}`);
  // Keep only the tail of what it prints: enough to explain a failure, bounded if it logs per packet.
  let tail = '';
  const keep = (d: Buffer) => (tail = (tail + d.toString('utf8')).slice(-4000));
  child.stdout?.on('data', keep);
  child.stderr?.on('data', keep);
  return { spec, ns, child, pid: child.pid, output: () => tail.trim() };
}

const EXITED_BEFORE_READY = 'exited before its device was ready';

/** Polls the device until it exists (then configures it, for responders that do not) and has the address. */
export async function waitUntilDeviceReady(r: Responder): Promise<void> {
  const deadline = performance.now() + DEVICE_READY_TIMEOUT_MS;
  let configured = r.spec.assignsAddress;
  for (;;) {
    if (!isRunning(r.child)) throw new Error(EXITED_BEFORE_READY);
    const dev = await readDevice(r.ns);
    if (dev.exists && !configured) {
      await runChecked('ip', ['-n', r.ns, 'addr', 'add', LOCAL_CIDR, 'dev', DEV]);
      await runChecked('ip', ['-n', r.ns, 'link', 'set', DEV, 'up']);
      configured = true;
      continue;
    }
    if (dev.exists && dev.up && dev.hasAddress) return;
    if (performance.now() > deadline) {
      const seen = dev.exists ? `exists, up=${dev.up}, ${LOCAL_ADDR}=${dev.hasAddress}` : 'missing';
      throw new Error(`${r.spec.label}: device ${DEV} not ready after ${DEVICE_READY_TIMEOUT_MS} ms (${seen})`);
    }
    await sleep(25);
  }
}

export interface StopResult {
  ms: number;
  killed: boolean;
  exit: string;
  /** It had exited on its own before we asked. */
  diedEarly: boolean;
}

export async function stopResponder(r: Responder): Promise<StopResult> {
  if (!isRunning(r.child)) return { ms: 0, killed: false, exit: exitDescription(r.child), diedEarly: true };
  const started = performance.now();
  r.child.kill('SIGTERM');
  const exited = await waitForExit(r.child, STOP_GRACE_MS);
  if (!exited) {
    r.child.kill('SIGKILL');
    await waitForExit(r.child, 2000);
  }
  return { ms: performance.now() - started, killed: !exited, exit: exitDescription(r.child), diedEarly: false };
}

/** The error, prefixed with how the responder ended if it is gone (then that is the real cause). */
export function errorText(err: unknown, r: Responder): string {
  const msg = err instanceof Error ? err.message : String(err);
  if (isRunning(r.child)) return msg;
  const out = oneLine(r.output());
  const exited = `${r.spec.label} exited (${exitDescription(r.child)}${out ? `; its output: ${out}` : '; no output'})`;
  return msg === EXITED_BEFORE_READY ? `${exited} before its device was ready` : `${exited}, then: ${msg}`;
}
