/**
 * `--kernel-filter EXPR` on a TAP device: the expression is compiled by libpcap for Ethernet, checked before
 * anything opens (a bad one is a usage error, exit 2), attached in the kernel once the device is open
 * (TUNATTACHFILTER), and what the kernel dropped is read from the device's TX drop counter on exit.
 */
import type { DeviceSpec } from './args.js';
import type { TunDevice } from '../device/tun.js';
import type { BpfInsn } from '../filter/bpf.js';
import { TunpipeError, UsageError } from '../errors.js';

const programs = new WeakMap<DeviceSpec, readonly BpfInsn[]>();
const dropsAtStart = new WeakMap<TunDevice, number | null>();

/** Compiles every device's --kernel-filter; throws a UsageError with libpcap's message for a bad one. */
export async function compileKernelFilters(specs: readonly DeviceSpec[]): Promise<void> {
  if (!specs.some((s) => s.kernelFilter !== undefined)) return;
  const { compileFilter } = await import('../filter/compile.js');
  for (const s of specs) {
    if (s.kernelFilter === undefined) continue;
    try {
      programs.set(s, compileFilter(s.kernelFilter, { linkType: 1 }).program);
    } catch (err) {
      if (err instanceof TunpipeError && err.name === 'FilterCompileError') throw new UsageError(`--kernel-filter '${s.kernelFilter}': ${err.message}`);
      throw err;
    }
  }
}

function inDeviceNetns<T>(spec: DeviceSpec, inNetns: (ns: string, fn: () => T) => T, fn: () => T): T {
  return spec.netns !== undefined ? inNetns(spec.netns, fn) : fn();
}

/** Attaches the device's compiled filter, if it has one, and notes its TX drop counter. */
export async function attachKernelFilter(spec: DeviceSpec, dev: TunDevice): Promise<void> {
  const program = programs.get(spec);
  if (program === undefined) return;
  const { txDropped } = await import('../device/link.js');
  const { inNetns } = await import('../device/netns.js');
  dev.attachFilter(program);
  dropsAtStart.set(dev, inDeviceNetns(spec, inNetns, () => txDropped(dev.name)));
}

/** What the device line says about the filter: `; kernel filter 'EXPR'`, or nothing. */
export function kernelFilterNote(spec: DeviceSpec): string {
  return programs.has(spec) ? `; kernel filter '${spec.kernelFilter}'` : '';
}

/** On exit: `, dropped in the kernel N` (the TX drops since the filter was attached), or nothing. */
export async function kernelDropsNote(spec: DeviceSpec, dev: TunDevice): Promise<string> {
  const start = dropsAtStart.get(dev);
  if (start === undefined) return '';
  const { txDropped } = await import('../device/link.js');
  const { inNetns } = await import('../device/netns.js');
  const now = inDeviceNetns(spec, inNetns, () => txDropped(dev.name));
  if (start === null || now === null) return ', dropped in the kernel: unknown (the TX drop counter could not be read)';
  return `, dropped in the kernel ${now - start} (TX drops: rejected by the kernel filter, or a full queue)`;
}
