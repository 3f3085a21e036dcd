/**
 * A pcap-filter(7) expression, compiled by libpcap and translated into JavaScript: what the `filter` stage
 * runs, and what library users (and `pcap FILE filter=EXPR`) call.
 *
 *     const f = compileFilter('icmp and src host 198.18.0.2', { linkType: 101 });
 *     if (f.matches(packet.data)) ...
 */
import { compileExpression, FilterCompileError, type CompileOptions } from './libpcap.js';
import { TunpipeError } from '../errors.js';
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

const LINK_NAMES: Record<number, string> = { 1: 'Ethernet', 12: 'RAW', 101: 'RAW', 228: 'IPv4', 229: 'IPv6' };

/** "RAW", "Ethernet", ... for a link type as files declare it. */
export function linkTypeName(linkType: number): string {
  return LINK_NAMES[linkType] ?? `link type ${linkType}`;
}

/** Link types tried when the caller does not know the packets': RAW, then Ethernet. */
const GUESSED_LINK_TYPES = [101, 1];

function problemFor(expr: string, linkType: number, optimize: boolean, named: boolean): string | undefined {
  try {
    compileExpression(expr, { linkType, optimize });
    return undefined;
  } catch (err) {
    if (err instanceof FilterCompileError && named) return `${err.message} (compiling for ${linkTypeName(linkType)} packets)`;
    return (err as Error).message;
  }
}

/**
 * Why `expr` cannot be compiled (libpcap's message), or undefined when it can: for packets of `linkType`,
 * or, when that is not known, for RAW IP or Ethernet (refused only if it suits neither). For a stage's
 * `checkArgs`, so a bad expression is shown under a caret before anything starts.
 */
export function filterExpressionProblem(expr: string, linkType?: number, optimize = true): string | undefined {
  let first: string | undefined;
  for (const t of linkType === undefined ? GUESSED_LINK_TYPES : [linkType]) {
    const problem = problemFor(expr, t, optimize, linkType !== undefined);
    if (problem === undefined) return undefined;
    first ??= problem;
  }
  return first;
}

/**
 * compileFilter for a stage's create(): a failure is a TunpipeError that names the expression and the link
 * type (reached when the text was resolved without knowing the link type and the expression suits another
 * one, such as `ether host` on RAW packets).
 */
export function compileFilterForStage(expr: string, options: CompileOptions = {}): PacketFilter {
  try {
    return compileFilter(expr, options);
  } catch (err) {
    if (err instanceof FilterCompileError) throw new TunpipeError(`filter '${expr}': ${problemFor(expr, options.linkType ?? 101, options.optimize !== false, true)}`);
    throw err;
  }
}
