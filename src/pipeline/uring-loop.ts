/**
 * The worker's device loop on io_uring (../device/uring.ts): one ring for every device, each a fixed file
 * with its own multishot read that keeps its packets coming into its own group of receive buffers (a buffer
 * knows its device); each wake, the packets that arrived go through the engine, the
 * replies are queued as writes and submitted with the next wait (every 32 within a long batch, and before
 * a batch end that writes a capture), and the loop waits for more: one io_uring_enter a wake, however many
 * packets it brought, where read() and write() take two system calls a packet (the README has the counts).
 *
 * When no stage keeps packets (every built-in), a packet is processed where the kernel put it, through a
 * view of its receive buffer, and a reply still in that buffer is written from it; the buffer goes back to
 * the kernel when its write completes. Otherwise each packet is copied out (into a slab, as the poll loop
 * reads) and its buffer goes back at once. Packets the pipeline makes (fragments, reassembled datagrams)
 * are written from their own Buffers, kept referenced until their write completes.
 *
 * On a device with offloads every packet starts with a virtio_net_hdr: the engine gets a view past it (cached
 * like the others) with the header's fields in the Packet, and a packet written to such a device gets its
 * header written back into the 10 bytes before it when they are its own (a receive buffer, a segment), so
 * that it goes out from there, with no copy.
 */
import * as libc from '../device/libc.js';
import { countWrite, countWriteResult, readError } from '../device/tun.js';
import { DRAIN_BUDGET, SlabReader } from '../device/slab-reader.js';
import { CQE_F_BUFFER, CQE_F_MORE, DeviceRing, TAG_KIND, TAG_POLL, TAG_READ, TAG_WAKE, TAG_WRITE_BUFFER, TAG_WRITE_OWNED, writeTag } from '../device/uring.js';
import { TunpipeError } from '../errors.js';
import { Packet } from '../packet/packet.js';
import { adoptOffloadFrame, hasHeaderRoom, offloadFrame, readVnetHeader, VNET_HDR_SIZE, writeVnetHeader } from '../packet/vnet.js';
import { directSend, linkChanged, linkWatchesOf, onWake, settleAsyncStages, type DeviceLoopContext } from './worker-loop.js';

const EMPTY = Buffer.alloc(0);
const ECANCELED = 125;
/** Writes from the pipeline's own Buffers in flight at once; past it they are written with write(). */
const MAX_OWNED_WRITES = 1024;
/** How long closing waits for the last writes and the cancelled reads to complete. */
const CLOSE_WAIT_MS = 1000;
/** Writes queued before they are submitted mid-batch: bounds how long a reply waits behind its batch. */
const SUBMIT_EARLY = 32;

export async function runUringLoop(ctx: DeviceLoopContext, ring: DeviceRing): Promise<void> {
  const { engine, counters, driver, pipelineOf } = ctx;
  const devices = ctx.fds.length;
  const reuse = engine.packetsReusable;
  const bufferSize = ring.bufferSize;
  const reused = new Packet(Buffer.alloc(0));
  const ringMemory = ring.buffers.buffer;
  const allBuffers = ring.bufferCount * devices;
  /**
   * The last view made of each receive buffer (past its virtio_net_hdr on a device with offloads); made
   * again only when the length changes. With offloads, a view of the whole buffer too: the header's room.
   */
  const views: (Buffer | undefined)[] = new Array(allBuffers);
  const heads: (Buffer | undefined)[] = new Array(allBuffers);
  const { offload } = ctx;
  const writesFrom = new Uint16Array(allBuffers);
  const owned: (Buffer | undefined)[] = [];
  const freeOwned: number[] = [];
  let ownedInFlight = 0;
  const reader = reuse ? null : new SlabReader();
  // The packet being processed, in receive buffer `current` through `currentView` (reuse only).
  let current = -1;
  let currentView: Buffer | null = null;
  /** Where currentView starts in its receive buffer: past the virtio_net_hdr on a device with offloads. */
  let currentAt = 0;
  /** Per device: its multishot read is armed; only devices that a pipeline reads are read. */
  const readArmed = new Array<boolean>(devices).fill(false);
  const reads = [...Array(devices).keys()].filter((d) => pipelineOf[d] >= 0);
  const watches = linkWatchesOf(ctx);
  let stopping = false;

  // Writes queued since the last submission. A write to a TUN device completes while it is submitted, so
  // a wait asks for their completions plus one more: otherwise they alone would end it, and every wake
  // would cost a second io_uring_enter.
  let writesQueued = 0;
  const submit = () => {
    ring.enter(0);
    writesQueued = 0;
  };
  const sendQueued = () => {
    if (writesQueued > 0) submit();
  };
  const makeRoom = () => {
    if (ring.sqSpace === 0) submit();
  };
  /** Queues a write of `len` bytes at `addr` in `from`, a Buffer of the pipeline's own, kept until it completes. */
  const writeOwned = (from: Buffer, addr: number, len: number, device: number) => {
    if (ownedInFlight >= MAX_OWNED_WRITES) {
      // Queued writes go first, so packets leave in the order they came.
      submit();
      countWrite(counters[device], libc.writeAt(ctx.fds[device], addr, len));
      return;
    }
    const slot = freeOwned.length ? freeOwned.pop()! : owned.length;
    owned[slot] = from;
    ownedInFlight++;
    ring.queueWrite(addr, len, writeTag(TAG_WRITE_OWNED, slot, device), device);
    if (++writesQueued >= SUBMIT_EARLY) submit();
  };
  /** Queues a write of `len` bytes at `addr` in receive buffer `id`, which waits for it before going back. */
  const writeFromBuffer = (id: number, addr: number, len: number, device: number) => {
    writesFrom[id]++;
    ring.queueWrite(addr, len, writeTag(TAG_WRITE_BUFFER, id, device), device);
    if (++writesQueued >= SUBMIT_EARLY) submit();
  };
  /**
   * To a device with offloads: the virtio_net_hdr from the packet's fields in front of its bytes. Written
   * into the packet's header room when it has some (a receive buffer, a segment, a copy made with room),
   * else the packet is copied behind a header (a packet a stage made).
   */
  const sendOffload = (p: Packet, device: number) => {
    const d = p.data;
    const len = d.length + VNET_HDR_SIZE;
    if (d === currentView && currentAt === VNET_HDR_SIZE) {
      // Where the packet was read, behind its header's room at the start of the buffer (compared by
      // identity: asking a Buffer for its ArrayBuffer costs more).
      writeVnetHeader(heads[current]!, 0, p);
      writeFromBuffer(current, ring.bufferAddress(current), len, device);
      return;
    }
    if (hasHeaderRoom(p)) {
      const h = p.head!;
      writeVnetHeader(h, p.headAt, p);
      if (d.buffer === ringMemory) {
        // A receive buffer's header room is at its start.
        const id = Math.floor((d.byteOffset - VNET_HDR_SIZE) / bufferSize);
        writeFromBuffer(id, ring.bufferAddress(id), len, device);
      } else {
        writeOwned(h, libc.addressOf(h) + p.headAt, len, device);
      }
      return;
    }
    const frame = offloadFrame(p);
    writeOwned(frame, libc.addressOf(frame), len, device);
  };
  ctx.send = (p: Packet, device: number) => {
    driver.packetsOut++;
    const d = p.data;
    makeRoom();
    if (offload[device]) {
      sendOffload(p, device);
      return;
    }
    if (d === currentView) {
      writeFromBuffer(current, ring.bufferAddress(current) + currentAt, d.length, device);
      return;
    }
    if (d.buffer === ringMemory) {
      // Part of a receive buffer (a stage cut the packet short): that buffer too waits for the write.
      const id = Math.floor(d.byteOffset / bufferSize);
      writeFromBuffer(id, ring.bufferAddress(0) + d.byteOffset, d.length, device);
      return;
    }
    writeOwned(d, libc.addressOf(d), d.length, device);
  };

  const handlePacket = (device: number, id: number, len: number) => {
    const c = counters[device];
    c.rxPackets++;
    c.rxBytes += len;
    const base = id * bufferSize;
    let p: Packet;
    if (offload[device]) {
      // The packet starts past its virtio_net_hdr; the header's fields go into the Packet.
      if (reuse) {
        const at = len < VNET_HDR_SIZE ? len : VNET_HDR_SIZE;
        let v = views[id];
        if (v === undefined || v.length !== len - at) v = views[id] = ring.buffers.subarray(base + at, base + len);
        current = id;
        currentView = v;
        currentAt = at;
        reused.reset(v);
        if (at === VNET_HDR_SIZE) {
          const h = heads[id] ?? (heads[id] = ring.buffers.subarray(base, base + bufferSize));
          readVnetHeader(h, 0, reused);
          reused.head = h;
        }
        p = reused;
      } else {
        p = adoptOffloadFrame(new Packet(EMPTY), reader!.adopt(ring.buffers.subarray(base, base + len), len));
        ring.recycle(id);
      }
    } else if (reuse) {
      let v = views[id];
      if (v === undefined || v.length !== len) v = views[id] = ring.buffers.subarray(base, base + len);
      current = id;
      currentView = v;
      currentAt = 0;
      reused.reset(v);
      p = reused;
    } else {
      p = new Packet(reader!.adopt(ring.buffers.subarray(base, base + len), len));
      ring.recycle(id);
    }
    driver.push(pipelineOf[device], p);
    if (reuse) {
      currentView = null;
      current = -1;
      if (writesFrom[id] === 0) ring.recycle(id);
    }
  };

  const take = (tag: number, result: number, flags: number) => {
    const kind = tag & TAG_KIND;
    if (kind === 0) {
      const low = tag & 0xff;
      if (low === TAG_READ) {
        const device = (tag >> 8) & 0xff;
        if (!(flags & CQE_F_MORE)) readArmed[device] = false;
        if (flags & CQE_F_BUFFER) {
          ring.tookBuffer(device);
          const id = flags >>> 16;
          // Read after a stop (--count reached, a signal): not let in, like packets left in the device's queue.
          if (result > 0 && !driver.stopped) handlePacket(device, id, result);
          else ring.recycle(id);
        } else if (result < 0 && result !== -libc.E.ENOBUFS && result !== -ECANCELED && result !== -libc.E.EINTR && result !== -libc.E.EAGAIN) {
          driver.stopWith('error', readError(ctx.names[device], -result));
        }
      } else if (low === TAG_WAKE && !stopping) {
        onWake(ctx, result === 8 ? ring.wakeValue() : 1);
        if (!driver.stopped) {
          makeRoom();
          ring.armWake();
        }
      } else if (low === TAG_POLL && !stopping && result > 0 && result & libc.POLLIN) {
        // A link watch (a poll that fails is not armed again: the devices' own errors still stop the run).
        const w = (tag >> 8) & 0xff;
        linkChanged(ctx, watches[w]);
        if (!driver.stopped) {
          makeRoom();
          ring.armPoll(watches[w], w);
        }
      }
      return;
    }
    if (kind === TAG_WRITE_BUFFER) {
      const id = tag & 0xffff;
      countWriteResult(counters[tag >>> 24], result);
      if (--writesFrom[id] === 0 && id !== current) ring.recycle(id);
    } else if (kind === TAG_WRITE_OWNED) {
      countWriteResult(counters[tag >>> 24], result);
      const slot = tag & 0xffff;
      owned[slot] = undefined;
      freeOwned.push(slot);
      ownedInFlight--;
    }
  };

  const pendingWrites = () => {
    if (ownedInFlight > 0) return true;
    for (let i = 0; i < writesFrom.length; i++) if (writesFrom[i] !== 0) return true;
    return false;
  };

  ring.armWake();
  watches.forEach((fd, w) => ring.armPoll(fd, w));
  for (const d of reads) {
    ring.armRead(d);
    readArmed[d] = true;
  }
  /**
   * One turn: waits for the device, then takes what came. A plain function, not the async one's loop, so
   * that V8 optimizes it: a function that awaits in its loop keeps that loop in its baseline code, which
   * every wake would run. Returns whether an asynchronous stage has packets to settle.
   */
  const turn = (): boolean => {
    let drained = false;
    for (const d of reads) {
      if (readArmed[d]) continue;
      // The read ended: a burst took every buffer. The writes that hold them complete as they are submitted
      // (a TUN write does); taking their completions gives the buffers back, and the read is armed again.
      // Waiting for more first would wait forever: nothing else is armed to complete.
      sendQueued();
      if (!drained && ring.hasCompletions) {
        ring.drainCompletions(take);
        drained = true;
      }
      ring.publish();
      if (ring.buffersAvailableFor(d) > 0) {
        makeRoom();
        ring.armRead(d);
        readArmed[d] = true;
        counters[d].readsRearmed = (counters[d].readsRearmed ?? 0) + 1;
      }
    }
    ring.publish();
    const busy = engine.busy;
    const want = ring.completionsWaiting + writesQueued + 1;
    writesQueued = 0;
    const e = ring.enter(want, driver.waitMs(busy));
    driver.woke(sendQueued);
    if (e === DeviceRing.ETIME) driver.idle(busy);
    else if (e !== 0 && e !== libc.E.EINTR) {
      driver.stopWith('error', new TunpipeError(`waiting for ${ctx.names.join(', ')} failed: ${libc.errnoName(e)}`));
      return false;
    }
    // Batches of at most DRAIN_BUDGET completions, so at most that many packets, as on the other paths
    // (with many receive buffers one wake can find more): each batch ends with the stages' batch end.
    while (ring.hasCompletions) {
      // One time for the whole batch, when a stage reads it (a capture).
      driver.beginBatch();
      ring.drainCompletions(take, DRAIN_BUDGET);
      // When the batch's end has something to write (a capture's records), the packets go out first, so that
      // it is not part of their round trip. Otherwise they go out with the next wait, in the same
      // io_uring_enter: one system call a wake, where read() and write() take two a packet.
      if (writesQueued > 0 && engine.pendingOutput) submit();
      driver.endBatch(true);
    }
    return busy || engine.busy;
  };
  while (!driver.stopped) if (turn()) await settleAsyncStages(engine);

  // Stop reading; let the queued and in-flight writes complete, so every packet counted out was written.
  stopping = true;
  for (const d of reads) {
    if (!readArmed[d]) continue;
    makeRoom();
    ring.cancelRead(d);
  }
  const deadline = Date.now() + CLOSE_WAIT_MS;
  while ((readArmed.some(Boolean) || pendingWrites() || ring.queued > 0) && Date.now() < deadline) {
    ring.publish();
    const e = ring.enter(1, Math.max(1, deadline - Date.now()));
    if (e !== 0 && e !== DeviceRing.ETIME && e !== libc.E.EINTR) break;
    ring.drainCompletions(take);
  }
  ring.close();
  // Packets that asynchronous stages let through while the engine closes are written at once.
  ctx.send = directSend(ctx);
}
