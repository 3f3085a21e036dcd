/**
 * The filter differential: libpcap's own interpreter (`pcap_offline_filter`, bpf_filter.c) against the
 * JavaScript translation (src/filter/bpf-to-js.ts), on the same programs and the same bytes. Programs are
 * libpcap's compilations of the expressions of ./filter-corpus.ts (optimized and not, on RAW IP and on
 * Ethernet) and random programs that use every instruction; packets are seeded (./filter-corpus.ts), some
 * with a wire length beyond the captured bytes. Both the verdict and the returned snap length must agree.
 */
import { compileExpression, LibpcapInterpreter } from '../../src/filter/libpcap.js';
import { bpfToFunction, formFor, type BpfFunction } from '../../src/filter/bpf-to-js.js';
import { formatProgram, validateProgram, type BpfInsn } from '../../src/filter/bpf.js';
import { Rng } from './rng.js';
import { expressionsFor, filterPacket, randomProgram } from './filter-corpus.js';

export interface FilterMismatch {
  /** The expression (with its link type and optimization), or "random program" with its listing. */
  program: string;
  packet: string;
  caplen: number;
  wirelen: number;
  js: number;
  libpcap: number;
}

export interface FilterDifferentialReport {
  seed: string;
  /** Programs compared (compilations and random programs, counted per round). */
  programs: number;
  /** Packets run through both, per program. */
  comparisons: number;
  /** Comparisons where both accepted, so a run that never matches is visible. */
  accepted: number;
  rounds: number;
  seconds: number;
  mismatches: FilterMismatch[];
  /** Random programs the validator refused (the generator makes only valid ones: any is a finding). */
  refused: string[];
}

export interface FilterDifferentialOptions {
  seed: string;
  /** Keep going with new rounds until this many seconds have passed (at least one round runs). */
  seconds: number;
  /** Packets per program per round. Default 200. */
  packets?: number;
  /** Random programs per round. Default 200. */
  randomPrograms?: number;
  /** The translation under test; default bpfToFunction (tests give broken ones, to see them caught). */
  translate?: (program: readonly BpfInsn[]) => BpfFunction;
}

interface Subject {
  name: string;
  linkType: number;
  program: BpfInsn[];
}

const MAX_REPORTED = 20;

function compilations(): Subject[] {
  const out: Subject[] = [];
  for (const linkType of [101, 1]) {
    for (const expr of expressionsFor(linkType)) {
      for (const optimize of [true, false]) {
        out.push({ name: `'${expr}' (link type ${linkType}${optimize ? '' : ', unoptimized'})`, linkType, program: compileExpression(expr, { linkType, optimize }) });
      }
    }
  }
  return out;
}

/** Runs the differential; returns what it found (never throws for a mismatch). */
export function runFilterDifferential(options: FilterDifferentialOptions): FilterDifferentialReport {
  const started = Date.now();
  const deadline = started + options.seconds * 1000;
  const rng = new Rng(options.seed);
  const perProgram = options.packets ?? 200;
  const report: FilterDifferentialReport = { seed: options.seed, programs: 0, comparisons: 0, accepted: 0, rounds: 0, seconds: 0, mismatches: [], refused: [] };
  const translate = options.translate ?? bpfToFunction;
  const compiled = compilations().map((s) => ({ ...s, js: translate(s.program), pcap: new LibpcapInterpreter(s.program) }));

  const compare = (name: string, js: BpfFunction, pcap: LibpcapInterpreter, packets: Buffer[], r: Rng, listing?: () => string): void => {
    report.programs++;
    for (const p of packets) {
      // Some packets as a truncated capture would give them: the wire length beyond the bytes at hand.
      const wirelen = r.chance(0.2) ? p.length + r.int(1600) : p.length;
      const a = js(p, p.length, wirelen);
      const b = pcap.run(p, wirelen);
      report.comparisons++;
      if (a !== 0 && b !== 0) report.accepted++;
      if (a !== b && report.mismatches.length < MAX_REPORTED) {
        report.mismatches.push({ program: listing ? `${name}\n${listing()}` : name, packet: p.toString('hex'), caplen: p.length, wirelen, js: a, libpcap: b });
      }
    }
  };

  do {
    const round = rng.fork(`round ${report.rounds++}`);
    const raw = Array.from({ length: perProgram }, () => filterPacket(round, 101));
    const eth = Array.from({ length: perProgram }, () => filterPacket(round, 1));
    for (const s of compiled) compare(s.name, s.js, s.pcap, s.linkType === 1 ? eth : raw, round);
    for (let i = 0; i < (options.randomPrograms ?? 200); i++) {
      const program = randomProgram(round);
      const problem = validateProgram(program);
      if (problem) {
        if (report.refused.length < MAX_REPORTED) report.refused.push(`${problem}\n${formatProgram(program)}`);
        continue;
      }
      const packets = round.chance(0.5) ? raw.slice(0, 50) : eth.slice(0, 50);
      // Every other random program in the loop form, which long programs and protochain get.
      const js = options.translate ? options.translate(program) : bpfToFunction(program, i % 2 === 1 ? 'loop' : formFor(program));
      compare(`random program ${i} of round ${report.rounds - 1}${i % 2 === 1 ? ' (loop form)' : ''}`, js, new LibpcapInterpreter(program), packets, round, () => formatProgram(program));
    }
  } while (Date.now() < deadline);
  report.seconds = (Date.now() - started) / 1000;
  return report;
}

/** A mismatch as lines to print: what ran, the packet in hex, both results. */
export function formatMismatch(m: FilterMismatch): string {
  return `${m.program}\n  packet (${m.caplen} bytes captured, ${m.wirelen} on the wire): ${m.packet}\n  javascript returned ${m.js}, libpcap ${m.libpcap}`;
}
