/**
 * Echo requests the kernel answers are answered by tunpipe too, with valid replies: requests carrying IP
 * options (record route, timestamps), a 1500-byte request on a 1500-byte MTU, odd and tiny sizes. Replies
 * are checked by ping and the kernel's counters (nstat), and in a capture by the reference checks of
 * test/fuzz/oracle.ts. The kernel's own answer (a ping to the device's address, which the kernel answers)
 * is the oracle for what a reply's options should hold. Requests the kernel declines (a bad ICMP checksum, a
 * multicast, broadcast or loopback source), sent into the device with a raw socket, reach tunpipe (they are
 * in the request capture) and get no reply.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { createNetns, deviceTestSkipReason, type Netns, type TunpipeProcess } from '../helpers/netns.js';
import { replyProblem } from '../fuzz/oracle.js';
import { DEVICE_ADDR, PEER, pcapRecords, ping, quiet, sleep, startEcho, tempDir, type PingResult } from './support.js';
import { declinedEchoRequests } from '../helpers/raw-icmp.js';

/** The entries ping prints for a reply's record-route (RR:) or timestamp (TS:) option. */
function optionEntries(output: string, tag: 'RR' | 'TS'): string[] {
  const lines = output.split('\n');
  const start = lines.findIndex((l) => l.startsWith(`${tag}:`));
  if (start < 0) return [];
  const entries = [lines[start].slice(tag.length + 1).trim()];
  for (const l of lines.slice(start + 1)) {
    if (!/^\t/.test(l) || l.trim() === '') break;
    entries.push(l.trim());
  }
  return entries;
}

describe('echo like the kernel', { skip: deviceTestSkipReason(), timeout: 60_000 }, () => {
  let ns: Netns;
  let tp: TunpipeProcess;
  let tmp: { dir: string; cleanup: () => void };
  let req: string;
  let rep: string;

  before(async () => {
    tmp = tempDir('kernel');
    req = join(tmp.dir, 'req.pcap');
    rep = join(tmp.dir, 'rep.pcap');
    ns = createNetns('tpfault');
    quiet(ns);
    tp = await startEcho(ns, 'tpf14', `parse | pcap ${req} | icmp-echo | checksum | pcap ${rep}`, ['--mtu', '1500']);
  });

  after(async () => {
    await tp?.stop('SIGKILL');
    ns?.delete();
    tmp?.cleanup();
  });

  /** Both captures once the reply capture holds `replies` records (or after 3 s, to let the checks tell). */
  async function capturedAtLeast(replies: number): Promise<{ requests: Buffer[]; replies: Buffer[] }> {
    const deadline = Date.now() + 3000;
    for (;;) {
      const got = { requests: pcapRecords(req).records, replies: pcapRecords(rep).records };
      if ((got.replies.length >= replies && got.requests.length >= got.replies.length) || Date.now() > deadline) return got;
      await sleep(20);
    }
  }

  /** Pings the peer (tunpipe answers); checks ping, the kernel's ICMP counters and every captured reply. */
  async function pingChecked(args: string[], count = 2): Promise<PingResult> {
    const repliesBefore = pcapRecords(rep).records.length;
    const before = ns.nstat();
    const r = await ping(ns, [...args, '-c', String(count), '-i', '0.2', '-w', '5', PEER]);
    const after = ns.nstat();
    const delta = (name: string) => after[name] - before[name];
    assert.equal(r.received, count, `${r.output}\n${tp.stderr()}`);
    assert.equal(delta('IcmpInCsumErrors'), 0);
    assert.equal(delta('IcmpInErrors'), 0);
    assert.equal(delta('IpInHdrErrors'), 0);
    assert.equal(delta('IcmpInEchoReps'), count);
    // The captures are written once traffic pauses, 20 ms after the last packet: ping may be done before.
    const { requests, replies } = await capturedAtLeast(repliesBefore + count);
    assert.equal(replies.length, requests.length, 'one reply per request');
    replies.forEach((reply, i) => assert.equal(replyProblem(reply, requests[i]), null, `reply ${i} (${reply.length} bytes)`));
    return r;
  }

  it('record route (ping -R): answered with a valid reply', async () => {
    await pingChecked(['-R']);
  });

  it('timestamps (ping -T tsonly, -T tsandaddr): answered with a valid reply', async () => {
    await pingChecked(['-T', 'tsonly']);
    await pingChecked(['-T', 'tsandaddr']);
  });

  it('ping -s 1472 on a 1500-byte MTU: answered, request and reply whole (1500 bytes, no fragments)', async () => {
    await pingChecked(['-s', '1472', '-M', 'do']);
    const last = pcapRecords(rep).records.at(-1)!;
    assert.equal(last.length, 1500);
    assert.equal(last.readUInt16BE(6) & 0x3fff, 0, 'not a fragment');
  });

  it('odd and tiny sizes (ping -s 0, -s 1, -s 57, -s 1471): answered', async () => {
    for (const size of ['0', '1', '57', '1471']) await pingChecked(['-s', size]);
  });

  // RFC 1122 3.2.2.6: record route and timestamp options SHOULD be updated by the answering host and kept in
  // the reply. The kernel does: compare with its own reply to the device's address (198.18.0.1).
  it('record route in the reply lists as many hops as the kernel\'s own reply, the answering address among them', async () => {
    const kernel = await ping(ns, ['-R', '-c', '1', '-w', '2', '198.18.0.1']);
    const ours = await ping(ns, ['-R', '-c', '1', '-w', '2', PEER]);
    const k = optionEntries(kernel.output, 'RR');
    const o = optionEntries(ours.output, 'RR');
    assert.ok(k.length > 0, kernel.output);
    assert.ok(o.includes(PEER), `the answering host ${PEER} is not in the reply's route: ${o.join(', ')}\n${ours.output}`);
    assert.equal(o.length, k.length, `route entries: kernel ${k.join(', ')}; tunpipe ${o.join(', ')}`);
  });

  it('timestamp option in the reply holds as many timestamps as the kernel\'s own reply', async () => {
    const kernel = await ping(ns, ['-T', 'tsonly', '-c', '1', '-w', '2', '198.18.0.1']);
    const ours = await ping(ns, ['-T', 'tsonly', '-c', '1', '-w', '2', PEER]);
    const k = optionEntries(kernel.output, 'TS');
    const o = optionEntries(ours.output, 'TS');
    assert.ok(k.length > 0, kernel.output);
    assert.equal(o.length, k.length, `timestamps: kernel ${k.join(', ')}; tunpipe ${o.join(', ')}`);
  });

  // Last: the requests it leaves unanswered would break the one-reply-per-request checks above.
  it('requests the kernel declines reach tunpipe and are declined: bad checksum, multicast, broadcast and loopback sources', async () => {
    const requestsBefore = pcapRecords(req).records.length;
    const repliesBefore = pcapRecords(rep).records.length;
    const sent = declinedEchoRequests(ns, DEVICE_ADDR.split('/')[0], PEER);
    await sleep(300); // past the captures' 20 ms write after traffic pauses
    const fresh = pcapRecords(req).records.slice(requestsBefore);
    const crafted = fresh.filter((r) => r[9] === 1 && r[20] === 8 && r.readUInt16BE(24) === 0x5151);
    assert.equal(crafted.length, sent, `every crafted request reached tunpipe (${fresh.length} new records)`);
    // (A straggler of an earlier ping may be answered meanwhile: only replies to the crafted ones count.)
    const answered = pcapRecords(rep).records.slice(repliesBefore).filter((r) => r[9] === 1 && r.readUInt16BE(((r[0] & 15) * 4) + 4) === 0x5151);
    assert.deepEqual(answered, [], 'none was answered');
  });
});
