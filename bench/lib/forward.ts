/**
 * The forwarding section: tunpipe as a wire between two namespaces (`from tpa0 | to tpb0; from tpb0 | to
 * tpa0`) against a plain C forwarder (bench/fwd-ref.c: poll() on both fds, one read() and one write() per
 * packet), on the same devices in the same run, paired: ref and tunpipe take turns (ABBA...), and each
 * pair gives ratios. Measured per turn: iperf3 TCP from A to B (Gbit/s), `ping -f` round trips per second
 * from A to B (answered by B's kernel), and the forwarder's CPU per packet moved (its threads' schedstat
 * over the iperf3 run, divided by the packets the two devices handed to user space).
 *
 * Safety: three namespaces of the bench's own (A and B hold the persistent devices tpa0 198.18.0.1/24 and
 * tpb0 198.18.0.2/24; the forwarder runs in S, so no device can land in the host's namespace); iperf3 and
 * ping are bounded in time and count; everything is removed with the bench's namespaces.
 */
import { execFileSync } from 'node:child_process';
import * as path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { runCommand, spawnTracked, waitForExit, isRunning } from './children.js';
import { REPO_ROOT } from './constants.js';
import { ioPathFromOutput } from './io-path.js';
import { log } from './log.js';
import { createNamespace } from './namespace.js';
import { cpuSince, readCpu } from './measure.js';
import { median } from './stats.js';
import { fmtNum } from './text.js';

export const FORWARD_PIPELINE = 'from tpa0 | to tpb0; from tpb0 | to tpa0';
const FWD_SOURCE = path.join(REPO_ROOT, 'bench', 'fwd-ref.c');

export interface ForwardOptions {
  cli: string;
  /** Both forwarders with IFF_VNET_HDR and TUNSETOFFLOAD (tunpipe --offload), on devices of their own. */
  offload?: boolean;
  tmpDir: string;
  pairs: number;
  iperfSeconds: number;
  pingCount: number;
}

/** One forwarder's turn. */
export interface ForwardTurn {
  label: 'ref' | 'tunpipe';
  pair: number;
  tcpGbit: number;
  tcpRetransmits: number;
  pingPerS: number;
  pingLost: number;
  cpuNsPerPacket: number;
  packets: number;
  /** How tunpipe moved packets, from its exit line (io_uring, poll). */
  io?: string;
  error?: string;
}

export interface ForwardResult {
  turns: ForwardTurn[];
  /** Per pair, tunpipe / ref. */
  ratios: { tcp: number[]; ping: number[]; cpu: number[] };
}

function sh(ns: string, args: string[]): string {
  return execFileSync('ip', ['netns', 'exec', ns, ...args], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
}

/** Packets the device handed to user space (tun counts them as tx) in its namespace. */
function userPackets(ns: string, dev: string): number {
  const j = JSON.parse(execFileSync('ip', ['-n', ns, '-j', '-s', 'link', 'show', 'dev', dev], { encoding: 'utf8' })) as { stats64: { tx: { packets: number } } }[];
  return j[0].stats64.tx.packets;
}

function compile(tmpDir: string): string {
  const out = path.join(tmpDir, 'fwd-ref');
  execFileSync('cc', ['-O2', '-Wall', '-Wextra', '-o', out, FWD_SOURCE], { stdio: ['ignore', 'ignore', 'pipe'] });
  return out;
}

/** Starts a forwarder in namespace `self` and waits for its `ready` line on stderr; `stop()` ends it and gives its stderr. */
export async function startForwarder(self: string, argv: string[], ready: RegExp): Promise<{ pid: number; stop: () => Promise<string> }> {
  const child = spawnTracked('ip', ['netns', 'exec', self, ...argv], { stdio: ['ignore', 'ignore', 'pipe'] });
  let err = '';
  child.stderr!.setEncoding('utf8').on('data', (d: string) => (err += d));
  const deadline = Date.now() + 10_000;
  while (!ready.test(err)) {
    if (!isRunning(child) || Date.now() > deadline) throw new Error(`forwarder did not start: ${err.trim()}`);
    await sleep(20);
  }
  return {
    pid: child.pid!,
    stop: async () => {
      child.kill('SIGTERM');
      if (!(await waitForExit(child, 3000))) child.kill('SIGKILL');
      return err;
    },
  };
}

async function turn(label: ForwardTurn['label'], pair: number, ns: { a: string; b: string; self: string }, opts: ForwardOptions, ref: string): Promise<ForwardTurn> {
  const argv =
    label === 'ref'
      ? [ref, ns.a, 'tpa0', ns.b, 'tpb0', ...(opts.offload ? ['offload'] : [])]
      : [process.execPath, opts.cli, ...(opts.offload ? ['--offload'] : []), '--dev', 'tpa0', '--netns', ns.a, '--dev', 'tpb0', '--netns', ns.b, FORWARD_PIPELINE];
  const fwd = await startForwarder(ns.self, argv, label === 'ref' ? /forwarding/ : /reading/);
  const out: ForwardTurn = { label, pair, tcpGbit: NaN, tcpRetransmits: NaN, pingPerS: NaN, pingLost: NaN, cpuNsPerPacket: NaN, packets: 0 };
  try {
    await sleep(200);
    const ping = await runCommand('ip', ['netns', 'exec', ns.a, 'ping', '-f', '-q', '-c', String(opts.pingCount), '-w', '20', '198.18.0.2'], 30_000);
    const m = /(\d+) packets transmitted, (\d+) received.*time (\d+)ms/s.exec(ping.stdout);
    if (m) {
      out.pingPerS = Number(m[2]) / (Number(m[3]) / 1000);
      out.pingLost = Number(m[1]) - Number(m[2]);
    }
    const before = readCpu(fwd.pid);
    const pktsBefore = userPackets(ns.a, 'tpa0') + userPackets(ns.b, 'tpb0');
    const iperf = await runCommand('ip', ['netns', 'exec', ns.a, 'iperf3', '-c', '198.18.0.2', '-J', '-t', String(opts.iperfSeconds)], (opts.iperfSeconds + 15) * 1000);
    const cpu = cpuSince(fwd.pid, before);
    out.packets = userPackets(ns.a, 'tpa0') + userPackets(ns.b, 'tpb0') - pktsBefore;
    out.cpuNsPerPacket = out.packets > 0 ? (cpu.us * 1000) / out.packets : NaN;
    const j = JSON.parse(iperf.stdout) as { end?: { sum_received?: { bits_per_second: number }; sum_sent?: { retransmits?: number } }; error?: string };
    if (j.error) out.error = `iperf3: ${j.error}`;
    out.tcpGbit = (j.end?.sum_received?.bits_per_second ?? NaN) / 1e9;
    out.tcpRetransmits = j.end?.sum_sent?.retransmits ?? NaN;
  } catch (err) {
    out.error = (err as Error).message;
  } finally {
    const err = await fwd.stop();
    out.io = ioPathFromOutput(err);
  }
  return out;
}

/** Runs the forwarding section: `pairs` pairs of turns, alternating which forwarder goes first. */
export async function runForward(opts: ForwardOptions): Promise<ForwardResult> {
  const ref = compile(opts.tmpDir);
  const base = opts.offload ? 103 : 100;
  const ns = { a: createNamespace(base), b: createNamespace(base + 1), self: createNamespace(base + 2) };
  const vnet = opts.offload ? ['vnet_hdr'] : [];
  sh(ns.a, ['ip', 'tuntap', 'add', 'dev', 'tpa0', 'mode', 'tun', ...vnet]);
  sh(ns.a, ['ip', 'addr', 'add', '198.18.0.1/24', 'dev', 'tpa0']);
  sh(ns.a, ['ip', 'link', 'set', 'tpa0', 'up']);
  sh(ns.b, ['ip', 'tuntap', 'add', 'dev', 'tpb0', 'mode', 'tun', ...vnet]);
  sh(ns.b, ['ip', 'addr', 'add', '198.18.0.2/24', 'dev', 'tpb0']);
  sh(ns.b, ['ip', 'link', 'set', 'tpb0', 'up']);
  const server = spawnTracked('ip', ['netns', 'exec', ns.b, 'iperf3', '-s', '-B', '198.18.0.2'], { stdio: 'ignore' });
  await sleep(300);
  const turns: ForwardTurn[] = [];
  const ratios = { tcp: [] as number[], ping: [] as number[], cpu: [] as number[] };
  try {
    for (let pair = 0; pair < opts.pairs; pair++) {
      const order: ForwardTurn['label'][] = pair % 2 === 0 ? ['ref', 'tunpipe'] : ['tunpipe', 'ref'];
      const got: Partial<Record<ForwardTurn['label'], ForwardTurn>> = {};
      for (const label of order) {
        const t = await turn(label, pair, ns, opts, ref);
        turns.push(t);
        got[label] = t;
        log(`forward${opts.offload ? ' (offload)' : ''} pair ${pair + 1} ${label}: TCP ${fmtNum(t.tcpGbit, 2)} Gbit/s, ping -f ${fmtNum(t.pingPerS, 0)}/s, ${fmtNum(t.cpuNsPerPacket, 0)} ns CPU/packet${t.io ? ` (${t.io})` : ''}${t.error ? `; ${t.error}` : ''}`);
      }
      const r = got.ref!;
      const c = got.tunpipe!;
      // A turn that failed gives no ratio (NaN), and counts as a failed pair in the report.
      ratios.tcp.push(c.tcpGbit / r.tcpGbit);
      ratios.ping.push(c.pingPerS / r.pingPerS);
      ratios.cpu.push(c.cpuNsPerPacket / r.cpuNsPerPacket);
    }
  } finally {
    server.kill('SIGTERM');
    await waitForExit(server, 2000);
  }
  return { turns, ratios };
}

/** The section's table: medians of each forwarder's turns and of the paired ratios (with their range). */
export function formatForward(res: ForwardResult, offload = false): string {
  const of = (label: ForwardTurn['label'], k: 'tcpGbit' | 'pingPerS' | 'cpuNsPerPacket') => median(res.turns.filter((t) => t.label === label).map((t) => t[k]).filter(Number.isFinite));
  const range = (xs: number[]) => {
    const ok = xs.filter(Number.isFinite);
    const failed = xs.length - ok.length;
    return `${fmtNum(median(ok), 2)} [${fmtNum(Math.min(...ok), 2)}..${fmtNum(Math.max(...ok), 2)}]${failed ? `, ${failed} of ${xs.length} pairs failed` : ''}`;
  };
  const io = [...new Set(res.turns.filter((t) => t.label === 'tunpipe').map((t) => t.io ?? '?'))].join(', ');
  const rows = [
    ['metric', 'C forwarder', `tunpipe (${io})`, 'paired ratio: median [range]'],
    ['iperf3 TCP, Gbit/s', fmtNum(of('ref', 'tcpGbit'), 2), fmtNum(of('tunpipe', 'tcpGbit'), 2), range(res.ratios.tcp)],
    ['ping -f round trips/s', fmtNum(of('ref', 'pingPerS'), 0), fmtNum(of('tunpipe', 'pingPerS'), 0), range(res.ratios.ping)],
    ['CPU ns per packet (TCP)', fmtNum(of('ref', 'cpuNsPerPacket'), 0), fmtNum(of('tunpipe', 'cpuNsPerPacket'), 0), range(res.ratios.cpu)],
  ];
  const w = rows[0].map((_, i) => Math.max(...rows.map((r) => r[i].length)));
  const title = offload
    ? `forwarding with offloads: tunpipe --offload '${FORWARD_PIPELINE}', against bench/fwd-ref.c offload (IFF_VNET_HDR, TUNSETOFFLOAD; super-packets up to 64 KiB whole)`
    : `forwarding: '${FORWARD_PIPELINE}' between two namespaces, against bench/fwd-ref.c (poll, read/write per packet)`;
  return [title, ...rows.map((r) => r.map((c, i) => c.padEnd(w[i])).join('  '))].join('\n');
}
