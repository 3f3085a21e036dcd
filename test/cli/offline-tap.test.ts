/**
 * Ethernet captures offline (what a TAP device gives): `parse | neighbor ... | icmp-echo | checksum` on a
 * pcap of link type 1 answers ARP, neighbour solicitations and pings (also behind a VLAN tag) and drops an
 * unknown EtherType; tshark, reading the output as Ethernet, is the judge of every answer and checksum.
 * Without device addresses, neighbor asks for for=.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { runCli, tempDir } from '../helpers/cli.js';
import { echoRequest, echoRequest6, ipv6Bytes, ipv6Datagram, pseudoHeader6And, referenceChecksum, writePcap } from '../helpers/packets.js';
import { frame, TAP_MAC } from '../helpers/frames.js';
import { tsharkFields } from '../helpers/capture-tools.js';
import { parseCounters, stageRow } from '../helpers/counters.js';

const OUR = '02:00:00:00:00:02';
const OUR_MAC = Buffer.from([2, 0, 0, 0, 0, 2]);

function arpRequest(target: number[]): Buffer {
  const a = Buffer.alloc(28);
  a.writeUInt16BE(1, 0);
  a.writeUInt16BE(0x0800, 2);
  a[4] = 6;
  a[5] = 4;
  a.writeUInt16BE(1, 6);
  TAP_MAC.copy(a, 8);
  Buffer.from([198, 18, 0, 1]).copy(a, 14);
  Buffer.from(target).copy(a, 24);
  return a;
}

function solicitation(target: string): Buffer {
  const icmp = Buffer.concat([Buffer.from([135, 0, 0, 0, 0, 0, 0, 0]), ipv6Bytes(target), Buffer.from([1, 1]), TAP_MAC]);
  const dst = 'ff02::1:ff00:2';
  icmp.writeUInt16BE(referenceChecksum(pseudoHeader6And(ipv6Bytes('2001:db8::1'), ipv6Bytes(dst), 58, icmp)), 2);
  return ipv6Datagram({ src: '2001:db8::1', dst, hopLimit: 255 }, 58, icmp);
}

test('an Ethernet capture: ARP, NDP and pings answered (tshark checks each), an unknown EtherType dropped', async () => {
  const dir = tempDir();
  try {
    const input = dir.file('in.pcap');
    const output = dir.file('out.pcap');
    writePcap(
      input,
      [
        frame(0x0806, arpRequest([198, 18, 0, 2]), [], Buffer.alloc(6, 0xff), TAP_MAC),
        frame(0x86dd, solicitation('2001:db8::2'), [], Buffer.from([0x33, 0x33, 0xff, 0, 0, 2]), TAP_MAC),
        frame(0x0800, echoRequest({ src: '198.18.0.1', dst: '198.18.0.2' }), [], OUR_MAC, TAP_MAC),
        frame(0x86dd, echoRequest6({ src: '2001:db8::1', dst: '2001:db8::2' }), [], OUR_MAC, TAP_MAC),
        frame(0x0800, echoRequest({ src: '198.18.0.1', dst: '198.18.0.2' }), [[0x8100, 12]], OUR_MAC, TAP_MAC),
        frame(0x88cc, Buffer.alloc(46), [], Buffer.from([0x01, 0x80, 0xc2, 0, 0, 0x0e]), TAP_MAC),
      ],
      { linkType: 1 },
    );
    const r = await runCli(['--read', input, '--write', output, `parse | neighbor mac=${OUR} for=198.18.0.0/24,2001:db8::/64 | icmp-echo | checksum`]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(stageRow(parseCounters(r.stderr), 'parse').reasons.keys().next().value ?? '', /EtherType neither IPv4, IPv6 nor ARP/);
    const rows = tsharkFields(
      output,
      ['frame.encap_type', 'eth.dst', 'eth.src', 'vlan.id', 'arp.opcode', 'arp.src.hw_mac', 'arp.src.proto_ipv4', 'arp.dst.hw_mac', 'arp.dst.proto_ipv4', 'icmp.type', 'icmpv6.type', 'ipv6.hlim', 'icmpv6.nd.na.flag.s', 'icmpv6.nd.na.flag.o', 'icmpv6.nd.na.target_address', 'icmpv6.opt.linkaddr', 'icmpv6.checksum.status', 'icmp.checksum.status'],
      ['-o', 'ip.check_checksum:TRUE'],
    );
    assert.equal(rows.length, 5, rows.join('\n'));
    const tap = '2a:60:86:ba:bb:a9';
    for (const row of rows) {
      assert.equal(row[0], '1', 'Ethernet');
      assert.equal(row[1], tap, 'to the tap');
      assert.equal(row[2], OUR, 'from our MAC');
    }
    const [arp, na, echo4, echo6, tagged] = rows;
    // Wireshark's checksum status: 1 good (0 would be bad).
    assert.deepEqual(arp.slice(4, 9), ['2', OUR, '198.18.0.2', tap, '198.18.0.1']);
    assert.deepEqual(na.slice(10, 17), ['136', '255', '1', '1', '2001:db8::2', OUR, '1']);
    assert.equal(echo4[9], '0');
    assert.equal(echo4[17], '1', 'ICMP checksum good (Wireshark: 1)');
    assert.equal(echo6[10], '129');
    assert.equal(echo6[16], '1', 'ICMPv6 checksum good');
    assert.equal(tagged[3], '12', 'the VLAN tag stays');
    assert.equal(tagged[9], '0');
  } finally {
    dir.remove();
  }
});

test('neighbor on a capture without for=: a one-line error that says to name the addresses', async () => {
  const dir = tempDir();
  try {
    const input = dir.file('in.pcap');
    writePcap(input, [frame(0x0806, arpRequest([198, 18, 0, 2]))], { linkType: 1 });
    const r = await runCli(['--read', input, 'parse | neighbor']);
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /no addresses to answer for: the input is not a device; name them with for=ADDRESSES/);
  } finally {
    dir.remove();
  }
});
