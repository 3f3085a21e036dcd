/**
 * An offline run allocates nothing per packet when no stage keeps packets: the reader copies each packet to
 * one place and hands out a view made once per length, one Packet carries them all, the writer gathers
 * records in its own buffers. Judged as the device test judges it (test/device/allocations.test.ts): V8's
 * young generation cut to 1 MiB (`--max-semi-space-size=1`) and every collection printed (`--trace-gc`), so
 * each scavenge means about 1 MiB allocated. Two runs, on 20,000 and on 220,000 requests: the 200,000 more
 * would cost 20 or more scavenges at 100 bytes a packet (a Buffer view alone is more); what start-up and
 * each batch allocate is the same in both runs but for the batches' share.
 */
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readFileSync, statSync } from 'node:fs';
import { echoRequest, writePcap } from '../helpers/packets.js';
import { tempDir, TUNPIPE_BIN } from '../helpers/cli.js';

const dir = tempDir('tunpipe-offline-alloc-');
after(() => dir.remove());

/** Scavenges allowed for the 200,000 more packets: well under 100 bytes a packet. */
const MAX_MORE_SCAVENGES = 4;

function scavengesFor(packets: number): number {
  const input = dir.file(`in-${packets}.pcap`);
  const request = echoRequest({ seq: 1 });
  writePcap(input, Array.from({ length: packets }, () => request));
  const out = dir.file(`out-${packets}.pcap`);
  const r = spawnSync(process.execPath, ['--trace-gc', '--max-semi-space-size=1', TUNPIPE_BIN, '--quiet', '--read', input, '--write', out, 'parse | icmp-echo | checksum'], { encoding: 'utf8', timeout: 60_000 });
  assert.equal(r.status, 0, r.stderr);
  // Every request answered: the run did the work it is judged on.
  assert.equal(statSync(out).size, 24 + packets * (16 + request.length));
  assert.equal(readFileSync(out).readUInt8(24 + 16 + 20), 0, 'an echo reply');
  return (r.stdout.match(/Scavenge/g) ?? []).length;
}

test(`200,000 more packets through 'parse | icmp-echo | checksum' offline cost at most ${MAX_MORE_SCAVENGES} more scavenges with a 1 MiB young generation`, { timeout: 120_000 }, (t) => {
  const few = scavengesFor(20_000);
  const many = scavengesFor(220_000);
  t.diagnostic(`${few} scavenges for 20,000 packets, ${many} for 220,000`);
  assert.ok(few > 0, '--trace-gc printed no scavenge at all: is its output read?');
  assert.ok(many - few <= MAX_MORE_SCAVENGES, `${many - few} more scavenges for 200,000 more packets`);
});
