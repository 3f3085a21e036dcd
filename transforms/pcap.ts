/**
 * pcap: writes every packet that passes to a capture file (classic pcap or pcapng) and passes it on
 * unchanged (a tee).
 *
 * Arguments:
 *   FILE          capture file, or `-` for stdout (flushed per packet: `... | tcpdump -r -`, `| wireshark -k -i -`).
 *                 With rotation it may hold strftime conversions (local time): %Y %m %d %H %M %S %j %y %e %s %%.
 *   format=auto|pcap|pcapng
 *                 auto (default): pcapng when FILE ends in `.pcapng`, classic pcap otherwise
 *   comment=TEXT  pcapng: the section's comment (Wireshark shows it under Capture File Properties)
 *   nanos=BOOL    nanosecond timestamps (pcap: magic 0xa1b23c4d; pcapng: if_tsresol 9); default false
 *   snaplen=N     bytes kept of each packet; default 262144
 *   append=BOOL   add to an existing capture instead of replacing it; default false. A capture cut short
 *                 (its writer was killed) is first cut back to its last whole record or block, and said so
 *                 on stderr. pcapng: the new packets form a section of their own.
 *   mode=OCTAL    permissions of a new file, 0..777; default 600 (captures hold other people's traffic).
 *                 Setuid, setgid and sticky bits are refused.
 *   size=SIZE     start a new file when the next record would make this one larger than SIZE (`100kB`,
 *                 `1MiB`): no file is ever larger; a packet that alone does not fit is cut to fit
 *   time=DURATION start a new file at every multiple of DURATION on the local clock (`time=1h`: on the
 *                 hour; `time=15m`: at :00, :15, ...), also when no packet came in the period
 *   files=N       keep only the newest N files of the rotation (a ring); the oldest is deleted
 *   limit=SIZE    stop capturing before the files together would pass SIZE bytes (the pipeline goes on;
 *                 the counters on exit say so)
 *   filter=EXPR   write only the packets that match this pcap-filter(7) expression (what `tcpdump -w FILE
 *                 EXPR` does); all packets pass on. Shorthand for `tee { filter EXPR | pcap FILE }`.
 *   onerror=stop|continue
 *                 when the file cannot be written (disk full): `stop` ends the pipeline with an error
 *                 (default: a capture never silently loses packets); `continue` reports it once and keeps
 *                 the pipeline running without the capture. The file keeps every whole packet written.
 *                 A closed stdout (`| head`) always ends the pipeline, quietly.
 *
 * File names with rotation: FILE without a conversion is numbered before its extension, `cap.pcap` ->
 * `cap-00001.pcap`, `cap-00002.pcap`, ... (numbers never reused, so names sort by age, also in a ring);
 * with conversions they are expanded at the start of the file's period (time=) or when the file is opened
 * (size= alone); a name already used in the run gets `-N` added. Each file is complete on its own.
 *
 * On a device with offloads (--offload) a TCP/UDP super-packet is recorded whole, as the kernel handed it
 * over and as tcpdump on the device itself shows it: one record of up to 64 KiB whose IP length is the
 * super-packet's, its transport checksum partial. Put `segment` before it to record the segments instead.
 *
 * The link type is the pipeline's (ctx.linkType: 101 RAW on TUN, 1 Ethernet on TAP, or the --read file's).
 * pcapng: one interface, the port the packets came from (if_name: the device or file name; epb_flags
 * inbound) or, after a stage that turned them around, the port they go to (outbound).
 * Records are written at the end of each batch; on a device, per 64 KiB while traffic flows and 20 ms
 * after it pauses; always at exit.
 *
 * New files of a rotation are created while tunpipe runs: after `--user`, the directory must be writable
 * by that user. At creation the stage checks that the directory is writable by the process (as root before
 * the drop that says little); a file that cannot be created later is a write error (onerror=). Give the
 * user a directory of its own.
 */
import { accessSync, constants } from 'node:fs';
import { dirname, resolve as resolvePath } from 'node:path';
import { defineStage, type StageArgs, type StageContext } from '../src/pipeline/stage.js';
import { compileFilterForStage, filterExpressionProblem } from '../src/filter/compile.js';
import { PcapWriter, type CaptureWriter } from '../src/pcap/writer.js';
import { PcapngWriter } from '../src/pcap/pcapng-writer.js';
import { DIRECTION_INBOUND, DIRECTION_OUTBOUND } from '../src/pcap/pcapng-format.js';
import { CaptureSet } from '../src/pcap/rotation.js';
import { unknownConversion } from '../src/pcap/names.js';
import { wallClock } from '../src/packet/clock.js';
import type { Packet } from '../src/packet/packet.js';
import { TunpipeError } from '../src/errors.js';

const LAZY_BYTES = 64 * 1024;

/** Permission bits only: 1 to 3 octal digits, or 4 with a leading 0 (0644). */
export const MODE_PATTERN = /^0?[0-7]{1,3}$/;

/** The arguments of `pcap`, as the stage receives them. */
export interface PcapArgs {
  file: string;
  format: 'auto' | 'pcap' | 'pcapng';
  comment?: string;
  nanos: boolean;
  snaplen: number;
  append: boolean;
  mode: string;
  size?: number;
  time?: number;
  files?: number;
  limit?: number;
  filter?: string;
  onerror: 'stop' | 'continue';
}

function formatOf(a: PcapArgs): 'pcap' | 'pcapng' {
  if (a.format === 'pcap' || a.format === 'pcapng') return a.format;
  return /\.pcapng$/i.test(a.file) ? 'pcapng' : 'pcap';
}

/**
 * When two pcap stages may write one file: both pcapng, to a file (not stdout), with no rotation or
 * append, and the same section settings. Each then describes its own interface (the port its packets came
 * from or go to, with the direction in epb_flags), so a capture of both directions of a wire is one file.
 */
export function sharedCaptureKey(a: PcapArgs): string | undefined {
  if (formatOf(a) !== 'pcapng' || a.file === '-' || a.append || a.size !== undefined || a.time !== undefined || a.limit !== undefined) return undefined;
  return JSON.stringify(['pcapng', a.nanos, a.snaplen, a.comment ?? '', a.mode, a.onerror]);
}

/** The files pcapng stages share in this run, by path: the first stage opens it, the last one closes it. */
const shared = new Map<string, SharedCapture>();

interface SharedCapture {
  set: CaptureSet;
  writer: PcapngWriter;
  /** Stages writing it now, and whether more than one ever did (their reports then say so). */
  users: number;
  joined: boolean;
  key: string;
}

function sizeText(n: number): string {
  return n % 1024 === 0 && n >= 1024 ? `${n / 1024} KiB` : `${n} bytes`;
}

/** What is wrong with a combination of arguments, or null (checked before anything is created). */
function argsProblem(a: PcapArgs): string | null {
  if (!MODE_PATTERN.test(a.mode)) return `mode=${a.mode}: give permission bits in octal, 0 to 777, such as 600 or 644 (setuid, setgid and sticky bits are refused)`;
  const rotating = (a.size ?? 0) > 0 || (a.time ?? 0) > 0;
  if (a.file === '-' && (rotating || a.files !== undefined)) return 'size=, time= and files= need a file name, not stdout (-)';
  if (a.files !== undefined && !rotating) return 'files=N keeps the last N files of a rotation: add size= or time=';
  if (rotating && a.append) return 'append=true cannot be combined with size= or time= (each file of a rotation is new)';
  const bad = unknownConversion(a.file);
  if (bad && rotating) return `${a.file}: unknown conversion ${bad} (known: %Y %m %d %H %M %S %j %y %e %s %%)`;
  if (a.comment !== undefined && formatOf(a) !== 'pcapng') return 'comment= needs format=pcapng (classic pcap has no comments)';
  return null;
}

function createTap(a: PcapArgs, ctx: StageContext) {
  const problem = argsProblem(a);
  if (problem) throw new TunpipeError(`pcap ${problem}`);
  const format = formatOf(a);
  const rotating = (a.size ?? 0) > 0 || (a.time ?? 0) > 0;
  const out = ctx.direction === 'out';
  const port = out ? (ctx.output ?? ctx.input) : ctx.input;
  const ifName = port?.name ?? (out ? 'output' : 'input');
  const flags = out ? DIRECTION_OUTBOUND : DIRECTION_INBOUND;
  const mode = parseInt(a.mode, 8);
  const open = (path: string): CaptureWriter =>
    format === 'pcapng'
      ? new PcapngWriter(path, { nanos: a.nanos, snaplen: a.snaplen, append: a.append && path !== '-', mode, comment: a.comment, interfaces: [{ name: ifName, linkType: ctx.linkType }] })
      : new PcapWriter(path, { nanos: a.nanos, snaplen: a.snaplen, append: a.append && path !== '-', mode, linkType: ctx.linkType });
  if (rotating) {
    // Later files are created while running, maybe after --user dropped root: say now if that cannot work.
    try {
      accessSync(dirname(a.file), constants.W_OK | constants.X_OK);
    } catch {
      throw new TunpipeError(`pcap ${a.file}: ${dirname(a.file)} is not a directory this process can write to, and a rotation creates its files there`);
    }
  }
  const [s0, n0] = wallClock();
  const startMs = s0 * 1000 + n0 / 1e6;
  // Epoch milliseconds minus ctx.now(): from the wall clock until a packet tells the driver's clock.
  let epochOffset = startMs - ctx.now();
  let offsetFromPacket = false;
  const shareKey = sharedCaptureKey(a);
  const sharedPath = shareKey !== undefined ? resolvePath(a.file) : '';
  let entry = shareKey !== undefined ? shared.get(sharedPath) : undefined;
  let iface = 0;
  let set: CaptureSet;
  if (entry && entry.key === shareKey) {
    set = entry.set;
    entry.users++;
    entry.joined = true;
    iface = entry.writer.addInterface({ name: ifName, linkType: ctx.linkType });
  } else {
    set = new CaptureSet(
      { pattern: a.file, size: a.size ?? 0, time: a.time ?? 0, files: a.files ?? 0, limit: a.limit ?? 0, open, warn: (m) => ctx.warn(m) },
      startMs,
    );
    entry = undefined;
    if (shareKey !== undefined && set.writer instanceof PcapngWriter) {
      entry = { set, writer: set.writer, users: 1, joined: false, key: shareKey };
      shared.set(sharedPath, entry);
    }
  }
  const mine = entry;
  let written = 0;
  if (set.writer.repaired) ctx.warn(set.writer.repaired);
  let off = false;
  const failed = (err: TunpipeError): void => {
    if (off) return;
    off = true;
    if (a.onerror === 'continue' && err.code !== 'EPIPE') ctx.warn(`${err.message}; capture stopped, the pipeline goes on (onerror=continue)`);
    else ctx.fail(err);
  };
  const timed = (a.time ?? 0) > 0;
  // Compiled once, like the filter stage: one plain call per packet.
  const match = a.filter !== undefined ? compileFilterForStage(a.filter, { linkType: ctx.linkType }).run : null;
  return {
    process(p: Packet): Packet {
      if (!off && (match === null || match(p.data, p.data.length) !== 0)) {
        try {
          if (p.sec === 0) [p.sec, p.nsec] = wallClock();
          if (timed && !offsetFromPacket) {
            offsetFromPacket = true;
            epochOffset = p.sec * 1000 + p.nsec / 1e6 - ctx.timeOf(p);
          }
          if (!set.write(p.data, p.sec, p.nsec, iface, flags)) off = true;
          else written++;
        } catch (err) {
          failed(err as TunpipeError);
        }
      }
      return p;
    },
    flush(lazy?: boolean): void {
      if (off) return;
      // Lazily: one write() per LAZY_BYTES of records rather than per batch, while traffic flows; the
      // source flushes fully as soon as it pauses (and at exit).
      if (lazy && set.writer.buffered < LAZY_BYTES) return;
      try {
        set.writer.flush();
      } catch (err) {
        failed(err as TunpipeError);
      }
    },
    close(): void {
      if (mine && --mine.users > 0) {
        // Another stage still writes this file: it closes it.
        return;
      }
      if (mine && shared.get(sharedPath) === mine) shared.delete(sharedPath);
      try {
        set.close();
      } catch (err) {
        if (!off) failed(err as TunpipeError);
      }
    },
    pending: () => !off && set.writer.buffered > 0,
    // Only a time rotation wants the driver's timer: without one the driver skips the clock entirely.
    ...(timed
      ? {
          nextDue: () => (off ? Infinity : set.nextBoundary - epochOffset),
          tick(now: number): void {
            if (off || now === Infinity) return;
            try {
              set.tick(now + epochOffset);
            } catch (err) {
              failed(err as TunpipeError);
            }
          },
        }
      : {}),
    report: () => {
      const kept = set.made.length < set.opened ? `, the newest ${set.made.length} kept` : '';
      const where = a.file === '-' ? 'stdout' : rotating ? `${set.opened} file${set.opened === 1 ? '' : 's'}${kept} (${set.made.join(', ')})` : set.made[0];
      const sharing = mine?.joined === true;
      let line = sharing ? `${written} packets written to ${where} (shared with another pcap stage; ${set.packets} in the file)` : `${set.packets} packets written to ${where}`;
      if (set.cutForSize > 0) line += `; ${set.cutForSize} cut to fit size=${sizeText(a.size!)}`;
      if (set.limited) line += `; capture stopped at limit=${sizeText(a.limit!)}, the pipeline went on`;
      return line;
    },
  };
}

const pcapStage = defineStage({
  name: 'pcap',
  recordsChanges: true,
  superPackets: true,
  keepsPackets: false,
  readsTime: true,
  summary: 'tee packets into a pcap or pcapng file for tcpdump/Wireshark (- for stdout), with rotation',
  help: [
    'Examples:',
    "  parse | pcap /tmp/req.pcapng | icmp-echo | checksum        pcapng (by the extension), interface = the device",
    "  parse | pcap - | icmp-echo | checksum  ... | wireshark -k -i -   live into Wireshark",
    '  pcap /var/tmp/cap.pcap size=100kB files=3                      a ring: cap-00007.pcap .. cap-00009.pcap',
    "  pcap '/var/tmp/cap-%Y%m%d-%H%M%S.pcapng' time=1h              a file per hour, on the hour",
    '  pcap big.pcap limit=1GB                                        stop capturing at 1 GB, keep running',
    'Numbered names: cap.pcap -> cap-00001.pcap, cap-00002.pcap, ... (never reused). A file cut short by a',
    'killed tunpipe is cut back to its last whole record before append=true adds to it.',
  ].join('\n'),
  args: [
    { name: 'file', type: 'string', positional: true, required: true, output: true, description: 'capture file, or - for stdout; with rotation may hold %Y%m%d-%H%M%S' },
    { name: 'format', type: 'string', default: 'auto', choices: ['auto', 'pcap', 'pcapng'], description: 'file format; auto: pcapng when FILE ends in .pcapng' },
    { name: 'comment', type: 'string', description: 'pcapng section comment' },
    { name: 'nanos', type: 'boolean', default: false, description: 'nanosecond timestamps' },
    { name: 'snaplen', type: 'number', integer: true, default: 262144, min: 1, max: 262144, description: 'bytes kept of each packet' },
    { name: 'append', type: 'boolean', default: false, description: 'append to an existing capture (a cut tail is cut back first)' },
    {
      name: 'mode',
      type: 'string',
      placeholder: 'OCTAL',
      default: '600',
      pattern: { regex: MODE_PATTERN, expected: 'permission bits in octal, 0 to 777, such as 600 or 644 (no setuid, setgid or sticky bit)' },
      description: 'permissions of a new file, octal 0..777 (600: only its owner reads it)',
    },
    { name: 'size', type: 'size', integer: true, min: 1024, description: 'start a new file before this one passes SIZE (100kB, 1MiB)' },
    { name: 'time', type: 'duration', min: 1, description: 'start a new file every DURATION, aligned to the clock (1h: on the hour)' },
    { name: 'files', type: 'number', integer: true, min: 1, description: 'keep the newest N files of the rotation' },
    { name: 'limit', type: 'size', integer: true, min: 1, description: 'stop capturing before the files pass SIZE in total' },
    { name: 'filter', type: 'string', placeholder: 'EXPR', description: "write only packets matching this pcap-filter expression ('udp port 53')" },
    { name: 'onerror', type: 'string', default: 'stop', choices: ['stop', 'continue'], description: 'on a write error: stop the pipeline, or continue without the capture' },
  ],
  checkArgs: (args) => argsProblem(args as unknown as PcapArgs),
  outputShareKey: (args) => sharedCaptureKey(args as unknown as PcapArgs),
  checkArgsForLink(args: StageArgs, linkType?: number) {
    if (typeof args.filter !== 'string') return undefined;
    const problem = filterExpressionProblem(args.filter, linkType);
    return problem === undefined ? undefined : { arg: 'filter', message: problem };
  },
  create: (args, ctx) => createTap(args as unknown as PcapArgs, ctx),
});
export default pcapStage;
