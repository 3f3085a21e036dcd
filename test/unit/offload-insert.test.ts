/**
 * Where a `segment` stage is put on a program that reads devices with offloads (src/pipeline/offload.ts):
 * before the first stage that does not take super-packets, before a device without offloads, in branches
 * too; never on a pipeline whose source has no offloads, nor where everything takes super-packets.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { resolveProgram } from '../../src/pipeline/resolve.js';
import { routeProgram } from '../../src/pipeline/routing.js';
import { insertSegments } from '../../src/pipeline/offload.js';
import type { ResolvedBranch } from '../../src/pipeline/program.js';
import type { PortInfo } from '../../src/pipeline/stage.js';

function port(name: string, offload: boolean): PortInfo {
  return { name, linkType: 101, kind: 'device', offload };
}

/** The stage labels of a branch, with its branches in brackets and its sink. */
function shape(b: ResolvedBranch): string {
  const parts = b.elements.map((e) => (e.kind === 'tee' ? `tee{${shape(e.branch)}}` : `${e.stage.label}${e.orElse ? ` else{${shape(e.orElse)}}` : ''}`));
  return [...parts, b.sink.kind === 'to' ? `to ${b.sink.port}` : b.sink.kind].join(' | ');
}

async function rewritten(text: string, ports: PortInfo[]): Promise<string[]> {
  const program = await resolveProgram(text);
  const routing = routeProgram(program, ports.map((p) => p.name));
  return insertSegments(program, routing, ports).pipelines.map(shape);
}

test('segment goes before the first stage that needs segments, and before a device without offloads', async () => {
  const both = [port('a', true), port('b', true)];
  assert.deepEqual(await rewritten("from a | filter tcp | pcap /tmp/x.pcap | delay 1ms | to b; from b | to a", both), ['1:filter | 1:pcap | 1:delay | to b', 'to a']);
  assert.deepEqual(await rewritten('from a | filter tcp | checksum | corrupt 1% | to b; from b | to a', both), ['1:filter | 1:segment | 1:checksum | 1:corrupt | to b', 'to a']);
  const mixed = [port('a', true), port('b', false)];
  assert.deepEqual(await rewritten('from a | parse | to b; from b | parse | to a', mixed), ['1:parse | 1:segment | to b', '2:parse | to a']);
  assert.deepEqual(await rewritten('from a | tee { pcap /tmp/y.pcap | to b } | to a; from b | to a', mixed), ['tee{1:tee/pcap | 1:tee/segment | to b} | to a', 'to a']);
  assert.deepEqual(await rewritten('from a | filter udp else { loss 1% | to b } | to a; from b | to a', mixed), ['1:filter else{1:filter/else/loss | 1:filter/else/segment | to b} | to a', 'to a']);
  // Written by hand: no second one.
  assert.deepEqual(await rewritten('from a | segment | checksum | to b; from b | to a', both), ['1:segment | 1:checksum | to b', 'to a']);
  // A compound's parts: one segment before the first.
  assert.deepEqual(await rewritten('parse | icmp-echo | checksum', [port('a', true)]), ['parse | segment | icmp-echo/reassemble | icmp-echo/filter-icmp-echo | icmp-echo/swap-addrs | icmp-echo/to-reply | checksum | default']);
});

test('nothing changes without offloads at the source', async () => {
  const ports = [port('a', false), port('b', true)];
  assert.deepEqual(await rewritten('from a | checksum | to b; from b | filter tcp | to a', ports), ['1:checksum | to b', '2:filter | 2:segment | to a']);
  assert.deepEqual(await rewritten('parse | checksum', [port('a', false)]), ['parse | checksum | default']);
});
