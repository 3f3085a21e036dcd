/**
 * Fragmented echo requests (`ping -s 3000` over a 1500-byte MTU): `icmp-echo` reassembles them, `fragment
 * mtu=1500` after `checksum` sends the 3028-byte reply in fragments that fit. The kernel reassembles the
 * reply and checks it (nstat); a capture after `fragment` shows fragments of at most 1500 bytes that put
 * back together (by the reference reassembly of test/fuzz/oracle.ts) are valid replies to the requests.
 */
import { it } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { deviceTestSkipReason } from '../helpers/netns.js';
import { ipv4Header, isFragment, ReassemblyModel, replyProblem, type Ipv4View } from '../fuzz/oracle.js';
import { inScene, PEER, pcapRecords, ping, tcpdumpRead } from './support.js';

/** The whole datagrams in a capture: fragments put back together, whole packets as they are. */
function datagrams(records: Buffer[]): Buffer[] {
  const model = new ReassemblyModel();
  const out: Buffer[] = [];
  for (const r of records) {
    const v = ipv4Header(r);
    assert.equal(typeof v, 'object', `record is not a sound IPv4 packet: ${v}`);
    if (!isFragment(v as Ipv4View)) out.push(r);
    else {
      const done = model.add(r, v as Ipv4View);
      if (done) {
        assert.equal(done.uncertain, false, 'fragments overlap or have odd sizes');
        out.push(done.datagram);
      }
    }
  }
  return out;
}

it("'parse | icmp-echo | checksum | fragment mtu=1500' answers ping -s 3000", { skip: deviceTestSkipReason(), timeout: 30_000 }, () =>
  inScene('fragping', async ({ ns, startEcho }) => {
    const tp = await startEcho('tpf12', 'parse | icmp-echo | checksum | fragment mtu=1500', ['--mtu', '1500']);
    const before = ns.nstat();
    const r = await ping(ns, ['-s', '3000', '-c', '3', '-i', '0.2', '-w', '5', PEER]);
    const after = ns.nstat();
    const delta = (name: string) => after[name] - before[name];
    assert.equal(r.received, 3, `${r.output}\n${tp.stderr()}`);
    assert.equal(delta('IcmpInCsumErrors'), 0);
    assert.equal(delta('IcmpInEchoReps'), 3);
    assert.equal(delta('IpReasmFails'), 0);
    assert.ok(delta('IpReasmOKs') >= 3, 'the replies arrived in fragments the kernel put together');
  }),
);

it('a capture after `fragment mtu=1500` shows fragments of at most 1500 bytes that make valid replies', { skip: deviceTestSkipReason(), timeout: 30_000 }, () =>
  inScene('frag', async ({ ns, dir, startEcho }) => {
    const req = join(dir, 'req.pcap');
    const rep = join(dir, 'rep.pcap');
    const tp = await startEcho('tpf13', `parse | pcap ${req} | icmp-echo | checksum | fragment mtu=1500 | pcap ${rep}`, ['--mtu', '1500']);
    const r = await ping(ns, ['-s', '3000', '-c', '3', '-i', '0.2', '-w', '5', PEER]);
    assert.equal(r.received, 3, `${r.output}\n${tp.stderr()}`);
    assert.equal(await tp.stop('SIGINT'), 0, tp.stderr());

    const td = tcpdumpRead(rep);
    assert.equal(td.status, 0, td.stderr);
    const replies = pcapRecords(rep).records;
    assert.ok(replies.length >= 9, `3 replies of 3028 bytes are at least 9 fragments, got ${replies.length}`);
    for (const f of replies) assert.ok(f.length <= 1500, `a ${f.length}-byte packet left fragment mtu=1500`);
    const requests = datagrams(pcapRecords(req).records);
    const whole = datagrams(replies);
    assert.equal(requests.length, 3);
    assert.equal(whole.length, 3);
    for (const [i, reply] of whole.entries()) {
      assert.equal(reply.length, 3028);
      assert.equal(replyProblem(reply, requests[i]), null, `reply ${i}`);
    }
  }),
);
