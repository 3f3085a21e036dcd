/**
 * transforms/reassemble.ts and transforms/fragment.ts: IPv4 and IPv6 round trips, overlap (RFC 5722), atomic
 * fragments (RFC 6946), timeouts, and the eviction policy that keeps a flood of junk fragments from blocking
 * legitimate datagrams, with memory bounded.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Packet } from '../../src/packet/packet.js';
import { HELD, type StageResult } from '../../src/pipeline/stage.js';
import { standaloneContext } from '../../src/pipeline/standalone.js';
import { createReassembler, FRAGMENT_OVERHEAD, REASSEMBLE_DROP } from '../../transforms/reassemble.js';
import fragmentStage, { FRAGMENT_DROP } from '../../transforms/fragment.js';
import { parsePacket } from '../../transforms/parse.js';
import { echoRequest, echoRequest6, fragmentHeader, ipv6Bytes, ipv6Datagram, optionsHeader, routingHeader } from '../helpers/packets.js';
import { parsed } from './builders.js';

const limits = { timeoutMs: 30_000, max: 64, memory: 4 * 1024 * 1024 };

function fragmentsOf(datagram: Buffer, mtu: number): Packet[] {
  const ctx = standaloneContext();
  const inst = fragmentStage.create({ mtu }, ctx);
  const last = inst.process(parsed(Buffer.from(datagram))) as StageResult;
  assert.ok(last instanceof Packet, `fragment: ${String(last)}`);
  return [...ctx.emitted, last];
}

/** A raw IPv6 fragment of `data` (the bytes after the unfragmentable part) at `offset`. */
function frag6(id: number, offset: number, more: boolean, data: Buffer, src = '2001:db8::1'): Buffer {
  return ipv6Datagram({ src, ext: [fragmentHeader(offset, more, id)] }, 58, data);
}

/** A raw IPv4 fragment carrying `data` at `offset` with identification `id`. */
function frag4(id: number, offset: number, more: boolean, data: Buffer, src = '198.18.0.1'): Buffer {
  const h = echoRequest({ src }).subarray(0, 20);
  const out = Buffer.concat([h, data]);
  out.writeUInt16BE(out.length, 2);
  out.writeUInt16BE(id, 4);
  out.writeUInt16BE((more ? 0x2000 : 0) | (offset / 8), 6);
  out.writeUInt16BE(0, 10);
  let sum = 0;
  for (let i = 0; i < 20; i += 2) sum += out.readUInt16BE(i);
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
  out.writeUInt16BE(~sum & 0xffff, 10);
  return out;
}

function feed(r: ReturnType<typeof createReassembler>, bufs: Buffer[]): StageResult[] {
  return bufs.map((b) => r.process(parsed(Buffer.from(b))));
}

test('IPv6: fragment then reassemble gives back the datagram, with and without unfragmentable headers', () => {
  for (const ext of [[], [optionsHeader(0, Buffer.from([5, 2, 0, 0]))], [optionsHeader(0), optionsHeader(60), routingHeader(0, [ipv6Bytes('2001:db8::5')]), optionsHeader(60)]]) {
    const req = echoRequest6({ payload: Buffer.from(Buffer.alloc(3000).map((_, i) => i & 0xff)), ext });
    const pieces = fragmentsOf(req, 1280);
    assert.ok(pieces.length >= 3);
    for (const f of pieces) {
      assert.ok(f.data.length <= 1280, 'fits the MTU');
      assert.equal(f.version, 6);
      assert.ok(f.frag > 0, 'has a fragment header');
      const word = f.data.readUInt16BE(f.frag + 2);
      if (f !== pieces[pieces.length - 1]) assert.equal((f.end - f.frag - 8) % 8, 0, 'multiple of 8 but the last');
      assert.equal(word & 1, f === pieces[pieces.length - 1] ? 0 : 1, 'M flag');
    }
    assert.equal(new Set(pieces.map((f) => f.data.readUInt32BE(f.frag + 4))).size, 1, 'one identification');
    const r = createReassembler(limits);
    // Out of order: last first.
    const results = [...pieces].reverse().map((f) => r.process(parsed(Buffer.from(f.data))));
    const whole = results[results.length - 1];
    assert.ok(results.slice(0, -1).every((x) => x === HELD));
    assert.ok(whole instanceof Packet);
    assert.deepEqual(whole.data, req, 'byte for byte the original datagram');
    assert.equal(whole.proto, 58);
    assert.equal(whole.frag, 0);
  }
});

test('IPv4: fragment then reassemble gives back the datagram', () => {
  const req = echoRequest({ payload: Buffer.alloc(3000, 9), frag: 0 });
  const pieces = fragmentsOf(req, 1500);
  assert.equal(pieces.length, 3);
  const r = createReassembler(limits);
  const results = pieces.map((f) => r.process(parsed(Buffer.from(f.data))));
  const whole = results[2] as Packet;
  assert.ok(whole instanceof Packet);
  assert.deepEqual(whole.data, req);
});

test('IPv6: overlapping fragments discard the whole datagram (RFC 5722); atomic fragments pass alone (RFC 6946)', () => {
  const r = createReassembler(limits);
  const a = frag6(1, 0, true, Buffer.alloc(1232, 1));
  const b = frag6(1, 1224, false, Buffer.alloc(100, 2));
  assert.deepEqual(feed(r, [a, b]), [HELD, REASSEMBLE_DROP.overlap]);
  assert.equal(r.usage().datagrams, 0);
  assert.equal(r.counters.discarded, 1);
  const atomic = parsed(echoRequest6({ ext: [fragmentHeader(0, false, 5)] }));
  assert.equal(r.process(atomic), atomic, 'an atomic fragment is a whole datagram');
  // A fragment that is not the last must be a multiple of 8 bytes long.
  assert.equal(r.process(parsed(frag6(2, 0, true, Buffer.alloc(1001)))), REASSEMBLE_DROP.notMultipleOf8);
  // Longer than 65535 bytes of payload.
  assert.equal(r.process(parsed(frag6(3, 65528, false, Buffer.alloc(16)))), REASSEMBLE_DROP.tooLong);
});

test('timeout: fragments of a datagram that does not complete are discarded after `timeout`', () => {
  let now = 0;
  const r = createReassembler({ ...limits, timeoutMs: 1000 }, () => now);
  assert.deepEqual(feed(r, [frag6(9, 0, true, Buffer.alloc(1232))]), [HELD]);
  now = 1500;
  r.flush();
  assert.equal(r.usage().datagrams, 0);
  assert.equal(r.counters.expired, 1);
  // The rest arriving late starts a new datagram that never completes.
  assert.deepEqual(feed(r, [frag6(9, 1232, false, Buffer.alloc(8))]), [HELD]);
});

test('a full table evicts its oldest incomplete datagram: a legitimate datagram after 20,000 junk fragments completes', () => {
  const r = createReassembler(limits);
  // Junk from the same source as the legitimate ping (the namespace's own address), and from others.
  for (let i = 0; i < 20_000; i++) {
    const src = i % 2 ? '198.18.0.1' : `198.18.${1 + (i % 7)}.9`;
    assert.equal(r.process(parsed(frag4(i & 0xffff, 8 * (i % 50), true, Buffer.alloc(8), src))), HELD);
    if (i % 3 === 0) assert.equal(r.process(parsed(frag6(i, 8, true, Buffer.alloc(8), i % 2 ? '2001:db8::1' : '2001:db8::7'))), HELD);
  }
  assert.ok(r.usage().datagrams <= 64);
  assert.ok(r.usage().bytes <= 4 * 1024 * 1024);
  assert.ok(r.counters.evicted > 19_000);
  for (const [req, mtu] of [[echoRequest({ payload: Buffer.alloc(3000, 1), frag: 0 }), 1500], [echoRequest6({ payload: Buffer.alloc(3000, 2) }), 1280]] as const) {
    const pieces = fragmentsOf(req, mtu);
    const results = pieces.map((f) => r.process(parsed(Buffer.from(f.data))));
    const whole = results[results.length - 1];
    assert.ok(whole instanceof Packet, `reassembled after the flood: ${String(whole)}`);
    assert.deepEqual(whole.data, req);
  }
});

test('one source holds at most half the table: its flood evicts its own datagrams, not the others\'', () => {
  const r = createReassembler({ ...limits, max: 8 });
  const others = [frag4(1, 0, true, Buffer.alloc(8), '198.18.5.5'), frag4(2, 0, true, Buffer.alloc(8), '198.18.6.6')];
  feed(r, others);
  for (let i = 0; i < 1000; i++) r.process(parsed(frag4(100 + i, 8, true, Buffer.alloc(8), '198.18.0.1')));
  assert.equal(r.usage().datagrams, 2 + 4, 'the flooding source keeps its share of 4');
  // The other sources' datagrams are still there: completing them works.
  const done = feed(r, [frag4(1, 8, false, Buffer.alloc(8), '198.18.5.5'), frag4(2, 8, false, Buffer.alloc(8), '198.18.6.6')]);
  assert.ok(done.every((x) => x instanceof Packet));
});

test('memory is bounded in bytes: big fragments evict the oldest, and the charge includes per-fragment overhead', () => {
  const memory = 256 * 1024;
  const r = createReassembler({ ...limits, max: 1000, memory });
  for (let i = 0; i < 500; i++) {
    const src = `2001:db8::${(i % 4) + 1}`;
    r.process(parsed(frag6(i, 0, true, Buffer.alloc(1232), src)));
    assert.ok(r.usage().bytes <= memory, `after ${i}: ${r.usage().bytes}`);
  }
  assert.ok(r.usage().datagrams < 500 && r.usage().datagrams > 100);
  // Tiny fragments are charged their overhead: 8 bytes of data cost 8 + FRAGMENT_OVERHEAD (+ headers once).
  const t = createReassembler({ ...limits, max: 100000, memory });
  for (let i = 0; i < 20_000; i++) t.process(parsed(frag6(i, 8, true, Buffer.alloc(8))));
  assert.ok(t.usage().bytes <= memory);
  assert.ok(t.usage().datagrams <= Math.floor(memory / 2 / (8 + FRAGMENT_OVERHEAD)));
});

test('fragment: IPv6 that fits passes; a fragment too long or headers that leave no room are dropped', () => {
  const ctx = standaloneContext();
  const inst = fragmentStage.create({ mtu: 1280 }, ctx);
  const small = parsed(echoRequest6());
  assert.equal(inst.process(small), small);
  const tooLongFragment = new Packet(frag6(4, 0, true, Buffer.alloc(1400)));
  assert.equal(parsePacket(tooLongFragment), tooLongFragment);
  assert.equal(inst.process(tooLongFragment), FRAGMENT_DROP.ipv6Fragment);
  const tiny = fragmentStage.create({ mtu: 100 }, ctx);
  const bigHeaders = parsed(echoRequest6({ ext: [optionsHeader(0, Buffer.alloc(0), 8)], payload: Buffer.alloc(200) }));
  assert.equal(tiny.process(bigHeaders), FRAGMENT_DROP.ipv6NoRoom);
});

test('a duplicate fragment (inside a run of bytes already received) is dropped alone; the datagram completes', () => {
  for (const family of [4, 6] as const) {
    const r = createReassembler(limits);
    const mk = (off: number, more: boolean, len: number) => (family === 4 ? frag4(77, off, more, Buffer.alloc(len, off & 0xff)) : frag6(77, off, more, Buffer.alloc(len, off & 0xff)));
    const a = mk(0, true, 16);
    const b = mk(16, true, 16);
    const c = mk(32, false, 8);
    // a then b form one run: a copy of either, or of both together, is a duplicate.
    assert.deepEqual(feed(r, [a, b, a, b, mk(8, true, 16)]), [HELD, HELD, REASSEMBLE_DROP.duplicate, REASSEMBLE_DROP.duplicate, REASSEMBLE_DROP.duplicate]);
    const done = r.process(parsed(c));
    assert.ok(done instanceof Packet, `IPv${family}: ${String(done)}`);
    // Out of order, a and b are two runs (as Linux keeps them): a piece across both is an overlap.
    const q = createReassembler(limits);
    assert.deepEqual(feed(q, [b, a, mk(8, true, 16)]), [HELD, HELD, REASSEMBLE_DROP.overlap]);
  }
});
