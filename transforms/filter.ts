/**
 * filter: passes the packets that match a pcap-filter(7) expression (the language of tcpdump and
 * Wireshark's capture filters) and drops the rest.
 *
 * Arguments:
 *   EXPR            the expression, quoted as one argument: `filter 'icmp and src host 198.18.0.2'`
 *   show=none|bpf|js
 *                   print, once at start on stderr, the BPF program libpcap compiled (as `tcpdump -d`
 *                   lists it) or the JavaScript it was translated to; default none
 *   optimize=BOOL   run libpcap's optimizer (tcpdump does unless `-O`); default true
 *
 * The expression is compiled by libpcap itself (`pcap_compile` on a `pcap_open_dead` handle; Debian's
 * libpcap0.8, loaded only when a filter is used) for the link type of the packets the stage receives:
 * RAW IP from a TUN device or a RAW capture file, Ethernet from a TAP device or an Ethernet file. The
 * program runs on `p.data` from offset 0 as the port gives it, so `parse` before it is optional.
 * libpcap's classic BPF program is translated once into a JavaScript function (src/filter/bpf-to-js.ts)
 * that gives the verdict libpcap's interpreter gives on every packet; each packet is one plain call.
 *
 * Passes: packets for which the program returns non-zero, whole and unchanged. A BPF program returns a
 * snap length; a capture (`tcpdump -s`, the kernel's socket filter) would cut the packet to it, but a
 * filter passes or drops, as libpcap does when it filters packets itself (reading a file: `tcpdump -r`
 * writes matching packets whole).
 * Drops: the rest, counted as "filtered out" (with the graph syntax, `filter EXPR else { ... }` routes
 * them instead). That is more than `filter 'not EXPR'` passes: libpcap rejects a packet too short for one
 * of the program's loads, under `not` too.
 * Errors: an expression libpcap refuses is a pipeline error under EXPR, with libpcap's message; nothing
 * starts.
 */
import { defineStage, type StageArgs } from '../src/pipeline/stage.js';
import type { Packet } from '../src/packet/packet.js';
import { compileFilterForStage, filterExpressionProblem, linkTypeName, type PacketFilter } from '../src/filter/compile.js';

export const FILTER_DROP = { unmatched: 'filtered out' } as const;

function shown(f: PacketFilter, what: string): string {
  const title = `filter '${f.expression}' for ${linkTypeName(f.linkType)} packets, ${f.program.length} BPF instructions`;
  return `${title}:\n${what === 'js' ? f.source() : f.listing()}\n`;
}

const filterStage = defineStage({
  name: 'filter',
  recordsChanges: true,
  superPackets: true,
  keepsPackets: false,
  readsTime: false,
  summary: "pass the packets that match a pcap-filter expression, as tcpdump's ('icmp and src host 198.18.0.2')",
  help: [
    'The expression is compiled by libpcap (the same compiler as tcpdump) for the link type of the',
    'packets (RAW IP from TUN and RAW files, Ethernet from TAP and Ethernet files) and translated into',
    'JavaScript once, giving exactly the verdict of libpcap. Packets that match pass whole; the rest are',
    "dropped as 'filtered out'. `parse` before it is optional. See pcap-filter(7) for the language.",
    '',
    'examples:',
    "  parse | filter 'icmp and src host 198.18.0.2' | icmp-echo | checksum",
    "  tee { filter 'udp port 53' | pcap dns.pcap }",
    "  filter 'tcp[tcpflags] & tcp-syn != 0 and not src net 198.18.0.0/24'",
    "  filter 'ip6 and icmp6' show=bpf      (print the program as tcpdump -d does)",
    "  filter 'udp port 53' show=js         (print the generated JavaScript)",
  ].join('\n'),
  args: [
    { name: 'expr', type: 'string', positional: true, required: true, description: 'pcap-filter(7) expression, quoted as one argument' },
    { name: 'show', type: 'string', choices: ['none', 'bpf', 'js'], default: 'none', description: 'print the compiled BPF program or the generated JavaScript on stderr at start' },
    { name: 'optimize', type: 'boolean', default: true, description: "run libpcap's optimizer (as tcpdump does unless -O)" },
  ],
  checkArgsForLink(args: StageArgs, linkType?: number) {
    const problem = filterExpressionProblem(String(args.expr), linkType, args.optimize !== false);
    return problem === undefined ? undefined : { arg: 'expr', message: problem };
  },
  create(args, ctx) {
    const f = compileFilterForStage(String(args.expr), { linkType: ctx.linkType, optimize: args.optimize !== false });
    if (args.show === 'bpf' || args.show === 'js') process.stderr.write(shown(f, args.show));
    const run = f.run;
    return {
      process(p: Packet): Packet | string {
        const data = p.data;
        return run(data, data.length) !== 0 ? p : FILTER_DROP.unmatched;
      },
    };
  },
});
export default filterStage;
