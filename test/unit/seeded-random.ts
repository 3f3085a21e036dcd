/**
 * A tiny seeded PRNG (mulberry32) so randomized tests are reproducible: the seed comes from
 * TUNPIPE_TEST_SEED when set, else is drawn at random, and `withSeed` appends it to any failure message.
 */

export interface Random {
  readonly seed: number;
  /** Uniform in [0, 1). */
  next(): number;
  /** Integer in [0, n). */
  int(n: number): number;
  /** Integer in [lo, hi], both included. */
  range(lo: number, hi: number): number;
  bytes(n: number): Buffer;
  /** True with probability `p`. */
  chance(p: number): boolean;
}

export function seededRandom(seed: number): Random {
  let a = seed >>> 0;
  const next = (): number => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const int = (n: number): number => Math.floor(next() * n);
  return {
    seed,
    next,
    int,
    range: (lo, hi) => lo + int(hi - lo + 1),
    bytes(n) {
      const b = Buffer.alloc(n);
      for (let i = 0; i < n; i++) b[i] = int(256);
      return b;
    },
    chance: (p) => next() < p,
  };
}

/** The seed for this run: TUNPIPE_TEST_SEED if given, else a fresh random one. */
export function testSeed(): number {
  const env = process.env.TUNPIPE_TEST_SEED;
  if (env !== undefined && env !== '') return Number(env) >>> 0;
  return Math.floor(Math.random() * 0x100000000) >>> 0;
}

/** Runs `fn` with a seeded generator; a failure's message gets the seed and how to replay it. */
export async function withSeed(fn: (rng: Random) => void | Promise<void>): Promise<void> {
  const seed = testSeed();
  try {
    await fn(seededRandom(seed));
  } catch (err) {
    if (err instanceof Error) err.message += `\n(random seed ${seed}; replay with TUNPIPE_TEST_SEED=${seed})`;
    throw err;
  }
}
