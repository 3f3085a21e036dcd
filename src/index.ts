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
export * as vnet from './packet/vnet.js';
export { segmentSuperPacket, completeChecksum, SegmentSlabs, GSO_DROP } from './packet/gso.js';
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
export { insertSegments } from './pipeline/offload.js';
export { Engine, type EngineOptions } from './pipeline/engine.js';
export { transformOf, stageTransform, type PacketTransform } from './pipeline/transform.js';
export { defineStage, HELD, EXIT, StageStats, type StageDefinition, type StageInstance, type StageContext, type StageResult, type ArgSpec, type PortInfo } from './pipeline/stage.js';
export { standaloneContext, type StandaloneContext } from './pipeline/standalone.js';
export { RunClock } from './packet/clock.js';
export { TunpipeError, UsageError } from './errors.js';
export { listAddresses, type DeviceAddress } from './device/netlink.js';

export { defaultNeighborMac } from '../transforms/neighbor.js';
export { DelayStage } from '../transforms/delay.js';
export { LossStage } from '../transforms/loss.js';
export { RateStage } from '../transforms/rate.js';
export { DuplicateStage } from '../transforms/duplicate.js';
export { ReorderStage } from '../transforms/reorder.js';
export { CorruptStage } from '../transforms/corrupt.js';
export { SeededRandom } from './impair/random.js';
export { compileFilter, compileFilterForStage, filterExpressionProblem, type PacketFilter } from './filter/compile.js';
export { compileExpression, FilterCompileError, LibpcapInterpreter, type CompileOptions } from './filter/libpcap.js';
export { bpfToFunction, bpfToSource, type BpfFunction } from './filter/bpf-to-js.js';
export { validateProgram, formatProgram, type BpfInsn } from './filter/bpf.js';
/** The stages as it-pipe transforms (and recipes runPipeline fuses). */
export { corrupt, delay, duplicate, filterICMPEcho, fragment, icmpEcho, loss, neighbor, parseIPv4, pcapFilter, pcapTap, printPackets, rate, reassemble, recomputeChecksum, reorder, swapAddrs, toReply } from './library/stages.js';
