/**
 * The echo on IPv6 (`parse | icmp-echo | checksum`): replies as Linux's net/ipv6/icmp.c sends them, checked
 * field by field against the request by an independent check; what is declined and why; and `checksum` after
 * a stage that does not record its changes.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Packet, Dirty } from '../../src/packet/packet.js';
import { Engine } from '../../src/pipeline/engine.js';
import { resolvePipeline, type ResolvedStage } from '../../src/pipeline/resolve.js';
import { functionStage } from '../../src/pipeline/user-stage.js';
import { ECHO_DROP } from '../../transforms/filter-icmp-echo.js';
import { echoRequest, echoRequest6, fragmentHeader, ipv6Bytes, ipv6Datagram, optionsHeader, pseudoHeader6And, referenceChecksum, routingHeader } from '../helpers/packets.js';
import { withSeed } from './seeded-random.js';

interface Run {
  out: Buffer[];
  drops: Map<string, number>;
}

async function run(text: string, inputs: Buffer[], extra: ResolvedStage[] = [], at = -1): Promise<Run> {
  const stages = await resolvePipeline(text);
  if (extra.length) stages.splice(at < 0 ? stages.length + at : at, 0, ...extra);
  const out: Buffer[] = [];
  const engine = new Engine(stages, { sink: (p) => out.push(Buffer.from(p.data)) });
  for (const b of inputs) engine.push(new Packet(Buffer.from(b)));
  await engine.close();
  const drops = new Map<string, number>();
  for (const s of engine.stats) for (const [r, n] of s.reasons) drops.set(r, (drops.get(r) ?? 0) + n);
  return { out, drops };
}

/** What a pinging host and Linux's reply promise: checked from the RFCs, not from the code under test. */
function assertReply6(req: Buffer, reply: Buffer, what: string): void {
  const reqNext = req[6];
  // The request's ICMPv6 message: after its extension headers (walked here the simple way, for the test's packets).
  let at = 40;
  let nh = reqNext;
  while (nh !== 58) {
    const len = nh === 44 ? 8 : (req[at + 1] + 1) * 8;
    nh = req[at];
    at += len;
  }
  const msg = req.subarray(at);
  assert.equal(reply.length, 40 + msg.length, `${what}: no extension headers in the reply`);
  assert.equal(reply[0] >> 4, 6, `${what}: version`);
  assert.equal(((reply.readUInt32BE(0) >> 20) & 0xff), (req.readUInt32BE(0) >> 20) & 0xff, `${what}: traffic class copied`);
  assert.equal(reply.readUInt32BE(0) & 0xfffff, req.readUInt32BE(0) & 0xfffff, `${what}: flow label kept`);
  assert.equal(reply.readUInt16BE(4), msg.length, `${what}: payload length`);
  assert.equal(reply[6], 58, `${what}: next header ICMPv6`);
  assert.equal(reply[7], 64, `${what}: hop limit 64`);
  assert.deepEqual(reply.subarray(8, 24), req.subarray(24, 40), `${what}: source is the request's destination`);
  assert.deepEqual(reply.subarray(24, 40), req.subarray(8, 24), `${what}: destination is the request's source`);
  const rmsg = reply.subarray(40);
  assert.equal(rmsg[0], 129, `${what}: type 129`);
  assert.equal(rmsg[1], msg[1], `${what}: code copied`);
  assert.deepEqual(rmsg.subarray(4), msg.subarray(4), `${what}: id, sequence and data kept`);
  assert.equal(referenceChecksum(pseudoHeader6And(reply.subarray(8, 24), reply.subarray(24, 40), 58, rmsg)), 0, `${what}: ICMPv6 checksum`);
}

test('random IPv6 echo requests get replies as Linux sends them, in every checksum mode', () =>
  withSeed(async (rng) => {
    const reqs: Buffer[] = [];
    for (let i = 0; i < 200; i++) {
      const ext = [];
      if (rng.chance(0.3)) ext.push(optionsHeader(0, Buffer.from([5, 2, 0, 0])));
      if (rng.chance(0.3)) ext.push(optionsHeader(60, Buffer.alloc(0), rng.range(1, 3)));
      if (rng.chance(0.3)) ext.push(routingHeader(0, [ipv6Bytes('2001:db8::77')]));
      if (rng.chance(0.2)) ext.push(fragmentHeader(0, false, rng.int(0x100000000)));
      reqs.push(
        echoRequest6({
          src: `2001:db8:${rng.int(0x10000).toString(16)}::${rng.range(1, 0xffff).toString(16)}`,
          dst: rng.chance(0.2) ? 'fe80::2' : '2001:db8::2',
          id: rng.int(0x10000),
          seq: rng.int(0x10000),
          code: rng.chance(0.2) ? rng.int(256) : 0,
          trafficClass: rng.int(256),
          flowLabel: rng.int(0x100000),
          hopLimit: rng.range(1, 255),
          payload: rng.bytes(rng.chance(0.1) ? [0, 1, 1447][rng.int(3)] : rng.int(1400)),
          ext,
        }),
      );
    }
    for (const mode of ['auto', 'full', 'incremental']) {
      const { out, drops } = await run(`parse | icmp-echo | checksum mode=${mode}`, reqs);
      assert.equal(drops.size, 0, `${mode}: ${[...drops.entries()].join(', ')}`);
      assert.equal(out.length, reqs.length);
      reqs.forEach((r, i) => assertReply6(r, out[i], `${mode} #${i}`));
    }
  }));

test('echo requests with code 1 and 255 are answered with that code, IPv4 and IPv6 (as Linux does)', async () => {
  const v4 = [1, 255].map((code) => {
    const b = echoRequest({ seq: code });
    b[21] = code;
    b.writeUInt16BE(0, 22);
    b.writeUInt16BE(referenceChecksum(b.subarray(20)), 22);
    return b;
  });
  const v6 = [1, 255].map((code) => echoRequest6({ code, seq: code }));
  const { out } = await run('parse | icmp-echo | checksum', [...v4, ...v6]);
  assert.equal(out.length, 4);
  assert.deepEqual(out.map((b) => (b[0] >> 4 === 4 ? [b[20], b[21]] : [b[40], b[41]])), [[0, 1], [0, 255], [129, 1], [129, 255]]);
  for (const b of out.slice(0, 2)) assert.equal(referenceChecksum(b.subarray(20)), 0);
  v6.forEach((r, i) => assertReply6(r, out[2 + i], `code ${[1, 255][i]}`));
});

test('IPv6 packets the echo declines, each with its reason', async () => {
  const badSum = echoRequest6();
  badSum[45] ^= 1;
  const rs = ipv6Datagram({ src: 'fe80::1', dst: 'ff02::2', hopLimit: 255 }, 58, Buffer.from([133, 0, 0, 0, 0, 0, 0, 0]));
  const mld2 = ipv6Datagram({ src: 'fe80::1', dst: 'ff02::16', hopLimit: 1, ext: [optionsHeader(0, Buffer.from([5, 2, 0, 0]))] }, 58, Buffer.from([143, 0, 0, 0, 0, 0, 0, 0]));
  const cases: Array<[string, Buffer, string]> = [
    ['bad checksum', badSum, ECHO_DROP.checksum6],
    ['multicast destination ff02::1', echoRequest6({ dst: 'ff02::1' }), ECHO_DROP.multicast6],
    ['unspecified source', echoRequest6({ src: '::' }), ECHO_DROP.source6],
    ['multicast source', echoRequest6({ src: 'ff02::1' }), ECHO_DROP.source6],
    ['loopback source', echoRequest6({ src: '::1' }), ECHO_DROP.source6],
    ['IPv4-mapped source', echoRequest6({ src: '::ffff:c612:1' }), ECHO_DROP.source6],
    ['loopback destination', echoRequest6({ dst: '::1' }), ECHO_DROP.destination6],
    ['routing header with segments left', echoRequest6({ ext: [routingHeader(1, [ipv6Bytes('2001:db8::9')])] }), ECHO_DROP.routing6],
    ['echo reply', echoRequest6({ type: 129 }), ECHO_DROP.notEcho6],
    ['router solicitation', rs, ECHO_DROP.routerSolicitation],
    ['MLDv2 report behind hop-by-hop router alert', mld2, ECHO_DROP.mldReport],
    ['UDP', ipv6Datagram({}, 17, Buffer.alloc(8)), ECHO_DROP.notIcmp6],
    ['ICMPv6 of 4 bytes', ipv6Datagram({}, 58, Buffer.from([128, 0, 0, 0])), ECHO_DROP.short6],
  ];
  for (const [name, packet, reason] of cases) {
    const { out, drops } = await run('parse | icmp-echo | checksum', [packet]);
    assert.equal(out.length, 0, name);
    assert.equal(drops.get(reason), 1, `${name}: ${[...drops.keys()].join(', ')}`);
  }
});

test('checksum after a stage that does not record its changes recomputes in full: no wrong checksum leaves', async () => {
  // A user stage that edits the payload (as the README allows) without telling anyone.
  const edit = functionStage((p) => {
    const q = p as Packet;
    q.data[q.end - 1] ^= 0xff;
    return q;
  }, 'edit', 'edits the last byte', []);
  const user: ResolvedStage = { def: edit, args: {}, label: 'edit' };
  const reqs = [echoRequest({ seq: 3 }), echoRequest6({ seq: 4 })];
  for (const mode of ['auto', 'incremental']) {
    const { out } = await run(`parse | icmp-echo | checksum mode=${mode}`, reqs, [user], -1);
    assert.equal(out.length, 2);
    assert.equal(referenceChecksum(out[0].subarray(20)), 0, `${mode}: ICMP checksum after the edit`);
    assert.equal(referenceChecksum(pseudoHeader6And(out[1].subarray(8, 24), out[1].subarray(24, 40), 58, out[1].subarray(40))), 0, `${mode}: ICMPv6 checksum after the edit`);
    assert.equal(out[0][out[0].length - 1], reqs[0][reqs[0].length - 1] ^ 0xff, 'the edit is kept');
  }
});

test('Dirty exists at run time with the flag values', () => {
  assert.deepEqual({ ...Dirty }, { IpAdjust: 1, L4Adjust: 2, IpStale: 4, L4Stale: 8 });
});

test('every built-in stage says whether it records its changes (checksum trusts only those that do)', async () => {
  const { builtinStages } = await import('../../src/pipeline/registry.js');
  for (const d of builtinStages()) assert.equal(typeof d.recordsChanges, 'boolean', `${d.name} declares recordsChanges`);
  // A user's plain function never promises it.
  assert.equal(functionStage(() => null, 'f', 'f', []).recordsChanges, undefined);
});
