/** src/packet/checksum.ts against the plain RFC 1071 oracle, and RFC 1624 incremental updates against full recomputation. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  adjustChecksum,
  adjustChecksumAt,
  checksumIsValid,
  fold16,
  internetChecksum,
  sum16,
  wordDelta,
  writeChecksumAt,
} from '../../src/packet/checksum.js';
import { referenceChecksum } from '../helpers/packets.js';
import { withSeed, type Random } from './seeded-random.js';

test('internetChecksum matches the reference on random buffers of every length 0..200 at random offsets', () =>
  withSeed((rng) => {
    for (let len = 0; len <= 200; len++) {
      for (let k = 0; k < 4; k++) {
        const start = rng.int(7);
        // Random bytes after the range too: an odd range must pad with zero, never read the next byte.
        const buf = rng.bytes(start + len + 3);
        const want = referenceChecksum(buf.subarray(start, start + len));
        assert.equal(internetChecksum(buf, start, len), want, `len ${len} start ${start}`);
        assert.equal(fold16(sum16(buf, start, len)), ~want & 0xffff, `sum16 len ${len}`);
      }
    }
  }));

test('sum16 of an odd range pads the last byte with zero, not with the byte after it', () => {
  const buf = Buffer.from([0x12, 0x34, 0x56, 0xff]);
  assert.equal(sum16(buf, 0, 3), 0x1234 + 0x5600);
  assert.equal(sum16(buf, 1, 1), 0x3400);
  assert.equal(sum16(buf, 2, 0), 0);
});

test('the `initial` sum (a pseudo-header) gives the checksum of the concatenation', () =>
  withSeed((rng) => {
    for (let i = 0; i < 200; i++) {
      const pseudo = rng.bytes(12);
      const data = rng.bytes(rng.int(100));
      const want = referenceChecksum(Buffer.concat([pseudo, data]));
      assert.equal(internetChecksum(data, 0, data.length, sum16(pseudo, 0, 12)), want);
    }
  }));

test('carry corners: all-0xFF runs, sums beyond 32 bits, data summing to 0x0000 and to 0xFFFF', () => {
  for (const len of [1, 2, 3, 4, 5, 255, 256, 257, 65535, 65536, 65537, 300_001]) {
    const ff = Buffer.alloc(len, 0xff);
    assert.equal(internetChecksum(ff, 0, len), referenceChecksum(ff), `0xFF x ${len}`);
  }
  // 2^18 bytes of 0xFF: an unfolded sum of 0xFFFF * 131072, past 2^32, where a `>>> 16` fold would break.
  // From an odd offset, so the byte-pair path (not the folded 32-bit path for aligned data) carries it.
  const big = Buffer.alloc(1 << 18, 0xff);
  assert.ok(sum16(big, 1, big.length - 1) > 2 ** 32);
  assert.equal(internetChecksum(big, 1, big.length - 1), referenceChecksum(big.subarray(1)));
  assert.equal(internetChecksum(big, 0, big.length), referenceChecksum(big));
  const mixed = Buffer.alloc(1 << 18);
  for (let i = 0; i < mixed.length; i++) mixed[i] = i % 2 ? 0xfe : 0xff;
  assert.equal(internetChecksum(mixed, 0, mixed.length), referenceChecksum(mixed));

  // All zeros sum to 0: the checksum is 0xFFFF. Non-zero data summing to ones'-complement zero: 0x0000.
  assert.equal(internetChecksum(Buffer.alloc(10), 0, 10), 0xffff);
  assert.equal(internetChecksum(Buffer.alloc(0), 0, 0), 0xffff);
  assert.equal(internetChecksum(Buffer.from([0xff, 0xff]), 0, 2), 0x0000);
  assert.equal(internetChecksum(Buffer.from([0x12, 0x34, 0xed, 0xcb]), 0, 4), 0x0000);
  assert.equal(internetChecksum(Buffer.from([0x80, 0x00, 0x80, 0x00, 0xff, 0xfe]), 0, 6), 0x0000);
});

test('fold16 folds with end-around carry and never turns a non-zero sum into 0', () => {
  assert.equal(fold16(0), 0);
  assert.equal(fold16(0xffff), 0xffff);
  assert.equal(fold16(0x10000), 1);
  assert.equal(fold16(0x1fffe), 0xffff);
  assert.equal(fold16(0xffff * 0x10001), 0xffff);
  // 2^40 = 2^(16+16+8): ones'-complement 2^8; 2^48 folds to 1.
  assert.equal(fold16(2 ** 40), 0x100);
  assert.equal(fold16(2 ** 48), 1);
});

test('checksumIsValid accepts data with its checksum written in, and rejects any single bit flip', () =>
  withSeed((rng) => {
    for (let i = 0; i < 300; i++) {
      const len = 4 + rng.int(120);
      const start = rng.int(5);
      const buf = rng.bytes(start + len);
      const at = start + 2 * rng.int(Math.floor(len / 2));
      writeChecksumAt(buf, start, len, at);
      assert.equal(referenceChecksum(buf.subarray(start, start + len)), 0, 'written checksum verifies with the oracle');
      assert.ok(checksumIsValid(buf, start, len));
      const bit = rng.int(len * 8);
      buf[start + (bit >> 3)] ^= 1 << (bit & 7);
      assert.ok(!checksumIsValid(buf, start, len), `flipped bit ${bit}`);
    }
    // All-zero data needs 0xFFFF; 0x0000 there is wrong. Both zeros verify for data summing to 0xFFFF.
    assert.ok(checksumIsValid(Buffer.from([0, 0, 0xff, 0xff]), 0, 4));
    assert.ok(!checksumIsValid(Buffer.from([0, 0, 0, 0]), 0, 4));
    assert.ok(checksumIsValid(Buffer.from([0xff, 0xff, 0x00, 0x00]), 0, 4));
    assert.ok(checksumIsValid(Buffer.from([0xff, 0xff, 0xff, 0xff]), 0, 4));
  }));

test('RFC 1624 section 4 example: HC 0xDD2F, m 0x5555 -> 0x3285 gives 0x0000 (equation 3), not 0xFFFF', () => {
  assert.equal(adjustChecksum(0xdd2f, wordDelta(0x5555, 0x3285)), 0x0000);
});

/** A random packet-like range with a checksum field, its checksum written in full. */
function randomRange(rng: Random): { buf: Buffer; start: number; len: number; at: number } {
  const start = 2 * rng.int(4);
  const len = 2 + rng.int(160);
  const buf = rng.bytes(start + len + 2);
  const at = start + 2 * rng.int(Math.floor(len / 2));
  writeChecksumAt(buf, start, len, at);
  return { buf, start, len, at };
}

/** Word offsets (even, relative to start, whole words inside the range) other than the checksum field. */
function wordOffsets(start: number, len: number, at: number): number[] {
  const out: number[] = [];
  for (let o = start; o + 1 < start + len; o += 2) if (o !== at) out.push(o);
  return out;
}

/** Changes words of `buf` as given, returning the sum of RFC 1624 terms. */
function applyChanges(buf: Buffer, changes: Array<[number, number]>): number {
  let adj = 0;
  for (const [o, v] of changes) {
    adj += wordDelta(buf.readUInt16BE(o), v);
    buf.writeUInt16BE(v, o);
  }
  return adj;
}

/** What a full recomputation writes for the range as it is now. */
function fullChecksum(buf: Buffer, start: number, len: number, at: number): number {
  const copy = Buffer.from(buf);
  writeChecksumAt(copy, start, len, at);
  return copy.readUInt16BE(at);
}

test('adjustChecksumAt equals full recomputation on thousands of random packets and word changes', () =>
  withSeed((rng) => {
    for (let i = 0; i < 5000; i++) {
      const { buf, start, len, at } = randomRange(rng);
      const words = wordOffsets(start, len, at);
      if (words.length === 0) continue;
      const changes: Array<[number, number]> = [];
      const n = 1 + rng.int(6);
      for (let k = 0; k < n; k++) {
        const o = words[rng.int(words.length)];
        // Some changes rewrite a word to itself, some hit the same word twice, some use the 0/0xFFFF extremes.
        const r = rng.int(5);
        const v = r === 0 ? buf.readUInt16BE(o) : r === 1 ? 0 : r === 2 ? 0xffff : rng.int(0x10000);
        changes.push([o, v]);
      }
      const adj = applyChanges(buf, changes);
      adjustChecksumAt(buf, start, len, at, adj);
      assert.equal(buf.readUInt16BE(at), fullChecksum(buf, start, len, at), `packet ${i}: len ${len}, changes ${JSON.stringify(changes)}`);
      assert.ok(checksumIsValid(buf, start, len));
    }
  }));

test('adjustChecksumAt: data changed to sum to ones-complement zero (not all zero) gets 0x0000 like a full recomputation', () =>
  withSeed((rng) => {
    for (let i = 0; i < 1000; i++) {
      const { buf, start, len, at } = randomRange(rng);
      const words = wordOffsets(start, len, at);
      if (words.length === 0) continue;
      // Pick the last word's new value so that everything but the checksum field sums to 0xFFFF.
      const target = words[rng.int(words.length)];
      const saved = buf.readUInt16BE(target);
      buf.writeUInt16BE(0, target);
      buf.writeUInt16BE(0, at);
      const rest = fold16(sum16(buf, start, len));
      buf.writeUInt16BE(saved, target);
      buf.writeUInt16BE(fullChecksum(buf, start, len, at), at);
      const v = rest === 0 ? 0xffff : 0xffff - rest;
      const adj = applyChanges(buf, [[target, v]]);
      adjustChecksumAt(buf, start, len, at, adj);
      assert.equal(fullChecksum(buf, start, len, at), 0x0000, 'oracle: the new data sums to 0xFFFF');
      assert.equal(buf.readUInt16BE(at), 0x0000, `packet ${i}`);
    }
  }));

test('adjustChecksumAt: data changed to all zeros gets 0xFFFF (echo reply with id 0, seq 0, no payload)', () =>
  withSeed((rng) => {
    // The ICMP echo request 08 00 F7 FF 00 00 00 00 becomes the reply 00 00 ?? ?? 00 00 00 00.
    const icmp = Buffer.from([0x08, 0x00, 0xf7, 0xff, 0, 0, 0, 0]);
    assert.equal(referenceChecksum(icmp), 0, 'the request is valid');
    const adj = applyChanges(icmp, [[0, 0x0000]]);
    adjustChecksumAt(icmp, 0, 8, 2, adj);
    assert.equal(icmp.readUInt16BE(2), 0xffff);
    assert.equal(referenceChecksum(icmp), 0, 'the reply verifies with the oracle');

    for (let i = 0; i < 500; i++) {
      const { buf, start, len, at } = randomRange(rng);
      const changes = wordOffsets(start, len, at).map((o): [number, number] => [o, 0]);
      if (len % 2) buf[start + len - 1] = 0;
      // The odd last byte was zeroed by hand: recompute, so only the recorded changes are pending.
      writeChecksumAt(buf, start, len, at);
      const adj = applyChanges(buf, changes);
      adjustChecksumAt(buf, start, len, at, adj);
      assert.equal(buf.readUInt16BE(at), 0xffff, `packet ${i} len ${len}`);
    }
  }));

test('adjustChecksum with no change leaves the checksum as it was, also 0x0000 and 0xFFFF', () => {
  for (const c of [0x0000, 0x0001, 0x1234, 0xfffe, 0xffff]) assert.equal(adjustChecksum(c, 0), c);
});
