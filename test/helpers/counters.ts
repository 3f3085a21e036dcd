/**
 * Reads the per-stage counters table tunpipe prints on stderr at exit:
 *
 *     stage          in   out   dropped  why dropped
 *     parse          10     9         1  bad IPv4 header checksum: 1
 *
 * Parsed from the text, so the tests check what a user sees.
 */

export interface StageCounters {
  name: string;
  in: number;
  out: number;
  dropped: number;
  /** Drop reasons and their counts, as printed ("held" included when the stage held packets). */
  reasons: Map<string, number>;
}

function parseReasons(text: string): Map<string, number> {
  const reasons = new Map<string, number>();
  // A reason may itself contain ': ' ("error: boom: 3"): the count is the number before '; ' or the end.
  for (const m of text.matchAll(/(.+?): (\d+)(?:; |$)/g)) reasons.set(m[1], Number(m[2]));
  return reasons;
}

/** The rows of the counters table in `stderr`, left to right; throws if there is no table. */
export function parseCounters(stderr: string): StageCounters[] {
  const all = stderr.split('\n');
  const head = all.findIndex((l) => /^stage\s+in\s+out\s+dropped\s+why dropped/.test(l));
  if (head < 0) throw new Error(`no counters table in stderr:\n${stderr}`);
  const rows: StageCounters[] = [];
  for (const line of all.slice(head + 1)) {
    if (/^\s/.test(line)) continue; // an extra report line under a stage
    const m = /^(\S+)\s+(\d+)\s+(\d+)\s+(\d+)(?:\s+(.*))?$/.exec(line);
    if (!m) break;
    rows.push({ name: m[1], in: Number(m[2]), out: Number(m[3]), dropped: Number(m[4]), reasons: parseReasons((m[5] ?? '').trim()) });
  }
  return rows;
}

/** The row for stage `name`; throws with the table if it is missing. */
export function stageRow(rows: StageCounters[], name: string): StageCounters {
  const row = rows.find((r) => r.name === name);
  if (!row) throw new Error(`no counters for stage '${name}'; stages: ${rows.map((r) => r.name).join(', ')}`);
  return row;
}

/** Sum of the counts of the reasons matching `re`. */
export function reasonCount(row: StageCounters, re: RegExp): number {
  let n = 0;
  for (const [reason, count] of row.reasons) if (re.test(reason)) n += count;
  return n;
}
