/**
 * The worker's device loop without io_uring: a blocking poll() on the device and the wake eventfd, then a
 * drain with read() until EAGAIN (at most DRAIN_BUDGET packets), each reply written with write(). Two
 * system calls per packet; the fallback where io_uring cannot be had (./uring-loop.ts), and TUNPIPE_IO=poll.
 */
import * as libc from '../device/libc.js';
import { countWrite, readError } from '../device/tun.js';
import { DRAIN_BUDGET, MAX_PACKET, SlabReader } from '../device/slab-reader.js';
import { TunpipeError } from '../errors.js';
import { Packet } from '../packet/packet.js';
import { wallClock } from '../packet/clock.js';
import { directSend, settleAsyncStages, waitMs, type LoopContext } from './worker-loop.js';

const NO_TIME: [number, number] = [0, 0];

export async function runPollLoop(ctx: LoopContext): Promise<void> {
  const { fd, engine, counters } = ctx;
  // No stage keeps packets: every packet is read into one buffer and handed in as one reused Packet, through
  // a view of the right length (one per length seen, kept). Nothing is allocated per packet. Otherwise each
  // packet gets its own Buffer (a view into a slab) and Packet.
  const reuse = engine.packetsReusable;
  const scratch = Buffer.allocUnsafeSlow(MAX_PACKET);
  const scratchAddr = libc.addressOf(scratch);
  const views: (Buffer | undefined)[] = [];
  const reused = new Packet(scratch);
  const reader = new SlabReader();
  // The view the last packet was read into: a reply still in it is written by address (comparing
  // identities is cheaper than asking a Buffer for its ArrayBuffer and offset, and koffi has no Buffer to
  // unwrap).
  let lastView: Buffer | null = null;
  ctx.send = (p: Packet) => {
    ctx.packetsOut++;
    const d = p.data;
    countWrite(counters, d === lastView ? libc.writeAt(fd, scratchAddr, d.length) : libc.write(fd, d, d.length));
  };

  /** The next packet, null when none waits, or an errno value. */
  const readPacket = (): Packet | null | number => {
    if (!reuse) {
      const got = reader.read(fd);
      return got === null || typeof got === 'number' ? got : new Packet(got);
    }
    const n = libc.readAt(fd, scratchAddr, MAX_PACKET);
    if (n < 0) {
      const e = libc.errno();
      return e === libc.E.EAGAIN || e === libc.E.EINTR ? null : e;
    }
    if (n === 0) return null;
    lastView = views[n] ?? (views[n] = scratch.subarray(0, n));
    reused.reset(lastView);
    return reused;
  };
  const stamps = engine.readsTime;
  const drain = () => {
    // One time for the whole batch, when a stage reads it (a capture).
    const [sec, nsec] = stamps ? wallClock() : NO_TIME;
    for (let budget = DRAIN_BUDGET; budget > 0 && ctx.stoppedBy === null; budget--) {
      const p = readPacket();
      if (p === null) break;
      if (typeof p === 'number') {
        ctx.stopWith('error', readError(ctx.name, p));
        break;
      }
      p.sec = sec;
      p.nsec = nsec;
      counters.rxPackets++;
      counters.rxBytes += p.data.length;
      ctx.packetsIn++;
      engine.push(p);
      if (ctx.packetsIn >= ctx.limit) ctx.stopWith('count');
    }
    engine.endBatch(true);
  };

  const fds = Buffer.alloc(16);
  fds.writeInt32LE(fd, 0);
  fds.writeInt16LE(libc.POLLIN, 4);
  fds.writeInt32LE(ctx.wake, 8);
  fds.writeInt16LE(libc.POLLIN, 12);
  while (ctx.stoppedBy === null) {
    fds.writeInt16LE(0, 6);
    fds.writeInt16LE(0, 14);
    const busy = engine.busy;
    const rc = libc.pollSync(fds, 2, waitMs(engine, busy));
    if (rc === 0) engine.endBatch(busy);
    if (rc < 0) {
      const e = libc.errno();
      if (e !== libc.E.EINTR) ctx.stopWith('error', new TunpipeError(`waiting for ${ctx.name} failed: ${libc.errnoName(e)}`));
      continue;
    }
    if (fds.readInt16LE(14) !== 0) ctx.stopWith('signal');
    const revents = fds.readInt16LE(6);
    if (revents & libc.POLLIN) drain();
    else if (revents & (libc.POLLERR | libc.POLLHUP | libc.POLLNVAL)) ctx.stopWith('error', readError(ctx.name, libc.E.EBADFD));
    if (busy || engine.busy) await settleAsyncStages(engine);
  }
  // Packets that asynchronous stages let through while the engine closes are written at once.
  ctx.send = directSend(ctx);
}
