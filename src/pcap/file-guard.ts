/**
 * Files this process must never truncate while it runs: the capture it reads, and the captures it has open
 * for writing. The names a run writes are checked before it starts (../pipeline/outputs.ts), but a rotation
 * makes names as it goes (cap-00002.pcap, cap-%H.pcap), and one of those can be the input or another
 * capture's file. Every capture file is therefore checked again, by the file itself (device and inode,
 * through symlinks and hard links), just before it is opened.
 */
import { fstatSync, statSync } from 'node:fs';
import { TunpipeError } from '../errors.js';

const guarded = new Map<string, string>();

/** A file's identity, the same through every name it has (symlinks, hard links). */
export const fileKey = (st: { dev: number; ino: number }) => `${st.dev}:${st.ino}`;

/** Guards the file open on `fd` (described as `what` in the refusal) until the returned function is called. */
export function guardFile(fd: number, what: string): () => void {
  let k: string;
  try {
    const st = fstatSync(fd);
    if (!st.isFile()) return () => {};
    k = fileKey(st);
  } catch {
    return () => {};
  }
  if (guarded.has(k)) return () => {};
  guarded.set(k, what);
  return () => {
    if (guarded.get(k) === what) guarded.delete(k);
  };
}

/** Throws a TunpipeError if `path` names a guarded file (a path that does not exist yet names none). */
export function refuseGuarded(path: string): void {
  if (guarded.size === 0) return;
  let st;
  try {
    st = statSync(path);
  } catch {
    return;
  }
  const what = guarded.get(fileKey(st));
  if (what !== undefined) throw new TunpipeError(`will not write capture file ${path}: it is ${what}, which writing it would destroy; choose another name`);
}
