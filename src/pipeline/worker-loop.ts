/**
 * What the worker's device loops share (./poll-loop.ts, ./uring-loop.ts): the device, the engine, the
 * counters and the reason to stop. A loop sets `send`, the engine's sink, to its own way of writing.
 */
import { setImmediate as nextTurn } from 'node:timers/promises';
import * as libc from '../device/libc.js';
import { countWrite, type TunCounters } from '../device/tun.js';
import type { Packet } from '../packet/packet.js';
import type { Engine } from './engine.js';
import type { RunResult } from './run.js';

/** Milliseconds without packets after which buffered capture records are written. */
const PAUSE_MS = 20;

/**
 * How long a loop may wait in the kernel (-1: until something arrives): 1 ms while an asynchronous stage
 * has packets in hand, PAUSE_MS while a stage holds output that a pause in traffic should write out.
 */
export function waitMs(engine: Engine, busy: boolean): number {
  return busy ? 1 : engine.pendingOutput ? PAUSE_MS : -1;
}

export interface LoopContext {
  /** The device's fd, shared with the main thread (which closes it). */
  readonly fd: number;
  /** An eventfd the main thread writes to stop the loop. */
  readonly wake: number;
  /** The device's name, for messages. */
  readonly name: string;
  readonly engine: Engine;
  readonly counters: TunCounters;
  /** Packets to let in before stopping (Infinity: no limit). */
  readonly limit: number;
  packetsIn: number;
  packetsOut: number;
  /** Set once, by stopWith(). */
  readonly stoppedBy: RunResult['stoppedBy'] | null;
  stopWith(by: RunResult['stoppedBy'], err?: Error): void;
  /** Writes a packet leaving the pipeline; the engine's sink calls it. */
  send: (p: Packet) => void;
}

/** A send that writes each packet at once with write(): before a loop starts and after it has ended. */
export function directSend(ctx: LoopContext): (p: Packet) => void {
  return (p) => {
    ctx.packetsOut++;
    const d = p.data;
    countWrite(ctx.counters, libc.write(ctx.fd, d, d.length));
  };
}

/**
 * Lets the worker's event loop turn while asynchronous stages have packets in hand, a few turns at most
 * (called only then: an await costs a microtask, even on a resolved promise):
 * a packet through an it-pipe'd stage takes several, and a stage that waits on a timer must not make the
 * loop spin (the caller then waits in the kernel with a 1 ms timeout).
 */
export async function settleAsyncStages(engine: Engine): Promise<void> {
  for (let turn = 0; turn < 4; turn++) {
    await nextTurn();
    if (!engine.busy) return;
  }
}
