/**
 * Settings that come from the environment, read once and checked at start (a bad value is a usage error,
 * not a surprise later): how the worker moves packets, and where the pipeline runs.
 */
import { UsageError } from '../errors.js';
import type { IoMode } from '../pipeline/device-worker.js';

export interface RunSettings {
  /** TUNPIPE_IO: 'uring' insists on io_uring, 'poll' never uses it; default: io_uring where it can be had. */
  io: IoMode;
  /** TUNPIPE_IO_BUFFERS: io_uring receive buffers per device, a power of two (default 128). */
  ioBuffers: number;
  /** TUNPIPE_THREAD=main: run on the event loop instead of a worker thread. */
  thread: 'main' | 'worker';
  /** TUNPIPE_READINESS=pipe|poll: on the event loop, how a device's readiness is watched (default: pipe where it can be had). */
  readiness?: 'pipe' | 'poll';
}

export function readRunOptions(env: NodeJS.ProcessEnv): RunSettings {
  const io = env.TUNPIPE_IO;
  if (io !== undefined && io !== 'poll' && io !== 'uring') throw new UsageError(`TUNPIPE_IO=${io}: use uring or poll`);
  const text = env.TUNPIPE_IO_BUFFERS;
  const buffers = text === undefined ? 128 : /^\d+$/.test(text) ? Number(text) : NaN;
  if (!Number.isInteger(buffers) || buffers < 1 || buffers > 32768 || (buffers & (buffers - 1)) !== 0) {
    throw new UsageError(`TUNPIPE_IO_BUFFERS=${text}: a power of two from 1 to 32768`);
  }
  const thread = env.TUNPIPE_THREAD;
  if (thread !== undefined && thread !== 'main' && thread !== 'worker') throw new UsageError(`TUNPIPE_THREAD=${thread}: use main or worker`);
  const readiness = env.TUNPIPE_READINESS;
  if (readiness !== undefined && readiness !== 'pipe' && readiness !== 'poll') throw new UsageError(`TUNPIPE_READINESS=${readiness}: use pipe or poll`);
  return { io: (io ?? 'auto') as IoMode, ioBuffers: buffers, thread: thread === 'main' ? 'main' : 'worker', readiness };
}
