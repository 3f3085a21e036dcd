/** Text the CLI prints: the counters table on exit and the stage listing of --list. */
import type { RunResult } from '../pipeline/run.js';
import type { StageDefinition } from '../pipeline/stage.js';
import { isCompound, stageUsage } from '../pipeline/stage.js';

function pad(s: string, n: number): string {
  return s.length >= n ? s : s + ' '.repeat(n - s.length);
}
function lpad(s: string, n: number): string {
  return s.length >= n ? s : ' '.repeat(n - s.length) + s;
}

/** The per-stage counters: in, out, dropped, and the drop reasons with their counts. */
export function formatCounters(result: RunResult): string {
  const width = Math.max(5, ...result.stages.map((s) => s.name.length)) + 2;
  const lines = [`${pad('stage', width)}${lpad('in', 10)}${lpad('out', 10)}${lpad('dropped', 10)}  why dropped`];
  for (const s of result.stages) {
    const why = [...s.reasons].map(([r, n]) => `${r}: ${n}`).join('; ');
    const extraCounts = [s.held ? `held: ${s.held}` : '', s.diverted ? `diverted: ${s.diverted}` : ''].filter(Boolean).join('; ');
    const held = extraCounts ? `${why ? '; ' : ''}${extraCounts}` : '';
    lines.push(`${pad(s.name, width)}${lpad(String(s.packetsIn), 10)}${lpad(String(s.packetsOut + s.emitted), 10)}${lpad(String(s.dropped), 10)}  ${why}${held}`);
    const extra = result.reports.get(s.name);
    if (extra) lines.push(`${pad('', width)}  ${extra}`);
  }
  return lines.join('\n');
}


/** One line per stage: usage and summary. */
export function formatStageList(defs: readonly StageDefinition[]): string {
  const short = (d: StageDefinition) =>
    [d.name, ...d.args.filter((a) => a.positional).map((a) => (a.required ? a.name.toUpperCase() : `[${a.name.toUpperCase()}]`)), d.args.some((a) => !a.positional) ? '[key=value...]' : '']
      .filter(Boolean)
      .join(' ');
  const rows = defs.map((d) => [short(d), d.summary]);
  const width = Math.max(...rows.map((r) => r[0].length)) + 2;
  return rows.map(([u, s]) => `  ${pad(u, width)}${s}`).join('\n');
}

/** Everything about one stage: usage, summary, help, each argument with its default. */
export function formatStageHelp(def: StageDefinition): string {
  const lines = [stageUsage(def), `  ${def.summary}`];
  if (def.help) lines.push('', ...def.help.split('\n').map((l) => `  ${l}`));
  if (isCompound(def)) lines.push('', `  expands to: ${def.expand}`);
  if (def.args.length) {
    lines.push('', '  arguments:');
    for (const a of def.args) {
      const dflt = a.default !== undefined ? ` (default ${a.default})` : a.required ? ' (required)' : '';
      lines.push(`    ${pad(a.positional ? a.name.toUpperCase() : `${a.name}=`, 12)}${a.description}${dflt}`);
    }
  }
  return lines.join('\n');
}

/**
 * The README's table of stages, in markdown, from the same declarations as --list: a stage is documented
 * once, in its own file. `npm run readme:stages` writes it into the README; a test keeps the two equal.
 */
export function formatStageMarkdown(defs: readonly StageDefinition[]): string {
  const cell = (t: string) => t.replace(/\|/g, '\\|');
  const rows = defs.map((d) => `| \`${cell(stageUsage(d))}\` | ${cell(d.summary)} |`);
  return ['| stage | what it does |', '|---|---|', ...rows].join('\n');
}
