/**
 * tunpipe as a library.
 *
 *     import { pipe } from 'it-pipe';
 *     import { openTun, parseIPv4, icmpEcho, recomputeChecksum } from 'tunpipe';
 *
 *     const tun = openTun({ name: 'tun0', addresses: ['198.18.0.1/24'] });
 *     await pipe(tun, parseIPv4(), icmpEcho(), recomputeChecksum(), tun);
 *
 * or, through the fused engine (the fast path the CLI uses):
 *
 *     await runPipeline({ device: tun, pipeline: [parseIPv4(), icmpEcho(), recomputeChecksum()] });
 */
export { openTun, TunDevice, type TunOptions, type TunCounters } from './device/tun.js';
export { Packet, asPacket, Dirty } from './packet/packet.js';
export * as checksum from './packet/checksum.js';
export * as ipv4 from './packet/ipv4.js';
export * as ipv6 from './packet/ipv6.js';
export { PcapWriter, type PcapWriterOptions } from './pcap/writer.js';
export { PcapReader, type PcapHeader, type CaptureReader, type CaptureReaderOptions } from './pcap/reader.js';
export { type CaptureWriter } from './pcap/writer.js';
export { PcapngWriter, type PcapngWriterOptions, type PcapngInterface } from './pcap/pcapng-writer.js';
export { PcapngReader } from './pcap/pcapng-reader.js';
export { openCaptureReader } from './pcap/open-reader.js';
export { summarize as packetSummary } from './pcap/summary.js';
export { LINKTYPE_RAW, LINKTYPE_ETHERNET } from './pcap/format.js';
export { runPipeline, type RunOptions, type RunResult } from './pipeline/run.js';
export { parsePipeline, parseProgram, PipelineSyntaxError } from './pipeline/language.js';
export { resolvePipeline, resolveProgram, type ResolvedProgram } from './pipeline/resolve.js';
export { Driver } from './pipeline/driver.js';
export { builtinStages, findStage } from './pipeline/registry.js';
export { Engine, type EngineOptions } from './pipeline/engine.js';
export { transformOf, stageTransform, type PacketTransform } from './pipeline/transform.js';
export { defineStage, HELD, EXIT, StageStats, type StageDefinition, type StageInstance, type StageContext, type StageResult, type ArgSpec, type PortInfo } from './pipeline/stage.js';
export { standaloneContext, type StandaloneContext } from './pipeline/standalone.js';
export { RunClock } from './packet/clock.js';
export { TunpipeError, UsageError } from './errors.js';
export { listAddresses, type DeviceAddress } from './device/netlink.js';

export { parseIPv4 } from '../transforms/parse.js';
export { filterICMPEcho } from '../transforms/filter-icmp-echo.js';
export { swapAddrs } from '../transforms/swap-addrs.js';
/** `neighbor`: ARP and IPv6 neighbour discovery answers for the peers behind a TAP device. */
export { neighbor, defaultNeighborMac } from '../transforms/neighbor.js';
export { toReply } from '../transforms/to-reply.js';
export { icmpEcho } from '../transforms/icmp-echo.js';
export { recomputeChecksum } from '../transforms/checksum.js';
export { pcapTap } from '../transforms/pcap.js';
export { printPackets } from '../transforms/print.js';
export { reassemble } from '../transforms/reassemble.js';
export { fragment } from '../transforms/fragment.js';
export { delay, DelayStage } from '../transforms/delay.js';
export { loss, LossStage } from '../transforms/loss.js';
export { rate, RateStage } from '../transforms/rate.js';
export { duplicate, DuplicateStage } from '../transforms/duplicate.js';
export { reorder, ReorderStage } from '../transforms/reorder.js';
export { corrupt, CorruptStage } from '../transforms/corrupt.js';
export { SeededRandom } from './impair/random.js';
export { pcapFilter } from '../transforms/filter.js';
export { compileFilter, compileFilterForStage, filterExpressionProblem, type PacketFilter } from './filter/compile.js';
export { compileExpression, FilterCompileError, LibpcapInterpreter, type CompileOptions } from './filter/libpcap.js';
export { bpfToFunction, bpfToSource, type BpfFunction } from './filter/bpf-to-js.js';
export { validateProgram, formatProgram, type BpfInsn } from './filter/bpf.js';
