/**
 * An ARP message on a TAP link, parsed, through the stages that work on IP: `checksum` passes it unchanged
 * (ARP has no checksum: dropping it would cut the link's address resolution), and the stages that need IP
 * say "ARP, not IP" rather than "not parsed"; an unparsed frame is still "not parsed".
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Packet } from '../../src/packet/packet.js';
import { isParsedArp } from '../../src/packet/arp.js';
import { parseFrame } from '../../transforms/parse.js';
import { CHECKSUM_DROP, fixChecksums } from '../../transforms/checksum.js';
import { checkEchoRequest, ECHO_DROP } from '../../transforms/filter-icmp-echo.js';
import { swapFrameAddresses, SWAP_DROP } from '../../transforms/swap-addrs.js';

/** An ARP request for 198.18.0.2 from 198.18.0.1 (02:00:00:00:00:01), broadcast. */
function arpRequest(): Buffer {
  const f = Buffer.alloc(14 + 28);
  f.fill(0xff, 0, 6);
  Buffer.from([2, 0, 0, 0, 0, 1]).copy(f, 6);
  f.writeUInt16BE(0x0806, 12);
  f.writeUInt16BE(1, 14); // Ethernet
  f.writeUInt16BE(0x0800, 16); // IPv4
  f[18] = 6;
  f[19] = 4;
  f.writeUInt16BE(1, 20); // request
  Buffer.from([2, 0, 0, 0, 0, 1]).copy(f, 22);
  Buffer.from([198, 18, 0, 1]).copy(f, 28);
  Buffer.from([198, 18, 0, 2]).copy(f, 38);
  return f;
}

test('a parsed ARP message: checksum passes it with every byte as it was; icmp-echo and swap-addrs say ARP, not IP', () => {
  const bytes = arpRequest();
  const p = new Packet(Buffer.from(bytes));
  assert.equal(parseFrame(p), p);
  assert.equal(isParsedArp(p), true);
  assert.equal(fixChecksums(p), p);
  assert.deepEqual(p.data, bytes);
  assert.equal(fixChecksums(p, 'full'), p);
  assert.deepEqual(p.data, bytes);
  assert.equal(checkEchoRequest(p), ECHO_DROP.arp);
  assert.equal(swapFrameAddresses(p), SWAP_DROP.arp);
  assert.deepEqual(p.data, bytes);
});

test('an unparsed frame (its link header known, as offline on an Ethernet file) is still "not parsed" to each of them', () => {
  const p = new Packet(arpRequest());
  p.l3 = 14;
  assert.equal(isParsedArp(p), false);
  assert.equal(fixChecksums(p), CHECKSUM_DROP.unparsed);
  assert.equal(checkEchoRequest(p), ECHO_DROP.unparsed);
  assert.equal(swapFrameAddresses(p), SWAP_DROP.unparsed);
});
