/**
 * A StageContext for running a stage on its own, outside any pipeline: in a unit test, or from a program
 * that calls `process` itself. Emitted packets are collected in `emitted`; warnings and failures too.
 */
import { RunClock } from '../packet/clock.js';
import type { Packet } from '../packet/packet.js';
import type { StageContext } from './stage.js';

export interface StandaloneContext extends StageContext {
  /** Packets the stage passed on through `emit`, in order. */
  readonly emitted: Packet[];
  readonly warnings: string[];
  readonly failures: Error[];
  /** The clock `now()` reads: `new RunClock('file')` unless given; `advanceTo` moves it. */
  readonly clock: RunClock;
}

export function standaloneContext(overrides: Partial<StageContext> & { clock?: RunClock } = {}): StandaloneContext {
  const clock = overrides.clock ?? new RunClock('file');
  const emitted: Packet[] = [];
  const warnings: string[] = [];
  const failures: Error[] = [];
  return {
    name: 'stage',
    linkType: 101,
    direction: 'in',
    emit: (p) => void emitted.push(p),
    warn: (m) => void warnings.push(m),
    fail: (e) => void failures.push(e),
    now: () => clock.now(),
    timeOf: (p) => clock.timeOf(p),
    setTime: (p, t) => clock.setTime(p, t),
    ...overrides,
    clock,
    emitted,
    warnings,
    failures,
  };
}
