/**
 * User-space GSO (src/packet/gso.ts) and the segment stage: synthesized TCPv4, TCPv6 and UDP_L4
 * super-packets, as a device with offloads hands them over (virtio fields, a partial checksum holding the
 * pseudo-header sum), are split into segments whose IP and transport checksums verify, whose payloads put
 * together are the original's, with the sequence numbers, identifications and flags the kernel gives its
 * own segments; partial checksums are completed to what a full computation gives; malformed virtio headers
 * are counted drops.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { checksumIsValid, fold16, sum16, writeChecksumAt } from '../../src/packet/checksum.js';
import { completeChecksum, GSO_DROP, segmentSuperPacket, SegmentSlabs } from '../../src/packet/gso.js';
import { Packet } from '../../src/packet/packet.js';
import { GSO_ECN, GSO_TCPV4, GSO_TCPV6, GSO_UDP, GSO_UDP_L4, hasHeaderRoom, offloadFrame, readVnetHeader, VNET_F_NEEDS_CSUM, VNET_HDR_SIZE, writeVnetHeader } from '../../src/packet/vnet.js';
import { pseudoHeaderSum6 } from '../../src/packet/ipv6.js';
import { Engine } from '../../src/pipeline/engine.js';
import { standaloneContext } from '../../src/pipeline/standalone.js';
import segmentStage from '../../transforms/segment.js';

const TCP_FIN = 0x01;
const TCP_PSH = 0x08;
const TCP_ACK = 0x10;
const TCP_CWR = 0x80;

function payloadOf(n: number, seed: number): Buffer {
  const b = Buffer.alloc(n);
  let x = seed;
  for (let i = 0; i < n; i++) {
    x = (x * 1103515245 + 12345) >>> 0;
    b[i] = x >>> 24;
  }
  return b;
}

/** The pseudo-header sum of an IPv4 packet's transport part, unfolded. */
function pseudo4(b: Buffer, proto: number, length: number): number {
  return sum16(b, 12, 8) + proto + length;
}

interface Built {
  packet: Packet;
  payload: Buffer;
  l4: number;
  thl: number;
}

/** An IPv4 or IPv6 TCP super-packet with TCP options (timestamps), as the kernel hands it over with offloads. */
function tcpSuperPacket(version: 4 | 6, payloadLen: number, mss: number, flags = TCP_ACK | TCP_PSH | TCP_FIN | TCP_CWR): Built {
  const ipLen = version === 4 ? 20 : 40;
  const thl = 32;
  const payload = payloadOf(payloadLen, payloadLen + version);
  const b = Buffer.alloc(ipLen + thl + payloadLen);
  // The identification wraps within the train; DF set.
  writeIpHeader(b, version, 6, 0xfffe, 0x4000);
  const l4 = ipLen;
  b.writeUInt16BE(40000, l4);
  b.writeUInt16BE(5201, l4 + 2);
  b.writeUInt32BE(0xfffff000, l4 + 4); // the sequence number wraps within the train
  b.writeUInt32BE(12345, l4 + 8);
  b[l4 + 12] = (thl / 4) << 4;
  b[l4 + 13] = flags;
  b.writeUInt16BE(502, l4 + 14);
  Buffer.from([1, 1, 8, 10, 0, 0, 0, 1, 0, 0, 0, 2]).copy(b, l4 + 20);
  payload.copy(b, l4 + thl);
  // A partial checksum: the field holds the pseudo-header sum (folded, not complemented), as the kernel leaves it.
  const len = b.length - l4;
  const ps = version === 4 ? pseudo4(b, 6, len) : pseudoHeaderSum6(b, 0, len, 6);
  b.writeUInt16BE(fold16(ps), l4 + 16);
  const p = new Packet(b);
  p.gsoType = version === 4 ? GSO_TCPV4 : GSO_TCPV6;
  p.gsoSize = mss;
  p.vnetFlags = VNET_F_NEEDS_CSUM;
  p.hdrLen = l4 + thl;
  p.csumStart = l4;
  p.csumOffset = 16;
  return { packet: p, payload, l4, thl };
}

/**
 * The IP header at the start of `b` (the whole of `b` is the datagram): IPv4 198.18.0.1 > 198.18.0.2 with
 * `id`, `fragmentWord` and its checksum, or IPv6 2001:db8::1 > 2001:db8::2; TTL or hop limit 64.
 */
function writeIpHeader(b: Buffer, version: 4 | 6, proto: number, id: number, fragmentWord: number): void {
  if (version === 4) {
    b[0] = 0x45;
    b.writeUInt16BE(b.length, 2);
    b.writeUInt16BE(id, 4);
    b.writeUInt16BE(fragmentWord, 6);
    b[8] = 64;
    b[9] = proto;
    Buffer.from([198, 18, 0, 1, 198, 18, 0, 2]).copy(b, 12);
    writeChecksumAt(b, 0, 20, 10);
  } else {
    b[0] = 0x60;
    b.writeUInt16BE(b.length - 40, 4);
    b[6] = proto;
    b[7] = 64;
    Buffer.from('20010db8000000000000000000000001', 'hex').copy(b, 8);
    Buffer.from('20010db8000000000000000000000002', 'hex').copy(b, 24);
  }
}

function udpSuperPacket(version: 4 | 6, payloadLen: number, size: number): Built {
  const ipLen = version === 4 ? 20 : 40;
  const payload = payloadOf(payloadLen, 7 + version);
  const b = Buffer.alloc(ipLen + 8 + payloadLen);
  writeIpHeader(b, version, 17, 100, 0);
  const l4 = ipLen;
  b.writeUInt16BE(5000, l4);
  b.writeUInt16BE(5201, l4 + 2);
  b.writeUInt16BE(8 + size, l4 + 4); // the kernel gives the length of one datagram
  payload.copy(b, l4 + 8);
  const p = new Packet(b);
  p.gsoType = GSO_UDP_L4;
  p.gsoSize = size;
  p.vnetFlags = VNET_F_NEEDS_CSUM;
  p.hdrLen = l4 + 8;
  p.csumStart = l4;
  p.csumOffset = 6;
  return { packet: p, payload, l4, thl: 8 };
}

function segment(p: Packet): Packet[] {
  const out: Packet[] = [];
  const last = segmentSuperPacket(p, 0, new SegmentSlabs(), (s) => out.push(s));
  assert.ok(last instanceof Packet, `segmented, not dropped: ${String(last)}`);
  out.push(last);
  return out;
}

function transportValid(s: Packet, version: number, l4: number, proto: number): boolean {
  const b = s.data;
  const len = b.length - l4;
  return checksumIsValid(b, l4, len, version === 4 ? pseudo4(b, proto, len) : pseudoHeaderSum6(b, 0, len, proto));
}

for (const version of [4, 6] as const) {
  test(`TCPv${version}: a 64 KiB super-packet becomes MSS segments with valid checksums, seq, id and flags as the kernel's`, () => {
    const mss = 1448;
    const { packet, payload, l4, thl } = tcpSuperPacket(version, 65000 - 100, mss);
    const segs = segment(packet);
    assert.equal(segs.length, Math.ceil(payload.length / mss));
    const joined: Buffer[] = [];
    segs.forEach((s, i) => {
      const b = s.data;
      const first = i === 0;
      const last = i === segs.length - 1;
      const chunk = last ? payload.length - mss * (segs.length - 1) : mss;
      assert.equal(b.length, l4 + thl + chunk, `segment ${i} length`);
      if (version === 4) {
        assert.equal(b.readUInt16BE(2), b.length, 'IPv4 total length');
        assert.equal(b.readUInt16BE(4), (0xfffe + i) & 0xffff, 'IPv4 identification +1 per segment');
        assert.equal(b.readUInt16BE(6), 0x4000, 'DF kept');
        assert.ok(checksumIsValid(b, 0, 20), `IPv4 header checksum of segment ${i}`);
      } else {
        assert.equal(b.readUInt16BE(4), b.length - 40, 'IPv6 payload length');
      }
      assert.ok(transportValid(s, version, l4, 6), `TCP checksum of segment ${i}`);
      assert.equal(b.readUInt32BE(l4 + 4), (0xfffff000 + i * mss) >>> 0, 'sequence number');
      assert.equal(b.readUInt32BE(l4 + 8), 12345, 'ack kept');
      const flags = b[l4 + 13];
      assert.equal((flags & TCP_ACK) !== 0, true);
      assert.equal((flags & TCP_FIN) !== 0, last, `FIN on segment ${i}`);
      assert.equal((flags & TCP_PSH) !== 0, last, `PSH on segment ${i}`);
      assert.equal((flags & TCP_CWR) !== 0, first, `CWR on segment ${i}`);
      assert.deepEqual(b.subarray(l4 + 20, l4 + thl), Buffer.from([1, 1, 8, 10, 0, 0, 0, 1, 0, 0, 0, 2]), 'TCP options kept');
      assert.equal(s.gsoType, 0);
      assert.equal(s.vnetFlags, 0);
      assert.ok(hasHeaderRoom(s), 'a segment has room for its virtio header');
      joined.push(b.subarray(l4 + thl));
    });
    assert.deepEqual(Buffer.concat(joined), payload, 'the payloads put together are the original');
  });

  test(`UDP_L4 over IPv${version}: each gso_size bytes become a datagram with its own header, length and checksum`, () => {
    const size = 1200;
    const { packet, payload, l4 } = udpSuperPacket(version, 1200 * 10 + 345, size);
    const segs = segment(packet);
    assert.equal(segs.length, 11);
    const joined: Buffer[] = [];
    segs.forEach((s, i) => {
      const b = s.data;
      const chunk = i === 10 ? 345 : size;
      assert.equal(b.length, l4 + 8 + chunk);
      assert.equal(b.readUInt16BE(l4 + 4), 8 + chunk, 'UDP length');
      assert.equal(b.readUInt16BE(l4), 5000, 'ports kept');
      if (version === 4) {
        assert.equal(b.readUInt16BE(2), b.length);
        assert.equal(b.readUInt16BE(4), 100 + i, 'IPv4 identification +1 per datagram');
        assert.ok(checksumIsValid(b, 0, 20));
      } else assert.equal(b.readUInt16BE(4), b.length - 40);
      assert.notEqual(b.readUInt16BE(l4 + 6), 0, 'a UDP checksum is never sent as 0');
      assert.ok(transportValid(s, version, l4, 17), `UDP checksum of datagram ${i}`);
      joined.push(b.subarray(l4 + 8));
    });
    assert.deepEqual(Buffer.concat(joined), payload);
  });
}

test('a TCP super-packet of one segment is fixed in place: checksum complete, virtio fields cleared', () => {
  const { packet, l4 } = tcpSuperPacket(4, 1000, 1448);
  const segs = segment(packet);
  assert.equal(segs.length, 1);
  assert.equal(segs[0], packet);
  assert.ok(transportValid(packet, 4, l4, 6));
  assert.equal(packet.gsoType, 0);
  assert.equal(packet.vnetFlags, 0);
  assert.equal(packet.data[l4 + 13] & TCP_FIN, TCP_FIN, 'the only segment is the last: FIN stays');
});

test('ECN super-packets keep CWR on the first segment only', () => {
  const { packet, l4 } = tcpSuperPacket(4, 5000, 1000, TCP_ACK | TCP_CWR);
  packet.gsoType |= GSO_ECN;
  const segs = segment(packet);
  assert.deepEqual(segs.map((s) => (s.data[l4 + 13] & TCP_CWR) !== 0), [true, false, false, false, false]);
});

test('a parsed super-packet gives parsed segments', () => {
  const { packet, l4 } = tcpSuperPacket(6, 4000, 1000);
  packet.version = 6;
  packet.l4 = l4;
  packet.proto = 6;
  const segs = segment(packet);
  for (const s of segs) {
    assert.equal(s.version, 6);
    assert.equal(s.l4, l4);
    assert.equal(s.proto, 6);
    assert.equal(s.end, s.data.length);
  }
});

test('NEEDS_CSUM: completing a partial checksum gives what a full computation gives (TCP, UDP, IPv4, IPv6, odd lengths)', () => {
  for (const version of [4, 6] as const) {
    for (const n of [0, 1, 2, 513, 1400]) {
      for (const kind of ['tcp', 'udp'] as const) {
        const built = kind === 'tcp' ? tcpSuperPacket(version, n, 1448) : udpSuperPacket(version, n, 1448);
        const { packet, l4 } = built;
        const b = packet.data;
        if (kind === 'udp') b.writeUInt16BE(b.length - l4, l4 + 4);
        const off = kind === 'tcp' ? 16 : 6;
        const proto = kind === 'tcp' ? 6 : 17;
        const len = b.length - l4;
        const ps = version === 4 ? pseudo4(b, proto, len) : pseudoHeaderSum6(b, 0, len, proto);
        const full = Buffer.from(b);
        writeChecksumAt(full, l4, len, l4 + off, ps);
        if (kind === 'udp' && full.readUInt16BE(l4 + off) === 0) full.writeUInt16BE(0xffff, l4 + off);
        b.writeUInt16BE(fold16(ps), l4 + off);
        packet.gsoType = 0;
        packet.gsoSize = 0;
        assert.equal(completeChecksum(packet), null);
        assert.deepEqual(b, full, `${kind} over IPv${version}, ${n} payload bytes`);
        assert.equal(packet.vnetFlags, 0);
      }
    }
  }
});

test('the virtio header codec: little-endian fields, written back as read; a packet without room is copied behind one', () => {
  const hdr = Buffer.from([1, 0x81, 0x42, 0x00, 0xa8, 0x05, 0x14, 0x00, 0x10, 0x00]);
  const p = new Packet(Buffer.alloc(4));
  readVnetHeader(hdr, 0, p);
  assert.deepEqual([p.vnetFlags, p.gsoType, p.hdrLen, p.gsoSize, p.csumStart, p.csumOffset], [1, 0x81, 0x42, 1448, 20, 16]);
  const out = Buffer.alloc(10);
  writeVnetHeader(out, 0, p);
  assert.deepEqual(out, hdr);
  p.data = Buffer.from([0x45, 1, 2, 3]);
  const frame = offloadFrame(p);
  assert.deepEqual(frame, Buffer.concat([hdr, p.data]));
  // With room in front: written in place, no copy.
  const mem = Buffer.alloc(VNET_HDR_SIZE + 4);
  p.data.copy(mem, VNET_HDR_SIZE);
  p.head = mem;
  p.headAt = 0;
  p.data = mem.subarray(VNET_HDR_SIZE);
  const inPlace = offloadFrame(p);
  assert.equal(inPlace.buffer, mem.buffer);
  assert.equal(inPlace.byteOffset, mem.byteOffset);
  assert.deepEqual(inPlace, Buffer.concat([hdr, Buffer.from([0x45, 1, 2, 3])]));
  // Cut from the front by a stage: the room is no longer the packet's.
  p.data = mem.subarray(VNET_HDR_SIZE + 1);
  assert.equal(hasHeaderRoom(p), false);
});

test('malformed virtio headers are counted drops of the segment stage, never a throw', () => {
  const cases: [string, (p: Packet) => void][] = [
    [GSO_DROP.gsoSizeZero, (p) => (p.gsoSize = 0)],
    [GSO_DROP.hdrLen, (p) => (p.hdrLen = p.data.length + 1)],
    [GSO_DROP.csumRange, (p) => (p.csumStart = p.data.length - 1)],
    [GSO_DROP.csumRange, (p) => (p.csumOffset = 0xffff)],
    [GSO_DROP.unknownType, (p) => (p.gsoType = 9)],
    [GSO_DROP.ufo, (p) => (p.gsoType = GSO_UDP)],
    [GSO_DROP.mismatch, (p) => (p.gsoType = GSO_TCPV6)],
    [GSO_DROP.mismatch, (p) => (p.gsoType = GSO_UDP_L4)],
    [GSO_DROP.ipHeader, (p) => p.data.writeUInt16BE(p.data.length + 1, 2)],
    [GSO_DROP.fragment, (p) => p.data.writeUInt16BE(0x2000, 6)],
    [GSO_DROP.transport, (p) => (p.data[20 + 12] = 0x40)],
  ];
  const sent: Packet[] = [];
  const engine = new Engine([{ def: segmentStage, args: {}, label: 'segment' }], { sink: (p) => void sent.push(p) });
  for (const [, spoil] of cases) {
    const { packet } = tcpSuperPacket(4, 3000, 1000);
    spoil(packet);
    engine.push(packet);
  }
  // Truncated packets of every length: no throw, each dropped.
  const whole = tcpSuperPacket(4, 3000, 1000).packet;
  for (let n = 0; n < 60; n += 7) {
    const p = new Packet(Buffer.from(whole.data.subarray(0, n)));
    Object.assign(p, { gsoType: GSO_TCPV4, gsoSize: 1000, vnetFlags: 0 });
    engine.push(p);
  }
  const partial = new Packet(Buffer.alloc(30));
  Object.assign(partial, { vnetFlags: VNET_F_NEEDS_CSUM, csumStart: 28, csumOffset: 6 });
  engine.push(partial);
  const [stats] = engine.stats;
  assert.equal(sent.length, 0, 'nothing malformed passed');
  assert.equal(stats.dropped, stats.packetsIn);
  const expected = new Map<string, number>();
  for (const [reason] of cases) expected.set(reason, (expected.get(reason) ?? 0) + 1);
  for (const [reason, n] of expected) assert.ok((stats.reasons.get(reason) ?? 0) >= n, `${reason}: ${stats.reasons.get(reason)} (${[...stats.reasons].join('; ')})`);
});

test('the segment stage: segments emitted ahead of the last, plain packets pass untouched, DATA_VALID cleared', () => {
  const ctx = standaloneContext();
  const stage = segmentStage.create({}, ctx);
  const { packet } = tcpSuperPacket(4, 4000, 1448);
  const last = stage.process(packet);
  assert.ok(last instanceof Packet);
  assert.equal(ctx.emitted.length, 2);
  const plain = new Packet(Buffer.from([0x45, 0, 0, 20]));
  plain.vnetFlags = 2;
  assert.equal(stage.process(plain), plain);
  assert.equal(plain.vnetFlags, 0);
});

test('random virtio fields and header bytes on super-packets: no throw, each passes as plain packets or is dropped with a reason', () => {
  let x = 12345;
  const rand = (n: number) => ((x = (x * 1103515245 + 12345) >>> 0) >>> 8) % n;
  const sent: Packet[] = [];
  const engine = new Engine([{ def: segmentStage, args: {}, label: 'segment' }], { sink: (p) => void sent.push(p) });
  let inputs = 0;
  for (let round = 0; round < 3000; round++) {
    const kind = rand(4);
    const built = kind === 0 ? tcpSuperPacket(4, 1 + rand(9000), 1448) : kind === 1 ? tcpSuperPacket(6, 1 + rand(9000), 1448) : udpSuperPacket(kind === 2 ? 4 : 6, 1 + rand(9000), 1200);
    const p = built.packet;
    const field = rand(8);
    if (field === 0) p.gsoType = rand(256);
    if (field === 1) p.gsoSize = rand(3) === 0 ? rand(4) : rand(0x10000);
    if (field === 2) p.hdrLen = rand(0x10000);
    if (field === 3) p.csumStart = rand(0x10000);
    if (field === 4) p.csumOffset = rand(0x10000);
    if (field === 5) p.vnetFlags = rand(256);
    // A few header bytes changed at random (lengths, IHL, data offset, next header, ...).
    for (let k = rand(4); k > 0; k--) p.data[rand(Math.min(p.data.length, 80))] = rand(256);
    if (rand(4) === 0) p.data = p.data.subarray(0, rand(p.data.length + 1));
    const before = sent.length;
    engine.push(p);
    inputs++;
    for (const s of sent.slice(before)) {
      assert.equal(s.gsoType, 0);
      assert.ok(s.data.length <= 65535);
    }
  }
  const [stats] = engine.stats;
  assert.equal(stats.packetsIn, inputs);
  assert.equal(stats.packetsIn, stats.packetsOut + stats.dropped, 'every packet passed or was dropped with a reason');
  assert.ok(stats.dropped > 0 && stats.packetsOut > 0, `${stats.dropped} dropped, ${stats.packetsOut} passed`);
  assert.ok(![...stats.reasons.keys()].some((r) => /threw|Error|RangeError/i.test(r)), `no stage error: ${[...stats.reasons.keys()].join('; ')}`);
});

test('TAP (Ethernet): every segment carries the frame header, csum_start counts from the frame', () => {
  const { packet, payload, l4, thl } = tcpSuperPacket(4, 4000, 1448);
  const eth = Buffer.from('02000000000202000000000108 00'.replace(/ /g, ''), 'hex');
  const frame = new Packet(Buffer.concat([eth, packet.data]));
  Object.assign(frame, { gsoType: packet.gsoType, gsoSize: packet.gsoSize, vnetFlags: packet.vnetFlags, hdrLen: packet.hdrLen + 14, csumStart: l4 + 14, csumOffset: 16 });
  const ctx = standaloneContext({ linkType: 1 });
  const stage = segmentStage.create({}, ctx);
  const last = stage.process(frame);
  assert.ok(last instanceof Packet, String(last));
  const segs = [...ctx.emitted, last];
  assert.equal(segs.length, 3);
  const joined: Buffer[] = [];
  for (const s of segs) {
    assert.deepEqual(s.data.subarray(0, 14), eth, 'the Ethernet header on every segment');
    const ip = s.data.subarray(14);
    assert.ok(checksumIsValid(ip, 0, 20));
    const len = ip.length - l4;
    assert.ok(checksumIsValid(ip, l4, len, pseudo4(ip, 6, len)), 'TCP checksum');
    joined.push(ip.subarray(l4 + thl));
  }
  assert.deepEqual(Buffer.concat(joined), payload);
});
