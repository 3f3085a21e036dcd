/**
 * print: writes one line per packet, in the manner of `tcpdump -n`, and passes the packet on unchanged:
 * `'parse | print | icmp-echo | checksum'` shows what is being answered.
 *
 *   12:00:01.000007 IP 198.18.0.2 > 198.18.0.1: ICMP echo request, id 4660, seq 1, length 64
 *
 * Arguments:
 *   FILE        where the lines go: a file, or `-` for stdout. Default: stdout, or stderr when stdout
 *               carries a capture (`pcap -`, `--write -`: the driver says so in ctx.stdoutTaken, and a
 *               capture writer on stdout claims it, which print reads when it writes its first line; so
 *               `print -` too goes to stderr rather than into a capture, and says so on exit).
 *   hex=BOOL    add a hex dump of the packet under its line (as tcpdump -x); default false
 *   nanos=BOOL  times with nanoseconds; default false (microseconds)
 *
 * What a line holds: the local time; then, decoded from the bytes alone (with or without `parse` before
 * it; RAW IP or Ethernet by the pipeline's link type): IPv4/IPv6 addresses, TCP/UDP ports, and ICMP type,
 * id and seq; ICMPv6 echo and neighbor discovery (who has / tgt is, link addresses); TCP flags, seq, ack,
 * window; UDP length; ARP who-has / is-at; IPv4 and IPv6 fragment id, offset and more/last; the length of
 * the protocol's payload. Every read is bounds-checked: a short or malformed packet prints what could be
 * read and `[truncated]` or `[bad ...]`; nothing is dropped.
 *
 * Output is buffered and written at the end of each batch. A pipe whose reader is slow holds the
 * pipeline at most 50 ms per batch (then lines wait, and past 1 MiB of backlog are dropped and counted);
 * a reader that goes away (`| head`) stops the printing quietly, and the pipeline goes on.
 */
import { defineStage, type StageContext } from '../src/pipeline/stage.js';
import { LineOutput } from '../src/pcap/line-output.js';
import { stdoutClaimed } from '../src/pcap/stdout-claim.js';
import { hexDump, summarize, timeText } from '../src/pcap/summary.js';
import { wallClock } from '../src/packet/clock.js';
import type { Packet } from '../src/packet/packet.js';
import { TunpipeError } from '../src/errors.js';

/** The arguments of `print`, as the stage receives them. */
export interface PrintArgs {
  file?: string;
  hex: boolean;
  nanos: boolean;
}

function createPrint(a: PrintArgs, ctx: StageContext) {
  const stdoutTaken = ctx.stdoutTaken === true;
  if (a.file === '-' && stdoutTaken) throw new TunpipeError('print -: stdout carries a capture in this run; leave FILE out to print to stderr, or name a file');
  let moved = false;
  // Decided at the first line: by then every stage exists, and a capture writer on stdout has said so.
  const pick = (): 1 | 2 => {
    if (stdoutTaken || stdoutClaimed()) {
      if (a.file === '-') moved = true;
      return 2;
    }
    return 1;
  };
  const out = new LineOutput(a.file === undefined || a.file === '-' ? pick : a.file);
  const linkType = ctx.linkType;
  let failed = false;
  const flush = (): void => {
    if (failed) return;
    try {
      out.flush();
    } catch (err) {
      failed = true;
      ctx.warn(`${(err as Error).message}; printing stopped, the pipeline goes on`);
    }
  };
  return {
    process(p: Packet): Packet {
      if (out.closed || failed) return p;
      if (p.sec === 0) [p.sec, p.nsec] = wallClock();
      const line = `${timeText(p.sec, p.nsec, a.nanos)} ${summarize(p.data, linkType)}\n`;
      out.add(a.hex ? line + hexDump(p.data) : line);
      return p;
    },
    flush,
    pending: () => !failed && out.pending,
    close(): void {
      try {
        out.close();
      } catch (err) {
        if (!failed) ctx.warn(`${(err as Error).message}; printing stopped`);
      }
    },
    report: () => {
      let line = `${out.lines} lines printed to ${out.name}`;
      if (moved) line += ' (print - asked for stdout, which carries a capture)';
      if (out.dropped > 0) line += `; ${out.dropped} dropped (the reader was too slow)`;
      if (out.closed) line += '; its reader went away';
      return line;
    },
  };
}

const printStage = defineStage({
  name: 'print',
  keepsPackets: false,
  recordsChanges: true,
  superPackets: true,
  readsTime: true,
  summary: 'print one line per packet, like tcpdump -n (to stdout, or stderr when stdout carries a capture)',
  help: [
    'Examples:',
    "  parse | print | icmp-echo | checksum                 see what is answered",
    "  print hex=true                                      with a hex dump",
    "  parse | pcap - | print | icmp-echo | checksum        capture on stdout, lines on stderr",
    "  print /tmp/lines.txt                                into a file",
  ].join('\n'),
  args: [
    { name: 'file', type: 'string', positional: true, output: true, description: 'file for the lines, or - for stdout (default: stdout, or stderr when stdout carries a capture)' },
    { name: 'hex', type: 'boolean', default: false, description: 'add a hex dump of each packet' },
    { name: 'nanos', type: 'boolean', default: false, description: 'times with nanoseconds' },
  ],
  create: (args, ctx) => createPrint(args as unknown as PrintArgs, ctx),
});
export default printStage;
