/**
 * libpcap's filter compiler and interpreter, bound through koffi. The compiler (`pcap_compile` on a
 * `pcap_open_dead` handle) turns a pcap-filter(7) expression into a classic BPF program; the interpreter
 * (`pcap_offline_filter`, libpcap's bpf_filter.c) runs a program on one packet and is the reference that
 * the JavaScript translation (./bpf-to-js.ts) is tested and benchmarked against.
 *
 * libpcap is loaded on first use, so a pipeline without a filter never needs it.
 */
import { lazyRequire } from '../lazy-require.js';
import { TunpipeError } from '../errors.js';
import type { BpfInsn } from './bpf.js';

/** Compile-time link types (DLT_*): what `pcap_open_dead` takes. */
export const DLT_EN10MB = 1;
/** DLT_RAW is 12 on Linux; files say LINKTYPE_RAW 101, which gencode does not know. */
export const DLT_RAW = 12;
export const DLT_IPV4 = 228;
export const DLT_IPV6 = 229;

/** The snap length a compiled filter returns for a match (what tcpdump uses by default). */
export const DEFAULT_FILTER_SNAPLEN = 262144;

const PCAP_NETMASK_UNKNOWN = 0xffffffff;

/** File link types (LINKTYPE_*, what a capture file or a port declares) to compile-time DLT values. */
const DLT_FOR_LINKTYPE: ReadonlyMap<number, number> = new Map([
  [101, DLT_RAW],
  [DLT_RAW, DLT_RAW],
  [1, DLT_EN10MB],
  [228, DLT_IPV4],
  [229, DLT_IPV6],
]);

/**
 * The DLT value to compile for, from a link type as files and ports declare it (101 RAW, 1 Ethernet,
 * 228 IPv4, 229 IPv6; 12, the DLT value of RAW, is taken as is).
 */
export function dltForLinkType(linkType: number): number {
  const dlt = DLT_FOR_LINKTYPE.get(linkType);
  if (dlt === undefined) throw new TunpipeError(`filter: link type ${linkType} is not supported (RAW 101, Ethernet 1, IPv4 228, IPv6 229)`);
  return dlt;
}

type Pointer = unknown;
interface Bindings {
  openDead(dlt: number, snaplen: number): Pointer;
  compile(p: Pointer, prog: Buffer, expr: string, optimize: number, netmask: number): number;
  geterr(p: Pointer): string;
  freecode(prog: Buffer): void;
  close(p: Pointer): void;
  offlineFilter(prog: Buffer, hdr: Buffer, bytes: Uint8Array): number;
  /** Reads `n` instructions from the address a compiled program's bf_insns holds. */
  readInsns(prog: Buffer, n: number): Uint8Array;
  addressOf(buf: Buffer): bigint;
}

let bindings: Bindings | undefined;
/** Why loading failed, kept: a second attempt would fail the same way (and koffi types are declared once). */
let loadError: TunpipeError | undefined;

function load(): Bindings {
  if (bindings) return bindings;
  if (loadError) throw loadError;
  try {
    return (bindings = bind());
  } catch (err) {
    loadError = err instanceof TunpipeError ? err : new TunpipeError(`filter: cannot bind libpcap: ${(err as Error).message}`);
    throw loadError;
  }
}

function bind(): Bindings {
  const koffi = lazyRequire('koffi') as typeof import('koffi');
  let lib;
  try {
    lib = koffi.load('libpcap.so.0.8');
  } catch (err) {
    throw new TunpipeError(`filter: cannot load libpcap (${(err as Error).message.split('\n')[0]}); install libpcap0.8 (apt-get install libpcap0.8)`);
  }
  koffi.opaque('tunpipe_pcap_t');
  // struct bpf_program and struct pcap_pkthdr are passed as Buffers laid out by hand (see below), so the
  // oracle can run any program, not only the ones pcap_compile made.
  const openDead = lib.func('tunpipe_pcap_t *pcap_open_dead(int linktype, int snaplen)');
  const compile = lib.func('int pcap_compile(tunpipe_pcap_t *p, void *fp, const char *str, int optimize, uint32_t netmask)');
  const geterr = lib.func('const char *pcap_geterr(tunpipe_pcap_t *p)');
  const freecode = lib.func('void pcap_freecode(void *fp)');
  const close = lib.func('void pcap_close(tunpipe_pcap_t *p)');
  const offlineFilter = lib.func('int pcap_offline_filter(const void *fp, const void *h, const uint8_t *pkt)');
  return {
    openDead: (dlt, snaplen) => openDead(dlt, snaplen),
    compile: (p, prog, expr, optimize, netmask) => compile(p, prog, expr, optimize, netmask) as number,
    geterr: (p) => geterr(p) as string,
    freecode: (prog) => freecode(prog),
    close: (p) => close(p),
    offlineFilter: (prog, hdr, bytes) => offlineFilter(prog, hdr, bytes) as number,
    readInsns: (prog, n) => {
      const ptr = koffi.decode(prog, 8, 'void *');
      return new Uint8Array(koffi.decode(ptr, 'uint8_t', n * 8) as number[]);
    },
    addressOf: (buf) => koffi.address(buf),
  };
}

/** Thrown when libpcap refuses an expression; the message is libpcap's own (pcap_geterr). */
export class FilterCompileError extends TunpipeError {
  override name = 'FilterCompileError';
}

/** Options for compiling an expression. */
export interface CompileOptions {
  /** Link type of the packets, as files and ports declare it (101 RAW, 1 Ethernet, 228, 229). Default 101. */
  linkType?: number;
  /** What a match returns (the snap length of the compile handle). Default 262144. */
  snaplen?: number;
  /** Run libpcap's optimizer (as tcpdump does unless `-O`). Default true. */
  optimize?: boolean;
}

/** struct bpf_program on LP64: u_int bf_len, 4 bytes of padding, struct bpf_insn *bf_insns. */
const PROGRAM_SIZE = 16;
const INSN_SIZE = 8;

function decodeInsns(raw: Uint8Array, n: number): BpfInsn[] {
  const view = new DataView(raw.buffer, raw.byteOffset, raw.byteLength);
  const out: BpfInsn[] = [];
  for (let i = 0; i < n; i++) {
    const o = i * INSN_SIZE;
    // The program is in host byte order (little-endian here).
    out.push({ code: view.getUint16(o, true), jt: view.getUint8(o + 2), jf: view.getUint8(o + 3), k: view.getUint32(o + 4, true) });
  }
  return out;
}

/**
 * Compiles a pcap-filter(7) expression with libpcap into classic BPF instructions. Throws
 * FilterCompileError with libpcap's message when the expression is wrong (or not valid for the link type),
 * TunpipeError when libpcap is missing.
 */
export function compileExpression(expr: string, options: CompileOptions = {}): BpfInsn[] {
  const pcap = load();
  const dlt = dltForLinkType(options.linkType ?? 101);
  const handle = pcap.openDead(dlt, options.snaplen ?? DEFAULT_FILTER_SNAPLEN);
  if (!handle) throw new TunpipeError(`filter: pcap_open_dead failed for link type ${dlt}`);
  try {
    const prog = Buffer.alloc(PROGRAM_SIZE);
    if (pcap.compile(handle, prog, expr, options.optimize === false ? 0 : 1, PCAP_NETMASK_UNKNOWN) !== 0) {
      throw new FilterCompileError(pcap.geterr(handle));
    }
    try {
      const n = prog.readUInt32LE(0);
      return decodeInsns(pcap.readInsns(prog, n), n);
    } finally {
      pcap.freecode(prog);
    }
  } finally {
    pcap.close(handle);
  }
}

/**
 * A program loaded into memory libpcap's interpreter can run: `run(bytes, wirelen)` is
 * `pcap_offline_filter` on one packet (caplen = bytes.length), returning what bpf_filter returns
 * (as an unsigned number: the snap length, 0 for a reject). Only for programs that passed validation
 * (./bpf.ts): libpcap aborts the process on an unknown opcode.
 */
export class LibpcapInterpreter {
  private readonly insns: Buffer;
  private readonly prog = Buffer.alloc(PROGRAM_SIZE);
  private readonly hdr = Buffer.alloc(24);
  private readonly pcap = load();

  constructor(program: readonly BpfInsn[]) {
    this.insns = Buffer.alloc(Math.max(1, program.length) * INSN_SIZE);
    program.forEach((insn, i) => {
      const o = i * INSN_SIZE;
      this.insns.writeUInt16LE(insn.code, o);
      this.insns.writeUInt8(insn.jt, o + 2);
      this.insns.writeUInt8(insn.jf, o + 3);
      this.insns.writeUInt32LE(insn.k >>> 0, o + 4);
    });
    this.prog.writeUInt32LE(program.length, 0);
    this.prog.writeBigUInt64LE(this.pcap.addressOf(this.insns), 8);
  }

  /** Runs the program on `bytes` (captured length bytes.length; wire length `wirelen`, default the same). */
  run(bytes: Uint8Array, wirelen: number = bytes.length): number {
    // struct pcap_pkthdr on LP64: struct timeval ts (16 bytes), bpf_u_int32 caplen, bpf_u_int32 len.
    this.hdr.writeUInt32LE(bytes.length, 16);
    this.hdr.writeUInt32LE(wirelen >>> 0, 20);
    return this.pcap.offlineFilter(this.prog, this.hdr, bytes) >>> 0;
  }
}

/** True when libpcap can be loaded here (for tests and the bench to say why they skip). */
export function libpcapAvailable(): boolean {
  try {
    load();
    return true;
  } catch {
    return false;
  }
}
