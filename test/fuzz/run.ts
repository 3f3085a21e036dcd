/**
 * `npm run fuzz [-- --seconds N] [--seed S] [--round N] [--filter-seconds N]`: feeds random, truncated and
 * mutated packets to every built-in stage and to the echo pipeline (Engine and offline runPipeline), and
 * checks the results against an independent model (see ./session.ts and ./oracle.ts). Prints cases per
 * second, then a table of drop reasons; exits 1 on any finding, printing the seed and the offending packets
 * in hex. Then the filter differential (./filter-differential.ts: the translated BPF against libpcap's
 * interpreter) for --filter-seconds (default a quarter of --seconds; 0 skips it).
 */
import { parseArgs } from 'node:util';
import { runFuzz } from './session.js';
import { formatDrops, formatFindings } from './findings.js';
import { formatMismatch, runFilterDifferential } from './filter-differential.js';

function usage(message: string): never {
  process.stderr.write(`fuzz: ${message}\nusage: node dist/test/fuzz/run.js [--seconds N] [--seed S] [--cases N] [--round N] [--filter-seconds N]\n`);
  process.exit(2);
}

async function main(): Promise<number> {
  let values;
  try {
    ({ values } = parseArgs({
      options: { seconds: { type: 'string' }, 'filter-seconds': { type: 'string' }, seed: { type: 'string' }, cases: { type: 'string' }, round: { type: 'string' }, help: { type: 'boolean', short: 'h' } },
      strict: true,
    }));
  } catch (err) {
    usage((err as Error).message);
  }
  if (values.help) usage('fuzz the built-in stages and the echo pipeline');
  const seconds = values.seconds === undefined ? 30 : Number(values.seconds);
  if (!Number.isFinite(seconds) || seconds <= 0) usage(`--seconds takes a positive number, got '${values.seconds}'`);
  const maxCases = values.cases === undefined ? undefined : Number(values.cases);
  if (maxCases !== undefined && !(Number.isInteger(maxCases) && maxCases > 0)) usage(`--cases takes a positive whole number, got '${values.cases}'`);
  const onlyRound = values.round === undefined ? undefined : Number(values.round);
  if (onlyRound !== undefined && !(Number.isInteger(onlyRound) && onlyRound >= 0)) usage(`--round takes a round number from a finding, got '${values.round}'`);
  if (onlyRound !== undefined && values.seed === undefined) usage('--round replays a round of a given run: give its --seed too');
  const filterSeconds = values['filter-seconds'] === undefined ? seconds / 4 : Number(values['filter-seconds']);
  if (!Number.isFinite(filterSeconds) || filterSeconds < 0) usage(`--filter-seconds takes a number of seconds, got '${values['filter-seconds']}'`);
  const seed = values.seed ?? String(Date.now() % 1_000_000_007);
  process.stdout.write(`fuzz: seed ${seed}, ${seconds} s${maxCases ? `, at most ${maxCases} cases` : ''}\n`);

  const report = await runFuzz({ seed, seconds, maxCases, onlyRound, log: (l) => process.stdout.write(`${l}\n`) });

  process.stdout.write(
    `fuzz: ${report.cases} cases (${Math.round(report.cases / report.seconds)}/s), ${report.packets} packets through ${report.rounds} rounds in ${report.seconds.toFixed(1)} s` +
      `${report.reassembles ? '' : '; the echo pipeline has no reassemble stage, so fragmented requests were not required to be answered'}\n\n`,
  );
  process.stdout.write(`drop reasons:\n${formatDrops(report.findings)}\n\n`);
  const filterFailed = filterSeconds > 0 && !filterDifferential(seed, filterSeconds);
  if (report.findings.count > 0) {
    process.stdout.write(`${formatFindings(report.findings, seed)}\n`);
    process.stdout.write(`fuzz: FAILED, ${report.findings.count} findings in ${report.findings.categories.size} categories (seed ${seed})\n`);
    return 1;
  }
  if (filterFailed) {
    process.stdout.write(`fuzz: FAILED, the filter differential found mismatches (seed ${seed})\n`);
    return 1;
  }
  process.stdout.write(`fuzz: OK (seed ${seed})\n`);
  return 0;
}

/** Runs the filter differential and prints what it found; false on any mismatch. */
function filterDifferential(seed: string, seconds: number): boolean {
  const r = runFilterDifferential({ seed, seconds });
  process.stdout.write(`filter differential: ${r.comparisons} packets through ${r.programs} programs in ${r.rounds} rounds, ${r.seconds.toFixed(1)} s (${r.accepted} accepted by both)\n`);
  for (const m of r.mismatches) process.stdout.write(`${formatMismatch(m)}\n`);
  for (const p of r.refused) process.stdout.write(`random program refused by the validator: ${p}\n`);
  const ok = r.mismatches.length === 0 && r.refused.length === 0;
  process.stdout.write(`filter differential: ${ok ? 'OK' : `${r.mismatches.length} mismatches`} (seed ${seed})\n\n`);
  return ok;
}

// `node --test dist/test/` (npm test) runs every .js file under a test/ directory, this one included: the
// bounded fuzz run of the suite is fuzz.test.ts, so do nothing here when started by the test runner.
if (process.env.NODE_TEST_CONTEXT) {
  process.stdout.write('fuzz: started by the test runner; the suite runs test/fuzz/fuzz.test.ts instead\n');
} else {
  main().then(
    (code) => (process.exitCode = code),
    (err: unknown) => {
      process.stderr.write(`fuzz: ${(err as Error)?.stack ?? String(err)}\n`);
      process.exitCode = 1;
    },
  );
}
