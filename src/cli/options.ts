/**
 * The command line's options, declared once: yargs is built from this table for `--help` and for any
 * command line out of the ordinary (./help.ts), and `quickParse` reads the common case with it directly.
 *
 * Why two readers: loading yargs costs more than the rest of an offline run's start-up together, and the
 * common command lines (`--read in.pcap --write out.pcap 'parse | ...'`, `--dev tun0 --addr ... '...'`)
 * need none of what it does. `quickParse` takes only what it reads exactly as yargs would and returns null
 * for everything else (an unknown, repeated or negated option, `=` on a flag, a value that yargs would
 * coerce or strip of quotes, `--`): yargs then parses the whole line, so every usage error is yargs' own.
 * A unit test compares the two readers on a corpus of command lines.
 */

export interface OptionSpec {
  name: string;
  type: 'string' | 'number' | 'boolean';
  describe: string;
  group: string;
  alias?: string;
  default?: number;
}

const DEVICE = 'Device (options apply to the --dev before them):';

/**
 * Every option in `--help` order. The device options are split off per device before parsing
 * (./args.ts): they are here for `--help`, and so that yargs knows them.
 */
export const OPTIONS: readonly OptionSpec[] = [
  { name: 'dev', type: 'string', describe: 'TUN device to open, created if missing (default: the kernel picks tunN); repeat for several', group: DEVICE },
  { name: 'addr', type: 'string', describe: 'address to assign, CIDR (198.18.0.1/24, 2001:db8::1/64); repeatable; brings the link up', group: DEVICE },
  { name: 'mtu', type: 'number', describe: 'set the device MTU (68..65535)', group: DEVICE },
  { name: 'up', type: 'boolean', describe: 'bring the link up even without --addr', group: DEVICE },
  { name: 'persist', type: 'boolean', describe: 'make the device persistent (it stays after tunpipe exits)', group: DEVICE },
  { name: 'netns', type: 'string', describe: 'create the device in this network namespace (/run/netns/NS, as ip netns add makes them)', group: DEVICE },
  { name: 'queues', type: 'number', describe: 'open the device N times with IFF_MULTI_QUEUE, a worker thread per queue (1..64)', group: DEVICE },
  { name: 'tap', type: 'boolean', describe: 'a TAP device (Ethernet frames) instead of TUN (IP packets)', group: DEVICE },
  { name: 'mac', type: 'string', describe: "a TAP device's Ethernet address (02:00:00:00:00:01)", group: DEVICE },
  { name: 'kernel-filter', type: 'string', describe: 'TAP: a pcap-filter expression run in the kernel; frames it rejects never arrive (counted as TX drops)', group: DEVICE },
  { name: 'offload', type: 'boolean', describe: 'open every device with offloads (virtio headers, TCP/UDP super-packets up to 64 KiB): parse, filter, pcap, print, delay, loss, rate, duplicate and reorder take super-packets whole; before any other stage, and before a device without offloads, they are split into segments (segment stage)', group: DEVICE },
  { name: 'user', type: 'string', describe: 'drop root to this user once devices and captures are open', group: 'Privileges:' },
  { name: 'group', type: 'string', describe: 'drop root to this group once devices and captures are open', group: 'Privileges:' },
  { name: 'read', type: 'string', describe: 'offline: read packets from this capture, pcap or pcapng (- for stdin) instead of a device', group: 'Offline:' },
  { name: 'write', type: 'string', describe: 'offline: write what leaves the pipeline to this pcap file (- for stdout)', group: 'Offline:' },
  { name: 'count', type: 'number', describe: 'stop after N packets have entered the pipelines', group: 'Run:' },
  { name: 'queue', type: 'number', default: 1024, describe: 'packets that may wait in front of a slow (async) user stage before drops (device queues: --queues)', group: 'Run:' },
  { name: 'quiet', type: 'boolean', alias: 'q', describe: 'do not print the counters on exit', group: 'Run:' },
  { name: 'stats', type: 'string', describe: 'live counters every INTERVAL (default 1s): a table redrawn on a terminal, JSON lines otherwise', group: 'Run:' },
  { name: 'stats-json', type: 'string', describe: 'write the live counters as JSON lines to this file, - for stdout (every --stats INTERVAL, default 1s)', group: 'Run:' },
  { name: 'list', type: 'boolean', describe: 'list the stages (or describe one: --list pcap) and exit', group: 'Info:' },
  { name: 'help', type: 'boolean', alias: 'h', describe: 'this text', group: 'Info:' },
];

/** What the command line says once the device options are split off (yargs' result, the fields we read). */
export interface CliArgs {
  read?: string | string[];
  write?: string | string[];
  count?: number | number[];
  queue?: number | number[];
  user?: string | string[];
  group?: string | string[];
  quiet?: boolean;
  list?: boolean;
  stats?: string | string[];
  'stats-json'?: string | string[];
  offload?: boolean;
  _: (string | number)[];
  [option: string]: unknown;
}

const BY_FLAG: ReadonlyMap<string, OptionSpec> = new Map(
  OPTIONS.filter((o) => o.name !== 'help').flatMap((o) => [[`--${o.name}`, o] as const, ...(o.alias ? [[`-${o.alias}`, o] as const] : [])]),
);

/** A whole number yargs reads the same way (no sign, exponent, hex, leading zero or space). */
const PLAIN_NUMBER = /^(0|[1-9]\d{0,14})$/;

/** A positional argument yargs would turn into a number (it does so for anything Number() reads). */
function numberLike(text: string): boolean {
  return text.trim() === '' || Number.isFinite(Number(text));
}

/** A value yargs takes as it is: not empty, not an option, not in quotes (`--x="v"` loses its quotes). */
function plainValue(v: string | undefined): v is string {
  return v !== undefined && v !== '' && v[0] !== '-' && v[0] !== '"' && v[0] !== "'";
}

/**
 * Parses `rest` (the command line without device options) as yargs would, when it is a plain one; null
 * means "not sure: ask yargs". Never throws.
 */
export function quickParse(rest: readonly string[]): CliArgs | null {
  const out: CliArgs = { _: [] };
  for (const o of OPTIONS) if (o.default !== undefined) out[o.name] = o.default;
  const seen = new Set<string>();
  for (let i = 0; i < rest.length; i++) {
    const arg = rest[i];
    if (arg[0] !== '-') {
      if (numberLike(arg)) return null;
      out._.push(arg);
      continue;
    }
    const eq = arg.startsWith('--') ? arg.indexOf('=') : -1;
    const spec = BY_FLAG.get(eq > 0 ? arg.slice(0, eq) : arg);
    if (spec === undefined || seen.has(spec.name)) return null;
    seen.add(spec.name);
    if (spec.type === 'boolean') {
      // `--flag=false` and `--flag true` are yargs' to read.
      if (eq > 0 || rest[i + 1] === 'true' || rest[i + 1] === 'false') return null;
      out[spec.name] = true;
      continue;
    }
    const value = eq > 0 ? arg.slice(eq + 1) : rest[++i];
    // `--read=-` and `--write=-` (stdin, stdout) are what main.ts makes of `--read -` and `--write -`.
    if (!plainValue(value) && !(eq > 0 && value === '-')) return null;
    if (spec.type === 'number') {
      if (!PLAIN_NUMBER.test(value)) return null;
      out[spec.name] = Number(value);
    } else out[spec.name] = value;
  }
  return out;
}
