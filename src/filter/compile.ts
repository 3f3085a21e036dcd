/**
 * A pcap-filter(7) expression, compiled by libpcap and translated into JavaScript: what the `filter` stage
 * runs, and what library users (and `pcap FILE filter=EXPR`) call.
 *
 *     const f = compileFilter('icmp and src host 198.18.0.2', { linkType: 101 });
 *     if (f.matches(packet.data)) ...
 */
import { compileExpression, type CompileOptions } from './libpcap.js';
import { bpfToFunction, bpfToSource, type BpfFunction } from './bpf-to-js.js';
import { formatProgram, type BpfInsn } from './bpf.js';

/** A compiled filter expression. */
export interface PacketFilter {
  readonly expression: string;
  /** The link type it was compiled for, as files and ports declare it (101 RAW, 1 Ethernet, ...). */
  readonly linkType: number;
  /** The classic BPF program libpcap made. */
  readonly program: readonly BpfInsn[];
  /**
   * The translated program: `run(data, len, wirelen?)` returns the snap length for a packet that matches,
   * 0 for one that does not (see BpfFunction). Allocates nothing.
   */
  readonly run: BpfFunction;
  /** True when the whole of `data` (an untruncated packet) matches. */
  matches(data: Uint8Array): boolean;
  /** The program as `tcpdump -d` lists it. */
  listing(): string;
  /** The JavaScript the program was translated to. */
  source(): string;
}

/**
 * Compiles `expression` for packets of `options.linkType` (default 101, RAW IP as a TUN device gives it;
 * 1 for Ethernet). Throws FilterCompileError with libpcap's message for a bad expression, TunpipeError
 * when libpcap is missing.
 */
export function compileFilter(expression: string, options: CompileOptions = {}): PacketFilter {
  const program = compileExpression(expression, options);
  const run = bpfToFunction(program);
  return {
    expression,
    linkType: options.linkType ?? 101,
    program,
    run,
    matches: (data) => run(data, data.length) !== 0,
    listing: () => formatProgram(program),
    source: () => bpfToSource(program),
  };
}
