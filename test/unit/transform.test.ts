/** src/pipeline/transform.ts: stages as it-pipe transforms, with per-use counters. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { pipe } from 'it-pipe';
import { Packet } from '../../src/packet/packet.js';
import { stageTransform, transformOf } from '../../src/pipeline/transform.js';
import { ENGINE_DROP } from '../../src/pipeline/engine.js';
import { HELD, type PrimitiveStageDefinition, type StageResult } from '../../src/pipeline/stage.js';
import { PARSE_DROP } from '../../transforms/parse.js';
import { parseIPv4 } from '../../src/library/stages.js';
import { icmpEcho } from '../../src/library/stages.js';
import { recomputeChecksum } from '../../src/library/stages.js';
import { swapAddrs } from '../../src/library/stages.js';
import { toReply } from '../../src/library/stages.js';
import { ECHO_DROP } from '../../transforms/filter-icmp-echo.js';
import { filterICMPEcho } from '../../src/library/stages.js';
import { echoRequest, referenceChecksum } from '../helpers/packets.js';
import { ipv4Packet, udpSegment } from './builders.js';

async function collect(source: AsyncIterable<Packet>): Promise<Packet[]> {
  const out: Packet[] = [];
  for await (const p of source) out.push(p);
  return out;
}

function mixedInput(): Buffer[] {
  return [
    echoRequest({ seq: 1 }),
    Buffer.from([0x45, 0, 0]),
    echoRequest({ seq: 2 }),
    ipv4Packet({ proto: 17, payload: udpSegment(Buffer.alloc(4)) }),
    echoRequest({ seq: 3, type: 0 }),
    echoRequest({ seq: 4 }),
  ];
}

test('parseIPv4 | icmpEcho | recomputeChecksum inside it-pipe answers the requests; lastStats counts', async () => {
  const parse = parseIPv4();
  const echo = icmpEcho();
  const sum = recomputeChecksum();
  const replies = await pipe(mixedInput(), parse, echo, sum, collect);
  assert.deepEqual(
    replies.map((p) => p.data.readUInt16BE(26)),
    [1, 2, 4],
  );
  for (const r of replies) {
    assert.equal(r.data[20], 0);
    assert.equal(referenceChecksum(r.data.subarray(0, 20)), 0);
    assert.equal(referenceChecksum(r.data.subarray(20)), 0);
  }
  assert.deepEqual(
    parse.lastStats.map((s) => [s.name, s.packetsIn, s.packetsOut, s.dropped]),
    [['parse', 6, 5, 1]],
  );
  assert.equal(parse.lastStats[0].reasons.get('truncated: shorter than an IPv4 header'), 1);
  assert.deepEqual(
    echo.lastStats.map((s) => [s.name, s.packetsIn, s.packetsOut, s.dropped]),
    [
      ['icmp-echo/reassemble', 5, 5, 0],
      ['icmp-echo/filter-icmp-echo', 5, 3, 2],
      ['icmp-echo/swap-addrs', 3, 3, 0],
      ['icmp-echo/to-reply', 3, 3, 0],
    ],
  );
  assert.deepEqual([...echo.lastStats[1].reasons].sort(), [
    [ECHO_DROP.notIcmp, 1],
    [ECHO_DROP.notEcho, 1],
  ].sort());
  assert.deepEqual(
    sum.lastStats.map((s) => [s.packetsIn, s.packetsOut]),
    [[3, 3]],
  );
  assert.equal(parse.stages[0].label, 'parse');
  assert.deepEqual(
    echo.stages.map((s) => s.label),
    ['icmp-echo/reassemble', 'icmp-echo/filter-icmp-echo', 'icmp-echo/swap-addrs', 'icmp-echo/to-reply'],
  );
});

test('the separate stages compose the same way, from an async source of Uint8Arrays', async () => {
  async function* source() {
    for (const b of mixedInput()) yield new Uint8Array(b);
  }
  const replies = await pipe(source(), parseIPv4(), filterICMPEcho(), swapAddrs(), toReply({ ttl: 9 }), recomputeChecksum({ mode: 'full' }), collect);
  assert.equal(replies.length, 3);
  for (const r of replies) {
    assert.equal(r.data[8], 9);
    assert.equal(referenceChecksum(r.data.subarray(20)), 0);
  }
});

test('each use of a transform starts fresh counters', async () => {
  const parse = parseIPv4();
  await pipe([echoRequest(), Buffer.alloc(0)], parse, collect);
  const first = parse.lastStats[0];
  assert.deepEqual([first.packetsIn, first.packetsOut, first.dropped], [2, 1, 1]);
  assert.equal(first.reasons.get(PARSE_DROP.empty), 1);
  await pipe([echoRequest()], parse, collect);
  assert.deepEqual([parse.lastStats[0].packetsIn, parse.lastStats[0].dropped], [1, 0]);
  assert.deepEqual([first.packetsIn, first.dropped], [2, 1], 'the earlier counters are left as they were');
});

function def(name: string, process: (p: Packet, emit: (p: Packet) => void) => StageResult | Promise<StageResult>, close?: () => void): PrimitiveStageDefinition {
  return { name, summary: name, args: [], create: (_a, ctx) => ({ process: (p) => process(p, ctx.emit), close }) };
}

test('async stages, throws, HELD, emit and close inside it-pipe', async () => {
  let closed = 0;
  const t = transformOf([
    {
      def: def(
        'mixed',
        async (p, emit) => {
          const n = p.data.length;
          if (n === 1) throw new Error('one');
          if (n === 2) return HELD;
          if (n === 3) return null;
          if (n === 4) emit(new Packet(Buffer.alloc(40)));
          return p;
        },
        () => void closed++,
      ),
      args: {},
      label: 'mixed',
    },
  ]);
  const out = await pipe([Buffer.alloc(1), Buffer.alloc(2), Buffer.alloc(3), Buffer.alloc(4), Buffer.alloc(5)], t, collect);
  assert.deepEqual(
    out.map((p) => p.data.length),
    [40, 4, 5],
  );
  const [s] = t.lastStats;
  assert.deepEqual([s.packetsIn, s.packetsOut, s.dropped, s.held, s.emitted], [5, 2, 2, 1, 1]);
  assert.equal(s.reasons.get('error: one'), 1);
  assert.equal(s.reasons.get(ENGINE_DROP.filtered), 1);
  assert.equal(closed, 1);
});

test('a stage whose error messages all differ, inside it-pipe: one report, at most 8 reasons, the rest lumped together', async (t) => {
  const warnings: string[] = [];
  t.mock.method(process.stderr, 'write', (chunk: string | Uint8Array) => warnings.push(String(chunk)) > 0);
  const numbered = transformOf([
    {
      def: def('numbered', (p) => {
        throw new Error(`packet ${p.data.length} is bad`);
      }),
      args: {},
      label: 'numbered',
    },
  ]);
  const input = Array.from({ length: 50 }, (_, k) => Buffer.alloc(k + 1));
  const out = await pipe(input, numbered, collect);
  t.mock.restoreAll();
  assert.equal(out.length, 0);
  assert.equal(warnings.length, 1);
  assert.match(warnings[0], /stage 'numbered': threw: packet 1 is bad/);
  const [s] = numbered.lastStats;
  assert.equal(s.dropped, 50);
  assert.equal(s.reasons.size, 9);
  assert.equal(s.reasons.get('error: (other messages)'), 42);
  assert.equal(s.reasons.get('error: packet 1 is bad'), 1);
  assert.equal(s.reasons.get('error: packet 9 is bad'), undefined);
});

test('stageTransform checks library-given arguments', () => {
  assert.throws(() => recomputeChecksum({ mode: 'full', bogus: 1 } as never), /stage 'checksum' has no argument 'bogus'/);
  const needsFile: PrimitiveStageDefinition = {
    name: 'needs',
    summary: '',
    args: [{ name: 'file', type: 'string', required: true, description: 'f' }],
    create: () => ({ process: (p) => p }),
  };
  assert.throws(() => stageTransform(needsFile), /stage 'needs' needs its argument 'file'/);
  assert.deepEqual(stageTransform(needsFile, { file: 'x' }).stages[0].args, { file: 'x' });
  assert.deepEqual(toReply().stages[0].args, { ttl: 64 });
});

test('withLinkType: the same stages on Ethernet frames (a TAP device): parse finds the IP header past the link header', async () => {
  const { frame } = await import('../helpers/frames.js');
  const { pcapFilter } = await import('../../src/library/stages.js');
  const eth = frame(0x0800, echoRequest());
  const onTap = parseIPv4().withLinkType(1);
  assert.equal(onTap.linkType, 1);
  assert.equal(parseIPv4().linkType, 101);
  const out: Packet[] = await pipe([eth], onTap, async (src) => {
    const all: Packet[] = [];
    for await (const p of src) all.push(p);
    return all;
  });
  assert.equal(out.length, 1);
  assert.equal(out[0].l3, 14);
  assert.equal(out[0].version, 4);
  // As raw IP the same bytes are no IPv4 packet: the link type decides.
  const raw = await pipe([eth], parseIPv4(), async (src) => {
    let n = 0;
    for await (const _ of src) n++;
    return n;
  });
  assert.equal(raw, 0);
  // A filter compiled for Ethernet reads the Ethernet header.
  const kept = await pipe([frame(0x0800, echoRequest()), frame(0x86dd, Buffer.alloc(40))], pcapFilter('ether proto 0x0800').withLinkType(1), async (src) => {
    let n = 0;
    for await (const _ of src) n++;
    return n;
  });
  assert.equal(kept, 1);
  assert.throws(() => parseIPv4().withLinkType(-1), /link type/);
});
