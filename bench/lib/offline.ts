/**
 * The offline bench: the engine without a device. `tunpipe --read in.pcap --write out.pcap` answers a file of
 * generated echo requests; `tcpdump -r in.pcap -w out.pcap` on the same file is the cost of pure pcap file I/O
 * next to it. The two alternate (tunpipe first, then tcpdump first, ...) for the same reason the online runs
 * do: each pair sees the same machine state, so the per-pair ratio is steadier than either number alone.
 *
 * Start-up on its own: `tunpipe --version` (Node, the CLI's own modules, no stage) against `node -e 0`
 * (Node alone), alternating, several times each; the difference is what tunpipe adds to every run.
 *
 * A floor: each pair also times ../offline-floor.ts, one hand-written loop that does only the echo's work,
 * none of tunpipe: what a single Node thread does at best here.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { performance } from 'node:perf_hooks';
import { runCommand, isShuttingDown, type CommandResult } from './children.js';
import { TIME_BUDGET_S } from './constants.js';
import { elapsedS, log } from './log.js';
import { isValidEchoReply, scanPcap, writeEchoRequestPcap } from './pcapfile.js';
import { median } from './stats.js';
import { fmtInt, fmtNum, oneLine } from './text.js';

export const OFFLINE_PIPELINE = 'parse | icmp-echo | checksum';

export interface OfflineToolRun {
  ok: boolean;
  note?: string;
  /** Wall time of the whole command, Node's start-up included: the number a user of the CLI gets. */
  wallS?: number;
  pktsPerSec?: number;
  outRecords?: number;
  /** Only for tunpipe: records of out.pcap that are a correct reply (tcpdump copies requests). */
  validReplies?: number;
  /**
   * Only for tunpipe: wall time of the same command on a file with no packets (Node's start-up, module
   * loading, opening the files), timed next to it; `steadyPktsPerSec` leaves it out.
   */
  fixedS?: number;
  steadyPktsPerSec?: number;
}

export interface OfflinePair {
  tunpipe: OfflineToolRun;
  tcpdump: OfflineToolRun;
  tunpipeFirst: boolean;
  /** bench/offline-floor.ts on the same file, after the two (absent in results files written before it). */
  floor?: OfflineToolRun;
}

/** Wall times of `node -e 0` and `tunpipe --version`, run in turn (ms; a failed run is left out). */
export interface StartupResult {
  nodeMs: number[];
  versionMs: number[];
  note?: string;
}

export interface OfflineResult {
  packets: number;
  pairs: OfflinePair[];
  /** Absent in results files written before the start-up rows. */
  startup?: StartupResult;
}

/** How many times each start-up command runs. */
export const STARTUP_RUNS = 9;

/** Times one command that turns the input into outFile; counts the output and, if asked, checks each reply. */
async function timeTool(
  cmd: string,
  args: string[],
  outFile: string,
  packets: number,
  checkReplies: boolean,
): Promise<OfflineToolRun> {
  let r: CommandResult;
  // Up to a minute, but not far past the bench's time budget.
  const timeoutS = Math.min(60, Math.max(10, TIME_BUDGET_S + 10 - elapsedS()));
  try {
    r = await runCommand(cmd, args, timeoutS * 1000);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    return { ok: false, note: code === 'ENOENT' ? `${cmd} not installed` : String(err) };
  }
  if (r.code !== 0 || r.timedOut) {
    const why = r.timedOut ? `timed out after ${fmtNum(timeoutS, 0)} s` : `exit ${r.code ?? r.signal}`;
    return { ok: false, note: `${why}: ${oneLine(r.stderr)}` };
  }
  let validReplies = 0;
  const countValid = (pkt: Buffer, linkType: number) => void (isValidEchoReply(pkt, linkType) && validReplies++);
  const scan = scanPcap(outFile, checkReplies ? countValid : undefined);
  fs.rmSync(outFile, { force: true });
  const wallS = r.wallMs / 1000;
  return {
    ok: true,
    wallS,
    pktsPerSec: packets / wallS,
    outRecords: scan.records,
    validReplies: checkReplies ? validReplies : undefined,
  };
}

export interface OfflineOptions {
  packets: number;
  pairs: number;
  cli: string;
}

/** `node -e 0` and `node CLI --version` in turn, `runs` times each: the start-up that tunpipe adds to Node's. */
export async function timeStartup(cli: string, runs = STARTUP_RUNS): Promise<StartupResult> {
  const out: StartupResult = { nodeMs: [], versionMs: [] };
  if (!fs.existsSync(cli)) return { ...out, note: `${cli} not found` };
  const once = async (args: string[], into: number[]) => {
    const r = await runCommand(process.execPath, args, 10_000);
    if (r.code === 0 && !r.timedOut) into.push(r.wallMs);
    else out.note ??= `${args.join(' ')}: exit ${r.code ?? r.signal}: ${oneLine(r.stderr)}`;
  };
  for (let i = 0; i < runs && !isShuttingDown(); i++) {
    // Alternate which goes first, as the pairs below do.
    if (i % 2 === 0) {
      await once(['-e', '0'], out.nodeMs);
      await once([cli, '--version'], out.versionMs);
    } else {
      await once([cli, '--version'], out.versionMs);
      await once(['-e', '0'], out.nodeMs);
    }
  }
  return out;
}

export async function runOffline(opts: OfflineOptions, dir: string): Promise<OfflineResult> {
  const startup = await timeStartup(opts.cli);
  log(`offline: start-up, median of ${STARTUP_RUNS}: node -e 0 ${fmtNum(median(startup.nodeMs), 1)} ms, tunpipe --version ${fmtNum(median(startup.versionMs), 1)} ms${startup.note ? ` (${startup.note})` : ''}`);
  const input = path.join(dir, 'in.pcap');
  const t0 = performance.now();
  writeEchoRequestPcap(input, opts.packets);
  const genS = (performance.now() - t0) / 1000;
  log(`offline: wrote ${fmtInt(opts.packets)} echo requests to ${input} in ${fmtNum(genS, 1)} s`);
  const empty = path.join(dir, 'empty.pcap');
  writeEchoRequestPcap(empty, 0);
  const out = path.join(dir, 'out.pcap');
  const cliArgs = (from: string) => [opts.cli, '--read', from, '--write', out, OFFLINE_PIPELINE];
  const tunpipe = async (): Promise<OfflineToolRun> => {
    if (!fs.existsSync(opts.cli)) return { ok: false, note: `${opts.cli} not found` };
    const fixed = await timeTool(process.execPath, cliArgs(empty), out, 0, false);
    const run = await timeTool(process.execPath, cliArgs(input), out, opts.packets, true);
    if (run.ok && fixed.ok && run.wallS! > fixed.wallS!) {
      run.fixedS = fixed.wallS;
      run.steadyPktsPerSec = opts.packets / (run.wallS! - fixed.wallS!);
    }
    return run;
  };
  let tcpdumpMissing: string | null = null;
  const tcpdump = async (): Promise<OfflineToolRun> => {
    if (tcpdumpMissing !== null) return { ok: false, note: tcpdumpMissing };
    const run = await timeTool('tcpdump', ['-r', input, '-w', out], out, opts.packets, false);
    if (run.note?.includes('not installed')) tcpdumpMissing = run.note;
    return run;
  };
  const floorScript = fileURLToPath(new URL('../offline-floor.js', import.meta.url));
  const floor = (): Promise<OfflineToolRun> => timeTool(process.execPath, [floorScript, input, out], out, opts.packets, true);
  const pairs: OfflinePair[] = [];
  for (let i = 0; i < opts.pairs && !isShuttingDown(); i++) {
    const tunpipeFirst = i % 2 === 0;
    const first = tunpipeFirst ? await tunpipe() : await tcpdump();
    const second = tunpipeFirst ? await tcpdump() : await tunpipe();
    const pair: OfflinePair = tunpipeFirst
      ? { tunpipe: first, tcpdump: second, tunpipeFirst }
      : { tunpipe: second, tcpdump: first, tunpipeFirst };
    pair.floor = await floor();
    pairs.push(pair);
    const both = `tunpipe ${describeTool(pair.tunpipe)}; tcpdump ${describeTool(pair.tcpdump)}; floor ${describeTool(pair.floor)}`;
    log(`offline pair ${i + 1}/${opts.pairs}: ${both}`);
    if (!pair.tunpipe.ok) break; // the same failure again would only cost time
  }
  fs.rmSync(input, { force: true });
  fs.rmSync(empty, { force: true });
  return { packets: opts.packets, pairs, startup };
}

function describeTool(t: OfflineToolRun): string {
  if (!t.ok) return `FAILED: ${t.note}`;
  const valid = t.validReplies !== undefined ? `, ${fmtInt(t.validReplies)} valid replies` : '';
  const steady = t.steadyPktsPerSec !== undefined ? `; ${fmtInt(t.steadyPktsPerSec)} pkts/s past ${fmtNum(t.fixedS!, 2)} s of start-up` : '';
  return `${fmtInt(t.pktsPerSec!)} pkts/s (${fmtNum(t.wallS!, 2)} s, ${fmtInt(t.outRecords!)} records${valid}${steady})`;
}
