/**
 * The tunpipe command line: options parsed with yargs, the pipeline run with runPipeline, counters printed
 * on exit. Errors meant for the user are one line without a stack trace; pipeline text errors show a caret.
 * Exit codes: 0 after a normal stop (Ctrl-C, --count, end of the input, the reader of stdout gone),
 * 1 when the run failed (device gone, capture not writable), 2 for a usage error (nothing was started).
 */
import { readFileSync } from 'node:fs';
import yargs from 'yargs';
import { hideBin } from 'yargs/helpers';
import { TunpipeError } from '../errors.js';
import type { TunDevice } from '../device/tun.js';
import { PipelineSyntaxError } from '../pipeline/language.js';
import { resolvePipeline } from '../pipeline/resolve.js';
import { builtinStages, findStage } from '../pipeline/registry.js';
import { runPipeline } from '../pipeline/run.js';
import { formatCounters, formatStageHelp, formatStageList } from './format.js';

const EPILOG = `Pipeline language:
  Stages separated by '|', read left to right. Packets read from the device (or --read) enter on the left;
  what leaves on the right is written back to the device (or to --write). A stage is a name followed by
  positional and key=value arguments, quoted like a shell: pcap /tmp/in.pcap, pcap - nanos=true.
  A stage name that is a path (./drop-big.mjs) loads your own module: see examples/ and the README.

Stages (tunpipe --list NAME for details):
${formatStageList(builtinStages())}

Examples:
  Answer pings on a new device (then, in the same network namespace: ping 198.18.0.2):
    tunpipe --dev tun0 --addr 198.18.0.1/24 'parse | icmp-echo | checksum'
  The same, capturing the requests to a file tcpdump and Wireshark open:
    tunpipe --dev tun0 --addr 198.18.0.1/24 'parse | pcap /tmp/req.pcap | icmp-echo | checksum'
  Watch packets live:
    tunpipe --dev tun0 --addr 198.18.0.1/24 'parse | pcap - | icmp-echo | checksum' | tcpdump -n -r -
  Offline, no root, no device:
    tunpipe --read in.pcap --write out.pcap 'parse | icmp-echo | checksum'
  With your own stage:
    tunpipe --read in.pcap 'parse | ./examples/drop-big.mjs max=512 | pcap small.pcap'

Ping a peer address in the device's subnet (198.18.0.2), not the device's own address (198.18.0.1):
the kernel answers its own address itself and the pipeline never sees those pings.
On Ctrl-C (SIGINT) or SIGTERM tunpipe flushes and closes captures, closes the device and prints the
counters of every stage to stderr.`;

interface CliArgs {
  dev?: string;
  addr?: string | string[];
  mtu?: number;
  up?: boolean;
  persist?: boolean;
  read?: string;
  write?: string;
  count?: number;
  queue?: number;
  user?: string;
  group?: string;
  quiet?: boolean;
  list?: boolean;
  _: (string | number)[];
}

function version(): string {
  const pkg = JSON.parse(readFileSync(new URL('../../../package.json', import.meta.url), 'utf8')) as { version: string };
  return pkg.version;
}

function parser(argv: string[]) {
  return yargs(argv)
    .scriptName('tunpipe')
    .usage("Run a packet pipeline on a Linux TUN device, or offline on pcap files.\n\nUsage:\n  tunpipe [--dev NAME] [--addr CIDR]... [--mtu N] '<pipeline>'\n  tunpipe --read in.pcap [--write out.pcap] '<pipeline>'\n  tunpipe --list [STAGE]")
    .option('dev', { type: 'string', describe: 'TUN device to open, created if missing (default: the kernel picks tunN)', group: 'Device:' })
    .option('addr', { type: 'string', describe: 'address to assign, CIDR (198.18.0.1/24, 2001:db8::1/64); repeatable; brings the link up', group: 'Device:' })
    .option('mtu', { type: 'number', describe: 'set the device MTU', group: 'Device:' })
    .option('up', { type: 'boolean', describe: 'bring the link up even without --addr', group: 'Device:' })
    .option('persist', { type: 'boolean', describe: 'make the device persistent (it stays after tunpipe exits)', group: 'Device:' })
    .option('user', { type: 'string', describe: 'drop root to this user once the device is open', group: 'Device:' })
    .option('group', { type: 'string', describe: 'drop root to this group once the device is open', group: 'Device:' })
    .option('read', { type: 'string', describe: 'offline: read packets from this capture, pcap or pcapng (- for stdin) instead of a device', group: 'Offline:' })
    .option('write', { type: 'string', describe: 'offline: write what leaves the pipeline to this pcap file (- for stdout)', group: 'Offline:' })
    .option('count', { type: 'number', describe: 'stop after N packets have entered the pipeline', group: 'Run:' })
    .option('queue', { type: 'number', default: 1024, describe: 'packets that may wait in front of a slow (async) stage before drops', group: 'Run:' })
    .option('quiet', { type: 'boolean', alias: 'q', describe: 'do not print the counters on exit', group: 'Run:' })
    .option('list', { type: 'boolean', describe: 'list the stages (or describe one: --list pcap) and exit', group: 'Info:' })
    .conflicts('read', ['dev', 'addr', 'mtu', 'persist'])
    .check((a) => {
      if (a.help) return true;
      if (a.count !== undefined && (!Number.isInteger(a.count) || a.count < 0)) throw new Error('--count takes a whole number of packets');
      if (a.mtu !== undefined && (!Number.isInteger(a.mtu) || a.mtu < 68 || a.mtu > 65535)) throw new Error('--mtu takes 68..65535');
      if (!Number.isInteger(a.queue) || (a.queue as number) < 1) throw new Error('--queue takes a whole number of packets, at least 1');
      if (a.write && !a.read) throw new Error('--write is for offline mode; give --read too (on a device, replies go back to the device: use a pcap stage to capture)');
      if (!a.list && a._.length !== 1) throw new Error(a._.length === 0 ? "give a pipeline, e.g. 'parse | icmp-echo | checksum'" : "give the pipeline as one argument: quote it ('parse | icmp-echo | checksum')");
      return true;
    })
    .epilog(EPILOG)
    .version(version())
    .help()
    .alias('h', 'help')
    .wrap(118)
    .strictOptions()
    .exitProcess(false);
}

/** yargs takes a lone '-' for a positional argument: `--write -` becomes `--write=-` (same for --read). */
function bindDashValues(argv: string[]): string[] {
  const out: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    if ((argv[i] === '--write' || argv[i] === '--read') && argv[i + 1] === '-') out.push(`${argv[i++]}=-`);
    else out.push(argv[i]);
  }
  return out;
}

function say(line: string): void {
  process.stderr.write(`tunpipe: ${line}\n`);
}

function listStages(name: string | undefined): number {
  if (name === undefined) {
    process.stdout.write(`Stages (tunpipe --list NAME for details):\n${formatStageList(builtinStages())}\n`);
    return 0;
  }
  const def = findStage(name);
  if (!def) {
    say(`unknown stage '${name}'; known stages: ${builtinStages().map((d) => d.name).join(', ')}`);
    return 2;
  }
  process.stdout.write(`${formatStageHelp(def)}\n`);
  return 0;
}

/** Runs the CLI with `argv` (without node and script); resolves to the exit code. */
export async function main(argv: string[] = hideBin(process.argv)): Promise<number> {
  let args: CliArgs;
  argv = bindDashValues(argv);
  const p = parser(argv);
  if (argv.includes('--help') || argv.includes('-h')) {
    process.stdout.write(`${await p.getHelp()}\n`);
    return 0;
  }
  if (argv.includes('--version')) {
    process.stdout.write(`${version()}\n`);
    return 0;
  }
  try {
    args = (await p
      .fail((msg, err) => {
        throw err ?? new TunpipeError(msg);
      })
      .parseAsync()) as unknown as CliArgs;
  } catch (err) {
    say(`${(err as Error).message} (see tunpipe --help)`);
    return 2;
  }
  if (args.list) return listStages(args._[0] === undefined ? undefined : String(args._[0]));
  const text = String(args._[0]);

  // Check the pipeline text before touching any device, so a typo changes nothing on the system.
  try {
    await resolvePipeline(text);
  } catch (err) {
    if (err instanceof PipelineSyntaxError) {
      process.stderr.write(`tunpipe: ${err.format()}\n`);
      return 2;
    }
    throw err;
  }

  let device: TunDevice | undefined;
  let onReady: (() => void) | undefined;
  const controller = new AbortController();
  let signals = 0;
  const onSignal = (sig: NodeJS.Signals) => {
    signals++;
    if (signals > 1) {
      say(`second ${sig}: exiting now`);
      process.exit(130);
    }
    controller.abort();
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  process.on('SIGHUP', onSignal);
  try {
    if (!args.read) {
      const addresses = args.addr === undefined ? [] : ([] as string[]).concat(args.addr);
      // The device layer (koffi and its native library) is loaded only for a device: offline runs start faster.
      const { openTun } = await import('../device/tun.js');
      device = openTun({ name: args.dev, addresses, mtu: args.mtu, up: args.up, persist: args.persist });
      const addrs = addresses.length ? ` with ${addresses.join(', ')}` : ' (no address: configure it yourself, or use --addr)';
      const opened = `device ${device.name} open${addrs}`;
      // Said once the pipeline waits for packets: a ping sent after this line is answered at once.
      onReady = () => say(`${opened}; reading (Ctrl-C to stop)`);
      if (args.user || args.group) (await import('./privileges.js')).dropPrivileges(args.user, args.group);
    }
    const result = await runPipeline({
      onReady,
      pipeline: text,
      device,
      read: args.read,
      write: args.write,
      count: args.count,
      queueLength: args.queue,
      signal: controller.signal,
      // TUNPIPE_THREAD=main runs the pipeline on the event loop instead (for comparison and debugging).
      thread: process.env.TUNPIPE_THREAD === 'main' ? 'main' : 'worker',
    });
    device?.closeFd();
    const epipe = result.error instanceof TunpipeError && result.error.code === 'EPIPE';
    if (result.error && !epipe) say(result.error.message);
    if (!args.quiet) {
      const why = epipe ? 'the reader of stdout went away' : result.stoppedBy === 'signal' ? 'stopped by signal' : result.stoppedBy === 'count' ? `stopped after --count ${args.count}` : result.stoppedBy === 'end' ? 'end of input' : 'stopped by an error';
      process.stderr.write(`tunpipe: ${why}: ${result.packetsIn} packets in, ${result.packetsOut} out\n${formatCounters(result)}\n`);
      if (device) {
        const c = device.counters;
        process.stderr.write(`device ${device.name}: read ${c.rxPackets}, written ${c.txPackets}, write errors ${c.txErrors} (${result.io})\n`);
      }
    }
    return result.error && !epipe ? 1 : 0;
  } catch (err) {
    device?.closeFd();
    if (err instanceof PipelineSyntaxError) {
      process.stderr.write(`tunpipe: ${err.format()}\n`);
      return 2;
    }
    if (err instanceof TunpipeError) {
      say(err.message);
      return 1;
    }
    throw err;
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    process.off('SIGHUP', onSignal);
  }
}
