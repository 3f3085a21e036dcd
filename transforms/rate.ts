/**
 * rate: limits a stream to a rate with a token bucket, as a slow link or a shaper does.
 *
 * Arguments:
 *   RATE            the rate (positional, required): `10mbit`, `1gbit`, `500kbit`, `500kbps` (bytes/s, as tc)
 *   burst=SIZE      the bucket's depth: bytes that may leave at once after a pause (default 64KiB, so that
 *                   the largest IP packet fits)
 *   limit=SIZE|TIME the queue in front of the bucket, bounded in bytes (`limit=100kB`: bytes held) or in
 *                   time (`limit=50ms`: no packet waits longer); a bare number is bytes. Default 50ms.
 * The bucket counts IP bytes: from the IP header to the end of the datagram (p.end - p.l3), no link header,
 * no framing overhead. It fills at RATE up to `burst`; a packet leaves when the bucket holds its length,
 * which it then takes out. Packets leave in the order they came. On a device with offloads (--offload) a
 * TCP/UDP super-packet counts with its whole IP length (one set of headers and the payload of all its
 * segments) and leaves whole: a burst of up to 64 KiB, within the default burst.
 * In: any packets. Out: the same packets at the times the bucket allows, each timestamp set to its departure
 * (offline, the output file shows the stream spaced as the link would space it). A packet that may leave at
 * once, with nothing queued ahead of it, passes straight through.
 * Drops (counted): a packet that does not fit the queue ("rate queue full (limit)"), a packet longer than `burst`
 * (it could never leave). No packet-count limit: the bounds derive from what the user wrote; with a time
 * limit the bytes held stay within RATE × TIME plus one packet.
 */
import { defineStage, HELD, type StageContext, type StageInstance, type StageResult } from '../src/pipeline/stage.js';
import type { Packet } from '../src/packet/packet.js';
import { arrivalOf, copyPacket, heldBytes, HoldingStage } from '../src/impair/held.js';
import { describeLimit, parseQueueLimit, queueLimit, type QueueLimit } from '../src/impair/limit.js';

export const RATE_DROP = { full: 'rate queue full (limit)', tooLong: 'longer than the bucket (raise burst=)' } as const;

export const RATE_DEFAULT_BURST = 64 * 1024;
export const RATE_DEFAULT_LIMIT = '50ms';

export interface RateOptions {
  /** Bits per second. */
  rate: number;
  /** Bytes. */
  burst: number;
  limit: QueueLimit;
}

/** IP bytes of a packet, as the bucket counts them. */
export function ipBytes(p: Packet): number {
  return p.end - p.l3;
}

export class RateStage extends HoldingStage implements StageInstance {
  private readonly bytesPerMs: number;
  /** Tokens (bytes) in the bucket at `tokensAt`, the departure time of the last packet. */
  private tokens: number;
  private tokensAt = -Infinity;
  /** Bytes sent, for the report. */
  bytesOut = 0;

  constructor(
    readonly options: RateOptions,
    ctx: StageContext,
  ) {
    super(ctx);
    this.bytesPerMs = options.rate / 8 / 1000;
    this.tokens = options.burst;
  }

  process(p: Packet): StageResult {
    const ctx = this.ctx;
    const now = ctx.now();
    if (this.queue.length > 0 && this.queue.nextDue() <= now) this.tick(now);
    const len = ipBytes(p);
    const burst = this.options.burst;
    if (len > burst) return RATE_DROP.tooLong;
    const arrival = arrivalOf(ctx, p);
    // The packet's turn comes when it has arrived and the one before it has left.
    const start = arrival > this.tokensAt ? arrival : this.tokensAt;
    let tokens = this.tokens + (start - this.tokensAt) * this.bytesPerMs;
    if (!(tokens < burst)) tokens = burst; // also catches Infinity - Infinity on the first packet
    const due = tokens >= len ? start : start + (len - tokens) / this.bytesPerMs;
    const limit = this.options.limit;
    if (limit.kind === 'time' ? due - arrival > limit.ms : this.queue.bytes + heldBytes(p) > limit.bytes) {
      return RATE_DROP.full;
    }
    this.tokens = tokens >= len ? tokens - len : 0;
    this.tokensAt = due;
    this.bytesOut += len;
    if (this.queue.length === 0 && due <= now) {
      if (due !== arrival) ctx.setTime(p, due);
      return p;
    }
    this.queue.push(copyPacket(p), due);
    return HELD;
  }


  report(): string {
    return `${this.bytesOut} IP bytes let through; held ${this.queue.length} packets (${this.queue.bytes} bytes), at most ${this.queue.peakBytes} bytes; limit ${describeLimit(this.options.limit)}`;
  }
}

const rateStage = defineStage({
  name: 'rate',
  recordsChanges: true,
  superPackets: true,
  keepsPackets: false,
  readsTime: true,
  summary: 'limit the rate with a token bucket (IP bytes), queue bounded in bytes or time',
  help: [
    'A token bucket that counts IP bytes (IP header to end of datagram; no link header or framing): it fills',
    'at RATE up to burst bytes; a packet leaves when the bucket holds its length. Order is kept; offline each',
    'timestamp moves to its departure. The queue ahead of the bucket is bounded by limit: a size (bytes held)',
    `or a time (longest wait); default ${RATE_DEFAULT_LIMIT}, burst 64KiB. Drops: "${RATE_DROP.full}",`,
    `"${RATE_DROP.tooLong}". No packet-count limit. Rates: 10mbit, 1gbit, 500kbit, 500kbps (bytes/s).`,
    "Examples: 'rate 10mbit', 'rate 1mbit burst=3000 limit=100kB', 'rate 20mbit limit=20ms'",
  ].join('\n'),
  args: [
    { name: 'rate', type: 'rate', positional: true, required: true, min: 1, description: 'the rate: 10mbit, 1gbit, 500kbit, 500kbps (bytes/s)' },
    { name: 'burst', type: 'size', default: RATE_DEFAULT_BURST, min: 1, description: 'bucket depth in bytes: what may leave at once after a pause (64KiB: the largest IP packet fits)' },
    { name: 'limit', type: 'string', placeholder: 'SIZE|TIME', default: RATE_DEFAULT_LIMIT, description: 'queue bound: a size (100kB: bytes held) or a time (50ms: longest wait a packet may have); a bare number is bytes' },
  ],
  checkArgs: (args) => {
    const limit = parseQueueLimit(String(args.limit ?? RATE_DEFAULT_LIMIT));
    return typeof limit === 'string' ? limit : null;
  },
  create: (args, ctx) =>
    new RateStage(
      {
        rate: args.rate as number,
        burst: (args.burst as number | undefined) ?? RATE_DEFAULT_BURST,
        limit: queueLimit('rate', String(args.limit ?? RATE_DEFAULT_LIMIT)),
      },
      ctx,
    ),
});
export default rateStage;
