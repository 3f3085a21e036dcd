/**
 * transforms/icmp-echo.ts and the whole echo chain: random valid requests through `parse | icmp-echo |
 * checksum` (fused engine and it-pipe) must come out as replies an independent check accepts.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { pipe } from 'it-pipe';
import { Packet } from '../../src/packet/packet.js';
import { Engine } from '../../src/pipeline/engine.js';
import { resolvePipeline } from '../../src/pipeline/resolve.js';
import { parseIPv4 } from '../../src/library/stages.js';
import { icmpEcho } from '../../src/library/stages.js';
import { recomputeChecksum } from '../../src/library/stages.js';
import { ECHO_DROP } from '../../transforms/filter-icmp-echo.js';
import { echoRequest, referenceChecksum } from '../helpers/packets.js';
import { ipv4Packet, udpSegment } from './builders.js';
import { withSeed, type Random } from './seeded-random.js';

/** A unicast address a host may answer: not 0/8, 127/8 (loopback), 224/4 or above. */
function unicast(rng: Random): string {
  let first = rng.range(1, 223);
  if (first === 127) first = 128;
  return [first, rng.int(256), rng.int(256), rng.range(1, 254)].join('.');
}

/**
 * Well-formed options that the reply keeps unchanged: NOPs and stream identifiers (type 136, 4 bytes), which
 * a receiver accepts and does not update (unlike record route and timestamps).
 */
function sidOptions(rng: Random, len: number): Buffer {
  const b = Buffer.alloc(len, 1);
  for (let i = 0; i + 4 <= len; i += 4) {
    if (rng.chance(0.5)) b.set([136, 4, rng.int(256), rng.int(256)], i);
  }
  return b;
}

function randomRequest(rng: Random): Buffer {
  const len = rng.chance(0.1) ? [0, 1, 1471, 1472][rng.int(4)] : rng.int(1473);
  return echoRequest({
    src: unicast(rng),
    dst: unicast(rng),
    id: rng.int(0x10000),
    seq: rng.int(0x10000),
    ttl: rng.range(1, 255),
    payload: rng.bytes(len),
    options: rng.chance(0.3) ? sidOptions(rng, 4 * rng.range(1, 10)) : undefined,
    frag: rng.chance(0.5) ? 0x4000 : 0x0000,
  });
}

/**
 * The independent check: what a pinging host verifies in a reply to `req`, and the header Linux gives it. The
 * requests carry only no-ops and stream identifiers, which Linux does not echo (ip_options_echo keeps record
 * route, timestamp and CIPSO): the reply has a 20-byte header.
 */
function assertReplyTo(req: Buffer, reply: Buffer, what: string): void {
  const ihl = (req[0] & 0x0f) * 4;
  assert.equal(reply.length, req.length - (ihl - 20), `${what}: length`);
  assert.equal(reply[0], 0x45, `${what}: version/IHL, no options`);
  assert.equal(reply.readUInt16BE(2), req.readUInt16BE(2) - (ihl - 20), `${what}: total length`);
  assert.equal(reply[6] & 0x40, 0, `${what}: DF clear`);
  assert.equal(reply[8], 64, `${what}: TTL`);
  assert.equal(reply[9], 1, `${what}: protocol`);
  assert.deepEqual(reply.subarray(12, 16), req.subarray(16, 20), `${what}: source is the request's destination`);
  assert.deepEqual(reply.subarray(16, 20), req.subarray(12, 16), `${what}: destination is the request's source`);
  assert.equal(referenceChecksum(reply.subarray(0, 20)), 0, `${what}: IP header checksum`);
  assert.equal(reply[20], 0, `${what}: type 0`);
  assert.equal(reply[21], req[ihl + 1], `${what}: code kept`);
  assert.equal(referenceChecksum(reply.subarray(20)), 0, `${what}: ICMP checksum`);
  assert.deepEqual(reply.subarray(24), req.subarray(ihl + 4), `${what}: id, seq and payload`);
}

test('the fused engine answers random valid requests correctly, and drops what is not one', () =>
  withSeed(async (rng) => {
    for (const mode of ['auto', 'full', 'incremental']) {
      const stages = await resolvePipeline(`parse | icmp-echo | checksum mode=${mode}`);
      const out: Packet[] = [];
      const engine = new Engine(stages, { sink: (p) => out.push(p), warn: () => {} });
      const requests: Buffer[] = [];
      let others = 0;
      for (let i = 0; i < 400; i++) {
        if (rng.chance(0.1)) {
          others++;
          engine.push(new Packet(ipv4Packet({ proto: 17, payload: udpSegment(rng.bytes(rng.int(40))) })));
          continue;
        }
        const req = randomRequest(rng);
        requests.push(req);
        engine.push(new Packet(Buffer.from(req)));
      }
      await engine.close();
      assert.equal(out.length, requests.length, JSON.stringify(engine.stats.map((st) => [st.name, [...st.reasons]])));
      out.forEach((p, i) => assertReplyTo(requests[i], p.data, `${mode} request ${i}`));
      const filter = engine.stats.find((s) => s.name === 'icmp-echo/filter-icmp-echo')!;
      assert.equal(filter.reasons.get(ECHO_DROP.notIcmp), others);
      for (const s of engine.stats) assert.equal(s.packetsIn, s.packetsOut + s.dropped + s.held, s.name);
    }
  }));

test('the it-pipe transforms answer random valid requests the same way', () =>
  withSeed(async (rng) => {
    const requests = Array.from({ length: 200 }, () => randomRequest(rng));
    const echo = icmpEcho();
    const replies: Buffer[] = await pipe(
      requests.map((r) => Buffer.from(r)),
      parseIPv4(),
      echo,
      recomputeChecksum(),
      async (source) => {
        const got: Buffer[] = [];
        for await (const p of source) got.push(p.data);
        return got;
      },
    );
    assert.equal(replies.length, requests.length);
    replies.forEach((r, i) => assertReplyTo(requests[i], r, `request ${i}`));
    assert.deepEqual(
      echo.lastStats.map((s) => [s.name, s.packetsIn, s.packetsOut]),
      [
        ['icmp-echo/reassemble', 200, 200],
        ['icmp-echo/filter-icmp-echo', 200, 200],
        ['icmp-echo/swap-addrs', 200, 200],
        ['icmp-echo/to-reply', 200, 200],
      ],
    );
  }));

test('the corner replies (all-zero and zero-sum ICMP data) verify through the whole chain', async () => {
  const requests = [
    echoRequest({ id: 0, seq: 0, payload: Buffer.alloc(0) }),
    echoRequest({ id: 0xffff, seq: 0, payload: Buffer.alloc(0) }),
    echoRequest({ id: 0, seq: 0, payload: Buffer.alloc(1) }),
  ];
  const stages = await resolvePipeline('parse | icmp-echo | checksum');
  const out: Packet[] = [];
  const engine = new Engine(stages, { sink: (p) => out.push(p) });
  for (const r of requests) engine.push(new Packet(Buffer.from(r)));
  await engine.close();
  out.forEach((p, i) => assertReplyTo(requests[i], p.data, `corner ${i}`));
  assert.equal(out[0].data.readUInt16BE(22), 0xffff);
  assert.equal(out[1].data.readUInt16BE(22), 0x0000);
});
