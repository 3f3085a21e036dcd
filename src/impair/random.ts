/**
 * The seeded random generator of the impairment stages: xoshiro128** (Blackman and Vigna), 32-bit state
 * words seeded through splitmix32, so that the same `seed=N` and the same input give the same decisions on
 * every run and every machine. Math.random cannot be seeded, and a per-packet call must not allocate.
 */
import { lazyRequire } from '../lazy-require.js';

function rotl(x: number, k: number): number {
  return (x << k) | (x >>> (32 - k));
}

/** splitmix32 step: spreads one 32-bit seed over the four state words (xoshiro must not start all zero). */
function splitmix32(state: { a: number }): number {
  state.a = (state.a + 0x9e3779b9) | 0;
  let z = state.a;
  z = Math.imul(z ^ (z >>> 16), 0x85ebca6b);
  z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35);
  return (z ^ (z >>> 16)) >>> 0;
}

/** FNV-1a of a name: two stages given the same seed (`loss seed=1 | duplicate seed=1`) draw different streams. */
function hashName(name: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < name.length; i++) h = Math.imul(h ^ name.charCodeAt(i), 0x01000193);
  return h >>> 0;
}

export class SeededRandom {
  private s0: number;
  private s1: number;
  private s2: number;
  private s3: number;

  /** `stream` separates the stages' sequences for one seed (the stage's name). */
  constructor(readonly seed: number, stream = '') {
    const st = { a: (seed ^ hashName(stream)) | 0 };
    this.s0 = splitmix32(st);
    this.s1 = splitmix32(st);
    this.s2 = splitmix32(st);
    this.s3 = splitmix32(st);
  }

  /** The next 32 random bits, as an unsigned integer. */
  nextUint32(): number {
    const s1 = this.s1;
    const result = Math.imul(rotl(Math.imul(s1, 5), 7), 9) >>> 0;
    const t = s1 << 9;
    this.s2 ^= this.s0;
    this.s3 ^= this.s1;
    this.s1 ^= this.s2;
    this.s0 ^= this.s3;
    this.s2 ^= t;
    this.s3 = rotl(this.s3, 11);
    return result;
  }

  /** Uniform in [0, 1), in steps of 2^-32. */
  float(): number {
    return this.nextUint32() / 4294967296;
  }

  /** True with probability `p` (exactly never for 0, always for 1). */
  chance(p: number): boolean {
    return this.float() < p;
  }

  /** A whole number in [0, n) for n up to 2^32. */
  below(n: number): number {
    return Math.floor(this.float() * n);
  }
}

/** The `seed=N` argument every random stage declares. */
export const SEED_ARG = {
  name: 'seed',
  type: 'number',
  integer: true,
  min: 0,
  max: 0xffffffff,
  description: 'seed of the random decisions: the same seed and the same input give the same decisions (default: a fresh seed, printed on exit)',
} as const;

/** The seed a stage runs with: the one given, or a fresh one (reported on exit so that the run can be replayed). */
export function seedOf(given: unknown): number {
  return typeof given === 'number' ? given >>> 0 : (lazyRequire('node:crypto') as typeof import('node:crypto')).randomInt(0, 0x100000000 - 1);
}
