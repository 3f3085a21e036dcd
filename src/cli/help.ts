/**
 * yargs, built from the option table (./options.ts): it writes `--help`, and it parses the command lines
 * that `quickParse` leaves to it (and so words every usage error about options). Loaded only then: yargs
 * takes longer to load than an offline run needs to start. It is imported when first needed rather than at
 * the top: in the CLI's bundle (scripts/bundle.mjs) a static import of a package would load it on every run.
 */
import { builtinStages } from '../pipeline/registry.js';
import { formatStageList } from './format.js';
import { OPTIONS, type CliArgs } from './options.js';
import { UsageError } from '../errors.js';
import { version } from './version.js';

function epilog(): string {
  return `Pipeline language:
  Stages separated by '|', read left to right. A stage is a name followed by positional and key=value
  arguments, quoted like a shell: pcap /tmp/in.pcap, pcap - nanos=true. A name that is a path
  (./drop-big.mjs) loads your own module: see examples/ and the README.
  Where packets go: packets read from the device (or --read) enter on the left. A pipeline that names no
  sink writes what leaves it back to the device it read (the echo needs that), offline to --write (or
  nowhere). End it with 'drop' to discard, or 'to NAME' to send it to another device.
    tee { PIPELINE }          a copy of every packet goes into the branch; the original goes on
    STAGE ... else { PIPELINE }  what STAGE would drop goes into the branch (counted as diverted)
    from NAME | ...           the pipeline reads device NAME (needed with several devices)
    ... | to NAME             it writes to device NAME;  ... | drop   it discards
    ;  or a line break        separates pipelines (a line ending in '|' goes on)
  A branch that names no sink discards what reaches its end (counted).

Devices: --dev NAME may be repeated; --addr, --mtu, --up, --persist, --netns, --queues, --tap, --mac and --kernel-filter apply to
the --dev before them (those before the first --dev, to the first device).

Stages (tunpipe --list NAME for details):
${formatStageList(builtinStages())}

Examples:
  Answer pings on a new device (then, in the same network namespace: ping 198.18.0.2):
    tunpipe --dev tun0 --addr 198.18.0.1/24 'parse | icmp-echo | checksum'
  The same, capturing the requests to a file tcpdump and Wireshark open:
    tunpipe --dev tun0 --addr 198.18.0.1/24 'parse | pcap /tmp/req.pcap | icmp-echo | checksum'
  Answer pings and capture everything else:
    tunpipe --dev tun0 --addr 198.18.0.1/24 'parse | filter-icmp-echo else { pcap /tmp/other.pcap } | swap-addrs | to-reply | checksum'
  Only capture (nothing is written back to the device):
    tunpipe --dev tun0 --addr 198.18.0.1/24 'parse | pcap /tmp/all.pcap | drop'
  Join two network namespaces (made with 'ip netns add nsa' and 'ip netns add nsb') through a wire:
    tunpipe --dev tpa0 --netns nsa --addr 198.18.0.1/24 --dev tpb0 --netns nsb --addr 198.18.0.2/24 \\
      'from tpa0 | to tpb0; from tpb0 | to tpa0'
  A broken link: 40 ms and 10 Mbit/s one way, 10 ms and 1% loss back, both directions in one capture:
    tunpipe --dev tpa0 --netns nsa --addr 198.18.0.1/24 --dev tpb0 --netns nsb --addr 198.18.0.2/24 \\
      'from tpa0 | pcap wire.pcapng | delay 40ms | rate 10mbit | to tpb0;
       from tpb0 | pcap wire.pcapng | delay 10ms | loss 1% | to tpa0'
  Capture only DNS while answering pings (filters in tcpdump's language):
    tunpipe --dev tun0 --addr 198.18.0.1/24 "parse | tee { filter 'udp port 53' | pcap dns.pcap } | icmp-echo | checksum"
  Watch packets live:
    tunpipe --dev tun0 --addr 198.18.0.1/24 'parse | print | icmp-echo | checksum'
    tunpipe --dev tun0 --addr 198.18.0.1/24 'parse | pcap - | icmp-echo | checksum' | tcpdump -n -r -
  Offline, no root, no device:
    tunpipe --read in.pcap --write out.pcap 'parse | icmp-echo | checksum'
  With your own stage:
    tunpipe --read in.pcap 'parse | ./examples/drop-big.mjs max=512 | pcap small.pcap'

Ping a peer address in the device's subnet (198.18.0.2), not the device's own address (198.18.0.1):
the kernel answers its own address itself and the pipeline never sees those pings.
On Ctrl-C (SIGINT) or SIGTERM tunpipe flushes and closes captures, closes the devices and prints the
counters of every stage to stderr; kill -USR1 prints them while it runs.`;
}

const USAGE = `Run packet pipelines on Linux TUN/TAP devices, or offline on pcap files.

Usage:
  tunpipe [--dev NAME [--addr CIDR]... [--mtu N] [--netns NS] [--queues N] [--tap [--mac MAC] [--kernel-filter EXPR]]]... '<pipelines>'
  tunpipe --read in.pcap [--write out.pcap] '<pipeline>'
  tunpipe --list [STAGE]`;

/** The parser; with `forHelp`, also the text around the options (the epilog lists every stage). */
async function parser(argv: string[], forHelp: boolean) {
  const { default: yargs } = await import('yargs');
  let y = yargs(argv).scriptName('tunpipe').usage(USAGE);
  for (const o of OPTIONS) {
    y = y.option(o.name, { type: o.type, describe: o.describe, group: o.group, ...(o.alias ? { alias: o.alias } : {}), ...(o.default !== undefined ? { default: o.default } : {}) });
  }
  if (forHelp) y = y.epilog(`${epilog()}\n\nEnvironment: TUNPIPE_IO=uring|poll (how the worker moves packets), TUNPIPE_IO_BUFFERS=N (io_uring receive buffers per device), TUNPIPE_THREAD=main (run on the event loop).`);
  return y
    .version('version', "print tunpipe's version", version())
    .help(false)
    .describe('help', 'show this text')
    .group(['list', 'help', 'version'], 'Info:')
    .wrap(118)
    .strictOptions()
    .exitProcess(false);
}

/** The text of `tunpipe --help`. */
export async function helpText(): Promise<string> {
  return (await parser([], true)).getHelp();
}

/** Parses with yargs; its own usage errors are thrown as they come (an Error), ours as UsageError. */
export async function parseWithYargs(rest: string[]): Promise<CliArgs> {
  return (await (await parser(rest, false))
    .fail((msg, err) => {
      throw err ?? new UsageError(msg);
    })
    .parseAsync()) as unknown as CliArgs;
}
