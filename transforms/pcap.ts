/**
 * pcap: writes every packet that passes to a classic pcap file and passes it on unchanged (a tee).
 *
 * Arguments:
 *   FILE          capture file, or `-` for stdout (flushed per packet: `... | tcpdump -r -`)
 *   nanos=BOOL    nanosecond timestamps (magic 0xa1b23c4d); default false (microseconds)
 *   snaplen=N     bytes kept of each packet; default 262144
 *   append=BOOL   add to an existing capture instead of replacing it; default false
 *   mode=OCTAL    permissions of a new file; default 600 (captures hold other people's traffic)
 *   onerror=stop|continue
 *                 when the file cannot be written (disk full): `stop` ends the pipeline with an error
 *                 (default: a capture never silently loses packets); `continue` reports it once and keeps
 *                 the pipeline running without the capture. The file keeps every whole packet written.
 *                 A closed stdout (`| head`) always ends the pipeline, quietly.
 * Link type 101 (RAW: IPv4 or IPv6, what a TUN device carries).
 * Records are written at the end of each batch; on a device, per 64 KiB while traffic flows and 20 ms
 * after it pauses; always at exit.
 */
import { defineStage, type StageContext } from '../src/pipeline/stage.js';
import { stageTransform, type PacketTransform } from '../src/pipeline/transform.js';
import { PcapWriter } from '../src/pcap/writer.js';
import { wallClock } from '../src/packet/clock.js';
import type { Packet } from '../src/packet/packet.js';
import { TunpipeError } from '../src/errors.js';


const LAZY_BYTES = 64 * 1024;

interface PcapArgs {
  file: string;
  nanos: boolean;
  snaplen: number;
  append: boolean;
  mode: string;
  onerror: 'stop' | 'continue';
}

function createTap(a: PcapArgs, ctx: StageContext) {
  if (!/^[0-7]{3,4}$/.test(a.mode)) throw new TunpipeError(`pcap mode=${a.mode}: give octal permissions such as 600 or 644`);
  const writer = new PcapWriter(a.file, { nanos: a.nanos, snaplen: a.snaplen, append: a.append && a.file !== '-', mode: parseInt(a.mode, 8) });
  let off = false;
  const failed = (err: TunpipeError): void => {
    if (off) return;
    off = true;
    if (a.onerror === 'continue' && err.code !== 'EPIPE') ctx.warn(`${err.message}; capture stopped, the pipeline goes on (onerror=continue)`);
    else ctx.fail(err);
  };
  return {
    process(p: Packet): Packet {
      if (!off) {
        try {
          if (p.sec === 0) [p.sec, p.nsec] = wallClock();
          writer.write(p.data, p.sec, p.nsec);
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
      if (lazy && writer.buffered < LAZY_BYTES) return;
      try {
        writer.flush();
      } catch (err) {
        failed(err as TunpipeError);
      }
    },
    close(): void {
      try {
        writer.close();
      } catch (err) {
        if (!off) failed(err as TunpipeError);
      }
    },
    pending: () => !off && writer.buffered > 0,
    report: () => `${writer.packets} packets written to ${a.file === '-' ? 'stdout' : a.file}`,
  };
}

const pcapStage = defineStage({
  name: 'pcap',
  keepsPackets: false,
  readsTime: true,
  summary: 'tee packets into a pcap file for tcpdump/Wireshark (- for stdout)',
  args: [
    { name: 'file', type: 'string', positional: true, required: true, output: true, description: 'capture file, or - for stdout' },
    { name: 'nanos', type: 'boolean', default: false, description: 'nanosecond timestamps' },
    { name: 'snaplen', type: 'number', integer: true, default: 262144, min: 1, max: 262144, description: 'bytes kept of each packet' },
    { name: 'append', type: 'boolean', default: false, description: 'append to an existing capture' },
    { name: 'mode', type: 'string', default: '600', description: 'permissions of a new file, octal (600: only its owner reads it)' },
    { name: 'onerror', type: 'string', default: 'stop', choices: ['stop', 'continue'], description: 'on a write error: stop the pipeline, or continue without the capture' },
  ],
  create: (args, ctx) => createTap(args as unknown as PcapArgs, ctx),
});
export default pcapStage;

/** it-pipe transform / pipeline stage: `pcap FILE`. */
export function pcapTap(file: string, options: Partial<Omit<PcapArgs, 'file'>> = {}): PacketTransform {
  return stageTransform(pcapStage, { file, ...options });
}
