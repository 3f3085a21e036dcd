/**
 * Classic BPF programs as libpcap makes them: the instruction type, the opcodes that libpcap's interpreter
 * (bpf_filter.c) runs, the validity check made before a program is translated, and a listing in the
 * format of `tcpdump -d`.
 */

/** One classic BPF instruction (struct bpf_insn). */
export interface BpfInsn {
  code: number;
  jt: number;
  jf: number;
  /** Unsigned 32-bit operand. */
  k: number;
}

// Instruction classes, sizes, modes, operations and sources (pcap/bpf.h).
export const BPF_LD = 0x00;
export const BPF_LDX = 0x01;
export const BPF_ST = 0x02;
export const BPF_STX = 0x03;
export const BPF_ALU = 0x04;
export const BPF_JMP = 0x05;
export const BPF_RET = 0x06;
export const BPF_MISC = 0x07;

export const BPF_W = 0x00;
export const BPF_H = 0x08;
export const BPF_B = 0x10;

export const BPF_IMM = 0x00;
export const BPF_ABS = 0x20;
export const BPF_IND = 0x40;
export const BPF_MEM = 0x60;
export const BPF_LEN = 0x80;
export const BPF_MSH = 0xa0;

export const BPF_ADD = 0x00;
export const BPF_SUB = 0x10;
export const BPF_MUL = 0x20;
export const BPF_DIV = 0x30;
export const BPF_OR = 0x40;
export const BPF_AND = 0x50;
export const BPF_LSH = 0x60;
export const BPF_RSH = 0x70;
export const BPF_NEG = 0x80;
export const BPF_MOD = 0x90;
export const BPF_XOR = 0xa0;

export const BPF_JA = 0x00;
export const BPF_JEQ = 0x10;
export const BPF_JGT = 0x20;
export const BPF_JGE = 0x30;
export const BPF_JSET = 0x40;

export const BPF_K = 0x00;
export const BPF_X = 0x08;
export const BPF_A = 0x10;

export const BPF_TAX = 0x00;
export const BPF_TXA = 0x80;

/** Scratch memory words M[0..15]. */
export const BPF_MEMWORDS = 16;

export const bpfClass = (code: number): number => code & 0x07;
export const bpfOp = (code: number): number => code & 0xf0;
export const bpfSrc = (code: number): number => code & 0x08;

const ALU_OPS = [BPF_ADD, BPF_SUB, BPF_MUL, BPF_DIV, BPF_MOD, BPF_AND, BPF_OR, BPF_XOR, BPF_LSH, BPF_RSH];
const JUMP_OPS = [BPF_JEQ, BPF_JGT, BPF_JGE, BPF_JSET];

/**
 * Every opcode libpcap's interpreter implements (it aborts on any other): the instruction set a
 * translated program may use.
 */
export const KNOWN_OPCODES: ReadonlySet<number> = new Set([
  BPF_RET | BPF_K,
  BPF_RET | BPF_A,
  BPF_LD | BPF_W | BPF_ABS,
  BPF_LD | BPF_H | BPF_ABS,
  BPF_LD | BPF_B | BPF_ABS,
  BPF_LD | BPF_W | BPF_LEN,
  BPF_LDX | BPF_W | BPF_LEN,
  BPF_LD | BPF_W | BPF_IND,
  BPF_LD | BPF_H | BPF_IND,
  BPF_LD | BPF_B | BPF_IND,
  BPF_LDX | BPF_MSH | BPF_B,
  BPF_LD | BPF_IMM,
  BPF_LDX | BPF_IMM,
  BPF_LD | BPF_MEM,
  BPF_LDX | BPF_MEM,
  BPF_ST,
  BPF_STX,
  BPF_JMP | BPF_JA,
  ...JUMP_OPS.flatMap((op) => [BPF_JMP | op | BPF_K, BPF_JMP | op | BPF_X]),
  ...ALU_OPS.flatMap((op) => [BPF_ALU | op | BPF_K, BPF_ALU | op | BPF_X]),
  BPF_ALU | BPF_NEG,
  BPF_MISC | BPF_TAX,
  BPF_MISC | BPF_TXA,
]);

/** Where an unconditional jump at `i` goes: libpcap sign-extends k (backward jumps serve `protochain`). */
export function jumpTarget(i: number, k: number): number {
  return i + 1 + (k | 0);
}

/**
 * Why a program cannot be run, or null when it can. The checks of libpcap's bpf_validate (jumps inside the
 * program, scratch memory indices below 16, no constant division by zero, a return as the last
 * instruction), made stricter in two ways: only opcodes the interpreter implements (it would abort on
 * others), and no unconditional jump to itself or before the program's start.
 */
export function validateProgram(program: readonly BpfInsn[]): string | null {
  const n = program.length;
  if (n === 0) return 'the program is empty';
  for (let i = 0; i < n; i++) {
    const { code, jt, jf, k } = program[i];
    const at = `instruction ${i} (${insnText(program[i], i)})`;
    if (!Number.isInteger(code) || code < 0 || code > 0xffff || !KNOWN_OPCODES.has(code)) return `${at}: unknown opcode 0x${code.toString(16)}`;
    if (!Number.isInteger(k) || k < 0 || k > 0xffffffff) return `${at}: k must be an unsigned 32-bit number`;
    if (!Number.isInteger(jt) || !Number.isInteger(jf) || jt < 0 || jt > 255 || jf < 0 || jf > 255) return `${at}: jt and jf must be 0..255`;
    const cls = bpfClass(code);
    const mem = (cls === BPF_LD || cls === BPF_LDX) && (code & 0xe0) === BPF_MEM;
    if ((mem || cls === BPF_ST || cls === BPF_STX) && k >= BPF_MEMWORDS) return `${at}: scratch memory has ${BPF_MEMWORDS} words`;
    if (cls === BPF_ALU && (bpfOp(code) === BPF_DIV || bpfOp(code) === BPF_MOD) && bpfSrc(code) === BPF_K && k === 0) return `${at}: division by zero`;
    if (cls === BPF_JMP) {
      if (bpfOp(code) === BPF_JA) {
        const to = jumpTarget(i, k);
        if (to >= n) return `${at}: jumps past the end`;
        if (to < 0 || to === i) return `${at}: jumps ${to < 0 ? 'before the start' : 'to itself'}`;
      } else if (i + 1 + jt >= n || i + 1 + jf >= n) {
        return `${at}: jumps past the end`;
      }
    }
  }
  if (bpfClass(program[n - 1].code) !== BPF_RET) return 'the last instruction is not a return';
  return null;
}

/** True when some unconditional jump goes backwards (libpcap's `protochain` loops). */
export function hasBackwardJumps(program: readonly BpfInsn[]): boolean {
  return program.some((insn, i) => insn.code === (BPF_JMP | BPF_JA) && jumpTarget(i, insn.k) <= i);
}

// Linux's special load offsets (SKF_AD_OFF + n), named as libpcap names them in listings.
const SKF_AD_OFF = 0xfffff000;
const SKF_AD_NAMES: Record<number, string> = {
  0: 'proto', 4: 'type', 8: 'ifidx', 12: 'nla', 16: 'nlan', 20: 'mark', 24: 'queue', 28: 'hatype',
  32: 'rxhash', 36: 'cpu', 40: 'xor_x', 44: 'vlan_tci', 48: 'vlanp', 52: 'poff', 56: 'random', 60: 'vlan_tpid',
};

const dec = (k: number): string => String(k | 0);
const hex = (k: number): string => `0x${(k >>> 0).toString(16)}`;

function absOperand(k: number): string {
  const name = k >= SKF_AD_OFF ? SKF_AD_NAMES[k - SKF_AD_OFF] : undefined;
  return name ? `[${name}]` : `[${dec(k)}]`;
}

const ALU_NAMES: Record<number, string> = {
  [BPF_ADD]: 'add', [BPF_SUB]: 'sub', [BPF_MUL]: 'mul', [BPF_DIV]: 'div', [BPF_MOD]: 'mod',
  [BPF_AND]: 'and', [BPF_OR]: 'or', [BPF_XOR]: 'xor', [BPF_LSH]: 'lsh', [BPF_RSH]: 'rsh',
};
const JUMP_NAMES: Record<number, string> = { [BPF_JEQ]: 'jeq', [BPF_JGT]: 'jgt', [BPF_JGE]: 'jge', [BPF_JSET]: 'jset' };
/** ALU operations whose constant libpcap prints in hex. */
const HEX_ALU = new Set([BPF_AND, BPF_OR, BPF_XOR]);

function opAndOperand(insn: BpfInsn, i: number): [string, string] {
  const { code, k } = insn;
  const size = code & 0x18;
  const ldName = size === BPF_H ? 'ldh' : size === BPF_B ? 'ldb' : 'ld';
  switch (code) {
    case BPF_RET | BPF_K: return ['ret', `#${dec(k)}`];
    case BPF_RET | BPF_A: return ['ret', ''];
    case BPF_LD | BPF_W | BPF_ABS:
    case BPF_LD | BPF_H | BPF_ABS:
    case BPF_LD | BPF_B | BPF_ABS: return [ldName, absOperand(k)];
    case BPF_LD | BPF_W | BPF_LEN: return ['ld', '#pktlen'];
    case BPF_LDX | BPF_W | BPF_LEN: return ['ldx', '#pktlen'];
    case BPF_LD | BPF_W | BPF_IND:
    case BPF_LD | BPF_H | BPF_IND:
    case BPF_LD | BPF_B | BPF_IND: return [ldName, `[x + ${dec(k)}]`];
    case BPF_LD | BPF_IMM: return ['ld', `#${hex(k)}`];
    case BPF_LDX | BPF_IMM: return ['ldx', `#${hex(k)}`];
    case BPF_LDX | BPF_MSH | BPF_B: return ['ldxb', `4*([${dec(k)}]&0xf)`];
    case BPF_LD | BPF_MEM: return ['ld', `M[${dec(k)}]`];
    case BPF_LDX | BPF_MEM: return ['ldx', `M[${dec(k)}]`];
    case BPF_ST: return ['st', `M[${dec(k)}]`];
    case BPF_STX: return ['stx', `M[${dec(k)}]`];
    case BPF_JMP | BPF_JA: return ['ja', String(jumpTarget(i, k))];
    case BPF_ALU | BPF_NEG: return ['neg', ''];
    case BPF_MISC | BPF_TAX: return ['tax', ''];
    case BPF_MISC | BPF_TXA: return ['txa', ''];
  }
  const cls = bpfClass(code);
  const x = bpfSrc(code) === BPF_X;
  if (cls === BPF_JMP && JUMP_NAMES[bpfOp(code)]) return [JUMP_NAMES[bpfOp(code)], x ? 'x' : `#${hex(k)}`];
  if (cls === BPF_ALU && ALU_NAMES[bpfOp(code)]) return [ALU_NAMES[bpfOp(code)], x ? 'x' : HEX_ALU.has(bpfOp(code)) ? `#${hex(k)}` : `#${dec(k)}`];
  return ['unimp', hex(code)];
}

/** One instruction as `tcpdump -d` prints it, without the `(NNN)` prefix. */
function insnText(insn: BpfInsn, i: number): string {
  const [op, operand] = opAndOperand(insn, i);
  return `${op} ${operand}`.trim();
}

/** One instruction as `tcpdump -d` prints it: `(002) jeq      #0x6             jt 3	jf 5`. */
export function formatInsn(insn: BpfInsn, i: number): string {
  const [op, operand] = opAndOperand(insn, i);
  const n = String(i).padStart(3, '0');
  if (bpfClass(insn.code) === BPF_JMP && bpfOp(insn.code) !== BPF_JA) {
    return `(${n}) ${op.padEnd(8)} ${operand.padEnd(16)} jt ${i + 1 + insn.jt}\tjf ${i + 1 + insn.jf}`;
  }
  return `(${n}) ${op.padEnd(8)} ${operand}`;
}

/** The program as `tcpdump -d` lists it, one instruction per line. */
export function formatProgram(program: readonly BpfInsn[]): string {
  return program.map(formatInsn).join('\n');
}
