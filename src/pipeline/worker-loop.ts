/**
 * What the worker's device loops share (./poll-loop.ts, ./uring-loop.ts): the devices, the driver, and the
 * engine's way out. A loop sets `send`, which the engine's sinks call, to its own way of writing.
 */
import { setImmediate as nextTurn } from 'node:timers/promises';
import * as libc from '../device/libc.js';
import { countWrite, goneAfterLinkEvent, readError, type TunCounters } from '../device/tun.js';
import type { Packet } from '../packet/packet.js';
import { offloadFrame } from '../packet/vnet.js';
import type { Engine } from './engine.js';
import type { Driver } from './driver.js';

export interface DeviceLoopContext {
  /** The devices' fds, shared with the main thread (which closes them). */
  readonly fds: readonly number[];
  /** Their names, for messages. */
  readonly names: readonly string[];
  /**
   * Per device, a link watch of its namespace (netlink.ts openLinkWatch), -1 when none: the loop waits on
   * each as on the devices, and calls linkChanged when one is readable.
   */
  readonly linkWatches: readonly number[];
  /** Per device: the pipeline that reads it, or -1 when none does (it is then not read at all). */
  readonly pipelineOf: readonly number[];
  /** An eventfd the main thread writes to stop the loop. */
  readonly wake: number;
  readonly driver: Driver;
  readonly engine: Engine;
  /** Per device. */
  readonly counters: TunCounters[];
  /**
   * Per device: opened with offloads, so every packet read starts with a virtio_net_hdr (taken into the
   * Packet's fields, `data` past it) and every packet written gets one in front (from those fields).
   */
  readonly offload: readonly boolean[];
  /** Writes a packet leaving a pipeline to device `device`; the engine's sinks call it. */
  send: (p: Packet, device: number) => void;
  /** The main thread asked for the live counters (kill -USR1): post them. */
  report: () => void;
}

/** What the main thread writes to the wake eventfd: 1 asks the loop to stop, REPORT for the live counters. */
export const WAKE_STOP = 1;
export const WAKE_REPORT = 2 ** 32;

/** Acts on the value read from the wake eventfd (the sum of what was written since the last read). */
export function onWake(ctx: DeviceLoopContext, value: number): void {
  if (value >= WAKE_REPORT) ctx.report();
  if (value % WAKE_REPORT !== 0) ctx.driver.stopWith('signal');
}

/**
 * A link watch woke the loop: reads its events, then stops the run with the device's error if one of the
 * devices was deleted (a deleted device's reader is not always woken: netlink.ts openLinkWatch says why).
 */
export function linkChanged(ctx: DeviceLoopContext, watch: number): void {
  const gone = goneAfterLinkEvent(watch, ctx.fds);
  if (gone !== null) ctx.driver.stopWith('error', readError(ctx.names[gone.index], gone.errno));
}

/** The link watches a loop waits on (every device has one of its own, where the kernel gave it). */
export function linkWatchesOf(ctx: DeviceLoopContext): number[] {
  return ctx.linkWatches.filter((fd) => fd >= 0);
}

/** A send that writes each packet at once with write(): before a loop starts and after it has ended. */
export function directSend(ctx: DeviceLoopContext): (p: Packet, device: number) => void {
  return (p, device) => {
    ctx.driver.packetsOut++;
    const d = ctx.offload[device] ? offloadFrame(p) : p.data;
    countWrite(ctx.counters[device], libc.write(ctx.fds[device], d, d.length));
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
