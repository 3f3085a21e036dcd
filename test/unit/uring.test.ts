/**
 * DeviceRing (src/device/uring.ts) on a SOCK_SEQPACKET socket pair, which keeps packet boundaries like a
 * TUN device and needs no namespace: the multishot read, the buffer ring (recycling, running out), writes
 * from a receive buffer and from a Buffer of our own, the wake eventfd, cancelling, and timeouts. The loop
 * around it is tested on real devices (test/device/echo.test.ts and the fault tests).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import koffi from 'koffi';
import * as libc from '../../src/device/libc.js';
import { CQE_F_BUFFER, CQE_F_MORE, DeviceRing, TAG_READ, TAG_WAKE, TAG_WRITE_BUFFER, TAG_WRITE_OWNED } from '../../src/device/uring.js';

const socketpair = koffi.load('libc.so.6').func('int socketpair(int domain, int type, int protocol, _Out_ int *sv)') as (d: number, t: number, p: number, sv: Int32Array) => number;
const AF_UNIX = 1;
const SOCK_SEQPACKET = 5;
const SOCK_NONBLOCK = 0o4000;
const ENOBUFS = 105;

interface Completion {
  tag: number;
  result: number;
  flags: number;
}

/** A ring on one end of a socket pair; `peer` is the other end, `wake` an eventfd. */
function setup(buffers = 4, bufferSize = 2048): { ring: DeviceRing; peer: number; end: number; wake: number; close: () => void } {
  const sv = new Int32Array(2);
  assert.equal(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK | libc.SOCK_CLOEXEC, 0, sv), 0, 'socketpair');
  const wake = libc.eventfd(0, libc.EFD_CLOEXEC | libc.EFD_NONBLOCK);
  const ring = DeviceRing.open({ deviceFd: sv[0], wakeFd: wake, buffers, bufferSize });
  if (typeof ring === 'string') assert.fail(`io_uring is needed for these tests: ${ring}`);
  return {
    ring,
    end: sv[0],
    peer: sv[1],
    wake,
    close: () => {
      ring.close();
      for (const fd of [sv[0], sv[1], wake]) libc.close(fd);
    },
  };
}

function send(fd: number, text: string): void {
  const b = Buffer.from(text);
  assert.equal(libc.write(fd, b, b.length), b.length);
}

function receive(fd: number): string | null {
  const b = Buffer.alloc(4096);
  const n = libc.read(fd, b, b.length);
  return n < 0 ? null : b.subarray(0, n).toString();
}

/** Waits for completions (at most 1 s) and returns them all. */
function collect(ring: DeviceRing, atLeast = 1): Completion[] {
  const out: Completion[] = [];
  const deadline = Date.now() + 1000;
  while (out.length < atLeast && Date.now() < deadline) {
    const e = ring.enter(1, 100);
    assert.ok(e === 0 || e === DeviceRing.ETIME || e === libc.E.EINTR, `enter: ${libc.errnoName(e)}`);
    ring.drainCompletions((tag, result, flags) => out.push({ tag, result, flags }));
  }
  return out;
}

function textOf(ring: DeviceRing, c: Completion): string {
  const id = c.flags >>> 16;
  return ring.buffers.subarray(id * ring.bufferSize, id * ring.bufferSize + c.result).toString();
}

test('every waiting packet is read into a buffer of its own, one completion each, and the read stays armed', () => {
  const { ring, peer, close } = setup();
  try {
    for (const t of ['one', 'two!', 'three']) send(peer, t);
    ring.armRead();
    const got = collect(ring, 3);
    assert.deepEqual(got.map((c) => c.tag), [TAG_READ, TAG_READ, TAG_READ]);
    for (const c of got) assert.equal(c.flags & (CQE_F_BUFFER | CQE_F_MORE), CQE_F_BUFFER | CQE_F_MORE);
    assert.deepEqual(got.map((c) => textOf(ring, c)), ['one', 'two!', 'three']);
    assert.equal(new Set(got.map((c) => c.flags >>> 16)).size, 3, 'three different buffers');
    // Still armed: a later packet comes without arming again.
    send(peer, 'four');
    const later = collect(ring);
    assert.equal(textOf(ring, later[0]), 'four');
  } finally {
    close();
  }
});

test('writes from a receive buffer and from a Buffer of our own leave in the order they were queued', () => {
  const { ring, peer, end, close } = setup();
  try {
    send(peer, 'request');
    ring.armRead();
    const [read] = collect(ring);
    const id = read.flags >>> 16;
    ring.buffers.write('REPLY', id * ring.bufferSize);
    const own = Buffer.from('second');
    ring.queueWrite(ring.bufferAddress(id), 5, TAG_WRITE_BUFFER | id);
    ring.queueWrite(libc.addressOf(own), own.length, TAG_WRITE_OWNED | 7);
    assert.equal(ring.queued, 2);
    const done = collect(ring, 2);
    assert.deepEqual(
      done.map((c) => [c.tag, c.result]),
      [
        [TAG_WRITE_BUFFER | id, 5],
        [TAG_WRITE_OWNED | 7, 6],
      ],
    );
    assert.equal(ring.queued, 0);
    assert.equal(receive(peer), 'REPLY');
    assert.equal(receive(peer), 'second');
    assert.equal(receive(end), null, 'nothing came back to our end');
  } finally {
    close();
  }
});

test('when the buffers run out the read ends with ENOBUFS; recycled buffers let it go on, packets kept waiting', () => {
  const { ring, peer, close } = setup(2);
  try {
    for (const t of ['a', 'b', 'c']) send(peer, t);
    ring.armRead();
    const got = collect(ring, 3);
    assert.deepEqual(got.slice(0, 2).map((c) => textOf(ring, c)), ['a', 'b']);
    assert.equal(got[2].tag, TAG_READ);
    assert.equal(got[2].result, -ENOBUFS);
    assert.equal(got[2].flags & CQE_F_MORE, 0, 'the read has ended');
    ring.tookBuffer();
    ring.tookBuffer();
    assert.equal(ring.buffersAvailable, 0);
    for (const c of got.slice(0, 2)) ring.recycle(c.flags >>> 16);
    ring.publish();
    assert.equal(ring.buffersAvailable, 2);
    ring.armRead();
    const rest = collect(ring);
    assert.equal(textOf(ring, rest[0]), 'c', 'the packet that found no buffer was not lost');
  } finally {
    close();
  }
});

test('the wake eventfd completes the wake read; cancelling ends the multishot read; a wait times out with ETIME', () => {
  const { ring, wake, close } = setup();
  try {
    ring.armWake();
    ring.armRead();
    // A wait may also return early with nothing (after the kernel ran work of the ring's own); soon one
    // runs out its time.
    let e = 0;
    for (let i = 0; i < 5 && e !== DeviceRing.ETIME; i++) e = ring.enter(1, 20);
    assert.equal(e, DeviceRing.ETIME, 'nothing arrives: the wait times out');
    assert.equal(ring.hasCompletions, false);
    const one = Buffer.alloc(8);
    one.writeBigUInt64LE(1n);
    libc.write(wake, one, 8);
    assert.deepEqual(collect(ring).map((c) => c.tag), [TAG_WAKE]);
    ring.cancelRead();
    const done = collect(ring, 2);
    const read = done.find((c) => c.tag === TAG_READ);
    assert.ok(read, 'the read completes once more');
    assert.equal(read.flags & CQE_F_MORE, 0, 'and is over');
  } finally {
    close();
  }
});

test('open() gives the reason instead of a ring when the device cannot be registered', () => {
  const wake = libc.eventfd(0, libc.EFD_CLOEXEC);
  try {
    const r = DeviceRing.open({ deviceFd: 100_000, wakeFd: wake });
    assert.equal(typeof r, 'string');
    assert.match(r as string, /registering the device with io_uring: EBADF/);
  } finally {
    libc.close(wake);
  }
});
