/**
 * The filter bench (`npm run bench -- --only filter`, and part of the full bench when its time budget
 * allows):
 * - per packet: libpcap's interpreter, `bpf_filter()` called from bench/filter-ref.c (compiled here with
 *   cc -O2 -lpcap), against tunpipe's translated functions (src/filter), on the same ten programs and the
 *   same packets, in ns per packet and as a ratio (tunpipe / libpcap: below 1 is faster). C and
 *   JavaScript alternate, first one then the other, in each round; the table gives the median per
 *   expression over rounds. Both must count the same matches, or the run is invalid.
 * - whole command, offline: `tunpipe --read big.pcap --write out.pcap "filter 'EXPR'"` against
 *   `tcpdump -r big.pcap -w out.pcap 'EXPR'` on the same file, alternating; the two output files must be
 *   identical. tunpipe's start-up (the same command on an empty file) is timed next to it.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { createHash } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import { performance } from 'node:perf_hooks';
import { runCommand, isShuttingDown } from './children.js';
import { REPO_ROOT, LOCAL_ADDR, PEER_ADDR } from './constants.js';
import { log } from './log.js';
import { median } from './stats.js';
import { fmtInt, fmtNum, oneLine } from './text.js';
import { compileFilter } from '../../src/filter/compile.js';

/** The standard set, from simple to long. */
export const FILTER_BENCH_EXPRESSIONS = [
  'icmp',
  'udp',
  'ip6',
  'tcp port 80',
  'host 198.18.0.2',
  'udp port 53',
  'icmp and src host 198.18.0.2',
  'tcp[tcpflags] & tcp-syn != 0',
  'net 198.18.0.0/24 and not icmp',
  'udp and (port 53 or port 5353) and not src host 198.18.0.1',
];

/** The whole-command comparison runs these (the simplest and the longest). */
const WHOLE_COMMAND_EXPRESSIONS = ['icmp', 'udp and (port 53 or port 5353) and not src host 198.18.0.1'];

const REF_SOURCE = path.join(REPO_ROOT, 'bench', 'filter-ref.c');
const PACKETS_PER_PASS = 10_000;
const DISTINCT_PACKETS = 4096;

export interface FilterBenchOptions {
  /** Packets in the whole-command file. */
  bigPackets: number;
  /** Rounds of the per-packet comparison. */
  rounds: number;
  /** Pairs of the whole-command comparison, per expression. */
  pairs: number;
  cli: string;
}

export interface PerPacketRow {
  expression: string;
  instructions: number;
  matched: number;
  libpcapNs: number[];
  tunpipeNs: number[];
  /** Median over rounds of tunpipe / libpcap in the same round. */
  ratio: number;
  valid: boolean;
}

export interface WholeCommandRun {
  tool: 'tunpipe' | 'tcpdump';
  ok: boolean;
  wallS?: number;
  note?: string;
  digest?: string;
}

export interface WholeCommandRow {
  expression: string;
  runs: WholeCommandRun[];
  /** tunpipe's wall time on an empty file: Node's start-up, loading libpcap, compiling. */
  startupS?: number;
  ratio?: number;
  identical: boolean;
}

export interface FilterBenchResult {
  ok: boolean;
  note?: string;
  perPacket: PerPacketRow[];
  wholeCommand: WholeCommandRow[];
  bigPackets: number;
}

// ---------------------------------------------------------------------------------------------------------------
// Packets

/** A small deterministic generator (xorshift32), so every run times the same packets. */
function generator(seed: number): () => number {
  let s = seed >>> 0 || 1;
  return () => {
    s ^= s << 13;
    s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5;
    return (s >>>= 0);
  };
}

const v4 = (a: string) => a.split('.').map(Number);

/**
 * A mix like a busy host's: IPv4 (UDP to DNS, mDNS and others; TCP with some SYNs to port 80; ICMP from the
 * peer and others) and IPv6, from a few addresses of 198.18.0.0/24 and outside it.
 */
function mixPacket(next: () => number): Buffer {
  const pick = <T>(xs: readonly T[]): T => xs[next() % xs.length];
  const addrs = [PEER_ADDR, LOCAL_ADDR, '198.18.0.7', '198.19.4.4', '10.0.0.1'];
  if (next() % 10 < 2) {
    const proto = pick([17, 6, 58]);
    const l4 = Buffer.alloc(proto === 6 ? 20 : 8 + (next() % 64));
    l4.writeUInt16BE(pick([53, 5353, 443, 40000 + (next() % 1000)]), 0);
    l4.writeUInt16BE(pick([53, 5353, 80, 443]), 2);
    const h = Buffer.alloc(40);
    h.writeUInt32BE(0x60000000, 0);
    h.writeUInt16BE(l4.length, 4);
    h[6] = proto;
    h[7] = 64;
    h.writeUInt16BE(0x2001, 8);
    h.writeUInt16BE(0x0db8, 10);
    h[23] = 1 + (next() % 3);
    h.writeUInt16BE(0x2001, 24);
    h.writeUInt16BE(0x0db8, 26);
    h[39] = 1;
    return Buffer.concat([h, l4]);
  }
  const proto = pick([17, 17, 17, 6, 6, 6, 1, 1]);
  let l4: Buffer;
  if (proto === 1) {
    l4 = Buffer.alloc(64);
    l4[0] = pick([8, 0, 3]);
  } else if (proto === 6) {
    l4 = Buffer.alloc(20 + (next() % 3) * 100);
    l4.writeUInt16BE(40000 + (next() % 20000), 0);
    l4.writeUInt16BE(pick([80, 443, 22, 8080]), 2);
    l4[12] = 0x50;
    l4[13] = pick([0x02, 0x10, 0x18, 0x12, 0x11]);
  } else {
    l4 = Buffer.alloc(8 + (next() % 200));
    l4.writeUInt16BE(pick([53, 5353, 40000 + (next() % 20000), 123]), 0);
    l4.writeUInt16BE(pick([53, 5353, 123, 40000 + (next() % 20000)]), 2);
    l4.writeUInt16BE(l4.length, 4);
  }
  const h = Buffer.alloc(20);
  h[0] = 0x45;
  h.writeUInt16BE(20 + l4.length, 2);
  h[8] = 64;
  h[9] = proto;
  Buffer.from(v4(pick(addrs))).copy(h, 12);
  Buffer.from(v4(pick(addrs))).copy(h, 16);
  return Buffer.concat([h, l4]);
}

/** Writes `count` packets (cycling through DISTINCT_PACKETS of the mix) to a RAW pcap file, in chunks. */
export function writeMixPcap(file: string, count: number): void {
  const next = generator(0x5eed);
  const distinct = Array.from({ length: DISTINCT_PACKETS }, () => mixPacket(next));
  const fd = fs.openSync(file, 'w');
  try {
    const header = Buffer.alloc(24);
    header.writeUInt32LE(0xa1b2c3d4, 0);
    header.writeUInt16LE(2, 4);
    header.writeUInt16LE(4, 6);
    header.writeUInt32LE(262144, 16);
    header.writeUInt32LE(101, 20);
    fs.writeSync(fd, header);
    const chunk = Buffer.alloc(4 << 20);
    let used = 0;
    for (let i = 0; i < count; i++) {
      const p = distinct[i % DISTINCT_PACKETS];
      if (used + 16 + p.length > chunk.length) {
        fs.writeSync(fd, chunk, 0, used);
        used = 0;
      }
      chunk.writeUInt32LE(1_700_000_000 + Math.floor(i / 1_000_000), used);
      chunk.writeUInt32LE(i % 1_000_000, used + 4);
      chunk.writeUInt32LE(p.length, used + 8);
      chunk.writeUInt32LE(p.length, used + 12);
      p.copy(chunk, used + 16);
      used += 16 + p.length;
    }
    fs.writeSync(fd, chunk, 0, used);
  } finally {
    fs.closeSync(fd);
  }
}

function readRecords(file: string): Buffer[] {
  const b = fs.readFileSync(file);
  const out: Buffer[] = [];
  for (let o = 24; o + 16 <= b.length; ) {
    const len = b.readUInt32LE(o + 8);
    out.push(b.subarray(o + 16, o + 16 + len));
    o += 16 + len;
  }
  return out;
}

// ---------------------------------------------------------------------------------------------------------------
// Per packet

function compileRef(dir: string): string {
  const out = path.join(dir, 'filter-ref');
  try {
    execFileSync('cc', ['-O2', '-Wall', '-Wextra', '-o', out, REF_SOURCE, '-lpcap'], { stdio: ['ignore', 'ignore', 'pipe'] });
  } catch (err) {
    throw new Error(`cannot compile ${REF_SOURCE} with cc -O2 -lpcap (install libpcap0.8-dev):\n${String((err as { stderr?: Buffer }).stderr ?? err).trim()}`);
  }
  return out;
}

/** ns per packet of libpcap's bpf_filter for one expression, and its match count, from one run of the C program. */
async function timeLibpcap(ref: string, file: string, reps: number, expr: string): Promise<{ ns: number; matched: number }> {
  const r = await runCommand(ref, [file, String(reps), expr], 120_000);
  if (r.code !== 0) throw new Error(`filter-ref: exit ${r.code ?? r.signal}: ${oneLine(r.stderr)}`);
  const [ns, matched] = r.stdout.trim().split('\t');
  return { ns: Number(ns), matched: Number(matched) };
}

type Loop = (run: (d: Uint8Array, len: number) => number, packets: Buffer[], reps: number) => number;

let loopsMade = 0;

/**
 * The timing loop, made afresh per expression so that each has its own call site (one shared loop would
 * see ten different functions and stop inlining them, which no pipeline does). The numbered comment makes
 * each source distinct: V8 caches `new Function` by source, feedback included.
 */
function freshLoop(): Loop {
  return new Function(
    'run',
    'packets',
    'reps',
    `// timing loop ${loopsMade++}
     let m = 0;
     for (let r = 0; r < reps; r++) {
       for (let i = 0; i < packets.length; i++) {
         const p = packets[i];
         if (run(p, p.length) !== 0) m++;
       }
     }
     return m / reps;`,
  ) as Loop;
}

interface Translated {
  run: (d: Uint8Array, len: number) => number;
  loop: Loop;
  instructions: number;
}

/** ns per packet of the translated function, and its match count. */
function timeTunpipe(t: Translated, packets: Buffer[], reps: number): { ns: number; matched: number } {
  const matched = t.loop(t.run, packets, Math.max(1, reps >> 3)); // warm-up: the JIT compiles loop and filter
  const t0 = performance.now();
  t.loop(t.run, packets, reps);
  return { ns: ((performance.now() - t0) * 1e6) / (reps * packets.length), matched };
}

/**
 * Each round times every expression in both, back to back, libpcap first for half of them and tunpipe
 * first for the others (swapped in the next round), so that each ratio compares the two under the same
 * machine load.
 */
async function perPacket(dir: string, rounds: number): Promise<PerPacketRow[]> {
  const ref = compileRef(dir);
  const file = path.join(dir, 'filter-packets.pcap');
  writeMixPcap(file, PACKETS_PER_PASS);
  const packets = readRecords(file);
  const reps = 200;
  const translated = new Map<string, Translated>();
  const rows = new Map<string, PerPacketRow>();
  for (const expr of FILTER_BENCH_EXPRESSIONS) {
    const f = compileFilter(expr, { linkType: 101 });
    translated.set(expr, { run: f.run, loop: freshLoop(), instructions: f.program.length });
    rows.set(expr, { expression: expr, instructions: f.program.length, matched: 0, libpcapNs: [], tunpipeNs: [], ratio: NaN, valid: true });
  }
  for (let round = 0; round < rounds && !isShuttingDown(); round++) {
    for (const [i, expr] of FILTER_BENCH_EXPRESSIONS.entries()) {
      const row = rows.get(expr)!;
      const t = translated.get(expr)!;
      let c, js;
      if ((round + i) % 2 === 0) {
        c = await timeLibpcap(ref, file, reps, expr);
        js = timeTunpipe(t, packets, reps);
      } else {
        js = timeTunpipe(t, packets, reps);
        c = await timeLibpcap(ref, file, reps, expr);
      }
      row.libpcapNs.push(c.ns);
      row.tunpipeNs.push(js.ns);
      row.matched = js.matched;
      if (c.matched !== js.matched) row.valid = false;
    }
    log(`filter per packet, round ${round + 1}/${rounds} done`);
  }
  for (const row of rows.values()) row.ratio = median(row.tunpipeNs.map((t, i) => t / row.libpcapNs[i]));
  fs.rmSync(file, { force: true });
  return [...rows.values()];
}

// ---------------------------------------------------------------------------------------------------------------
// Whole command

function digest(file: string): string {
  const h = createHash('sha256');
  const fd = fs.openSync(file, 'r');
  try {
    const buf = Buffer.alloc(4 << 20);
    for (let n; (n = fs.readSync(fd, buf, 0, buf.length, null)) > 0; ) h.update(buf.subarray(0, n));
  } finally {
    fs.closeSync(fd);
  }
  return h.digest('hex');
}

async function timeCommand(tool: 'tunpipe' | 'tcpdump', cmd: string, args: string[], out: string): Promise<WholeCommandRun> {
  let r;
  try {
    r = await runCommand(cmd, args, 120_000);
  } catch (err) {
    return { tool, ok: false, note: (err as NodeJS.ErrnoException).code === 'ENOENT' ? `${cmd} not installed` : String(err) };
  }
  if (r.code !== 0) return { tool, ok: false, note: `exit ${r.code ?? r.signal}: ${oneLine(r.stderr)}` };
  const run: WholeCommandRun = { tool, ok: true, wallS: r.wallMs / 1000, digest: digest(out) };
  fs.rmSync(out, { force: true });
  return run;
}

async function wholeCommand(dir: string, opts: FilterBenchOptions): Promise<WholeCommandRow[]> {
  const big = path.join(dir, 'filter-big.pcap');
  const empty = path.join(dir, 'filter-empty.pcap');
  const out = path.join(dir, 'filter-out.pcap');
  const t0 = performance.now();
  writeMixPcap(big, opts.bigPackets);
  writeMixPcap(empty, 0);
  log(`filter whole command: wrote ${fmtInt(opts.bigPackets)} packets to ${big} in ${fmtNum((performance.now() - t0) / 1000, 1)} s`);
  const rows: WholeCommandRow[] = [];
  try {
    for (const expr of WHOLE_COMMAND_EXPRESSIONS) {
      const row: WholeCommandRow = { expression: expr, runs: [], identical: true };
      const tunpipe = (from: string) => timeCommand('tunpipe', process.execPath, [opts.cli, '--quiet', '--read', from, '--write', out, `filter '${expr}'`], out);
      const tcpdump = () => timeCommand('tcpdump', 'tcpdump', ['-r', big, '-w', out, expr], out);
      const startup = await tunpipe(empty);
      row.startupS = startup.wallS;
      for (let i = 0; i < opts.pairs && !isShuttingDown(); i++) {
        const order = i % 2 === 0 ? [() => tunpipe(big), tcpdump] : [tcpdump, () => tunpipe(big)];
        for (const run of order) row.runs.push(await run());
      }
      const t = row.runs.filter((r) => r.tool === 'tunpipe' && r.ok);
      const d = row.runs.filter((r) => r.tool === 'tcpdump' && r.ok);
      row.identical = t.length > 0 && d.length > 0 && new Set([...t, ...d].map((r) => r.digest)).size === 1;
      if (t.length && d.length) row.ratio = median(t.map((r) => r.wallS!)) / median(d.map((r) => r.wallS!));
      log(`filter whole command '${expr}': tunpipe ${t.map((r) => fmtNum(r.wallS!, 2)).join(', ')} s; tcpdump ${d.map((r) => fmtNum(r.wallS!, 2)).join(', ')} s; outputs ${row.identical ? 'identical' : 'DIFFER'}`);
      for (const r of row.runs.filter((r) => !r.ok)) log(`filter whole command: ${r.tool} failed: ${r.note}`);
      rows.push(row);
    }
  } finally {
    for (const f of [big, empty, out]) fs.rmSync(f, { force: true });
  }
  return rows;
}

/** Runs both parts; never throws (a failure is in the result). */
export async function runFilterBench(opts: FilterBenchOptions, dir: string): Promise<FilterBenchResult> {
  const result: FilterBenchResult = { ok: true, perPacket: [], wholeCommand: [], bigPackets: opts.bigPackets };
  try {
    result.perPacket = await perPacket(dir, opts.rounds);
    if (!isShuttingDown()) result.wholeCommand = await wholeCommand(dir, opts);
  } catch (err) {
    result.ok = false;
    result.note = (err as Error).message;
  }
  result.ok &&= result.perPacket.every((r) => r.valid) && result.wholeCommand.every((r) => r.identical);
  return result;
}

/** Seconds the filter bench needs, roughly, for the time budget. */
export function filterBenchSeconds(opts: FilterBenchOptions): number {
  return 4 + opts.rounds * 4 + (opts.bigPackets / 1e6) * (1 + WHOLE_COMMAND_EXPRESSIONS.length * opts.pairs * 1.5);
}

/** The filter bench's tables, as text. */
export function formatFilterReport(r: FilterBenchResult): string {
  const lines: string[] = ['', `filter: per packet, libpcap's bpf_filter (bench/filter-ref.c, cc -O2) against tunpipe's translation, ${fmtInt(PACKETS_PER_PASS)} packets, median over rounds`];
  if (r.note) lines.push(`filter bench FAILED: ${r.note}`);
  const w = Math.max(...FILTER_BENCH_EXPRESSIONS.map((e) => e.length));
  lines.push(`${'expression'.padEnd(w)}  insns  matched  libpcap ns  tunpipe ns  ratio  verdict`);
  for (const row of r.perPacket) {
    const verdict = !row.valid ? 'INVALID: match counts differ' : row.ratio < 1 ? 'faster' : 'slower';
    lines.push(
      `${row.expression.padEnd(w)}  ${String(row.instructions).padStart(5)}  ${fmtInt(row.matched).padStart(7)}  ${fmtNum(median(row.libpcapNs), 1).padStart(10)}  ${fmtNum(median(row.tunpipeNs), 1).padStart(10)}  ${fmtNum(row.ratio, 2).padStart(5)}  ${verdict}`,
    );
  }
  if (r.wholeCommand.length) {
    lines.push('', `filter: whole command on ${fmtInt(r.bigPackets)} packets, tunpipe --read --write "filter 'EXPR'" against tcpdump -r -w 'EXPR' (ratio: tunpipe / tcpdump wall time, median)`);
    for (const row of r.wholeCommand) {
      const med = (tool: string) => median(row.runs.filter((x) => x.tool === tool && x.ok).map((x) => x.wallS!));
      lines.push(
        `'${row.expression}': tunpipe ${fmtNum(med('tunpipe'), 2)} s (start-up ${fmtNum(row.startupS ?? NaN, 2)} s), tcpdump ${fmtNum(med('tcpdump'), 2)} s, ratio ${fmtNum(row.ratio ?? NaN, 2)}; outputs ${row.identical ? 'identical' : 'DIFFER'}`,
      );
    }
  }
  return lines.join('\n');
}

/** Writes the result next to last.json. */
export function writeFilterJson(r: FilterBenchResult): void {
  const file = path.join(REPO_ROOT, 'bench', 'out', 'filter.json');
  fs.mkdirSync(path.dirname(file), { recursive: true });
  fs.writeFileSync(file, JSON.stringify(r, null, 2) + '\n');
}
