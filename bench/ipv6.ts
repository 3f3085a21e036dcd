/**
 * `npm run bench:ipv6` (after a build): the `ping -6 -f` row. tunpipe's `parse | icmp-echo | checksum`
 * against the C reference (bench/echo-ref.c, which answers ICMPv6 echo requests too), each in a namespace of
 * its own with `tpb0` at 2001:db8::1/64, pinged at 2001:db8::2 through the device.
 *
 * Paired as the main bench is (bench/run.ts): both responders live together, are warmed up, and then come
 * BLOCKS: in each, every responder gets `--count` requests (`ping -6 -f -l 64`) in two halves, in the order
 * ABBA, then BAAB in the next block. Per block: tunpipe's replies/s over the reference's, and its CPU per
 * reply (schedstat, all threads) over the reference's. The table gives the median of the per-block ratios
 * with their range, against the bars of the IPv4 rows (replies/s >= 0.95 x ref, CPU per reply <= 1.3 x
 * ref). A block counts only when the kernel validated every reply it counted (nstat in the namespace:
 * Icmp6InCsumErrors unchanged, Icmp6InEchoReplies >= the replies ping counted; both counters must exist);
 * a block without replies or with an invalid one is a failed block, counted in k/n, never dropped.
 *
 * Safety: namespaces `tpbench-<pid>-<n>`, created and removed by lib/namespace.ts (also on SIGINT/SIGTERM);
 * nothing is configured in the host's namespace; every ping is bounded by -c and -w.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { parseArgs } from 'node:util';
import { setTimeout as sleep } from 'node:timers/promises';
import { spawnTracked } from './lib/children.js';
import { DEV, REPO_ROOT } from './lib/constants.js';
import { log } from './lib/log.js';
import { cpuSince, readCpu } from './lib/measure.js';
import { createNamespace, ensureRoot, installCleanupOnSignals, makeTmpDir, nsExec, removeStaleNamespaces, shutdown } from './lib/namespace.js';
import { compileReference } from './lib/responders.js';
import { summarizeSample } from './lib/stats.js';

const LOCAL6 = '2001:db8::1/64';
const PEER6 = '2001:db8::2';
const OUT = path.join(REPO_ROOT, 'bench', 'out', 'ipv6.json');

interface Responder {
  label: string;
  ns: string;
  pid: number;
}

interface Flood {
  received: number;
  transmitted: number;
  timeMs: number;
  cpuUs: number;
  valid: boolean;
  why: string;
}

async function icmp6Counters(ns: string): Promise<Record<string, number>> {
  const r = await nsExec(ns, ['nstat', '-asz'], 10_000);
  const c: Record<string, number> = {};
  for (const line of r.stdout.split('\n')) {
    const m = /^(\w+)\s+(\d+)/.exec(line);
    if (m) c[m[1]] = Number(m[2]);
  }
  for (const name of ['Icmp6InEchoReplies', 'Icmp6InCsumErrors']) if (typeof c[name] !== 'number') throw new Error(`nstat in ${ns} has no ${name}`);
  return c;
}

async function flood(r: Responder, count: number): Promise<Flood> {
  const before = await icmp6Counters(r.ns);
  const cpu = readCpu(r.pid);
  const p = await nsExec(r.ns, ['ping', '-6', '-f', '-l', '64', '-c', String(count), '-q', '-w', '20', PEER6], 30_000);
  const used = cpuSince(r.pid, cpu);
  const after = await icmp6Counters(r.ns);
  const counts = /(\d+) packets transmitted, (\d+) received/.exec(p.stdout);
  const time = /, time (\d+)ms/.exec(p.stdout);
  const received = counts ? Number(counts[2]) : 0;
  const f: Flood = { received, transmitted: counts ? Number(counts[1]) : 0, timeMs: time ? Number(time[1]) : NaN, cpuUs: used.us, valid: true, why: '' };
  const replies = after.Icmp6InEchoReplies - before.Icmp6InEchoReplies;
  const csum = after.Icmp6InCsumErrors - before.Icmp6InCsumErrors;
  if (received === 0) Object.assign(f, { valid: false, why: 'no replies' });
  else if (csum !== 0) Object.assign(f, { valid: false, why: `${csum} checksum errors` });
  else if (replies < received) Object.assign(f, { valid: false, why: `kernel counted ${replies} valid replies, ping ${received}` });
  return f;
}

function joinFloods(a: Flood, b: Flood): Flood {
  return {
    received: a.received + b.received,
    transmitted: a.transmitted + b.transmitted,
    timeMs: a.timeMs + b.timeMs,
    cpuUs: a.cpuUs + b.cpuUs,
    valid: a.valid && b.valid,
    why: [a.why, b.why].filter(Boolean).join('; '),
  };
}

async function startResponder(label: string, ns: string, argv: string[], configure: boolean): Promise<Responder> {
  const child = spawnTracked('ip', ['netns', 'exec', ns, ...argv], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr?.on('data', (d: Buffer) => (stderr += d.toString()));
  const deadline = Date.now() + 8000;
  for (;;) {
    const r = await nsExec(ns, ['ip', 'link', 'show', 'dev', DEV], 5000);
    if (r.code === 0) break;
    if (Date.now() > deadline || child.exitCode !== null) throw new Error(`${label}: no device ${DEV}: ${stderr}`);
    await sleep(50);
  }
  if (configure) {
    await nsExec(ns, ['ip', 'addr', 'add', LOCAL6, 'dev', DEV], 5000);
    await nsExec(ns, ['ip', 'link', 'set', DEV, 'up'], 5000);
  }
  // Answered once: the address is usable and the responder reads.
  for (;;) {
    const r = await nsExec(ns, ['ping', '-6', '-c', '1', '-w', '1', PEER6], 5000);
    if (r.code === 0) break;
    if (Date.now() > deadline) throw new Error(`${label}: ping -6 ${PEER6} not answered: ${stderr}`);
  }
  return { label, ns, pid: child.pid! };
}

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { blocks: { type: 'string', default: '12' }, count: { type: 'string', default: '30000' }, cli: { type: 'string' } } });
  const blocks = Number(values.blocks);
  const count = Number(values.count);
  const cli = values.cli ?? path.join(REPO_ROOT, 'dist', 'bin', 'tunpipe.js');
  ensureRoot();
  installCleanupOnSignals();
  removeStaleNamespaces();
  const tmp = makeTmpDir();
  const refBinary = compileReference(tmp);
  const namespaces = [createNamespace(1), createNamespace(2)];
  // createNamespace turns IPv6 off to keep the IPv4 bench quiet; this bench needs it on.
  for (const ns of namespaces) await nsExec(ns, ['sysctl', '-qw', 'net.ipv6.conf.all.disable_ipv6=0', 'net.ipv6.conf.default.disable_ipv6=0', 'net.ipv6.conf.lo.disable_ipv6=0'], 5000);
  const ref = await startResponder('ref', namespaces[0], [refBinary, DEV], true);
  const tp = await startResponder('tunpipe', namespaces[1], [process.execPath, cli, '--dev', DEV, '--addr', LOCAL6, 'parse | icmp-echo | checksum'], false);
  log(`ipv6 bench: warming up (${ref.label} pid ${ref.pid}, ${tp.label} pid ${tp.pid})`);
  for (let i = 0; i < 4; i++) for (const r of [ref, tp]) await flood(r, 20_000);
  const repliesRatio: number[] = [];
  const cpuRatio: number[] = [];
  const rows: unknown[] = [];
  let failed = 0;
  for (let b = 0; b < blocks; b++) {
    // Each responder's flood in two halves, in the order ABBA (BAAB in the next block), so that both see
    // the same moments of the machine's load on average.
    const order = b % 2 ? [tp, ref, ref, tp] : [ref, tp, tp, ref];
    const got = new Map<string, Flood>();
    for (const r of order) {
      const f = await flood(r, Math.ceil(count / 2));
      const prev = got.get(r.label);
      got.set(r.label, prev ? joinFloods(prev, f) : f);
    }
    const a = got.get('ref')!;
    const t = got.get('tunpipe')!;
    rows.push({ block: b, order: order.map((r) => r.label), ref: a, tunpipe: t });
    if (!a.valid || !t.valid) {
      failed++;
      log(`  block ${b}: failed (${a.valid ? '' : `ref: ${a.why} `}${t.valid ? '' : `tunpipe: ${t.why}`})`);
      continue;
    }
    const rr = t.received / t.timeMs / (a.received / a.timeMs);
    const cr = t.cpuUs / t.received / (a.cpuUs / a.received);
    repliesRatio.push(rr);
    cpuRatio.push(cr);
    log(`  block ${b}: replies/s ref ${Math.round((a.received / a.timeMs) * 1000)} tunpipe ${Math.round((t.received / t.timeMs) * 1000)} (${rr.toFixed(3)}), CPU/reply ${cr.toFixed(3)}`);
  }
  const r = summarizeSample(repliesRatio);
  const c = summarizeSample(cpuRatio);
  const met = (ok: boolean) => (ok ? 'met' : 'not met');
  console.log(`\nping -6 -f, parse | icmp-echo | checksum against the C reference, ${repliesRatio.length} of ${blocks} blocks valid${failed ? ` (${failed} failed)` : ''}:`);
  console.log(`| metric | paired ratio: median [range] | bar |`);
  console.log(`|---|---|---|`);
  console.log(`| replies/s, ping -6 -f | ${r.median.toFixed(2)} [${r.min.toFixed(2)}..${r.max.toFixed(2)}] | >= 0.95 x ref: ${met(failed === 0 && r.median >= 0.95)} |`);
  console.log(`| CPU per reply | ${c.median.toFixed(2)} [${c.min.toFixed(2)}..${c.max.toFixed(2)}] | <= 1.3 x ref: ${met(failed === 0 && c.median <= 1.3)} |`);
  fs.mkdirSync(path.dirname(OUT), { recursive: true });
  fs.writeFileSync(OUT, JSON.stringify({ date: new Date().toISOString(), blocks, count, failed, repliesRatio: r, cpuRatio: c, rows }, null, 2));
  console.log(`(written to ${path.relative(process.cwd(), OUT)})`);
  await shutdown(0);
}

main().catch(async (err: unknown) => {
  console.error(`bench ipv6: ${(err as Error).message}`);
  await shutdown(1);
});
