/**
 * Shared pieces of the fault tests: a quiet namespace (no IPv6, so that every packet the device carries is
 * one of ours), tunpipe answering on 198.18.0.1/24, ping in the background, memory readings from /proc, and
 * capture checks done by tcpdump and by our own record walk with the reference checksum. `inScene` puts the
 * usual setup together: a private directory, a quiet namespace, and what to stop when the test ends.
 */
import assert from 'node:assert/strict';
import { spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pingSummary, startTunpipe, withNetns, type Netns, type TunpipeProcess } from '../helpers/netns.js';
import { readPcapRecords, referenceChecksum } from '../helpers/packets.js';
import { judgeReplies } from '../helpers/netns-process.js';

export const DEVICE_ADDR = '198.18.0.1/24';
/** The address pinged: a peer in the device's subnet, so the kernel routes it into the device. */
export const PEER = '198.18.0.2';

/** Turns IPv6 off in the namespace, before any device exists: no router solicitations or MLD reports. */
export function quiet(ns: Netns): void {
  ns.run('sysctl', ['-qw', 'net.ipv6.conf.all.disable_ipv6=1', 'net.ipv6.conf.default.disable_ipv6=1']);
}

/** Starts `tunpipe --dev DEV --addr 198.18.0.1/24 [extra] PIPELINE` and waits until the device is open. */
export async function startEcho(ns: Netns, dev: string, pipeline: string, extra: string[] = []): Promise<TunpipeProcess> {
  const tp = startTunpipe(ns, ['--dev', dev, '--addr', DEVICE_ADDR, ...extra, pipeline]);
  try {
    await tp.waitFor(/device \S+ open/);
  } catch (err) {
    await tp.stop('SIGKILL');
    throw err;
  }
  return tp;
}

/** The echo pipeline with a capture of every request on its way in. */
export function captureEchoPipeline(cap: string): string {
  return `parse | pcap ${cap} | icmp-echo | checksum`;
}

export interface PingResult {
  output: string;
  transmitted: number;
  received: number;
}

/** A ping running in the background (its own process: stopping it is by its pid). */
export interface BackgroundPing {
  child: ChildProcess;
  /** Resolves when ping has exited, with its summary. */
  done: Promise<PingResult>;
  /** SIGINT (ping then prints its summary) and wait for it. */
  stop(): Promise<PingResult>;
}

/** Starts `ping ARGS` in the namespace without waiting for it. Always bound it with -c and -w. */
export function pingInBackground(ns: Netns, args: string[]): BackgroundPing {
  const child = ns.spawn('ping', args);
  let output = '';
  child.stdout!.on('data', (d: Buffer) => (output += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (output += d.toString()));
  const done = new Promise<PingResult>((resolve) =>
    child.on('exit', () => {
      try {
        resolve({ output, ...pingSummary(output) });
      } catch {
        resolve({ output, transmitted: 0, received: 0 });
      }
    }),
  );
  return {
    child,
    done,
    stop() {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGINT');
      return done;
    },
  };
}

/** A ping flood at the peer in the background: `ping -f -c COUNT -w SECONDS -q PEER`. */
export function pingFlood(ns: Netns, count: number, seconds: number): BackgroundPing {
  return pingInBackground(ns, ['-f', '-c', String(count), '-w', String(seconds), '-q', PEER]);
}

/**
 * Runs ping to its end and returns its summary (also when replies were missing); rejects unless the kernel
 * took every reply ping counted, with no checksum error (see judgeReplies).
 */
export async function ping(ns: Netns, args: string[]): Promise<PingResult> {
  const before = ns.nstat();
  const r = await pingInBackground(ns, args).done;
  judgeReplies(before, ns.nstat(), args, r.received, r.output);
  return r;
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** A field of /proc/PID/status ("VmRSS", "Uid", ...), as text, or null when the process is gone. */
export function procStatus(pid: number, field: string): string | null {
  try {
    const m = new RegExp(`^${field}:\\s*(.*)$`, 'm').exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? m[1].trim() : null;
  } catch {
    return null;
  }
}

/** Resident memory of a process in KiB. */
export function vmRssKb(pid: number): number {
  const v = procStatus(pid, 'VmRSS');
  if (v === null) throw new Error(`process ${pid} is gone: no VmRSS`);
  return Number(/^(\d+)/.exec(v)![1]);
}

/** Resolves with the exit code, or with 'timeout' if the process has not exited after `ms`. */
export async function exitWithin(tp: TunpipeProcess, ms: number): Promise<number | string> {
  let timer: NodeJS.Timeout | undefined;
  const r = await Promise.race([tp.exited(), new Promise<string>((res) => (timer = setTimeout(() => res('timeout'), ms)))]);
  clearTimeout(timer);
  return r;
}

/** A fresh private directory under the system temp dir; removed by `cleanup`. */
export function tempDir(prefix: string): { dir: string; cleanup: () => void } {
  const dir = mkdtempSync(join(tmpdir(), `tunpipe-${prefix}-`));
  return { dir, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

/** What a fault test runs in: a quiet namespace of its own, a private directory, and what to stop at the end. */
export interface Scene {
  readonly ns: Netns;
  readonly dir: string;
  /** Starts tunpipe answering on DEV (see startEcho); SIGKILLed at the end if still running. */
  startEcho(dev: string, pipeline: string, extra?: string[]): Promise<TunpipeProcess>;
  /** The same with the pipeline of captureEchoPipeline, capturing to DIR/cap.pcap. */
  startCaptureEcho(dev: string): Promise<{ tp: TunpipeProcess; cap: string }>;
  /** Starts a ping flood at the peer (see pingFlood); stopped at the end. */
  startFlood(count: number, seconds: number): BackgroundPing;
  /** Runs `stop` when the test ends, passed or failed, before what was registered earlier (cleanup only). */
  atEnd(stop: () => unknown): void;
}

/**
 * Runs `fn` in a fresh private directory (named after `prefix`) and a fresh quiet namespace. When it ends,
 * whatever happened: what was registered to stop is stopped (last first), the namespace is deleted, then
 * the directory removed.
 */
export async function inScene<T>(prefix: string, fn: (scene: Scene) => Promise<T>): Promise<T> {
  const { dir, cleanup } = tempDir(prefix);
  try {
    return await withNetns(async (ns) => {
      quiet(ns);
      const stops: (() => unknown)[] = [];
      const scene: Scene = {
        ns,
        dir,
        atEnd: (stop) => void stops.push(stop),
        async startEcho(dev, pipeline, extra) {
          const tp = await startEcho(ns, dev, pipeline, extra);
          stops.push(() => tp.stop('SIGKILL'));
          return tp;
        },
        async startCaptureEcho(dev) {
          const cap = join(dir, 'cap.pcap');
          return { tp: await scene.startEcho(dev, captureEchoPipeline(cap)), cap };
        },
        startFlood(count, seconds) {
          const flood = pingFlood(ns, count, seconds);
          stops.push(() => flood.stop());
          return flood;
        },
      };
      try {
        return await fn(scene);
      } finally {
        await stopAll(stops.reverse());
      }
    }, 'tpfault');
  } finally {
    cleanup();
  }
}

/** Calls every one of `stops` in order, also after one throws; then throws the first error, if any. */
async function stopAll(stops: (() => unknown)[]): Promise<void> {
  const errors: unknown[] = [];
  for (const stop of stops) {
    try {
      await stop();
    } catch (err) {
      errors.push(err);
    }
  }
  if (errors.length) throw errors[0];
}

/** What tcpdump makes of a capture: packets it printed, its stderr, its exit status. */
export interface TcpdumpReading {
  count: number;
  lines: string[];
  stderr: string;
  status: number | null;
}

export function tcpdumpRead(file: string): TcpdumpReading {
  const r = spawnSync('tcpdump', ['-nn', '-r', file], { encoding: 'utf8', timeout: 30_000, maxBuffer: 1 << 30 });
  if (r.error) throw r.error;
  const lines = (r.stdout ?? '').split('\n').filter((l) => l !== '');
  return { count: lines.length, lines, stderr: r.stderr ?? '', status: r.status };
}

/** The records of a little-endian pcap file, and the bytes left after the last whole one. */
export function pcapRecords(file: string): { records: Buffer[]; trailing: number } {
  const { packets, trailing } = readPcapRecords(readFileSync(file));
  return { records: packets, trailing };
}

/**
 * Why a captured record is not a sound echo request from the device (198.18.0.1) to the peer, checked with
 * the reference checksum, or null.
 */
function echoRequestProblem(p: Buffer): string | null {
  if (p.length < 28 || p[0] >> 4 !== 4) return `not an IPv4 packet (${p.length} bytes)`;
  const ihl = (p[0] & 15) * 4;
  const total = p.readUInt16BE(2);
  if (total !== p.length) return `total length ${total} but ${p.length} bytes captured`;
  if (referenceChecksum(p.subarray(0, ihl)) !== 0) return 'bad IPv4 header checksum';
  if (p[9] !== 1 || p[ihl] !== 8) return `not an ICMP echo request (protocol ${p[9]}, type ${p[ihl]})`;
  if (referenceChecksum(p.subarray(ihl)) !== 0) return 'bad ICMP checksum';
  if (p.subarray(12, 16).join('.') !== '198.18.0.1' || p.subarray(16, 20).join('.') !== PEER) return `addresses ${p.subarray(12, 16).join('.')} > ${p.subarray(16, 20).join('.')}`;
  return null;
}

/** The first problem among the records of a capture of echo requests, or null when every one is sound. */
export function firstBadRequest(records: Buffer[]): string | null {
  for (const [i, r] of records.entries()) {
    const bad = echoRequestProblem(r);
    if (bad) return `record ${i}: ${bad}`;
  }
  return null;
}

/**
 * Checks that a capture of echo requests holds only whole, sound records: tcpdump reads it without
 * complaint about truncation, it ends on a whole record, tcpdump and our record walk count the same records,
 * and every record is a sound echo request. Returns both readings for the test's own checks.
 */
export function soundCapture(file: string): { td: TcpdumpReading; records: Buffer[] } {
  const td = tcpdumpRead(file);
  assert.equal(td.status, 0, td.stderr);
  assert.doesNotMatch(td.stderr, /truncated/i, 'only whole records');
  const { records, trailing } = pcapRecords(file);
  assert.equal(trailing, 0, 'the file ends on a whole record');
  assert.equal(records.length, td.count, 'tcpdump and the record walk agree');
  assert.equal(firstBadRequest(records), null);
  return { td, records };
}

/** Lines of a stack trace ("    at fn (file:line)") in a process's stderr. */
export function stackLines(stderr: string): string[] {
  return stderr.split('\n').filter((l) => /^\s+at /.test(l));
}

/** The "N packets written to ..." figure the pcap stage reports in the counters, or null. */
export function reportedWritten(stderr: string): number | null {
  const m = /(\d+) packets written to/.exec(stderr);
  return m ? Number(m[1]) : null;
}

/** Runs `cmd` on the host and returns its stdout (for id, stat and the like). */
export function hostRun(cmd: string, args: string[]): string {
  const r = spawnSync(cmd, args, { encoding: 'utf8', timeout: 10_000 });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} failed: ${r.stderr}`);
  return r.stdout.trim();
}

/** Single-quotes a string for sh. */
export function shq(s: string): string {
  return `'${s.replace(/'/g, `'\\''`)}'`;
}


/** SIGKILLs the process whose pid a test's shell wrote to `pidFile`, if it is still there (cleanup only). */
export function killPidFile(pidFile: string): void {
  let pid: number;
  try {
    pid = Number(readFileSync(pidFile, 'utf8').trim());
  } catch {
    return;
  }
  if (!Number.isInteger(pid) || pid <= 1) return;
  try {
    process.kill(pid, 'SIGKILL');
  } catch {
    /* already gone */
  }
}

/** Size of a file in bytes, 0 while it does not exist yet (a capture is created after the device opens). */
export function fileSize(path: string): number {
  try {
    return statSync(path).size;
  } catch {
    return 0;
  }
}
