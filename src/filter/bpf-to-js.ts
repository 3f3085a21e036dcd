/**
 * Translates a classic BPF program into a JavaScript function, once, so that filtering a packet is a plain
 * call into code V8 compiles to machine code (the approach pflua took for LuaJIT), with the exact
 * semantics of libpcap's interpreter (bpf_filter.c):
 * - A and X are unsigned 32-bit registers (kept as numbers in [0, 2^32)); arithmetic wraps;
 * - a load that reaches past the captured bytes makes the program return 0 (reject), where it happens;
 * - division or modulo by an X of 0 returns 0; a shift by an X of 32 or more gives 0; a constant shift
 *   counts modulo 32, as the C shift does on x86;
 * - `ld len` is the packet's length on the wire (the third argument; the captured length by default);
 * - scratch memory M[0..15] starts at 0 (libpcap's is uninitialised; its compiler never reads a word
 *   before writing it).
 *
 * BPF jumps go forward only (except the backward `ja` libpcap uses for `protochain`), so the program is
 * written as straight-line code: every jump target closes a labelled block that encloses all the
 * instructions before it, and a jump is a `break` to its target's label; bounds checks that the path
 * already made are left out. A program with a backward jump, or with too many jump targets to nest
 * (MAX_NESTED_TARGETS), becomes a `switch` inside a loop instead.
 */
import {
  BPF_A, BPF_ABS, BPF_ADD, BPF_ALU, BPF_AND, BPF_B, BPF_DIV, BPF_H, BPF_IMM, BPF_IND, BPF_JA, BPF_JEQ, BPF_JGE, BPF_JGT,
  BPF_JMP, BPF_JSET, BPF_LD, BPF_LDX, BPF_LEN, BPF_LSH, BPF_MEM, BPF_MISC, BPF_MOD, BPF_MSH, BPF_MUL, BPF_NEG,
  BPF_OR, BPF_RET, BPF_RSH, BPF_ST, BPF_STX, BPF_SUB, BPF_TAX, BPF_TXA, BPF_W, BPF_X, BPF_XOR,
  bpfClass, formatInsn, hasBackwardJumps, jumpTarget, validateProgram, type BpfInsn,
} from './bpf.js';
import { TunpipeError } from '../errors.js';

/**
 * A translated program: `(data, len, wirelen?)` returns what the BPF program returns (the snap length of a
 * match, 0 for a reject). `len` is the number of bytes of `data` that were captured (at most
 * data.length); `wirelen`, the packet's length on the wire (what `len`, `less` and `greater` test),
 * defaults to `len`.
 */
export type BpfFunction = (data: Uint8Array, len: number, wirelen?: number) => number;

/**
 * How many backward jumps one run may take before it gives up (returns 0). libpcap's compiler makes them
 * only for `protochain`, whose loop advances through the packet at every turn and so ends long before;
 * the bound keeps a crafted program from hanging the pipeline, where libpcap's interpreter would spin.
 */
export const MAX_BACKWARD_JUMPS = 1 << 16;

const u32 = (k: number): string => String(k >>> 0);

function check(program: readonly BpfInsn[]): void {
  const problem = validateProgram(program);
  if (problem) throw new TunpipeError(`filter: invalid BPF program: ${problem}`);
}

/**
 * What the code emitted so far guarantees on the path being written: `len` is at least `checked` (a load
 * that passed its bounds check). Reset at every jump target, where other paths join.
 */
interface PathFacts {
  checked: number;
}

/** A bounds check for a load that needs `need` bytes, left out when the path already made it. */
function boundsCheck(need: number, facts: PathFacts): string {
  if (need <= facts.checked) return '';
  facts.checked = need;
  return `if (len < ${need}) return 0; `;
}

/** The statement(s) for one instruction that is not a jump or a return. */
function statement(insn: BpfInsn, facts: PathFacts): string {
  const { code } = insn;
  const k = insn.k >>> 0;
  const load = (at: string, size: number, dst = 'A'): string => {
    const byte = (n: number) => (at === 't' ? (n === 0 ? 'd[t]' : `d[t + ${n}]`) : `d[${Number(at) + n}]`);
    if (size === 4) return `${dst} = ((${byte(0)} << 24) | (${byte(1)} << 16) | (${byte(2)} << 8) | ${byte(3)}) >>> 0;`;
    if (size === 2) return `${dst} = (${byte(0)} << 8) | ${byte(1)};`;
    return `${dst} = ${byte(0)};`;
  };
  const sizeOf = (c: number) => ((c & 0x18) === BPF_W ? 4 : (c & 0x18) === BPF_H ? 2 : 1);
  switch (code) {
    case BPF_LD | BPF_W | BPF_ABS:
    case BPF_LD | BPF_H | BPF_ABS:
    case BPF_LD | BPF_B | BPF_ABS: {
      const size = sizeOf(code);
      return `${boundsCheck(k + size, facts)}${load(String(k), size)}`;
    }
    case BPF_LD | BPF_W | BPF_IND:
    case BPF_LD | BPF_H | BPF_IND:
    case BPF_LD | BPF_B | BPF_IND: {
      // X + k is exact in a double: the check is the interpreter's, without its care for wrapping.
      const size = sizeOf(code);
      return `t = X${k === 0 ? '' : ` + ${k}`}; if (t + ${size} > len) return 0; ${load('t', size)}`;
    }
    case BPF_LDX | BPF_MSH | BPF_B: return `${boundsCheck(k + 1, facts)}X = (d[${k}] & 15) << 2;`;
    case BPF_LD | BPF_W | BPF_LEN: return 'A = wl;';
    case BPF_LDX | BPF_W | BPF_LEN: return 'X = wl;';
    case BPF_LD | BPF_IMM: return `A = ${k};`;
    case BPF_LDX | BPF_IMM: return `X = ${k};`;
    case BPF_LD | BPF_MEM: return `A = m${k};`;
    case BPF_LDX | BPF_MEM: return `X = m${k};`;
    case BPF_ST: return `m${k} = A;`;
    case BPF_STX: return `m${k} = X;`;
    case BPF_MISC | BPF_TAX: return 'X = A;';
    case BPF_MISC | BPF_TXA: return 'A = X;';
    case BPF_ALU | BPF_NEG: return 'A = (0 - A) >>> 0;';
  }
  if (bpfClass(code) === BPF_ALU) {
    const op = code & 0xf0;
    if ((code & BPF_X) === BPF_X) {
      switch (op) {
        case BPF_ADD: return 'A = (A + X) >>> 0;';
        case BPF_SUB: return 'A = (A - X) >>> 0;';
        case BPF_MUL: return 'A = Math.imul(A, X) >>> 0;';
        case BPF_DIV: return 'if (X === 0) return 0; A = (A / X) >>> 0;';
        case BPF_MOD: return 'if (X === 0) return 0; A = A % X;';
        case BPF_AND: return 'A = (A & X) >>> 0;';
        case BPF_OR: return 'A = (A | X) >>> 0;';
        case BPF_XOR: return 'A = (A ^ X) >>> 0;';
        case BPF_LSH: return 'A = X < 32 ? (A << X) >>> 0 : 0;';
        case BPF_RSH: return 'A = X < 32 ? A >>> X : 0;';
      }
    } else {
      switch (op) {
        case BPF_ADD: return `A = (A + ${k}) >>> 0;`;
        case BPF_SUB: return `A = (A - ${k}) >>> 0;`;
        case BPF_MUL: return `A = Math.imul(A, ${k}) >>> 0;`;
        // The quotient of two numbers below 2^32 is never rounded up to the next whole number.
        case BPF_DIV: return `A = (A / ${k}) >>> 0;`;
        case BPF_MOD: return `A = A % ${k};`;
        // Below 2^31 the constant keeps the result a non-negative int32.
        case BPF_AND: return k < 0x80000000 ? `A = A & ${k};` : `A = (A & ${k}) >>> 0;`;
        case BPF_OR: return `A = (A | ${k}) >>> 0;`;
        case BPF_XOR: return `A = (A ^ ${k}) >>> 0;`;
        case BPF_LSH: return `A = (A << ${k & 31}) >>> 0;`;
        case BPF_RSH: return `A = A >>> ${k & 31};`;
      }
    }
  }
  throw new TunpipeError(`filter: cannot translate ${formatInsn(insn, 0)}`);
}

/** The condition a conditional jump tests. */
function condition(insn: BpfInsn): string {
  const operand = (insn.code & BPF_X) === BPF_X ? 'X' : u32(insn.k);
  switch (insn.code & 0xf0) {
    case BPF_JEQ: return `A === ${operand}`;
    case BPF_JGT: return `A > ${operand}`;
    case BPF_JGE: return `A >= ${operand}`;
    case BPF_JSET: return `(A & ${operand}) !== 0`;
  }
  throw new TunpipeError(`filter: cannot translate ${formatInsn(insn, 0)}`);
}

function ret(insn: BpfInsn): string {
  return (insn.code & BPF_A) === BPF_A ? 'return A;' : `return ${u32(insn.k)};`;
}

/** Where the program goes from each instruction: the jump targets other than the next instruction. */
function jumpTargets(program: readonly BpfInsn[]): Set<number> {
  const targets = new Set<number>();
  program.forEach((insn, i) => {
    if (bpfClass(insn.code) !== BPF_JMP) return;
    if ((insn.code & 0xf0) === BPF_JA) targets.add(jumpTarget(i, insn.k));
    else {
      targets.add(i + 1 + insn.jt);
      targets.add(i + 1 + insn.jf);
    }
  });
  targets.delete(0);
  return targets;
}

function prelude(program: readonly BpfInsn[]): string[] {
  const lines = ['let A = 0, X = 0, t = 0;'];
  const words = new Set<number>();
  for (const insn of program) {
    const cls = bpfClass(insn.code);
    if (cls === BPF_ST || cls === BPF_STX || ((cls === BPF_LD || cls === BPF_LDX) && (insn.code & 0xe0) === BPF_MEM)) words.add(insn.k);
  }
  if (words.size) lines.push(`let ${[...words].sort((a, b) => a - b).map((w) => `m${w} = 0`).join(', ')};`);
  if (program.some((insn) => insn.code === (BPF_LD | BPF_W | BPF_LEN) || insn.code === (BPF_LDX | BPF_W | BPF_LEN))) {
    lines.push('const wl = wirelen === undefined ? len : wirelen >>> 0;');
  }
  return lines;
}

/** Straight-line form: a labelled block closes before each jump target; a jump breaks out to it. */
function straightLine(program: readonly BpfInsn[]): string[] {
  const targets = [...jumpTargets(program)].sort((a, b) => b - a);
  const label = (to: number) => `L${to}`;
  const lines: string[] = [];
  let depth = 0;
  const emit = (s: string) => lines.push(`${'  '.repeat(depth)}${s}`);
  for (const t of targets) {
    emit(`${label(t)}: {`);
    depth++;
  }
  const open = new Set(targets);
  const facts: PathFacts = { checked: 0 };
  program.forEach((insn, i) => {
    if (open.has(i)) {
      depth--;
      emit('}');
      open.delete(i);
      facts.checked = 0;
    }
    const comment = `// ${formatInsn(insn, i).replace(/\s+/g, ' ')}`;
    const cls = bpfClass(insn.code);
    if (cls === BPF_RET) return emit(`${ret(insn)} ${comment}`);
    if (cls !== BPF_JMP) return emit(`${statement(insn, facts)} ${comment}`);
    if ((insn.code & 0xf0) === BPF_JA) {
      const to = jumpTarget(i, insn.k);
      return emit(to === i + 1 ? comment : `break ${label(to)}; ${comment}`);
    }
    const yes = i + 1 + insn.jt;
    const no = i + 1 + insn.jf;
    const cond = condition(insn);
    if (yes === no) emit(yes === i + 1 ? comment : `break ${label(yes)}; ${comment}`);
    else if (yes === i + 1) emit(`if (!(${cond})) break ${label(no)}; ${comment}`);
    else if (no === i + 1) emit(`if (${cond}) break ${label(yes)}; ${comment}`);
    else emit(`if (${cond}) break ${label(yes)}; else break ${label(no)}; ${comment}`);
  });
  return lines;
}

/** Loop form, for programs with backward jumps: a switch on the program counter, falling through. */
function loop(program: readonly BpfInsn[]): string[] {
  const targets = jumpTargets(program);
  const lines = ['let pc = 0, back = 0;', 'for (;;) {', '  switch (pc) {', '    case 0:'];
  const emit = (s: string) => lines.push(`      ${s}`);
  const go = (from: number, to: number) =>
    to <= from ? `{ if (++back > ${MAX_BACKWARD_JUMPS}) return 0; pc = ${to}; continue; }` : `{ pc = ${to}; continue; }`;
  const facts: PathFacts = { checked: 0 };
  program.forEach((insn, i) => {
    if (i > 0 && targets.has(i)) {
      lines.push(`    case ${i}:`);
      facts.checked = 0;
    }
    const comment = `// ${formatInsn(insn, i).replace(/\s+/g, ' ')}`;
    const cls = bpfClass(insn.code);
    if (cls === BPF_RET) return emit(`${ret(insn)} ${comment}`);
    if (cls !== BPF_JMP) return emit(`${statement(insn, facts)} ${comment}`);
    if ((insn.code & 0xf0) === BPF_JA) {
      const to = jumpTarget(i, insn.k);
      return emit(to === i + 1 ? comment : `${go(i, to)} ${comment}`);
    }
    const yes = i + 1 + insn.jt;
    const no = i + 1 + insn.jf;
    const cond = condition(insn);
    if (yes === no) emit(yes === i + 1 ? comment : `${go(i, yes)} ${comment}`);
    else if (yes === i + 1) emit(`if (!(${cond})) ${go(i, no)} ${comment}`);
    else if (no === i + 1) emit(`if (${cond}) ${go(i, yes)} ${comment}`);
    else emit(`if (${cond}) ${go(i, yes)} else ${go(i, no)} ${comment}`);
  });
  lines.push('  }', '  return 0;', '}');
  return lines;
}

/**
 * Jump targets beyond which the straight-line form is not used: each target is one more level of block
 * nesting, and V8 compiles nested blocks recursively (a few thousand levels exhaust the stack). Programs
 * that long (hundreds of hosts or ports in one expression) get the loop form.
 */
export const MAX_NESTED_TARGETS = 1000;

/** 'straight': labelled blocks (forward jumps only, up to MAX_NESTED_TARGETS targets); 'loop': a switch in a loop. */
export type TranslationForm = 'straight' | 'loop';

/** The form a program is translated to by default. */
export function formFor(program: readonly BpfInsn[]): TranslationForm {
  return hasBackwardJumps(program) || jumpTargets(program).size > MAX_NESTED_TARGETS ? 'loop' : 'straight';
}

/**
 * The source of the function a program translates to (what `bpfToFunction` compiles): for reading,
 * `filter EXPR show=js` prints it. Throws TunpipeError for a program that fails validation, or when the
 * straight-line form is asked of a program with backward jumps.
 */
export function bpfToSource(program: readonly BpfInsn[], form: TranslationForm = formFor(program)): string {
  check(program);
  if (form === 'straight' && hasBackwardJumps(program)) throw new TunpipeError('filter: a program with backward jumps has no straight-line form');
  const body = [...prelude(program), ...(form === 'loop' ? loop(program) : straightLine(program))];
  return `function bpf(d, len, wirelen) {\n${body.map((l) => `  ${l}`).join('\n')}\n}`;
}

/** Translates a validated program into a function (see BpfFunction). Throws TunpipeError if it is invalid. */
export function bpfToFunction(program: readonly BpfInsn[], form: TranslationForm = formFor(program)): BpfFunction {
  const make = (f: TranslationForm) => new Function(`"use strict";\nreturn ${bpfToSource(program, f)};`)() as BpfFunction;
  try {
    return make(form);
  } catch (err) {
    // Deep nesting on a small stack (a worker thread started with little of it): the loop form has none.
    if (err instanceof RangeError && form === 'straight') return make('loop');
    throw err;
  }
}
