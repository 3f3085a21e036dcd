/**
 * src/pcap/pcapng-reader.ts through openCaptureReader: files converted by tshark from classic captures,
 * hand-made files in both byte orders with several sections, unusual time resolutions and blocks to skip,
 * and hostile files (bad lengths, cut tails, huge lengths, random mutations) that must give a clear error
 * with the offset, never a crash, a hang or a large allocation.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { openCaptureReader } from '../../src/pcap/open-reader.js';
import { PcapReader, type CaptureReader } from '../../src/pcap/reader.js';
import { TunpipeError } from '../../src/errors.js';
import { echoRequest, writePcap } from '../helpers/packets.js';
import { withSeed } from './seeded-random.js';

let dir = '';
before(() => {
  dir = mkdtempSync(join(tmpdir(), 'tunpipe-unit-pcapng-reader-'));
});
after(() => {
  if (dir) rmSync(dir, { recursive: true, force: true });
});

function file(name: string, bytes: Buffer): string {
  const p = join(dir, name);
  writeFileSync(p, bytes);
  return p;
}

interface Got {
  data: Buffer;
  sec: number;
  nsec: number;
}

function readAll(r: CaptureReader, batch = 1000): Got[] {
  const out: Got[] = [];
  while (r.readBatch(batch, (data, sec, nsec) => out.push({ data: Buffer.from(data), sec, nsec })) > 0);
  return out;
}

/** Blocks of a hand-made pcapng file, in either byte order. */
class Maker {
  private readonly parts: Buffer[] = [];
  constructor(private be = false) {}
  private u32(v: number): Buffer {
    const b = Buffer.alloc(4);
    if (this.be) b.writeUInt32BE(v >>> 0);
    else b.writeUInt32LE(v >>> 0);
    return b;
  }
  private u16(v: number): Buffer {
    const b = Buffer.alloc(2);
    if (this.be) b.writeUInt16BE(v);
    else b.writeUInt16LE(v);
    return b;
  }
  private opts(list: Array<[number, Buffer]>): Buffer {
    if (list.length === 0) return Buffer.alloc(0);
    const parts: Buffer[] = [];
    for (const [code, v] of list) parts.push(this.u16(code), this.u16(v.length), v, Buffer.alloc((4 - (v.length % 4)) % 4));
    parts.push(Buffer.alloc(4));
    return Buffer.concat(parts);
  }
  block(type: number, body: Buffer): this {
    const len = 12 + body.length;
    this.parts.push(this.u32(type), this.u32(len), body, this.u32(len));
    return this;
  }
  shb(be = this.be): this {
    this.be = be;
    return this.block(0x0a0d0d0a, Buffer.concat([this.u32(0x1a2b3c4d), this.u16(1), this.u16(0), Buffer.alloc(8, 0xff)]));
  }
  idb(linkType = 101, o: { tsresol?: number; tsoffset?: number; name?: string; snaplen?: number } = {}): this {
    const list: Array<[number, Buffer]> = [];
    if (o.name) list.push([2, Buffer.from(o.name)]);
    if (o.tsresol !== undefined) list.push([9, Buffer.from([o.tsresol])]);
    if (o.tsoffset !== undefined) {
      const b = Buffer.alloc(8);
      if (this.be) b.writeBigInt64BE(BigInt(o.tsoffset));
      else b.writeBigInt64LE(BigInt(o.tsoffset));
      list.push([14, b]);
    }
    return this.block(1, Buffer.concat([this.u16(linkType), this.u16(0), this.u32(o.snaplen ?? 0), this.opts(list)]));
  }
  /** An enhanced packet block with a 64-bit time in the interface's units. */
  epb(iface: number, ts: bigint, data: Buffer, orig = data.length): this {
    const pad = Buffer.alloc((4 - (data.length % 4)) % 4);
    return this.block(6, Buffer.concat([this.u32(iface), this.u32(Number(ts >> 32n)), this.u32(Number(ts & 0xffffffffn)), this.u32(data.length), this.u32(orig), data, pad]));
  }
  spb(data: Buffer): this {
    const pad = Buffer.alloc((4 - (data.length % 4)) % 4);
    return this.block(3, Buffer.concat([this.u32(data.length), data, pad]));
  }
  bytes(): Buffer {
    return Buffer.concat(this.parts);
  }
}

const T0 = 1_700_000_000;
const pkt = (seq: number) => echoRequest({ seq });

test('pcapng made by tshark from classic captures (µs and ns) reads back exactly as the classic file does', () => {
  for (const nanos of [false, true]) {
    const classic = join(dir, `orig-${nanos}.pcap`);
    writePcap(classic, [0, 1, 2, 3, 4].map(pkt), { nanos });
    const ng = join(dir, `tshark-${nanos}.pcapng`);
    execFileSync('tshark', ['-r', classic, '-w', ng, '-F', 'pcapng'], { stdio: 'ignore', timeout: 30_000 });
    const want = readAll(new PcapReader(classic));
    const r = openCaptureReader(ng);
    assert.ok(!(r instanceof PcapReader), 'the pcapng reader was chosen');
    assert.equal(r.header.linkType, 101);
    assert.equal(r.header.nanos, nanos);
    assert.deepEqual(readAll(r, 2), want);
    assert.equal(r.truncatedTail, false);
    r.close();
  }
});

test('both byte orders, several sections, and blocks to skip (name resolution, statistics, custom)', () => {
  const m = new Maker(false)
    .shb(false)
    .idb(101, { name: 'tun0' })
    .block(4, Buffer.alloc(4)) // name resolution: end of records only
    .epb(0, BigInt(T0) * 1_000_000n + 7n, pkt(0))
    .block(5, Buffer.alloc(12)) // interface statistics
    .shb(true)
    .idb(101, { tsresol: 9 })
    .idb(101)
    .block(0x40000bad, Buffer.alloc(8)) // custom block that may be copied
    .epb(1, BigInt(T0 + 1) * 1_000_000n + 5n, pkt(1))
    .epb(0, BigInt(T0 + 2) * 1_000_000_000n + 999_999_999n, pkt(2));
  const r = openCaptureReader(file('sections.pcapng', m.bytes()));
  const got = readAll(r, 1);
  assert.deepEqual(
    got.map((g) => [g.sec, g.nsec, g.data.readUInt16BE(26)]),
    [
      [T0, 7000, 0],
      [T0 + 1, 5000, 1],
      [T0 + 2, 999_999_999, 2],
    ],
  );
  r.close();
});

test('time resolutions 10^-3, 2^-20, 10^0 and if_tsoffset; a simple packet block; an interface described after packets', () => {
  const m = new Maker()
    .shb()
    .idb(101, { tsresol: 3 })
    .epb(0, BigInt(T0) * 1000n + 250n, pkt(0))
    .idb(228, { tsresol: 0x80 | 20, tsoffset: 1000 })
    .epb(1, (BigInt(T0) << 20n) + (1n << 19n), pkt(1))
    .idb(229, { tsresol: 0 })
    .epb(2, BigInt(T0), pkt(2))
    .spb(pkt(3));
  const r = openCaptureReader(file('resol.pcapng', m.bytes()));
  assert.equal(r.header.linkType, 101, 'RAW, IPv4 and IPv6 link types run as one');
  assert.deepEqual(
    readAll(r).map((g) => [g.sec, g.nsec]),
    [
      [T0, 250_000_000],
      [T0 + 1000, 500_000_000],
      [T0, 0],
      [0, 0],
    ],
  );
  r.close();
});

test('interfaces of different link types are refused with what to do', () => {
  const m = new Maker().shb().idb(101).idb(1).epb(0, 0n, pkt(0));
  assert.throws(
    () => readAll(openCaptureReader(file('mixed.pcapng', m.bytes()))),
    (e: Error) => e instanceof TunpipeError && /interface 1 of section 1 \(offset \d+\) has link type 1, the first interface 101; a pipeline runs on one link type: take one interface out with 'tshark -r/.test(e.message),
  );
});

test('a file cut inside its last block: the whole packets are read, truncatedTail is set', () => {
  const whole = new Maker().shb().idb().epb(0, 1n, pkt(0)).epb(0, 2n, pkt(1)).bytes();
  for (const cut of [1, 4, 9, 30]) {
    const r = openCaptureReader(file(`cut-${cut}.pcapng`, whole.subarray(0, whole.length - cut)));
    assert.equal(readAll(r).length, 1, `cut ${cut}`);
    assert.equal(r.truncatedTail, true);
    r.close();
  }
});

test('hostile blocks: each a TunpipeError naming the offset, none allocates what a length claims', () => {
  const head = new Maker().shb().idb().bytes();
  const at = head.length;
  const good = new Maker().shb().idb().epb(0, 1n, pkt(0)).bytes();
  const set32 = (b: Buffer, o: number, v: number) => {
    const c = Buffer.from(b);
    c.writeUInt32LE(v >>> 0, o);
    return c;
  };
  const cases: Array<[string, Buffer, RegExp]> = [
    ['length not a multiple of 4', set32(good, at + 4, 13), new RegExp(`offset ${at}: block total length 13 \\(at least 12, a multiple of 4\\)`)],
    ['length below 12', set32(good, at + 4, 8), new RegExp(`offset ${at}: block total length 8`)],
    ['a huge length', set32(good, at + 4, 0xfffffff0), new RegExp(`offset ${at}: block total length 4294967280 is larger than any packet`)],
    ['lengths that differ', set32(good, good.length - 4, 100), new RegExp(`offset ${at}: block total length \\d+ at its start, 100 at its end`)],
    ['captured length past the block', set32(good, at + 20, 5000), new RegExp(`offset ${at}: captured length 5000 does not fit`)],
    ['an interface that was not described', set32(good, at + 8, 3), new RegExp(`offset ${at}: packet on interface 3, but the section describes 1`)],
    ['a bad byte-order magic', set32(good, 8, 0x12345678), /offset 0: section header with byte-order magic/],
    ['version 2', set32(good, 12, 2), /offset 0: section header of pcapng version 2\.0/],
    ['an interface block too short', Buffer.concat([new Maker().shb().bytes(), new Maker().block(1, Buffer.alloc(4)).bytes()]), /offset 28: interface description of 16 bytes/],
  ];
  for (const [name, bytes, re] of cases) {
    assert.throws(
      () => {
        const r = openCaptureReader(file('hostile.pcapng', bytes));
        try {
          readAll(r);
        } finally {
          r.close();
        }
      },
      (e: Error) => {
        assert.ok(e instanceof TunpipeError, `${name}: ${e}`);
        assert.match(e.message, re, name);
        return true;
      },
    );
  }
});

test('random mutations of a pcapng file: packets or a TunpipeError, never another exception or a hang', async () => {
  const base = new Maker().shb().idb(101, { tsresol: 9, name: 'x' }).epb(0, 5n, pkt(0)).spb(pkt(1)).block(5, Buffer.alloc(8)).epb(0, 6n, pkt(2)).bytes();
  await withSeed((rng) => {
    for (let i = 0; i < 3000; i++) {
      const b = Buffer.from(base);
      const edits = rng.range(1, 4);
      for (let e = 0; e < edits; e++) b[rng.int(b.length)] = rng.chance(0.5) ? rng.int(256) : 0xff;
      const cut = rng.chance(0.3) ? b.subarray(0, rng.int(b.length)) : b;
      const path = file('fuzz.pcapng', cut);
      let r: CaptureReader | null = null;
      try {
        r = openCaptureReader(path);
        let n = 0;
        while (r.readBatch(16, () => n++) > 0) assert.ok(n < 100, 'no more packets than blocks');
      } catch (err) {
        assert.ok(err instanceof TunpipeError, `mutation ${i}: ${(err as Error).stack}`);
      } finally {
        r?.close();
      }
    }
  });
});
