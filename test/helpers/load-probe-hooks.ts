/** The module hook of ./load-probe.ts: appends `module URL` for every module loaded. */
import { appendFileSync } from 'node:fs';

let out = '';

export function initialize(data: { out: string }): void {
  out = data.out;
}

export async function load(url: string, context: unknown, next: (url: string, context: unknown) => Promise<unknown>): Promise<unknown> {
  appendFileSync(out, `module ${url}\n`);
  return next(url, context);
}
