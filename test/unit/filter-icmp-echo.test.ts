/** transforms/filter-icmp-echo.ts: what passes, and each drop reason. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Packet } from '../../src/packet/packet.js';
import { checkEchoRequest, ECHO_DROP } from '../../transforms/filter-icmp-echo.js';
import { echoRequest, referenceChecksum } from '../helpers/packets.js';
import { fixIpHeaderChecksum, ipv4Packet, ipv6Packet, parsed, udpSegment } from './builders.js';

/** An echo request with ICMP code `code` (Linux answers any code). */
function withCode(code: number): Buffer {
  const b = echoRequest();
  b[21] = code;
  b.writeUInt16BE(0, 22);
  b.writeUInt16BE(referenceChecksum(b.subarray(20)), 22);
  return b;
}

test('a valid echo request passes unchanged, with or without options, DF set or not, id/seq 0, any code', () => {
  for (const buf of [
    withCode(1),
    withCode(255),
    echoRequest(),
    echoRequest({ options: Buffer.alloc(8, 1) }),
    echoRequest({ frag: 0x0000 }),
    echoRequest({ id: 0, seq: 0, payload: Buffer.alloc(0) }),
    echoRequest({ payload: Buffer.alloc(1473, 0xab) }),
    echoRequest({ src: '223.255.255.254', dst: '10.0.0.1' }),
  ]) {
    const copy = Buffer.from(buf);
    const p = parsed(buf);
    assert.equal(checkEchoRequest(p), p);
    assert.deepEqual(p.data, copy);
  }
});

test('filter-icmp-echo drops each kind of packet with its reason', () => {
  const shortIcmp = Buffer.from(echoRequest().subarray(0, 27));
  shortIcmp.writeUInt16BE(27, 2);
  const badIcmpSum = echoRequest();
  badIcmpSum[30] ^= 0x10;
  const cases: Array<[string, Packet | Buffer, string]> = [
    ['unparsed', new Packet(echoRequest()), ECHO_DROP.unparsed],
    ['IPv6 echo request with a bad checksum', parsed(ipv6Packet(58, Buffer.from([128, 0, 0, 0, 0, 1, 0, 1]))), ECHO_DROP.checksum6],
    ['UDP', ipv4Packet({ proto: 17, payload: udpSegment(Buffer.alloc(8)) }), ECHO_DROP.notIcmp],
    ['TCP', ipv4Packet({ proto: 6, payload: Buffer.alloc(20) }), ECHO_DROP.notIcmp],
    ['echo reply', echoRequest({ type: 0 }), ECHO_DROP.notEcho],
    ['timestamp request', echoRequest({ type: 13 }), ECHO_DROP.notEcho],
    ['ICMP of 7 bytes', fixIpHeaderChecksum(shortIcmp), ECHO_DROP.short],
    ['ICMP of 0 bytes', ipv4Packet({ proto: 1, payload: Buffer.alloc(0) }), ECHO_DROP.short],
    ['bad ICMP checksum', badIcmpSum, ECHO_DROP.checksum],
    ['first fragment (MF)', echoRequest({ frag: 0x2000 }), ECHO_DROP.fragment],
    ['last fragment (offset 1)', echoRequest({ frag: 0x0001 }), ECHO_DROP.fragment],
    ['middle fragment, DF bit too', echoRequest({ frag: 0x6000 | 0x1fff }), ECHO_DROP.fragment],
    ['source 0.0.0.0', echoRequest({ src: '0.0.0.0' }), ECHO_DROP.source],
    ['source 0.1.2.3', echoRequest({ src: '0.1.2.3' }), ECHO_DROP.source],
    ['source 224.0.0.1', echoRequest({ src: '224.0.0.1' }), ECHO_DROP.source],
    ['source 239.1.1.1', echoRequest({ src: '239.1.1.1' }), ECHO_DROP.source],
    ['source 240.0.0.1', echoRequest({ src: '240.0.0.1' }), ECHO_DROP.source],
    ['source 255.255.255.255', echoRequest({ src: '255.255.255.255' }), ECHO_DROP.source],
    ['destination 224.0.0.1', echoRequest({ dst: '224.0.0.1' }), ECHO_DROP.destination],
    ['destination 255.255.255.255', echoRequest({ dst: '255.255.255.255' }), ECHO_DROP.destination],
  ];
  for (const [name, input, reason] of cases) {
    const p = input instanceof Packet ? input : parsed(input);
    assert.equal(checkEchoRequest(p), reason, name);
  }
});
