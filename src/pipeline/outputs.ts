/**
 * Files a run writes, checked before anything is opened: two outputs on one file (a capture, --write and
 * --stats-json, two captures, through a symlink or a hard link), stdout written twice, or an output that would overwrite
 * the file being read, each end in a corrupt or lost file, so tunpipe refuses them.
 */
import { realpathSync, statSync } from 'node:fs';
import { basename, dirname, resolve } from 'node:path';
import { UsageError } from '../errors.js';
import { fileKey } from '../pcap/file-guard.js';
import { PipelineSyntaxError } from './language.js';
import { programStages, type ResolvedProgram } from './resolve.js';

interface Output {
  /** As written. */
  name: string;
  /** How to say where it was written. */
  where: string;
  /** Where in the pipeline text, for a stage's argument. */
  pos?: number;
  /** Outputs with the same key may write one file together (StageDefinition.outputShareKey). */
  shareKey?: string;
}

/** The file a path will name once opened: symlinks resolved (the file's directory, if it does not exist yet). */
function identity(path: string): string {
  try {
    const st = statSync(path);
    return `inode:${fileKey(st)}`;
  } catch {
    try {
      return `path:${resolve(realpathSync(dirname(path)), basename(path))}`;
    } catch {
      return `path:${resolve(path)}`;
    }
  }
}

/** Throws a UsageError (or a PipelineSyntaxError at the argument) for outputs that collide. */
export function checkOutputs(program: ResolvedProgram, files: { read?: string; write?: string; statsJson?: string }): void {
  const outputs: Output[] = [];
  if (files.write !== undefined) outputs.push({ name: files.write, where: '--write' });
  if (files.statsJson !== undefined) outputs.push({ name: files.statsJson, where: '--stats-json' });
  for (const s of programStages(program)) {
    for (const spec of s.def.args) {
      const v = s.args[spec.name];
      if (!spec.output || typeof v !== 'string') continue;
      outputs.push({ name: v, where: `${s.label} ${spec.name}`, pos: s.argPos?.[spec.name], shareKey: s.def.outputShareKey?.(s.args) });
    }
  }
  const fail = (o: Output, reason: string): never => {
    if (o.pos !== undefined) throw new PipelineSyntaxError(reason, program.text, o.pos);
    throw new UsageError(reason);
  };
  const input = files.read !== undefined && files.read !== '-' ? identity(files.read) : null;
  const seen = new Map<string, Output>();
  for (const o of outputs) {
    const id = o.name === '-' ? 'stdout' : identity(o.name);
    if (input !== null && id === input) fail(o, `${o.where} '${o.name}' is the file being read (--read ${files.read}): writing it would destroy the input; choose another file`);
    const first = seen.get(id);
    if (first && first.shareKey !== undefined && first.shareKey === o.shareKey) continue;
    if (first) fail(o, `${o.where} '${o.name}' is written by ${first.where} already${o.name === '-' ? '' : ' (the same file)'}: two outputs on one ${o.name === '-' ? 'stdout' : 'file'} make a corrupt file; choose another`);
    seen.set(id, o);
  }
}
