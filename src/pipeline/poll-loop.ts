/**
 * The worker's device loop without io_uring: a blocking poll() on the devices and the wake eventfd, then a
 * drain of each readable device with read() until EAGAIN (at most DRAIN_BUDGET packets a wake), each
 * packet written with write(). Two system calls per packet; the fallback where io_uring cannot be had
 * (./uring-loop.ts), and TUNPIPE_IO=poll. A device with offloads: as in ./uring-loop.ts, the virtio_net_hdr
 * is read into the Packet and written back in front of it, in place where it has room.
 */
import * as libc from '../device/libc.js';
import { countWrite, readError } from '../device/tun.js';
import { DRAIN_BUDGET, MAX_PACKET, SlabReader } from '../device/slab-reader.js';
import { TunpipeError } from '../errors.js';
import { Packet } from '../packet/packet.js';
import { adoptOffloadFrame, hasHeaderRoom, offloadFrame, readVnetHeader, VNET_HDR_SIZE, writeVnetHeader } from '../packet/vnet.js';
import { directSend, linkChanged, linkWatchesOf, onWake, settleAsyncStages, type DeviceLoopContext } from './worker-loop.js';

const EMPTY = Buffer.alloc(0);

export async function runPollLoop(ctx: DeviceLoopContext): Promise<void> {
  const { fds, engine, counters, driver, pipelineOf } = ctx;
  const n = fds.length;
  // No stage keeps packets: every packet is read into one buffer and handed in as one reused Packet, through
  // a view of the right length (one per length seen, kept). Nothing is allocated per packet. Otherwise each
  // packet gets its own Buffer (a view into a slab) and Packet.
  const reuse = engine.packetsReusable;
  const scratch = Buffer.allocUnsafeSlow(MAX_PACKET);
  const scratchAddr = libc.addressOf(scratch);
  const views: (Buffer | undefined)[] = [];
  const reused = new Packet(scratch);
  const reader = new SlabReader();
  // The view the last packet was read into: a packet still in it is written by address (comparing
  // identities is cheaper than asking a Buffer for its ArrayBuffer and offset, and koffi has no Buffer to
  // unwrap).
  let lastView: Buffer | null = null;
  /** lastView starts past the virtio_net_hdr (its device has offloads): at this address. */
  const scratchPastHeader = scratchAddr + VNET_HDR_SIZE;
  let lastPastHeader = false;
  /** Views past the header, by length read, for devices with offloads. */
  const offloadViews: (Buffer | undefined)[] = [];
  const { offload } = ctx;
  /**
   * To a device with offloads: the virtio_net_hdr from the packet's fields, written into its header room
   * when it has some (the read buffer, a segment, a copy made with room), else in front of a copy.
   */
  const writeOffload = (p: Packet, fd: number): number => {
    const d = p.data;
    if (d === lastView && lastPastHeader) {
      // Where it was read, behind its header's room (compared by identity: cheaper than by ArrayBuffer).
      writeVnetHeader(scratch, 0, p);
      return libc.writeAt(fd, scratchAddr, d.length + VNET_HDR_SIZE);
    }
    if (hasHeaderRoom(p)) {
      const h = p.head!;
      writeVnetHeader(h, p.headAt, p);
      return libc.writeAt(fd, h === scratch ? scratchAddr : libc.addressOf(h) + p.headAt, d.length + VNET_HDR_SIZE);
    }
    const frame = offloadFrame(p);
    return libc.write(fd, frame, frame.length);
  };
  const write = (p: Packet, device: number) => {
    driver.packetsOut++;
    const d = p.data;
    const fd = fds[device];
    if (offload[device]) countWrite(counters[device], writeOffload(p, fd));
    else countWrite(counters[device], d === lastView ? libc.writeAt(fd, lastPastHeader ? scratchPastHeader : scratchAddr, d.length) : libc.write(fd, d, d.length));
  };
  // Packets released ahead of their time while the driver waits it out (Driver.woke), written when it has
  // come; they are the time-holding stages' own copies (or made from them), which nothing reuses.
  let holding = false;
  const heldPackets: Packet[] = [];
  const heldDevices: number[] = [];
  const sendHeld = () => {
    holding = false;
    for (let i = 0; i < heldPackets.length; i++) write(heldPackets[i], heldDevices[i]);
    heldPackets.length = 0;
    heldDevices.length = 0;
  };
  ctx.send = (p: Packet, device: number) => {
    if (holding) {
      heldPackets.push(p);
      heldDevices.push(device);
    } else write(p, device);
  };

  /** The next packet of device `d`, null when none waits, or an errno value. */
  const readPacket = (d: number): Packet | null | number => {
    const fd = fds[d];
    if (!reuse) {
      const got = reader.read(fd);
      if (got === null || typeof got === 'number') return got;
      return offload[d] ? adoptOffloadFrame(new Packet(got), got) : new Packet(got);
    }
    const len = libc.readAt(fd, scratchAddr, MAX_PACKET);
    if (len < 0) {
      const e = libc.errno();
      return e === libc.E.EAGAIN || e === libc.E.EINTR ? null : e;
    }
    if (len === 0) return null;
    if (offload[d] && len >= VNET_HDR_SIZE) {
      // The packet starts past its virtio_net_hdr, whose fields go into the Packet; the header's room stays.
      lastView = offloadViews[len] ?? (offloadViews[len] = scratch.subarray(VNET_HDR_SIZE, len));
      lastPastHeader = true;
      reused.reset(lastView);
      readVnetHeader(scratch, 0, reused);
      reused.head = scratch;
      return reused;
    }
    // A frame shorter than the header (the kernel never gives one) is an empty packet.
    lastView = offload[d] ? EMPTY : (views[len] ?? (views[len] = scratch.subarray(0, len)));
    lastPastHeader = false;
    reused.reset(lastView);
    return reused;
  };
  /** Reads device `d` until it is empty or the budget is spent; returns the budget left. */
  const drain = (d: number, budget: number): number => {
    const pipeline = pipelineOf[d];
    const c = counters[d];
    for (; budget > 0 && !driver.stopped; budget--) {
      const p = readPacket(d);
      if (p === null) break;
      if (typeof p === 'number') {
        driver.stopWith('error', readError(ctx.names[d], p));
        break;
      }
      c.rxPackets++;
      c.rxBytes += p.data.length;
      driver.push(pipeline, p);
    }
    return budget;
  };

  // pollfd { int fd; short events; short revents } for each device that a pipeline reads, then the eventfd,
  // then the link watches.
  const polled = [...Array(n).keys()].filter((d) => pipelineOf[d] >= 0);
  const watches = linkWatchesOf(ctx);
  const entries = polled.length + 1 + watches.length;
  const fdset = Buffer.alloc(8 * entries);
  polled.forEach((d, i) => {
    fdset.writeInt32LE(fds[d], 8 * i);
    fdset.writeInt16LE(libc.POLLIN, 8 * i + 4);
  });
  const wakeAt = 8 * polled.length;
  const wakeValue = Buffer.alloc(8);
  fdset.writeInt32LE(ctx.wake, wakeAt);
  fdset.writeInt16LE(libc.POLLIN, wakeAt + 4);
  const watchAt = wakeAt + 8;
  watches.forEach((fd, i) => {
    fdset.writeInt32LE(fd, watchAt + 8 * i);
    fdset.writeInt16LE(libc.POLLIN, watchAt + 8 * i + 4);
  });
  /** One turn: waits, then takes what came; a plain function so that V8 optimizes it (see uring-loop.ts). */
  const turn = (): boolean => {
    for (let i = 0; i < entries; i++) fdset.writeInt16LE(0, 8 * i + 6);
    const busy = engine.busy;
    const wait = driver.waitMs(busy);
    const rc = libc.pollSyncPrecise(fdset, entries, wait);
    holding = true;
    driver.woke(sendHeld);
    if (holding) sendHeld();
    if (rc === 0) driver.idle(busy);
    if (rc < 0) {
      const e = libc.errno();
      if (e !== libc.E.EINTR) driver.stopWith('error', new TunpipeError(`waiting for ${ctx.names.join(', ')} failed: ${libc.errnoName(e)}`));
      return false;
    }
    if (rc > 0) {
      if (fdset.readInt16LE(wakeAt + 6) !== 0) {
        const got = libc.read(ctx.wake, wakeValue, 8);
        onWake(ctx, got === 8 ? Number(wakeValue.readBigUInt64LE(0)) : 1);
      }
      let budget = DRAIN_BUDGET;
      let read = false;
      driver.beginBatch();
      for (let i = 0; i < polled.length; i++) {
        const revents = fdset.readInt16LE(8 * i + 6);
        if (revents & libc.POLLIN) {
          budget = drain(polled[i], budget);
          read = true;
        } else if (revents & (libc.POLLERR | libc.POLLHUP | libc.POLLNVAL)) {
          driver.stopWith('error', readError(ctx.names[polled[i]], libc.E.EBADFD));
        }
      }
      if (read) driver.endBatch(true);
      for (let i = 0; i < watches.length; i++) {
        const revents = fdset.readInt16LE(watchAt + 8 * i + 6);
        if (revents & libc.POLLIN) linkChanged(ctx, watches[i]);
        // A watch that fails is left out (a negative fd is passed over); the devices' own errors still stop the run.
        else if (revents !== 0) fdset.writeInt32LE(-1, watchAt + 8 * i);
      }
    }
    return busy || engine.busy;
  };
  while (!driver.stopped) if (turn()) await settleAsyncStages(engine);
  // Packets that asynchronous stages let through while the engine closes are written at once.
  ctx.send = directSend(ctx);
}
