/**
 * Wireshark's tools as independent judges of the pcapng files tunpipe writes, and a way to run a stage
 * alone on packets with checked arguments (as the pipeline text gives them).
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { resolvePipeline } from '../../src/pipeline/resolve.js';
import { standaloneContext, type StandaloneContext } from '../../src/pipeline/standalone.js';
import type { StageContext, StageInstance } from '../../src/pipeline/stage.js';

/** `tshark -r FILE -T fields -e F...`: one array of field values per packet. */
export function tsharkFields(file: string, fields: string[], extra: string[] = []): string[][] {
  const args = ['-r', file, ...extra, '-T', 'fields'];
  for (const f of fields) args.push('-e', f);
  const out = execFileSync('tshark', args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], timeout: 30_000, maxBuffer: 1 << 28 });
  return out
    .split('\n')
    .filter((l) => l !== '')
    .map((l) => l.split('\t'));
}

/** capinfos' verdict and its lines as `key: value` (or null when capinfos is not installed). */
export function capinfos(file: string): { status: number; info: Map<string, string>; stderr: string } | null {
  const r = spawnSync('capinfos', ['-M', file], { encoding: 'utf8', timeout: 30_000 });
  if (r.error) return null;
  const info = new Map<string, string>();
  for (const line of r.stdout.split('\n')) {
    const m = /^([^:]+):\s+(.*)$/.exec(line);
    if (m && !info.has(m[1].trim())) info.set(m[1].trim(), m[2].trim());
  }
  return { status: r.status ?? -1, info, stderr: r.stderr };
}

/** Creates the one stage of `text` (e.g. `pcap /tmp/x.pcapng size=10kB`) with a standalone context. */
export async function stageAlone(text: string, ctx: Partial<StageContext> & Parameters<typeof standaloneContext>[0] = {}): Promise<{ stage: StageInstance; ctx: StandaloneContext }> {
  const [resolved] = await resolvePipeline(text);
  const c = standaloneContext(ctx);
  return { stage: resolved.def.create(resolved.args, c), ctx: c };
}
