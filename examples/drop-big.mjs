// A user stage for tunpipe: drops packets longer than MAX bytes, passes the rest.
// Runs as is, no build step:
//   tunpipe --read in.pcap --write out.pcap 'parse | ./examples/drop-big.mjs max=512 | icmp-echo | checksum'
//
// The contract: the default export is called once per packet with the packet and the parsed arguments.
// Return the packet to pass it on, a string to drop it (the string is the reason counted on exit),
// or null to drop it as "filtered". It may be async: tunpipe then queues packets in front of it (bounded
// by --queue) and counts what overflows.
// `packet.data` is a Buffer holding the IP packet; after `parse`, `packet.length` is the IP total length,
// `packet.l4` the offset of the transport header and `packet.proto` its protocol number.

export const summary = 'drop packets longer than MAX bytes';

export const args = [
  { name: 'max', type: 'number', positional: true, default: 1000, min: 0, description: 'largest packet passed, in bytes' },
];

export default function dropBig(packet, { max }) {
  return packet.length > max ? `longer than ${max} bytes` : packet;
}
