/**
 * Ethernet on TAP: parse reads Ethernet II and VLAN tags (the EtherType decides) when the link type is 1,
 * swap-addrs exchanges the MAC addresses too; frames built here byte by byte, independently of the code.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Packet } from '../../src/packet/packet.js';
import parse, { parseFrame, parsePacket, PARSE_DROP } from '../../transforms/parse.js';
import swapAddrs, { swapFrameAddresses, swapPacketAddresses } from '../../transforms/swap-addrs.js';
import { standaloneContext } from '../../src/pipeline/standalone.js';
import { echoRequest, echoRequest6, ipv6Bytes, referenceChecksum } from '../helpers/packets.js';
import { frame, PEER_MAC, TAP_MAC } from '../helpers/frames.js';


function arpRequest(): Buffer {
  const a = Buffer.alloc(28);
  a.writeUInt16BE(1, 0);
  a.writeUInt16BE(0x0800, 2);
  a[4] = 6;
  a[5] = 4;
  a.writeUInt16BE(1, 6);
  TAP_MAC.copy(a, 8);
  Buffer.from([198, 18, 0, 1]).copy(a, 14);
  Buffer.from([198, 18, 0, 2]).copy(a, 24);
  return a;
}

const ethernetCtx = () => standaloneContext({ linkType: 1 });

test('parse on Ethernet: an IPv4 frame gets l3 14 and the IP view', () => {
  const ip = echoRequest();
  const p = new Packet(frame(0x0800, ip));
  const inst = parse.create({}, ethernetCtx());
  assert.equal(inst.process(p), p);
  assert.equal(p.l3, 14);
  assert.equal(p.version, 4);
  assert.equal(p.l4, 34);
  assert.equal(p.proto, 1);
  assert.equal(p.end, 14 + ip.length);
});

test('parse on Ethernet: IPv6, behind an 802.1ad and an 802.1Q tag', () => {
  const ip = echoRequest6();
  const p = new Packet(frame(0x86dd, ip, [[0x88a8, 100], [0x8100, 7]]));
  assert.equal(parseFrame(p), p);
  assert.equal(p.l3, 22);
  assert.equal(p.version, 6);
  assert.equal(p.proto, 58);
  assert.equal(p.l4, 22 + 40);
  assert.equal(p.end, 22 + ip.length);
});

test('parse on Ethernet: ARP passes with version 0 and l3 at the ARP message; padding past it ignored', () => {
  const p = new Packet(Buffer.concat([frame(0x0806, arpRequest(), [[0x8100, 5]]), Buffer.alloc(14)]));
  assert.equal(parseFrame(p), p);
  assert.equal(p.version, 0);
  assert.equal(p.l3, 18);
  assert.equal(p.end, 18 + 28);
});

test('parse on Ethernet: what is dropped, each with its reason', () => {
  const cases: [Buffer, string][] = [
    [Buffer.alloc(13), PARSE_DROP.short],
    [frame(0x8100, Buffer.alloc(1)), PARSE_DROP.vlanShort],
    [frame(0x0800, Buffer.alloc(4), [[0x88a8, 1], [0x8100, 2], [0x8100, 3]]), PARSE_DROP.vlanDepth],
    [frame(0x0042, Buffer.alloc(40)), PARSE_DROP.llc],
    [frame(0x88cc, Buffer.alloc(40)), PARSE_DROP.unknown],
    [frame(0x0800, echoRequest6()), PARSE_DROP.notV4],
    [frame(0x86dd, echoRequest()), PARSE_DROP.notV6],
    [frame(0x0800, Buffer.alloc(0)), PARSE_DROP.empty],
    [frame(0x0806, arpRequest().subarray(0, 27)), 'ARP shorter than its 28 bytes'],
  ];
  for (const [buf, reason] of cases) assert.equal(parseFrame(new Packet(buf)), reason, reason);
  const ip = echoRequest();
  ip[10] ^= 0xff;
  assert.match(String(parseFrame(new Packet(frame(0x0800, ip)))), /checksum/i, 'the IP checks run past the link header');
  const wrongArp = arpRequest();
  wrongArp[4] = 8;
  assert.match(String(parseFrame(new Packet(frame(0x0806, wrongArp)))), /ARP not for Ethernet/);
});

test('parse on RAW keeps the plain IP parser: an Ethernet frame there is not IP', () => {
  const inst = parse.create({}, standaloneContext({ linkType: 101 }));
  assert.equal(inst.process, parsePacket, 'decided at create time: no Ethernet work per packet on TUN');
  assert.equal(inst.process(new Packet(frame(0x0800, echoRequest()))), PARSE_DROP.version);
});

test('swap-addrs on Ethernet: MACs and IPv4 addresses exchanged, tags and the rest untouched, checksums valid', () => {
  const ip = echoRequest({ src: '198.18.0.1', dst: '198.18.0.2' });
  const buf = frame(0x0800, ip, [[0x8100, 42]]);
  const before = Buffer.from(buf);
  const p = new Packet(buf);
  assert.equal(parseFrame(p), p);
  const inst = swapAddrs.create({}, ethernetCtx());
  assert.equal(inst.process, swapFrameAddresses);
  assert.equal(inst.process(p), p);
  assert.deepEqual(p.data.subarray(0, 6), TAP_MAC, 'to the sender');
  assert.deepEqual(p.data.subarray(6, 12), PEER_MAC, 'from the address it was sent to');
  assert.deepEqual(p.data.subarray(12, 18), before.subarray(12, 18), 'tag and EtherType kept');
  assert.deepEqual([...p.data.subarray(18 + 12, 18 + 16)], [198, 18, 0, 2]);
  assert.deepEqual([...p.data.subarray(18 + 16, 18 + 20)], [198, 18, 0, 1]);
  assert.equal(referenceChecksum(p.data.subarray(18, 38)), 0);
  assert.deepEqual(p.data.subarray(38), before.subarray(38));
});

test('swap-addrs on Ethernet: IPv6 addresses too; on RAW the plain swap, and unparsed frames dropped', () => {
  const p = new Packet(frame(0x86dd, echoRequest6({ src: '2001:db8::1', dst: '2001:db8::2' })));
  parseFrame(p);
  assert.equal(swapFrameAddresses(p), p);
  assert.deepEqual(p.data.subarray(0, 6), TAP_MAC);
  assert.deepEqual(p.data.subarray(14 + 8, 14 + 24), ipv6Bytes('2001:db8::2'));
  assert.deepEqual(p.data.subarray(14 + 24, 14 + 40), ipv6Bytes('2001:db8::1'));
  assert.equal(swapAddrs.create({}, standaloneContext({ linkType: 101 })).process, swapPacketAddresses);
  assert.match(String(swapFrameAddresses(new Packet(frame(0x0800, echoRequest())))), /not parsed/);
});
