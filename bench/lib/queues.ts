/**
 * The queues section: the wire `from tpa0 | to tpb0; from tpb0 | to tpa0` with 1 queue against 2 (and up to
 * min(4, cores)) queues per device (`--queues N`: IFF_MULTI_QUEUE, a worker thread per queue), iperf3 TCP
 * with `-P 4` (four flows, for the kernel's flow hash to spread), plain and with `--offload`. tunpipe
 * against itself: every turn creates its devices (a single-queue device and a multi-queue one are not the
 * same device to the kernel), so the C forwarder of the forwarding section does not take part.
 *
 * Paired: in each pair every queue count has one turn, the order reversed from one pair to the next, and
 * the ratios are N queues / 1 queue within the pair. Measured per turn: iperf3 TCP Gbit/s, tunpipe's CPU
 * per packet moved (its threads' schedstat over the iperf3 run / the packets both devices handed it), and
 * how the packets fell on the queues (the exit report per queue). Valid only when the kernels of both
 * namespaces counted no TCP checksum error (nstat).
 *
 * What to expect depends on the cores: a worker per queue scales when every worker, the iperf3 client and
 * its server have a core each; on 2 cores 2 workers share them with iperf3 itself, which the table says.
 *
 * Safety: three namespaces of the bench's own (A and B for the devices, S for tunpipe), removed with the
 * bench's; iperf3 bounded in time.
 */
import { execFileSync } from 'node:child_process';
import { availableParallelism } from 'node:os';
import { setTimeout as sleep } from 'node:timers/promises';
import { runCommand, spawnTracked, waitForExit } from './children.js';
import { startForwarder, FORWARD_PIPELINE } from './forward.js';
import { ioPathFromOutput } from './io-path.js';
import { log } from './log.js';
import { createNamespace } from './namespace.js';
import { cpuSince, readCpu } from './measure.js';
import { median } from './stats.js';
import { fmtNum } from './text.js';

export interface QueuesOptions {
  cli: string;
  pairs: number;
  iperfSeconds: number;
  /** iperf3 -P: parallel TCP flows. */
  flows: number;
}

export interface QueuesTurn {
  queues: number;
  offload: boolean;
  pair: number;
  tcpGbit: number;
  tcpRetransmits: number;
  cpuNsPerPacket: number;
  packets: number;
  /** Packets tpa0 handed to each queue (the exit report), for how the kernel spread the flows. */
  readPerQueue: number[];
  /** The kernels of A and B counted no TCP checksum error over the turn. */
  nstatValid: boolean;
  io?: string;
  error?: string;
}

export interface QueuesResult {
  cores: number;
  counts: number[];
  flows: number;
  turns: QueuesTurn[];
  /** Per offload setting, per queue count N > 1: per pair, N queues / 1 queue. */
  ratios: { offload: boolean; queues: number; tcp: number[]; cpu: number[] }[];
}

/** Queue counts to run: 1, 2, ... up to min(4, cores), and at least 1 and 2. */
export function queueCounts(cores: number): number[] {
  const top = Math.max(2, Math.min(4, cores));
  return Array.from({ length: top }, (_, i) => i + 1);
}

function tcpCsumErrors(ns: string): number {
  const out = execFileSync('ip', ['netns', 'exec', ns, 'nstat', '-asz', 'TcpInCsumErrors'], { encoding: 'utf8' });
  const m = /TcpInCsumErrors\s+(\d+)/.exec(out);
  if (!m) throw new Error(`nstat in ${ns} printed no TcpInCsumErrors`);
  return Number(m[1]);
}

/** Per-queue reads of a device from tunpipe's exit report (`device NAME per queue: 0: read N, written M; ...`), or its one total. */
export function readsPerQueue(stderr: string, dev: string): number[] {
  const per = new RegExp(`^device ${dev} per queue: (.*)$`, 'm').exec(stderr);
  if (per) return per[1].split('; ').map((q) => Number(/read (\d+)/.exec(q)?.[1] ?? NaN));
  const one = new RegExp(`^device ${dev}: read (\\d+)`, 'm').exec(stderr);
  return one ? [Number(one[1])] : [];
}

function totalPackets(stderr: string): number {
  return [...stderr.matchAll(/^device tp[ab]0: read (\d+)/gm)].reduce((n, m) => n + Number(m[1]), 0);
}

async function turn(queues: number, offload: boolean, pair: number, ns: { a: string; b: string; self: string }, opts: QueuesOptions): Promise<QueuesTurn> {
  // One queue is the plain path (no --queues, no IFF_MULTI_QUEUE), as users run it.
  const q = queues > 1 ? ['--queues', String(queues)] : [];
  const argv = [process.execPath, opts.cli, ...(offload ? ['--offload'] : []), '--dev', 'tpa0', '--netns', ns.a, '--addr', '198.18.0.1/24', ...q, '--dev', 'tpb0', '--netns', ns.b, '--addr', '198.18.0.2/24', ...q, FORWARD_PIPELINE];
  const out: QueuesTurn = { queues, offload, pair, tcpGbit: NaN, tcpRetransmits: NaN, cpuNsPerPacket: NaN, packets: 0, readPerQueue: [], nstatValid: false };
  const fwd = await startForwarder(ns.self, argv, /reading/);
  let server: ReturnType<typeof spawnTracked> | null = null;
  let csumBefore = NaN;
  try {
    csumBefore = tcpCsumErrors(ns.a) + tcpCsumErrors(ns.b);
    server = spawnTracked('ip', ['netns', 'exec', ns.b, 'iperf3', '-s', '-1', '-B', '198.18.0.2'], { stdio: 'ignore' });
    await sleep(300);
    const before = readCpu(fwd.pid);
    const iperf = await runCommand('ip', ['netns', 'exec', ns.a, 'iperf3', '-c', '198.18.0.2', '-J', '-P', String(opts.flows), '-t', String(opts.iperfSeconds)], (opts.iperfSeconds + 15) * 1000);
    const cpu = cpuSince(fwd.pid, before);
    const j = JSON.parse(iperf.stdout) as { end?: { sum_received?: { bits_per_second: number }; sum_sent?: { retransmits?: number } }; error?: string };
    if (j.error) out.error = `iperf3: ${j.error}`;
    out.tcpGbit = (j.end?.sum_received?.bits_per_second ?? NaN) / 1e9;
    out.tcpRetransmits = j.end?.sum_sent?.retransmits ?? NaN;
    out.nstatValid = tcpCsumErrors(ns.a) + tcpCsumErrors(ns.b) === csumBefore;
    const err = await fwd.stop();
    out.io = ioPathFromOutput(err);
    out.packets = totalPackets(err);
    out.readPerQueue = readsPerQueue(err, 'tpa0');
    // The exit report counts the whole life of the process (iperf3's connection set-up too): close enough for a per-packet cost.
    out.cpuNsPerPacket = out.packets > 0 ? (cpu.us * 1000) / out.packets : NaN;
  } catch (err) {
    out.error = (err as Error).message;
    await fwd.stop();
  } finally {
    if (server) {
      server.kill('SIGTERM');
      await waitForExit(server, 2000);
    }
  }
  return out;
}

/** Runs the section: `pairs` pairs, each a turn per queue count (order reversed every other pair), plain and with --offload. */
export async function runQueues(opts: QueuesOptions): Promise<QueuesResult> {
  const cores = availableParallelism();
  const counts = queueCounts(cores);
  const ns = { a: createNamespace(120), b: createNamespace(121), self: createNamespace(122) };
  log(`queues: ${cores} cores (nproc), queue counts ${counts.join(', ')}, iperf3 -P ${opts.flows}`);
  const turns: QueuesTurn[] = [];
  const ratios: QueuesResult['ratios'] = [];
  for (const offload of [false, true]) {
    const rows = counts.filter((n) => n > 1).map((n) => ({ offload, queues: n, tcp: [] as number[], cpu: [] as number[] }));
    ratios.push(...rows);
    for (let pair = 0; pair < opts.pairs; pair++) {
      const order = pair % 2 === 0 ? counts : [...counts].reverse();
      const got = new Map<number, QueuesTurn>();
      for (const n of order) {
        const t = await turn(n, offload, pair, ns, opts);
        turns.push(t);
        got.set(n, t);
        log(`queues${offload ? ' (offload)' : ''} pair ${pair + 1}, ${n} queue${n > 1 ? 's' : ''}: TCP ${fmtNum(t.tcpGbit, 2)} Gbit/s, ${fmtNum(t.cpuNsPerPacket, 0)} ns CPU/packet, tpa0 per queue ${t.readPerQueue.join('/')}${t.nstatValid ? '' : ' (nstat: INVALID)'}${t.error ? `; ${t.error}` : ''}`);
      }
      const one = got.get(1)!;
      for (const r of rows) {
        const t = got.get(r.queues)!;
        // A failed or invalid turn gives no ratio (NaN), counted as a failed pair in the table.
        const ok = t.nstatValid && one.nstatValid;
        r.tcp.push(ok ? t.tcpGbit / one.tcpGbit : NaN);
        r.cpu.push(ok ? t.cpuNsPerPacket / one.cpuNsPerPacket : NaN);
      }
    }
  }
  return { cores, counts, flows: opts.flows, turns, ratios };
}

/** The section's table: per queue count, medians of the turns, and the paired ratios against 1 queue. */
export function formatQueues(res: QueuesResult): string {
  const range = (xs: number[]) => {
    const ok = xs.filter(Number.isFinite);
    if (ok.length === 0) return `no valid pair of ${xs.length}`;
    const failed = xs.length - ok.length;
    return `${fmtNum(median(ok), 2)} [${fmtNum(Math.min(...ok), 2)}..${fmtNum(Math.max(...ok), 2)}]${failed ? `, ${failed} of ${xs.length} pairs failed` : ''}`;
  };
  const rows = [['wire', 'queues', 'iperf3 TCP Gbit/s', 'CPU ns/packet', 'share of queue 0..N-1 (tpa0 reads)', `vs 1 queue: TCP`, 'vs 1 queue: CPU/packet']];
  for (const offload of [false, true]) {
    for (const n of res.counts) {
      const ts = res.turns.filter((t) => t.offload === offload && t.queues === n);
      const ok = ts.filter((t) => t.nstatValid && !t.error);
      const share = (() => {
        const sums = Array.from({ length: n }, (_, k) => ok.reduce((s, t) => s + (t.readPerQueue[k] ?? 0), 0));
        const all = sums.reduce((a, b) => a + b, 0);
        return all > 0 ? sums.map((s) => `${Math.round((100 * s) / all)}%`).join(' / ') : '-';
      })();
      const r = res.ratios.find((x) => x.offload === offload && x.queues === n);
      rows.push([
        offload ? '--offload' : 'plain',
        String(n),
        fmtNum(median(ok.map((t) => t.tcpGbit)), 2),
        fmtNum(median(ok.map((t) => t.cpuNsPerPacket)), 0),
        share,
        r ? range(r.tcp) : '(reference)',
        r ? range(r.cpu) : '',
      ]);
    }
  }
  const w = rows[0].map((_, i) => Math.max(...rows.map((r) => r[i].length)));
  const io = [...new Set(res.turns.map((t) => t.io ?? '?'))].join('; ');
  const note =
    res.cores <= 2
      ? `on ${res.cores} cores the workers of 2 queues share the CPU with iperf3's client and server (4 busy threads, ${res.cores} cores): no gain is expected here; see the README on scaling`
      : `${res.cores} cores: N workers and iperf3's client and server have a core each up to N = ${Math.max(1, res.cores - 2)}`;
  return [
    `queues: '${FORWARD_PIPELINE}' with --queues N on both devices, iperf3 TCP -P ${res.flows}, paired against 1 queue (nproc ${res.cores}; I/O: ${io})`,
    note,
    ...rows.map((r) => r.map((c, i) => c.padEnd(w[i])).join('  ')),
  ].join('\n');
}
