/**
 * A capture that may span several files: `size` (a new file when the next record would make this one
 * larger than SIZE: no file is ever larger), `time` (a new file at every period boundary of the local clock,
 * also when no packet comes), `files` (keep the newest N, deleting the oldest this capture made), `limit`
 * (stop capturing before the files together would pass LIMIT bytes). The size and time counters are
 * independent: a size rotation does not move the next time boundary. Each file is complete on its own
 * (its own header; pcapng: its own section and interfaces).
 *
 * Times are epoch milliseconds from the packets (offline: the file's times) or from the caller's clock
 * (`tick`), never from a timer of its own.
 */
import { unlinkSync } from 'node:fs';
import { TunpipeError } from '../errors.js';
import { hasTimePattern, numbered, periodStart, strftime } from './names.js';
import type { CaptureWriter } from './writer.js';

export interface CaptureSetOptions {
  /** FILE as given: a plain name, or a strftime pattern. */
  pattern: string;
  /** Bytes a file may reach; 0: no size rotation. */
  size: number;
  /** Period in milliseconds; 0: no time rotation. */
  time: number;
  /** Files kept; 0: all. */
  files: number;
  /** Bytes all files together may reach; 0: no limit. */
  limit: number;
  /** Opens one file (its header written). */
  open(path: string): CaptureWriter;
  /** Reports a problem once (a file of the ring that cannot be deleted). */
  warn(message: string): void;
}

export class CaptureSet {
  writer: CaptureWriter;
  /** Files made, oldest first (with files=N: those still kept). */
  readonly made: string[] = [];
  /** Packets written to files closed so far. */
  private donePackets = 0;
  /** Bytes in files closed so far. */
  private doneBytes = 0;
  /** Set once `limit` has stopped the capture. */
  limited = false;
  /** Next time boundary (epoch ms); Infinity without time rotation. */
  nextBoundary = Infinity;
  private sequence = 0;
  /** Files made in all, deleted ones of a ring included. */
  opened = 0;
  private readonly rotating: boolean;
  private readonly timed: boolean;
  private firstPacketSeen = false;
  private truncatedForSize = 0;

  constructor(
    private readonly o: CaptureSetOptions,
    nowEpochMs: number,
  ) {
    this.rotating = o.size > 0 || o.time > 0;
    this.timed = hasTimePattern(o.pattern);
    if (o.pattern === '-' && (this.rotating || o.files > 0)) throw new TunpipeError('pcap: size=, time= and files= need a file name, not stdout (-)');
    if (o.files > 0 && !this.rotating) throw new TunpipeError('pcap: files=N keeps the last N files of a rotation: add size= or time=');
    const start = o.time > 0 ? periodStart(nowEpochMs, o.time) : nowEpochMs;
    this.writer = this.openNext(start);
    if (o.time > 0) this.nextBoundary = start + o.time;
  }

  private nameFor(epochMs: number): string {
    const p = this.o.pattern;
    if (!this.rotating) return this.timed ? strftime(p, epochMs) : p;
    this.sequence++;
    if (!this.timed) return numbered(p, this.sequence);
    const name = strftime(p, epochMs);
    // Two files in one second of the pattern (size rotation): the later ones get a number too.
    return this.made.includes(name) ? numbered(name, this.sequence, 1) : name;
  }

  private openNext(epochMs: number): CaptureWriter {
    const name = this.nameFor(epochMs);
    const w = this.o.open(name);
    this.made.push(name);
    this.opened++;
    if (this.o.files > 0) {
      while (this.made.length > this.o.files) {
        const old = this.made.shift()!;
        try {
          unlinkSync(old);
        } catch (err) {
          if ((err as NodeJS.ErrnoException).code !== 'ENOENT') this.o.warn(`cannot delete ${old} to keep files=${this.o.files}: ${(err as Error).message}`);
        }
      }
    }
    return w;
  }

  /** Closes the current file and opens the next, named for `epochMs`. */
  private rotate(epochMs: number): void {
    this.writer.close();
    this.donePackets += this.writer.packets;
    this.doneBytes += this.writer.size;
    this.writer = this.openNext(epochMs);
  }

  /**
   * The clock says `epochMs`: at or past a time boundary, start the period's file (once, however many
   * periods passed). Offline, the first packet's time also renames the first file, still empty, after its
   * period rather than the wall clock's.
   */
  tick(epochMs: number): void {
    if (this.limited || this.o.time <= 0 || epochMs < this.nextBoundary) return;
    const start = periodStart(epochMs, this.o.time);
    this.rotate(start);
    this.nextBoundary = start + this.o.time;
  }

  /** Writes one record, rotating first where size or time say so. Returns false once `limit` stopped it. */
  write(data: Uint8Array, sec: number, nsec: number, iface: number, flags: number): boolean {
    if (this.limited) return false;
    const epochMs = sec * 1000 + nsec / 1e6;
    if (!this.firstPacketSeen) this.firstPacket(epochMs);
    if (epochMs >= this.nextBoundary) this.tick(epochMs);
    const w0 = this.writer;
    let caplen = data.length < w0.snaplen ? data.length : w0.snaplen;
    // A file that holds a packet (written, or buffered: its header is written when it opens) and would pass size=.
    if (this.o.size > 0 && w0.size + w0.recordSize(caplen) > this.o.size && (w0.packets > 0 || w0.buffered > 0)) this.rotate(epochMs);
    const w = this.writer;
    if (this.o.size > 0 && w.size + w.recordSize(caplen) > this.o.size) {
      // Alone in a new file and still too big: keep as much of it as fits (its original length is recorded).
      caplen = Math.max(0, Math.min(caplen, this.o.size - w.size - w.recordSize(0)));
      while (caplen > 0 && w.size + w.recordSize(caplen) > this.o.size) caplen--;
      this.truncatedForSize++;
    }
    if (this.o.limit > 0 && this.doneBytes + w.size + w.recordSize(caplen) > this.o.limit) {
      this.limited = true;
      this.writer.close();
      return false;
    }
    w.write(data, sec, nsec, iface, flags, caplen);
    return true;
  }

  private firstPacket(epochMs: number): void {
    this.firstPacketSeen = true;
    if (!this.timed && this.o.time <= 0) return;
    const start = this.o.time > 0 ? periodStart(epochMs, this.o.time) : epochMs;
    if (this.o.time > 0) this.nextBoundary = start + this.o.time;
    if (!this.timed || this.writer.packets > 0 || this.writer.buffered > 0) return;
    // The first file was named at start-up by the wall clock; offline, the packets' clock is another.
    // Named again as if it were being opened now (so not against its own current name).
    const old = this.made.pop()!;
    if (this.rotating) this.sequence--;
    const name = this.nameFor(start);
    this.made.push(old);
    if (name === old) return;
    try {
      this.writer.rename(name);
      this.made[this.made.length - 1] = name;
    } catch (err) {
      this.o.warn(`cannot rename ${old} to ${name} (the time of the first packet): ${(err as Error).message}`);
    }
  }

  /** Packets in every file of the capture (deleted ring files included). */
  get packets(): number {
    return this.donePackets + this.writer.packets;
  }

  /** Packets whose captured bytes were cut so that they fit in size=. */
  get cutForSize(): number {
    return this.truncatedForSize;
  }

  close(): void {
    this.writer.close();
  }
}
