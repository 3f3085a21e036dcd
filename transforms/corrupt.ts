/**
 * corrupt: flips one random bit in the payload of some packets, as a noisy link would, and leaves every
 * checksum as it is, so that the receiver sees real corruption (a TCP/UDP/ICMP checksum error).
 *
 * Arguments:
 *   P        probability that a packet is corrupted (positional, required): `1%`, `0.01`
 *   seed=N   seed of the choices of packet and bit (default: a fresh one, printed on exit)
 * In: parsed packets (put `parse` before it). The payload is what follows the transport header: TCP past its
 * data offset, UDP/ICMP/ICMPv6 past their 8 bytes, another protocol or a later IPv4 fragment past the IP
 * header. Out: every packet; a chosen one with exactly one bit of its payload flipped. Put it after
 * `checksum` (which would otherwise repair the damage). A chosen packet with no payload (a bare TCP ACK)
 * passes unchanged and is counted in the report; unparsed packets pass unchanged, with a warning.
 * Nothing is dropped. netem flips a bit anywhere in the packet, headers included; this stage spares the
 * headers so that the packet still reaches the application's socket layer and fails its checksum there.
 */
import { defineStage, type StageContext, type StageInstance, type StageResult } from '../src/pipeline/stage.js';
import type { Packet } from '../src/packet/packet.js';
import { FRAGMENT_OFFSET_MASK, OFF_FLAGS_FRAGMENT, PROTO_ICMP, PROTO_TCP, PROTO_UDP } from '../src/packet/ipv4.js';
import { SeededRandom, SEED_ARG, seedOf } from '../src/impair/random.js';

const PROTO_ICMPV6 = 58;

/** Where a parsed packet's payload starts (past IP and transport headers); p.end when it has none. */
export function payloadStart(p: Packet): number {
  const b = p.data;
  if (p.version === 4 && ((b[p.l3 + OFF_FLAGS_FRAGMENT] << 8) | b[p.l3 + OFF_FLAGS_FRAGMENT + 1]) & FRAGMENT_OFFSET_MASK) return p.l4;
  let header = 0;
  if (p.proto === PROTO_TCP) header = p.l4 + 12 < p.end ? (b[p.l4 + 12] >> 4) * 4 : p.end - p.l4;
  else if (p.proto === PROTO_UDP || p.proto === PROTO_ICMP || p.proto === PROTO_ICMPV6) header = 8;
  return Math.min(p.l4 + header, p.end);
}

export class CorruptStage implements StageInstance {
  private readonly rng: SeededRandom;
  corrupted = 0;
  noPayload = 0;
  unparsed = 0;

  constructor(readonly probability: number, readonly seed: number, private readonly ctx: StageContext) {
    this.rng = new SeededRandom(seed, 'corrupt');
  }

  process(p: Packet): StageResult {
    if (!this.rng.chance(this.probability)) return p;
    if (p.version === 0) {
      this.unparsed++;
      this.ctx.warn('packets are not parsed, so their payload is unknown: put parse before corrupt (passing them unchanged)');
      return p;
    }
    const start = payloadStart(p);
    const bits = (p.end - start) * 8;
    if (bits === 0) {
      this.noPayload++;
      return p;
    }
    const bit = this.rng.below(bits);
    p.data[start + (bit >>> 3)] ^= 0x80 >>> (bit & 7);
    this.corrupted++;
    return p;
  }

  report(): string {
    return `${this.corrupted} corrupted, ${this.noPayload} chosen with no payload, ${this.unparsed} not parsed; seed=${this.seed}`;
  }
}

const corruptStage = defineStage({
  name: 'corrupt',
  // It changes bytes and records nothing, on purpose: a checksum after it recomputes, as it must.
  recordsChanges: false,
  keepsPackets: false,
  summary: 'flip one random payload bit in some packets, checksums left wrong',
  help: [
    'Each parsed packet is chosen with probability P; one random bit of its payload (past the IP and',
    'transport headers) is flipped, and no checksum is fixed, so the receiver sees a checksum error. Put it',
    "after checksum. Nothing is dropped. seed=N replays the same choices. Example: 'parse | icmp-echo | checksum | corrupt 0.1%'",
  ].join('\n'),
  args: [{ name: 'p', type: 'probability', positional: true, required: true, description: 'probability that a packet is corrupted' }, SEED_ARG],
  create: (args, ctx) => new CorruptStage(args.p as number, seedOf(args.seed), ctx),
});
export default corruptStage;
