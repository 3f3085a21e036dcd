/**
 * The filter differential in the suite: libpcap's interpreter and the JavaScript translation give the same
 * result (verdict and snap length) for every compiled expression and random program on seeded packets
 * (TUNPIPE_FILTER_SECONDS, TUNPIPE_FILTER_SEED to change the run; `npm run fuzz` runs it longer). And
 * the harness catches broken translations, so that a clean run means something.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { formatMismatch, runFilterDifferential } from '../fuzz/filter-differential.js';
import { bpfToFunction, bpfToSource } from '../../src/filter/bpf-to-js.js';
import type { BpfFunction } from '../../src/filter/bpf-to-js.js';
import type { BpfInsn } from '../../src/filter/bpf.js';

const SECONDS = Number(process.env.TUNPIPE_FILTER_SECONDS ?? 2);
const SEED = process.env.TUNPIPE_FILTER_SEED ?? 'filter-suite';

describe('filter differential against libpcap', () => {
  test(`compiled expressions and random programs agree with pcap_offline_filter (seed ${SEED})`, () => {
    const r = runFilterDifferential({ seed: SEED, seconds: SECONDS });
    assert.deepEqual(r.refused, [], 'the random programs are valid');
    assert.deepEqual(r.mismatches.map(formatMismatch), [], `seed ${SEED}`);
    assert.ok(r.programs > 500 && r.comparisons > 50_000, `${r.programs} programs, ${r.comparisons} comparisons`);
    // Both verdicts are exercised: many packets match, many do not.
    assert.ok(r.accepted > r.comparisons * 0.05 && r.accepted < r.comparisons * 0.9, `${r.accepted} of ${r.comparisons} accepted`);
  });

  const broken = (name: string, translate: (p: readonly BpfInsn[]) => BpfFunction) =>
    test(`catches a translation that ${name}`, () => {
      const r = runFilterDifferential({ seed: 'harness-check', seconds: 0, packets: 100, randomPrograms: 100, translate });
      assert.ok(r.mismatches.length > 0, 'a mismatch is reported');
    });
  broken('checks bounds one byte late', (p) => {
    const f = bpfToFunction(p);
    return (d, len, wirelen) => f(d, len + 1, wirelen ?? len);
  });
  broken('keeps A signed', (p) => new Function(`"use strict"; return ${bpfToSource(p).replace(/>>> 0/g, '| 0')}`)() as BpfFunction);
  broken('lets a shift by X of 32 or more wrap', (p) => new Function(`"use strict"; return ${bpfToSource(p).replace(/X < 32 \? (.*?) : 0;/g, '$1;')}`)() as BpfFunction);
  broken('ignores the wire length', (p) => {
    const f = bpfToFunction(p);
    return (d, len) => f(d, len, len);
  });
});
