/**
 * The stages as library values: each function returns a PacketTransform, an it-pipe transform
 * (`source => source`) that can go straight into `pipe(...)` and that `runPipeline` also fuses into its
 * engine. The stage files themselves only declare stages; this is the one place that adapts them to it-pipe.
 *
 *     await pipe(tun, parseIPv4(), icmpEcho(), recomputeChecksum(), tun);
 */
import { stageTransform, type PacketTransform } from '../pipeline/transform.js';
import checksumStage from '../../transforms/checksum.js';
import corruptStage from '../../transforms/corrupt.js';
import delayStage from '../../transforms/delay.js';
import duplicateStage from '../../transforms/duplicate.js';
import filterIcmpEcho from '../../transforms/filter-icmp-echo.js';
import filterStage from '../../transforms/filter.js';
import fragmentStage from '../../transforms/fragment.js';
import icmpEchoStage from '../../transforms/icmp-echo.js';
import lossStage from '../../transforms/loss.js';
import neighborStage from '../../transforms/neighbor.js';
import parse from '../../transforms/parse.js';
import pcapStage from '../../transforms/pcap.js';
import printStage from '../../transforms/print.js';
import rateStage from '../../transforms/rate.js';
import reassembleStage from '../../transforms/reassemble.js';
import reorderStage from '../../transforms/reorder.js';
import swapAddrsStage from '../../transforms/swap-addrs.js';
import toReplyStage from '../../transforms/to-reply.js';
import type { Mode } from '../../transforms/checksum.js';
import type { PcapArgs } from '../../transforms/pcap.js';
import type { PrintArgs } from '../../transforms/print.js';
import type { Distribution } from '../impair/distributions.js';

/** it-pipe transform / pipeline stage: `checksum`. */
export function recomputeChecksum(args: { mode?: Mode } = {}): PacketTransform {
  return stageTransform(checksumStage, args);
}

/** it-pipe transform / pipeline stage: `corrupt P [seed=N]`. */
export function corrupt(args: { p: number; seed?: number }): PacketTransform {
  return stageTransform(corruptStage, args);
}

/** it-pipe transform / pipeline stage: `delay TIME [jitter=TIME] ...` (times in milliseconds). */
export function delay(args: { time: number; jitter?: number; dist?: Distribution; correlation?: number; reorder?: boolean; limit?: number; seed?: number }): PacketTransform {
  return stageTransform(delayStage, args);
}

/** it-pipe transform / pipeline stage: `duplicate P [seed=N]`. */
export function duplicate(args: { p: number; seed?: number }): PacketTransform {
  return stageTransform(duplicateStage, args);
}

/** it-pipe transform / pipeline stage: `filter-icmp-echo`. */
export function filterICMPEcho(): PacketTransform {
  return stageTransform(filterIcmpEcho);
}

/**
 * it-pipe transform / pipeline stage: `filter EXPR`. `options.show` prints the program at start; the
 * expression is compiled for the link type of the pipeline it runs in (RAW IP in an it-pipe chain).
 */
export function pcapFilter(expression: string, options: { show?: 'none' | 'bpf' | 'js'; optimize?: boolean } = {}): PacketTransform {
  return stageTransform(filterStage, { expr: expression, ...options });
}

/** it-pipe transform / pipeline stage: `fragment [mtu=N]`. */
export function fragment(args: { mtu?: number } = {}): PacketTransform {
  return stageTransform(fragmentStage, args);
}

/** it-pipe transform: the stages of `icmp-echo`. */
export function icmpEcho(): PacketTransform {
  return stageTransform(icmpEchoStage, {}, [reassembleStage, filterIcmpEcho, swapAddrsStage, toReplyStage]);
}

/** it-pipe transform / pipeline stage: `loss P [correlation=P]`, `loss model=gilbert p=P r=P [h=P] [k=P]`. */
export function loss(args: { p: number; model?: 'random' | 'gilbert'; correlation?: number; r?: number; h?: number; k?: number; seed?: number }): PacketTransform {
  return stageTransform(lossStage, args);
}

/**
 * it-pipe transform / pipeline stage: `neighbor [mac=MAC] [for=ADDRESSES]`. It answers only on Ethernet, so
 * it needs a pipeline on a TAP device (runPipeline with a TAP device); `for=` is required where the device's
 * addresses are not known.
 */
export function neighbor(args: { mac?: string; for?: string } = {}): PacketTransform {
  return stageTransform(neighborStage, args);
}

/** it-pipe transform / pipeline stage: `parse`. */
export function parseIPv4(): PacketTransform {
  return stageTransform(parse);
}

/** it-pipe transform / pipeline stage: `pcap FILE`. */
export function pcapTap(file: string, options: Partial<Omit<PcapArgs, 'file'>> = {}): PacketTransform {
  return stageTransform(pcapStage, { file, ...options });
}

/** it-pipe transform / pipeline stage: `print [FILE]`. */
export function printPackets(file?: string, options: Partial<Omit<PrintArgs, 'file'>> = {}): PacketTransform {
  return stageTransform(printStage, { file, ...options });
}

/** it-pipe transform / pipeline stage: `rate RATE [burst=SIZE] [limit=SIZE|TIME]` (rate in bits/s). */
export function rate(args: { rate: number; burst?: number; limit?: string }): PacketTransform {
  return stageTransform(rateStage, args);
}

/** it-pipe transform / pipeline stage: `reassemble`. */
export function reassemble(args: { timeout?: number; max?: number; memory?: number } = {}): PacketTransform {
  return stageTransform(reassembleStage, args);
}

/** it-pipe transform / pipeline stage: `reorder P [gap=N] [wait=TIME] [limit=SIZE]` (wait in milliseconds). */
export function reorder(args: { p: number; gap?: number; wait?: number; limit?: number; seed?: number }): PacketTransform {
  return stageTransform(reorderStage, args);
}

/** it-pipe transform / pipeline stage: `swap-addrs`. */
export function swapAddrs(): PacketTransform {
  return stageTransform(swapAddrsStage);
}

/** it-pipe transform / pipeline stage: `to-reply`. */
export function toReply(args: { ttl?: number } = {}): PacketTransform {
  return stageTransform(toReplyStage, args);
}
