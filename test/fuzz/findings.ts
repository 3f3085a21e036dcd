/**
 * What a fuzz run found, grouped by category, with the first few examples of each (their packet in hex, so
 * that a failure can be replayed), and the drop reasons the stages gave.
 */

export interface Example {
  where: string;
  detail: string;
  /** Which case (round and index) and its generator kind, to find it again with the same seed. */
  caseId?: string;
  packet?: Buffer;
}

const EXAMPLES_KEPT = 3;
const HEX_SHOWN = 1024;

export class Findings {
  readonly categories = new Map<string, { count: number; examples: Example[] }>();
  /** Drops by stage label and reason, over every engine of the run. */
  readonly drops = new Map<string, Map<string, number>>();

  add(category: string, example: Example): void {
    let c = this.categories.get(category);
    if (!c) {
      c = { count: 0, examples: [] };
      this.categories.set(category, c);
    }
    c.count++;
    if (c.examples.length < EXAMPLES_KEPT) c.examples.push({ ...example, packet: example.packet && Buffer.from(example.packet) });
  }

  get count(): number {
    let n = 0;
    for (const c of this.categories.values()) n += c.count;
    return n;
  }

  addDrops(label: string, reasons: ReadonlyMap<string, number>): void {
    let m = this.drops.get(label);
    if (!m) {
      m = new Map();
      this.drops.set(label, m);
    }
    for (const [r, n] of reasons) m.set(r, (m.get(r) ?? 0) + n);
  }
}

export function hex(b: Buffer): string {
  const shown = b.subarray(0, HEX_SHOWN).toString('hex');
  return b.length > HEX_SHOWN ? `${shown}… (${b.length} bytes, first ${HEX_SHOWN} shown)` : `${shown} (${b.length} bytes)`;
}

/** The findings as text: one block per category with its examples. */
export function formatFindings(f: Findings, seed: string): string {
  const lines: string[] = [];
  for (const [category, c] of f.categories) {
    lines.push(`FAIL ${category} (${c.count}x)`);
    for (const e of c.examples) {
      lines.push(`  in ${e.where}${e.caseId ? `, case ${e.caseId}` : ''}: ${e.detail}`);
      if (e.packet) lines.push(`    packet: ${hex(e.packet)}`);
    }
  }
  if (lines.length) lines.push(`reproduce with: npm run fuzz -- --seed ${seed}   (one round only: add --round N)`);
  return lines.join('\n');
}

/** The drop reasons as a table: stage, reason, count (largest first within each stage). */
export function formatDrops(f: Findings): string {
  const rows: [string, string, string][] = [['stage', 'reason', 'count']];
  for (const [label, reasons] of [...f.drops].sort((a, b) => a[0].localeCompare(b[0]))) {
    for (const [r, n] of [...reasons].sort((a, b) => b[1] - a[1])) rows.push([label, r, String(n)]);
  }
  const w0 = Math.max(...rows.map((r) => r[0].length));
  const w1 = Math.max(...rows.map((r) => r[1].length));
  return rows.map(([a, b, c]) => `${a.padEnd(w0)}  ${b.padEnd(w1)}  ${c.padStart(9)}`).join('\n');
}
