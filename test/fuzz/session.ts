/**
 * One fuzz run: rounds of generated cases, each round fed to
 * - every built-in stage on its own (raw packets) and behind `parse`, with random arguments (pcap to a
 *   temporary file, whose records are then checked against what went in);
 * - a random chain of built-in stages;
 * - the echo pipeline through the Engine, every input judged against the model in ./oracle.ts;
 * - every few rounds, the echo pipeline offline through runPipeline on a generated pcap (RAW and Ethernet).
 * The run stops after `seconds` (or `maxCases`) and returns what it found.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { findStage } from '../../src/pipeline/registry.js';
import { resolvePipeline, type ResolvedStage } from '../../src/pipeline/resolve.js';
import type { PrimitiveStageDefinition } from '../../src/pipeline/stage.js';
import { Rng } from './rng.js';
import { generateCases } from './generate.js';
import { Findings } from './findings.js';
import { builtinsUnderTest, fuzzChain, fuzzStages, type Round } from './stage-drivers.js';
import { fuzzEcho, fuzzOffline } from './echo-drivers.js';

export const ECHO_PIPELINE = 'parse | icmp-echo | checksum';

export interface FuzzOptions {
  seed: string;
  /** Stop after this long. */
  seconds: number;
  /** Or after this many generated cases. */
  maxCases?: number;
  /** Cases per round. Default 128. */
  roundSize?: number;
  /** Progress lines (cases per second); default: none. */
  log?: (line: string) => void;
  /** The echo pipeline under test; default `parse | icmp-echo | checksum`. Tests inject broken ones. */
  echoStages?: () => Promise<ResolvedStage[]>;
  /** Run only this round (as numbered in findings), to replay a failure quickly with the same seed. */
  onlyRound?: number;
  /** Which drivers run; default all. */
  drivers?: ReadonlyArray<'stages' | 'chain' | 'echo' | 'offline'>;
}

export interface FuzzReport {
  seed: string;
  cases: number;
  /** Packets pushed through engines, over all drivers. */
  packets: number;
  rounds: number;
  seconds: number;
  findings: Findings;
  /** Whether the echo pipeline reassembles (answering fragmented requests is then required). */
  reassembles: boolean;
}

/** Runs the fuzzer; never throws for what it finds (that is in the report). */
export async function runFuzz(options: FuzzOptions): Promise<FuzzReport> {
  const findings = new Findings();
  const rng = new Rng(options.seed);
  const drivers = new Set(options.drivers ?? ['stages', 'chain', 'echo', 'offline']);
  const roundSize = options.roundSize ?? 128;
  const dir = mkdtempSync(join(tmpdir(), 'tunpipe-fuzz-'));
  const { each, primitives } = await builtinsUnderTest();
  const echoStages = options.echoStages ?? (() => resolvePipeline(ECHO_PIPELINE));
  const echoTemplate = await echoStages();
  const reassembles = echoTemplate.some((s) => s.def.name === 'reassemble');
  const fragmentDef = findStage('fragment') as PrimitiveStageDefinition | undefined;
  const started = Date.now();
  const deadline = started + options.seconds * 1000;
  let cases = 0;
  let packets = 0;
  let rounds = 0;
  let lastLog = started;
  let lastLogCases = 0;
  // Each round forks its own generator from the run's, in order: skipping to a round replays it exactly.
  for (let skipped = 0; skipped < (options.onlyRound ?? 0); skipped++) rng.fork(`round ${rounds++}`);
  try {
    while (Date.now() < deadline && (options.maxCases === undefined || cases < options.maxCases)) {
      if (options.onlyRound !== undefined && rounds > options.onlyRound) break;
      const index = rounds++;
      const r = rng.fork(`round ${index}`);
      const batch = generateCases(r, roundSize);
      const round: Round = { index, batch, rng: r.fork('drive'), findings, dir, caseId: (i) => `round ${index} #${i}` };
      if (drivers.has('stages')) packets += await fuzzStages(round, each);
      if (drivers.has('chain')) packets += await fuzzChain(round, primitives);
      if (drivers.has('echo')) packets += await fuzzEcho(round, echoTemplate, reassembles, fragmentDef);
      if (drivers.has('offline') && index % 8 === 0) packets += await fuzzOffline(round, echoTemplate, index % 16 === 8, reassembles);
      cases += batch.length;
      const now = Date.now();
      if (options.log && now - lastLog >= 1000) {
        options.log(`fuzz: ${cases} cases, ${Math.round(((cases - lastLogCases) * 1000) / (now - lastLog))}/s, ${findings.count} findings`);
        lastLog = now;
        lastLogCases = cases;
      }
    }
  } catch (err) {
    findings.add('the fuzz harness itself failed (an exception outside any check)', { where: 'harness', detail: (err as Error).stack ?? String(err) });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  return { seed: options.seed, cases, packets, rounds: rounds - (options.onlyRound ?? 0), seconds: (Date.now() - started) / 1000, findings, reassembles };
}
