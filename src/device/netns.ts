/**
 * Running a piece of device setup inside another network namespace, as `ip netns exec` would, without a
 * child process: the calling thread joins the namespace (setns), the device is created and configured
 * there (a TUN device belongs to the namespace of the thread that creates it; its fd then works from any
 * namespace), and the thread returns to its own namespace before anything else runs. Only this thread
 * moves; the process and its other threads stay where they are.
 */
import { koffi } from './koffi.js';
import * as libc from './libc.js';
import { TunpipeError } from '../errors.js';

const lib = koffi.load('libc.so.6');
const setns = lib.func('int setns(int fd, int nstype)') as (fd: number, type: number) => number;
const CLONE_NEWNET = 0x40000000;
const O_RDONLY = 0;

/** Where `ip netns add NAME` puts a namespace. */
export function netnsPath(name: string): string {
  return `/run/netns/${name}`;
}

function openNs(path: string, what: string): number {
  const fd = libc.open(path, O_RDONLY | libc.O_CLOEXEC);
  if (fd >= 0) return fd;
  const e = libc.errno();
  if (e === libc.E.ENOENT) throw new TunpipeError(`${what}: no such network namespace (create it with 'ip netns add ${path.split('/').pop()}'; 'ip netns list' shows them)`, 'ENOENT');
  throw new TunpipeError(`${what}: cannot open ${path}: ${libc.errnoName(e)}`, libc.errnoName(e));
}

/** Calls `fn` with this thread in network namespace `name`, and always comes back. */
export function inNetns<T>(name: string, fn: () => T): T {
  const target = openNs(netnsPath(name), `--netns ${name}`);
  let home = -1;
  try {
    home = openNs('/proc/thread-self/ns/net', 'this thread');
    if (setns(target, CLONE_NEWNET) < 0) {
      const e = libc.errno();
      const hint = e === libc.E.EPERM ? ': joining a namespace needs root (CAP_SYS_ADMIN)' : '';
      throw new TunpipeError(`cannot enter network namespace ${name}: ${libc.errnoName(e)}${hint}`, libc.errnoName(e));
    }
    try {
      return fn();
    } finally {
      // Never leave this thread in the other namespace: everything the process does next would happen there.
      if (setns(home, CLONE_NEWNET) < 0) {
        process.stderr.write(`tunpipe: cannot return from network namespace ${name} (${libc.errnoName(libc.errno())}); stopping\n`);
        process.exit(70);
      }
    }
  } finally {
    if (home >= 0) libc.close(home);
    libc.close(target);
  }
}
