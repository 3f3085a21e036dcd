/**
 * The bench's evidence: the whole result of a run (machine, options, every block and measurement with its nstat
 * check, every process's I/O path, soak, offline, forwarding, filter and impairment sections, the rows) written
 * to bench/results/<date>-<cpu>.json, the file the README's performance tables are generated from
 * (bench/report-readme.ts). Quick runs get a `-quick` name: they check the plumbing, not the numbers.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { REPO_ROOT } from './constants.js';

export const RESULTS_DIR = path.join(REPO_ROOT, 'bench', 'results');
/** Bumped when a field the report script reads changes meaning. */
export const RESULTS_FORMAT = 'tunpipe-bench-results/1';

export interface MachineInfo {
  /** /proc/cpuinfo's "model name" (os.cpus() where it has none). */
  cpuModel: string;
  cores: number;
  kernel: string;
  node: string;
  arch: string;
}

export function readMachine(cpuinfo = readCpuinfo()): MachineInfo {
  const m = /^model name\s*:\s*(.+)$/m.exec(cpuinfo);
  return {
    cpuModel: (m?.[1] ?? os.cpus()[0]?.model ?? 'unknown CPU').trim().replace(/\s+/g, ' '),
    cores: os.cpus().length,
    kernel: os.release(),
    node: process.version,
    arch: process.arch,
  };
}

function readCpuinfo(): string {
  try {
    return fs.readFileSync('/proc/cpuinfo', 'utf8');
  } catch {
    return '';
  }
}

/** "AMD EPYC 7B13 64-Core Processor" -> "amd-epyc-7b13"; "Intel(R) Xeon(R) CPU @ 2.20GHz" -> "intel-xeon-2-20ghz". */
export function cpuSlug(model: string): string {
  const words = model
    .toLowerCase()
    .replace(/\((r|tm)\)/g, ' ')
    .replace(/\b(cpu|processor|\d+-core)\b/g, ' ')
    .split(/[^a-z0-9]+/)
    .filter(Boolean);
  return words.join('-').slice(0, 40).replace(/-+$/, '') || 'unknown-cpu';
}

/** `<dir>/<YYYY-MM-DD>-<cpu>[-quick].json`, with -2, -3 ... when that name is taken (runs are never overwritten). */
export function resultsPath(date: Date, machine: MachineInfo, quick: boolean, dir = RESULTS_DIR): string {
  const base = `${date.toISOString().slice(0, 10)}-${cpuSlug(machine.cpuModel)}${quick ? '-quick' : ''}`;
  for (let n = 1; ; n++) {
    const file = path.join(dir, `${base}${n > 1 ? `-${n}` : ''}.json`);
    if (!fs.existsSync(file)) return file;
  }
}

export interface ResultsHeader {
  format: string;
  /** ISO time the run ended. */
  date: string;
  /** The command line after `node dist/bench/run.js`. */
  argv: string[];
  quick: boolean;
  machine: MachineInfo;
  /** `git describe --always --dirty` of the tree that was measured, when known. */
  commit?: string;
}

export function writeResults(header: ResultsHeader, body: object, dir = RESULTS_DIR): string {
  fs.mkdirSync(dir, { recursive: true });
  const file = resultsPath(new Date(header.date), header.machine, header.quick, dir);
  fs.writeFileSync(file, JSON.stringify({ ...body, ...header }, null, 2) + '\n');
  return file;
}
