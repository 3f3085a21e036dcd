/** src/packet/ipv6.ts and transforms/parse.ts on IPv6: the extension-header walk, every kind, truncations. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Packet } from '../../src/packet/packet.js';
import { parsePacket } from '../../transforms/parse.js';
import { IPV6_DROP, pseudoHeaderSum6, unanswerableSource6 } from '../../src/packet/ipv6.js';
import { finishChecksum, sum16 } from '../../src/packet/checksum.js';
import { echoRequest6, fragmentHeader, ipv6Bytes, ipv6Datagram, optionsHeader, pseudoHeader6And, referenceChecksum, routingHeader, type ExtensionHeader } from '../helpers/packets.js';

function parse(buf: Buffer): Packet | string {
  const p = new Packet(buf);
  return parsePacket(p);
}

function ah(): ExtensionHeader {
  // Authentication header: length in 4-byte units minus 2; 12 bytes of header + 12 of ICV = 24 bytes.
  const bytes = Buffer.alloc(24);
  bytes[1] = 24 / 4 - 2;
  return { type: 51, bytes };
}

test('a chain of every kind of extension header: l4 and proto name the upper layer, frag the fragment header', () => {
  const ext = [optionsHeader(0), optionsHeader(60, Buffer.alloc(0), 2), routingHeader(0, [ipv6Bytes('2001:db8::9')]), fragmentHeader(0, false, 7), ah(), optionsHeader(60)];
  const d = echoRequest6({ ext });
  const p = new Packet(d);
  assert.equal(parsePacket(p), p);
  const lengths = 8 + 16 + 24 + 8 + 24 + 8;
  assert.equal(p.version, 6);
  assert.equal(p.l4, 40 + lengths);
  assert.equal(p.proto, 58);
  assert.equal(p.frag, 40 + 8 + 16 + 24);
  assert.equal(p.end, d.length);
  assert.equal(d[p.l4], 128);
});

test('no extension headers: l4 is 40; ESP and "no next header" end the walk', () => {
  const plain = new Packet(echoRequest6());
  assert.equal(parsePacket(plain), plain);
  assert.equal(plain.l4, 40);
  assert.equal(plain.frag, 0);
  for (const nh of [50, 59]) {
    const p = new Packet(ipv6Datagram({ ext: [optionsHeader(60)] }, nh, Buffer.alloc(16, 0xaa)));
    assert.equal(parsePacket(p), p);
    assert.equal(p.proto, nh);
    assert.equal(p.l4, 48);
  }
});

test('a later fragment: the walk stops after the fragment header, its data is not read as headers', () => {
  // The payload starts with bytes that would look like a huge extension header.
  const p = new Packet(ipv6Datagram({ ext: [fragmentHeader(1448, false, 99)] }, 0, Buffer.from([60, 255, 0, 0, 0, 0, 0, 0])));
  assert.equal(parsePacket(p), p);
  assert.equal(p.proto, 0);
  assert.equal(p.l4, 48);
  assert.equal(p.frag, 40);
});

test('every truncated chain is dropped with a reason, never read past the end', () => {
  const ext = [optionsHeader(0), routingHeader(0, [ipv6Bytes('2001:db8::9')]), optionsHeader(60)];
  const whole = ipv6Datagram({ ext }, 59, Buffer.alloc(0));
  for (let cut = 40; cut < whole.length; cut++) {
    const b = Buffer.from(whole.subarray(0, cut));
    b.writeUInt16BE(cut - 40, 4);
    const r = parse(b);
    assert.equal(typeof r, 'string', `cut at ${cut}`);
    assert.ok(r === IPV6_DROP.chainTruncated || r === IPV6_DROP.optionTruncated, `cut at ${cut}: ${String(r)}`);
  }
  assert.ok(parse(whole) instanceof Packet);
  // A first fragment whose chain is cut: RFC 7112.
  const first = ipv6Datagram({ ext: [fragmentHeader(0, true, 5), optionsHeader(60, Buffer.alloc(0), 4)] }, 58, Buffer.alloc(0));
  const cut = Buffer.from(first.subarray(0, 40 + 8 + 16));
  cut.writeUInt16BE(24, 4);
  assert.equal(parse(cut), IPV6_DROP.firstFragmentChain);
  // Payload length past the buffer; shorter than the fixed header.
  const long = echoRequest6();
  long.writeUInt16BE(long.length, 4);
  assert.equal(parse(long), IPV6_DROP.payloadLength);
  assert.equal(parse(echoRequest6().subarray(0, 39)), IPV6_DROP.short);
});

test('malformed chains: hop-by-hop not first, two fragment headers, a chain too long', () => {
  assert.equal(parse(ipv6Datagram({ ext: [optionsHeader(60), optionsHeader(0)] }, 59, Buffer.alloc(0))), IPV6_DROP.hopByHopNotFirst);
  assert.equal(parse(ipv6Datagram({ ext: [fragmentHeader(0, false, 1), fragmentHeader(0, false, 2)] }, 59, Buffer.alloc(0))), IPV6_DROP.fragmentHeaderTwice);
  assert.equal(parse(ipv6Datagram({ ext: new Array(9).fill(0).map(() => optionsHeader(60)) }, 59, Buffer.alloc(0))), IPV6_DROP.chainTooLong);
  assert.ok(parse(ipv6Datagram({ ext: new Array(8).fill(0).map(() => optionsHeader(60)) }, 59, Buffer.alloc(0))) instanceof Packet);
});

test('options as Linux checks them: unknown skip-type passes, discard-types drop, padding rules, lengths', () => {
  const opt = (type: number, len: number, fill = 0) => Buffer.concat([Buffer.from([type, len]), Buffer.alloc(len, fill)]);
  const withOpts = (o: Buffer, units = 1) => parse(ipv6Datagram({ ext: [optionsHeader(60, o, units)] }, 59, Buffer.alloc(0)));
  assert.ok(withOpts(opt(0x1e, 2)) instanceof Packet, 'unknown option, action 00: skipped');
  assert.ok(withOpts(opt(5, 2)) instanceof Packet, 'router alert');
  for (const t of [0x5e, 0x9e, 0xde]) assert.equal(withOpts(opt(t, 2)), IPV6_DROP.optionDiscard, `type 0x${t.toString(16)}`);
  assert.equal(withOpts(opt(1, 6, 0), 2), IPV6_DROP.padding, 'PadN of 8 bytes');
  assert.equal(withOpts(opt(1, 4, 1)), IPV6_DROP.padding, 'PadN with non-zero content');
  assert.equal(withOpts(Buffer.from([0x1e, 9])), IPV6_DROP.optionTruncated, 'option past its header');
  assert.ok(withOpts(Buffer.from([0, 0, 0, 0, 0, 0])) instanceof Packet, 'six Pad1');
  assert.equal(withOpts(Buffer.concat([Buffer.alloc(4), opt(1, 2)]), 2), IPV6_DROP.padding, 'Pad1 run then PadN: 8 bytes of padding');
});

test('the pseudo-header sum (RFC 8200 8.1) gives the reference checksum, odd lengths and carry corners too', () => {
  for (const len of [0, 1, 2, 7, 8, 9, 255, 1001, 65000]) {
    for (const fill of [0x00, 0xff, 0x5a]) {
      const src = Buffer.alloc(16, fill);
      const dst = Buffer.alloc(16, 0xff - fill);
      const msg = Buffer.alloc(len, fill);
      const h = Buffer.alloc(40);
      src.copy(h, 8);
      dst.copy(h, 24);
      const all = Buffer.concat([h, msg]);
      const ours = finishChecksum(sum16(all, 40, len, pseudoHeaderSum6(all, 0, len, 58)));
      assert.equal(ours, referenceChecksum(pseudoHeader6And(src, dst, 58, msg)), `len ${len} fill ${fill}`);
    }
  }
  // An upper-layer length above 65535 (a jumbogram's) folds its high word in.
  const h = Buffer.alloc(40);
  assert.equal(pseudoHeaderSum6(h, 0, 0x10001, 17), 1 + 1 + 17);
});

test('sources a reply may not go to: unspecified, multicast, loopback, IPv4-mapped', () => {
  for (const a of ['::', 'ff02::1', 'ff05::2', '::1', '::ffff:c612:1']) assert.equal(unanswerableSource6(ipv6Bytes(a), 0), true, a);
  for (const a of ['2001:db8::1', 'fe80::1', '::2', 'fc00::1']) assert.equal(unanswerableSource6(ipv6Bytes(a), 0), false, a);
});
