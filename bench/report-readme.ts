/**
 * `npm run bench:report -- [FILE...] [--write-readme] [--seed N] [--include-quick]`: the README's performance
 * tables from bench results files (written by `npm run bench` to bench/results/), printed as markdown, or with
 * --write-readme put into README.md between `<!-- bench:begin -->` and `<!-- bench:end -->`. Without FILE:
 * every bench/results/*.json except the -quick ones (--include-quick takes those too).
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { parseArgs } from 'node:util';
import { REPO_ROOT } from './lib/constants.js';
import { parseResults, readmeTables, replaceBetweenMarkers, type LoadedResults } from './lib/readme-tables.js';
import { RESULTS_DIR } from './lib/results.js';

const USAGE = 'usage: npm run bench:report -- [FILE.json ...] [--write-readme] [--readme PATH] [--seed N] [--include-quick]';

function main(argv: string[]): number {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      'write-readme': { type: 'boolean', default: false },
      readme: { type: 'string' },
      seed: { type: 'string', default: '1' },
      'include-quick': { type: 'boolean', default: false },
      help: { type: 'boolean', default: false },
    },
  });
  if (values.help) {
    console.log(USAGE);
    return 0;
  }
  const seed = Number(values.seed);
  if (!Number.isInteger(seed)) throw new Error(`--seed needs an integer, got '${values.seed}'`);
  const names = positionals.length
    ? positionals.map((p) => path.resolve(p))
    : fs.existsSync(RESULTS_DIR)
      ? fs.readdirSync(RESULTS_DIR).filter((n) => n.endsWith('.json') && (values['include-quick'] || !n.includes('-quick'))).sort().map((n) => path.join(RESULTS_DIR, n))
      : [];
  const files: LoadedResults[] = names.map((f) => parseResults(fs.readFileSync(f, 'utf8'), path.relative(REPO_ROOT, f)));
  const body = readmeTables(files, { seed });
  if (!values['write-readme']) {
    process.stdout.write(body);
    return 0;
  }
  const readme = path.resolve(values.readme ?? path.join(REPO_ROOT, 'README.md'));
  fs.writeFileSync(readme, replaceBetweenMarkers(fs.readFileSync(readme, 'utf8'), body));
  console.error(`bench:report: ${path.relative(process.cwd(), readme) || readme} updated from ${files.length} results file(s)`);
  return 0;
}

try {
  process.exitCode = main(process.argv.slice(2));
} catch (err) {
  console.error(`bench:report: ${(err as Error).message}\n${USAGE}`);
  process.exitCode = 2;
}
