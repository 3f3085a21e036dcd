/** What a run reports when it ends, and the words both the run and the worker use for it. */
import type { StageStats } from './stage.js';

/** Why a run stopped. */
export type StopReason = 'end' | 'count' | 'signal' | 'error';

/** How a worker moves packets: io_uring where it can be had, or insist on it, or poll(). */
export type IoMode = 'auto' | 'uring' | 'poll';

export interface RunResult {
  /** Packets that entered the pipeline. */
  packetsIn: number;
  /** Packets that left it into a sink (a device or file). */
  packetsOut: number;
  /** Counters per stage, in the order written (branches included), then `drop` sinks and branch ends. */
  stages: StageStats[];
  /** Extra per-stage lines (bytes written by a capture, ...), by label. */
  reports: Map<string, string>;
  /** Why the run stopped early, if it did: a device that vanished, a capture that failed, ... */
  error: Error | null;
  /** What was printed by `--count`, the signal or the source ending. */
  stoppedBy: StopReason;
  /**
   * How a device was read and written: 'io_uring' or 'poll' in a worker (with the reason io_uring could
   * not be had), 'event loop' on the main thread; undefined for files.
   */
  io?: string;
}

