/**
 * Soak: a ping flood through `parse | pcap FILE | icmp-echo | checksum` for TUNPIPE_SOAK_SECONDS (8 in the
 * suite; the full version is 60). Resident memory is sampled every second from the start of the flood;
 * the baseline is the LOWEST sample of the first two thirds, and the last sample may exceed it by at most 10%.
 * In its first seconds of traffic tunpipe gives back ~8 MB that starting its worker thread took: a baseline
 * taken before that (a fixed warm-up on a slow machine) would let 8 MB of growth hide behind the give-back;
 * the lowest sample is after it, and a give-back can only make the check stricter. Every reply is valid by
 * the kernel's own counters (no ICMP checksum errors, as many echo replies as ping counted), and the capture
 * holds every request.
 */
import { it } from 'node:test';
import assert from 'node:assert/strict';
import { deviceTestSkipReason } from '../helpers/netns.js';
import { parseCounters, stageRow } from '../helpers/counters.js';
import { inScene, sleep, soundCapture, vmRssKb } from './support.js';

const SOAK_SECONDS = Number(process.env.TUNPIPE_SOAK_SECONDS ?? 8);
/** Growth allowed from the baseline to the end (the bench's soak bar). */
const RSS_GROWTH = 0.1;

it(`soak: ${SOAK_SECONDS} s of ping flood with a capture, memory flat and every reply valid`, { skip: deviceTestSkipReason(), timeout: (SOAK_SECONDS + 60) * 1000 }, async (t) =>
  inScene('soak', async ({ ns, startCaptureEcho, startFlood }) => {
    const { tp, cap } = await startCaptureEcho('tpf9');
    const pid = tp.child.pid!;
    const before = ns.nstat();
    const flood = startFlood(SOAK_SECONDS * 1_000_000, SOAK_SECONDS + 1);
    const samples: number[] = [];
    for (let s = 1; s <= SOAK_SECONDS; s++) {
      await sleep(1000);
      samples.push(vmRssKb(pid));
    }
    const end = samples[samples.length - 1];
    const baseline = Math.min(...samples.slice(0, Math.max(1, Math.floor((samples.length * 2) / 3))));
    const result = await flood.done;
    const after = ns.nstat();
    t.diagnostic(`VmRSS by second (KiB): ${samples.join(' ')}; ${result.received} replies`);

    assert.ok(end - baseline <= baseline * RSS_GROWTH, `VmRSS grew from ${baseline} KiB (lowest of the first two thirds) to ${end} KiB at the end (samples ${samples.join(', ')})`);
    assert.ok(result.received > SOAK_SECONDS * 1000, `only ${result.received} replies in ${SOAK_SECONDS} s`);
    const delta = (name: string) => after[name] - before[name];
    assert.equal(delta('IcmpInCsumErrors'), 0, 'replies with a bad ICMP checksum');
    assert.equal(delta('IpInHdrErrors'), 0, 'replies with a bad IP header');
    // ping stops at its deadline: a reply still on its way then reaches the kernel but not ping's count
    // (a flood has at most 2 requests in flight).
    const reps = delta('IcmpInEchoReps');
    assert.ok(reps >= result.received && reps <= result.received + 2, `the kernel took ${reps} echo replies, ping counted ${result.received}`);
    assert.equal(delta('IcmpInErrors'), 0, 'ICMP messages the kernel found wrong');

    assert.equal(await tp.stop('SIGINT'), 0, tp.stderr());
    const captured = stageRow(parseCounters(tp.stderr()), 'pcap').in;
    const { td, records } = soundCapture(cap);
    assert.equal(td.count, captured);
    assert.equal(records.length, captured);
    assert.ok(captured >= result.received);
  }),
);
