/**
 * The device options of the command line, which apply per device: every option after a `--dev` belongs to
 * that device until the next `--dev` (as ffmpeg's options belong to the next input), and those given
 * before the first `--dev` to the first device. Everything else goes on to yargs.
 *
 *     tunpipe --dev tpa0 --netns nsa --addr 198.18.0.1/24 --dev tpb0 --netns nsb --addr 198.18.0.2/24 '...'
 */
import { UsageError } from '../errors.js';

/** One device as the command line describes it. */
export interface DeviceSpec {
  /** Interface name; undefined lets the kernel pick (tunN/tapN). */
  name?: string;
  mode: 'tun' | 'tap';
  addresses: string[];
  mtu?: number;
  up?: boolean;
  persist?: boolean;
  /** Network namespace (a name under /run/netns, as `ip netns add` makes them) to open the device in. */
  netns?: string;
  /** TAP only: the device's Ethernet address. */
  mac?: string;
  /** TAP only: a pcap-filter expression attached in the kernel (TUNATTACHFILTER): what it rejects never arrives. */
  kernelFilter?: string;
  /**
   * --queues N: the device is opened N times with IFF_MULTI_QUEUE and every queue has a worker thread of its
   * own (absent: one queue, opened as before, without IFF_MULTI_QUEUE).
   */
  queues?: number;
}

/** Options that belong to a device, with whether they take a value. */
const DEVICE_OPTIONS: Record<string, boolean> = {
  '--dev': true,
  '--addr': true,
  '--mtu': true,
  '--up': false,
  '--persist': false,
  '--netns': true,
  '--tap': false,
  '--mac': true,
  '--kernel-filter': true,
  '--queues': true,
};

/** Every device option's name, for --help. */
export const DEVICE_OPTION_NAMES = Object.keys(DEVICE_OPTIONS);

function decimal(text: string, what: string, min: number, max: number): number {
  if (!/^\d+$/.test(text)) throw new UsageError(`${what} takes a whole number from ${min} to ${max}, got '${text}'`);
  const n = Number(text);
  if (n < min || n > max) throw new UsageError(`${what} takes a whole number from ${min} to ${max}, got ${text}`);
  return n;
}

/** The kernel's limit of queues per TUN/TAP device (MAX_TAP_QUEUES in drivers/net/tun.c). */
export const KERNEL_MAX_QUEUES = 256;
/** tunpipe's own limit: every queue is a worker thread with its own V8 heap and io_uring ring. */
export const MAX_QUEUES = 64;

/** Checks the value of --queues: a whole number from 1 to MAX_QUEUES, with why a larger one is refused. */
export function parseQueues(text: string): number {
  if (!/^\d+$/.test(text) || Number(text) < 1) throw new UsageError(`--queues takes a whole number of queues, at least 1, got '${text}'`);
  const n = Number(text);
  if (n > KERNEL_MAX_QUEUES) throw new UsageError(`--queues ${text}: the kernel allows at most ${KERNEL_MAX_QUEUES} queues per device (MAX_TAP_QUEUES)`);
  if (n > MAX_QUEUES) throw new UsageError(`--queues ${text}: tunpipe runs one worker thread per queue and takes at most ${MAX_QUEUES}; more threads than cores only share them`);
  return n;
}

const MAC = /^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/i;

/** Checks a device name the way the kernel will (IFNAMSIZ, no '/', ':' or spaces, not '.' or '..'). */
export function checkDeviceName(name: string): void {
  if (name === '') throw new UsageError("--dev needs a name (or leave --dev out to let the kernel pick one)");
  if (Buffer.byteLength(name) > 15) throw new UsageError(`device name '${name}' is too long: at most 15 bytes`);
  if (/[\s/:]/.test(name) || name === '.' || name === '..' || /[^\x21-\x7e]/.test(name)) throw new UsageError(`device name '${name}' is not valid: printable characters, no spaces, '/' or ':'`);
}

/** Checks a namespace name as `ip netns` accepts it. */
export function checkNetnsName(name: string): void {
  if (name === '' || name === '.' || name === '..' || /[/\0]/.test(name) || Buffer.byteLength(name) > 255) throw new UsageError(`--netns '${name}' is not a namespace name (ip netns list shows them)`);
}

/**
 * Splits `argv` into the devices it describes and the remaining arguments. Values may be written
 * `--opt value` or `--opt=value`. Throws UsageError for a device option that is misused.
 */
export function splitDeviceOptions(argv: string[]): { devices: DeviceSpec[]; rest: string[] } {
  const devices: DeviceSpec[] = [];
  const rest: string[] = [];
  let pending: DeviceSpec | null = null;
  /** Device options given before the first --dev. */
  const state: { early: DeviceSpec | null } = { early: null };
  const current = (): DeviceSpec => {
    if (pending) return pending;
    state.early ??= { mode: 'tun', addresses: [] };
    return state.early;
  };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    if (arg === '--') {
      rest.push(...argv.slice(i));
      break;
    }
    const eq = arg.indexOf('=');
    const flag = arg.startsWith('--') && eq > 0 ? arg.slice(0, eq) : arg;
    if (!(flag in DEVICE_OPTIONS)) {
      rest.push(arg);
      continue;
    }
    const takesValue = DEVICE_OPTIONS[flag];
    let value: string | undefined;
    if (takesValue) {
      if (eq > 0 && flag !== arg) value = arg.slice(eq + 1);
      else {
        value = argv[++i];
        if (value === undefined) throw new UsageError(`${flag} needs a value`);
      }
    } else if (flag !== arg) {
      const v = arg.slice(eq + 1);
      if (v !== 'true' && v !== 'false') throw new UsageError(`${flag} takes no value (or =true/=false), got '${v}'`);
      if (v === 'false') continue;
    }
    if (flag === '--dev') {
      checkDeviceName(value!);
      if (pending === null && state.early !== null && devices.length === 0) {
        // Options before the first --dev belong to it.
        pending = state.early;
        state.early = null;
        pending.name = value;
        devices.push(pending);
      } else {
        pending = { name: value, mode: 'tun', addresses: [] };
        devices.push(pending);
      }
      if (devices.filter((d) => d.name === value).length > 1) throw new UsageError(`--dev ${value} is given twice`);
      continue;
    }
    const dev = current();
    switch (flag) {
      case '--addr':
        dev.addresses.push(value!);
        break;
      case '--mtu':
        if (dev.mtu !== undefined) throw new UsageError(`--mtu is given twice for ${dev.name ?? 'the device'}`);
        dev.mtu = decimal(value!, '--mtu', 68, 65535);
        break;
      case '--up':
        dev.up = true;
        break;
      case '--persist':
        dev.persist = true;
        break;
      case '--netns':
        if (dev.netns !== undefined) throw new UsageError(`--netns is given twice for ${dev.name ?? 'the device'}`);
        checkNetnsName(value!);
        dev.netns = value;
        break;
      case '--tap':
        dev.mode = 'tap';
        break;
      case '--mac':
        if (!MAC.test(value!)) throw new UsageError(`--mac takes an Ethernet address such as 02:00:00:00:00:01, got '${value}'`);
        dev.mac = value!.toLowerCase();
        break;
      case '--kernel-filter':
        if (dev.kernelFilter !== undefined) throw new UsageError(`--kernel-filter is given twice for ${dev.name ?? 'the device'}`);
        dev.kernelFilter = value!;
        break;
      case '--queues':
        if (dev.queues !== undefined) throw new UsageError(`--queues is given twice for ${dev.name ?? 'the device'}`);
        dev.queues = parseQueues(value!);
        break;
    }
  }
  if (state.early !== null) devices.unshift(state.early);
  for (const d of devices) {
    if (d.mac !== undefined && d.mode !== 'tap') throw new UsageError(`--mac is for TAP devices: add --tap to ${d.name ?? 'the device'}`);
    if (d.kernelFilter !== undefined && d.mode !== 'tap') {
      throw new UsageError(`--kernel-filter is for TAP devices: the kernel attaches classic BPF only to TAP (TUNATTACHFILTER); on ${d.name ?? 'a TUN device'} use the filter stage, or add --tap`);
    }
  }
  return { devices, rest };
}
