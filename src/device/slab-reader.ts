/**
 * Reads packets from a non-blocking fd into slabs: each packet gets its own Buffer, a view into a 128 KiB
 * slab, so reading allocates one small view per packet and a slab per ~64 KiB of traffic. Slabs are small
 * enough to die young: under a flood memory stays flat. read() gets the slab's address, so no Buffer view
 * is made for the call itself.
 */
import * as libc from './libc.js';

/** The largest packet a read can return (a 64 KiB IP datagram, behind a virtio_net_hdr with offloads): room kept free in the slab. */
export const MAX_PACKET = 65536 + 256;
const SLAB_SIZE = 1 << 17;

/**
 * Packets read per wake at most. Past it the batch ends (captures are written) and the stop signal is
 * seen before the next wake drains on: under a flood a drain could otherwise go on for as long as the
 * sender keeps up.
 */
export const DRAIN_BUDGET = 256;

export class SlabReader {
  private slab = Buffer.allocUnsafeSlow(SLAB_SIZE);
  private slabAddr = libc.addressOf(this.slab);
  private used = 0;

  /** Starts a new slab when this one has less room left than the largest packet. */
  private ensureRoom(): void {
    if (SLAB_SIZE - this.used >= MAX_PACKET) return;
    // Packets handed out keep the old slab alive for as long as anyone holds them.
    this.slab = Buffer.allocUnsafeSlow(SLAB_SIZE);
    this.slabAddr = libc.addressOf(this.slab);
    this.used = 0;
  }

  private carve(n: number): Buffer {
    const b = this.slab.subarray(this.used, this.used + n);
    // Keep packets 8-byte aligned in the slab.
    this.used += (n + 7) & ~7;
    return b;
  }

  /** Reads one packet. Returns its Buffer, null when none is waiting (EAGAIN/EINTR), or an errno value. */
  read(fd: number): Buffer | null | number {
    this.ensureRoom();
    const n = libc.readAt(fd, this.slabAddr + this.used, MAX_PACKET);
    if (n < 0) {
      const e = libc.errno();
      return e === libc.E.EAGAIN || e === libc.E.EINTR ? null : e;
    }
    return n === 0 ? null : this.carve(n);
  }

  /** Copies a packet that was read elsewhere (libuv's first read of a wake) into the slab. */
  adopt(src: Buffer, n: number): Buffer {
    this.ensureRoom();
    const b = this.carve(n);
    src.copy(b, 0, 0, n);
    return b;
  }
}
