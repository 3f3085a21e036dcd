/** `--count` over several queues (./queues.ts): the driver of one queue's worker. */
import { Driver } from './driver.js';
import type { Engine } from './engine.js';
import type { Packet } from '../packet/packet.js';

/**
 * The driver of one queue's worker under `--count`: the count is shared by every queue (one Int32 in a
 * SharedArrayBuffer), taken with one atomic add per packet, so exactly `limit` packets enter the pipelines
 * in all; a worker stops at the first packet past it (the main thread stops the ones that wait idle).
 * Only with several queues and a count: a single queue keeps the plain Driver.
 */
export class SharedCountDriver extends Driver {
  private readonly entered: Int32Array;

  constructor(
    engine: Engine,
    shared: SharedArrayBuffer,
    private readonly sharedLimit: number,
  ) {
    super(engine, Infinity);
    this.entered = new Int32Array(shared);
    if (sharedLimit <= 0) this.stopWith('count');
  }

  override push(pipeline: number, p: Packet): void {
    const before = Atomics.add(this.entered, 0, 1);
    if (before >= this.sharedLimit) {
      this.stopWith('count');
      return;
    }
    super.push(pipeline, p);
    if (before + 1 >= this.sharedLimit) this.stopWith('count');
  }
}
