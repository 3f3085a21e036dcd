/**
 * Soak: a ping flood through `parse | pcap FILE | icmp-echo | checksum` for TUNPIPE_SOAK_SECONDS (8 in the
 * suite; the full version is 60). Resident memory at the end stays within 10% of its value after a
 * warm-up (a quarter of the run, at most 10 s: in its first ~10 s tunpipe gives back ~8 MB that starting
 * its worker thread took, then stays flat), every reply is valid by the kernel's own counters (no ICMP checksum errors, as many
 * echo replies as ping counted), and the capture holds every request.
 */
import { it } from 'node:test';
import assert from 'node:assert/strict';
import { deviceTestSkipReason } from '../helpers/netns.js';
import { parseCounters, stageRow } from '../helpers/counters.js';
import { inScene, sleep, soundCapture, vmRssKb } from './support.js';

const SOAK_SECONDS = Number(process.env.TUNPIPE_SOAK_SECONDS ?? 8);
const WARM_UP_SECONDS = Math.max(1, Math.min(10, Math.floor(SOAK_SECONDS / 4)));

it(`soak: ${SOAK_SECONDS} s of ping flood with a capture, memory flat and every reply valid`, { skip: deviceTestSkipReason(), timeout: (SOAK_SECONDS + 60) * 1000 }, async (t) =>
  inScene('soak', async ({ ns, startCaptureEcho, startFlood }) => {
    const { tp, cap } = await startCaptureEcho('tpf9');
    const pid = tp.child.pid!;
    const before = ns.nstat();
    const flood = startFlood(SOAK_SECONDS * 1_000_000, SOAK_SECONDS + 1);
    await sleep(WARM_UP_SECONDS * 1000);
    const warm = vmRssKb(pid);
    const samples = [warm];
    for (let s = WARM_UP_SECONDS + 1; s <= SOAK_SECONDS; s++) {
      await sleep(1000);
      samples.push(vmRssKb(pid));
    }
    const end = samples[samples.length - 1];
    const result = await flood.done;
    const after = ns.nstat();
    t.diagnostic(`VmRSS by second (KiB): ${samples.join(' ')}; ${result.received} replies`);

    assert.ok(Math.abs(end - warm) <= warm * 0.1, `VmRSS ${warm} KiB after warm-up, ${end} KiB at the end (samples ${samples.join(', ')})`);
    assert.ok(result.received > SOAK_SECONDS * 1000, `only ${result.received} replies in ${SOAK_SECONDS} s`);
    const delta = (name: string) => (after[name] ?? 0) - (before[name] ?? 0);
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
