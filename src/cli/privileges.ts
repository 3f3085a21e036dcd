/** Dropping root once the device is open: the fd stays usable, nothing else the process does is root. */
import { readFileSync } from 'node:fs';
import { TunpipeError } from '../errors.js';

interface ProcessIds {
  getuid(): number;
  setuid(id: number): void;
  setgid(id: number): void;
  setgroups(groups: number[]): void;
  initgroups(user: string, extraGroup: number): void;
}

function lookup(file: string, name: string): string[] | undefined {
  const lines = readFileSync(file, 'utf8').split('\n');
  return lines.map((l) => l.split(':')).find((f) => f[0] === name || (/^\d+$/.test(name) && f[2] === name));
}

/** Switches to `user` (its primary group and supplementary groups) and/or `group`. Throws a TunpipeError. */
export function dropPrivileges(user: string | undefined, group: string | undefined): void {
  const proc = process as unknown as ProcessIds;
  if (typeof proc.getuid !== 'function' || proc.getuid() !== 0) {
    throw new TunpipeError('--user/--group need tunpipe to start as root (it then drops to them once the device is open)');
  }
  const pw = user !== undefined ? lookup('/etc/passwd', user) : undefined;
  if (user !== undefined && !pw) throw new TunpipeError(`--user ${user}: no such user`);
  const gr = group !== undefined ? lookup('/etc/group', group) : undefined;
  if (group !== undefined && !gr) throw new TunpipeError(`--group ${group}: no such group`);
  const gid = gr ? Number(gr[2]) : pw ? Number(pw[3]) : undefined;
  try {
    // Groups before the user id: once the uid is not root, the groups can no longer be changed.
    if (pw) proc.initgroups(pw[0], gid!);
    else proc.setgroups([gid!]);
    proc.setgid(gid!);
    if (pw) proc.setuid(Number(pw[2]));
  } catch (err) {
    throw new TunpipeError(`cannot drop privileges: ${(err as Error).message}`);
  }
}
