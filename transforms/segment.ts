/**
 * segment: splits TCP and UDP super-packets into segments and completes offloaded checksums: the
 * segmentation a network card would do (GSO in user space, src/packet/gso.ts), for packets read from a
 * device opened with offloads (`--offload`).
 *
 * Arguments: none.
 * In: packets from a device with offloads, parsed or not (on TAP the Ethernet header is skipped). Out:
 * - a TCP super-packet (virtio gso_type TCPV4 or TCPV6) leaves as segments of gso_size payload bytes each,
 *   each with its own IP header (length, IPv4 identification +1 per segment, header checksum), TCP header
 *   (sequence number, FIN/PSH only on the last, CWR only on the first) and full TCP checksum;
 * - a UDP super-packet (UDP_L4, "USO") leaves as one datagram per gso_size payload bytes, each with its own
 *   UDP header, length and checksum;
 * - a packet with a partial checksum (NEEDS_CSUM) gets it completed (the ones' complement sum from
 *   csum_start to the end, stored at csum_start + csum_offset);
 * - every other packet passes unchanged.
 * What leaves carries no offload: gso_type NONE, flags 0, checksums complete, so a stage after it may read
 * and change it as any packet. All segments but the last are emitted ahead of it (counted as emitted).
 * Drops (counted by reason): malformed virtio headers (gso_size 0, hdr_len or csum_start/csum_offset past the
 * end, an unknown gso_type, UFO), a super-packet whose IP version or protocol does not match its gso_type,
 * a truncated IP, TCP or UDP header, an IP fragment.
 *
 * tunpipe puts it in by itself where it is needed, on a pipeline that reads a device with offloads: before
 * the first stage that does not take super-packets (its declaration has no `superPackets: true`: checksum,
 * icmp-echo, corrupt, a user's stage, ...) and before a sink that cannot take them (a device without
 * offloads). Writing it explicitly segments at that point instead (`segment | pcap seg.pcap`).
 */
import { defineStage, type StageResult } from '../src/pipeline/stage.js';
import type { Packet } from '../src/packet/packet.js';
import { completeChecksum, segmentSuperPacket, SegmentSlabs } from '../src/packet/gso.js';
import { GSO_NONE, VNET_F_NEEDS_CSUM } from '../src/packet/vnet.js';
import { ethernetPayload } from '../src/packet/ethernet.js';
import { LINKTYPE_ETHERNET } from '../src/pcap/format.js';

const segment = defineStage({
  name: 'segment',
  keepsPackets: false,
  recordsChanges: true,
  superPackets: true,
  summary: 'split TCP/UDP super-packets into segments, complete offloaded checksums (user-space GSO)',
  help: [
    'For packets from a device opened with --offload: a TCP or UDP super-packet (up to 64 KiB, virtio gso_type',
    'TCPV4, TCPV6 or UDP_L4) leaves as the segments of gso_size payload bytes a link would carry, each with',
    'complete checksums; a partial checksum (NEEDS_CSUM) is completed; other packets pass unchanged.',
    'tunpipe inserts it by itself before the first stage that needs segments and before a device without',
    'offloads; write it to segment earlier (before a capture: `segment | pcap seg.pcap`).',
    'Malformed virtio headers are dropped, counted by reason.',
  ].join('\n'),
  args: [],
  create(_args, ctx) {
    const slabs = new SegmentSlabs();
    const emit = (seg: Packet) => ctx.emit(seg);
    const ethernet = ctx.linkType === LINKTYPE_ETHERNET;
    return {
      process(p: Packet): StageResult {
        if (p.gsoType !== GSO_NONE) {
          let l3 = p.l3;
          if (p.version === 0 && ethernet) {
            const at = ethernetPayload(p.data);
            if (typeof at === 'string') return at;
            l3 = at;
          }
          return segmentSuperPacket(p, l3, slabs, emit);
        }
        if ((p.vnetFlags & VNET_F_NEEDS_CSUM) !== 0) return completeChecksum(p) ?? p;
        // DATA_VALID would tell a receiving kernel to skip its check of bytes a later stage may change.
        p.vnetFlags = 0;
        return p;
      },
    };
  },
});
export default segment;
