/**
 * Random variates for the delay stage's jitter. Every distribution is standardized: `next()` returns a number
 * that the stage multiplies by `jitter` and adds to the delay. uniform is spread over [-1, 1] (netem's
 * `delay TIME JITTER`: TIME ± JITTER); normal, pareto and paretonormal have mean 0 and standard deviation 1,
 * so that the delay's mean is TIME and its standard deviation JITTER.
 * - pareto: shape 3 (a heavy right tail, never more than 0.577 standard deviations below the mean), shifted
 *   and scaled to mean 0, deviation 1;
 * - paretonormal: 1/4 normal plus 3/4 pareto (the mix netem's table is made of), rescaled to deviation 1.
 *
 * Correlation (0..1): successive variates are drawn through one Gaussian AR(1) chain g' = ρg + √(1-ρ²)e,
 * mapped onto the distribution through the normal CDF (a Gaussian copula). Each variate keeps exactly its
 * distribution, and neighbours correlate by about ρ. netem's correlation (a weighted mean of the last and a
 * fresh uniform number) narrows the distribution instead, a known complaint.
 */
import type { SeededRandom } from './random.js';

export const DISTRIBUTIONS = ['uniform', 'normal', 'pareto', 'paretonormal'] as const;
export type Distribution = (typeof DISTRIBUTIONS)[number];

const PARETO_SHAPE = 3;
const PARETO_MEAN = PARETO_SHAPE / (PARETO_SHAPE - 1);
const PARETO_SD = Math.sqrt(PARETO_SHAPE / ((PARETO_SHAPE - 1) ** 2 * (PARETO_SHAPE - 2)));
const MIX_SD = Math.sqrt(0.25 ** 2 + 0.75 ** 2);
const LARGEST_BELOW_ONE = 1 - 2 ** -40;

/** Standard normal CDF, via erfc (Abramowitz and Stegun 7.1.26, absolute error below 1.5e-7). */
export function normalCdf(x: number): number {
  const z = Math.abs(x) / Math.SQRT2;
  const t = 1 / (1 + 0.3275911 * z);
  const poly = t * (0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027 + t * 1.061405429))));
  const erfc = poly * Math.exp(-z * z);
  return x >= 0 ? 1 - erfc / 2 : erfc / 2;
}

/** A standardized pareto variate from a uniform one in [0, 1). */
function paretoFromUniform(u: number): number {
  const x = Math.pow(1 - Math.min(u, LARGEST_BELOW_ONE), -1 / PARETO_SHAPE);
  return (x - PARETO_MEAN) / PARETO_SD;
}

/** Standard normal variates by Box-Muller, the second of each pair kept for the next call. */
export class GaussianSource {
  private spare = 0;
  private hasSpare = false;
  constructor(private readonly rng: SeededRandom) {}

  next(): number {
    if (this.hasSpare) {
      this.hasSpare = false;
      return this.spare;
    }
    const u1 = 1 - this.rng.float(); // (0, 1]: the logarithm stays finite
    const u2 = this.rng.float();
    const r = Math.sqrt(-2 * Math.log(u1));
    this.spare = r * Math.sin(2 * Math.PI * u2);
    this.hasSpare = true;
    return r * Math.cos(2 * Math.PI * u2);
  }
}

/** Standardized jitter variates of one distribution, optionally correlated (see the header). */
export class JitterSource {
  private readonly gauss: GaussianSource;
  private readonly rho: number;
  private readonly fresh: number;
  /** The AR(1) chains' last values: one for the variate, a second for paretonormal's pareto part. */
  private chainA: number;
  private chainB: number;

  constructor(readonly dist: Distribution, correlation: number, rng: SeededRandom) {
    this.gauss = new GaussianSource(rng);
    this.rho = correlation;
    this.fresh = Math.sqrt(1 - correlation * correlation);
    this.chainA = this.gauss.next();
    this.chainB = this.gauss.next();
  }

  private stepA(): number {
    return (this.chainA = this.rho * this.chainA + this.fresh * this.gauss.next());
  }

  private stepB(): number {
    return (this.chainB = this.rho * this.chainB + this.fresh * this.gauss.next());
  }

  next(): number {
    switch (this.dist) {
      case 'uniform':
        return 2 * normalCdf(this.stepA()) - 1;
      case 'normal':
        return this.stepA();
      case 'pareto':
        return paretoFromUniform(normalCdf(this.stepA()));
      case 'paretonormal':
        return (0.25 * this.stepA() + 0.75 * paretoFromUniform(normalCdf(this.stepB()))) / MIX_SD;
    }
  }
}
