/**
 * The hot path allocates nothing per packet: tunpipe's worker under a 40,000-request flood, with V8's young
 * generation cut to 1 MiB (`--max-semi-space-size=1`) and every collection printed (`--trace-gc`). Each
 * scavenge means about 1 MiB was allocated, so an allocation of even 100 bytes a packet would show as 4 or more
 * scavenges during the flood (4 MB); what the run allocates per wake, not per packet, stays below that.
 * For io_uring and for poll, and the same with --offload (a virtio_net_hdr read into the packet and written
 * back in front of the reply, in place, and a `segment` stage in front of icmp-echo). (The event-loop path
 * reads into 128 KiB slabs on purpose and is not judged here.)
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { deviceTestSkipReason, TUNPIPE, withNetns } from '../helpers/netns.js';
import { pingIn, spawnInNetns, watchProcess } from '../helpers/netns-process.js';

const skip = deviceTestSkipReason();
const FLOOD = 40_000;
/** Scavenges allowed during the flood: under 100 bytes a packet (see above). */
const MAX_SCAVENGES = 3;

for (const [io, offload] of [['uring', false], ['poll', false], ['uring', true], ['poll', true]] as const) {
  test(`a ${FLOOD.toLocaleString('en-US')}-request flood costs at most ${MAX_SCAVENGES} scavenges with a 1 MiB young generation (TUNPIPE_IO=${io}${offload ? ', --offload' : ''})`, { skip, timeout: 60_000 }, async (t) => {
    await withNetns(async (ns) => {
      const child = spawnInNetns(
        ns,
        [process.execPath, '--trace-gc', '--max-semi-space-size=1', TUNPIPE, ...(offload ? ['--offload'] : []), '--dev', 'tpt0', '--addr', '198.18.0.1/24', 'parse | icmp-echo | checksum'],
        { env: { TUNPIPE_IO: io } },
      );
      const tp = watchProcess(child);
      const out = () => tp.stdout();
      try {
        await tp.waitFor(/reading/);
        // A short flood first: the JIT's own allocations are not the packets'.
        pingIn(ns, ['-f', '-c', '2000', '-q', '-w', '10', '198.18.0.2']);
        await new Promise((r) => setTimeout(r, 200));
        const scavenges = () => (out().match(/Scavenge/g) ?? []).length;
        const before = scavenges();
        const ping = pingIn(ns, ['-f', '-c', String(FLOOD), '-q', '-w', '30', '198.18.0.2'], 40_000);
        assert.equal(ping.received, FLOOD, ping.output);
        await new Promise((r) => setTimeout(r, 200));
        const during = scavenges() - before;
        t.diagnostic(`${during} scavenges during ${FLOOD} packets (${before} before)`);
        assert.ok(before > 0, `--trace-gc printed no scavenge at all: is its output read?\n${out().slice(-500)}`);
        assert.ok(during <= MAX_SCAVENGES, `${during} scavenges during the flood: packets allocate`);
        assert.equal(await tp.stop('SIGINT'), 0, tp.stderr());
        assert.match(tp.stderr(), new RegExp(`\\(${io === 'uring' ? 'io_uring' : 'poll'}\\)$`, 'm'));
        if (offload) assert.match(tp.stderr(), /^\s*segment\s+\d+/m, `a segment stage in front of icmp-echo:\n${tp.stderr()}`);
      } finally {
        await tp.stop('SIGKILL', 1000);
      }
    }, 'tpalloc');
  });
}
