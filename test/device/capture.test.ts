/**
 * Capturing on a real device: `pcap FILE` before icmp-echo records every ping request (tcpdump reads the
 * file after SIGINT; mode 0600), and `pcap -` streams them live into `tcpdump -r -` while tunpipe runs.
 */
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, statSync } from 'node:fs';
import { deviceTestSkipReason, withNetns } from '../helpers/netns.js';
import { pingIn, spawnInNetns, startTunpipeWith, waitUntil, watchProcess } from '../helpers/netns-process.js';
import { parseCounters, stageRow } from '../helpers/counters.js';
import { tempDir } from '../helpers/cli.js';
import { tcpdumpRead } from '../helpers/pcap-tools.js';

const skip = deviceTestSkipReason();
const dir = tempDir('tunpipe-capture-');
after(() => dir.remove());

test('pcap FILE records every request ping sent; tcpdump reads it after SIGINT; mode 0600', { skip }, async () => {
  const file = dir.file('requests.pcap');
  assert.equal(existsSync(file), false);
  await withNetns(async (ns) => {
    const tp = startTunpipeWith(ns, ['--dev', 'tpc0', '--addr', '198.18.0.1/24', `parse | pcap ${file} | icmp-echo | checksum`]);
    try {
      await tp.waitFor(/reading/);
      const ping = pingIn(ns, ['-c', '50', '-i', '0.005', '-w', '10', '198.18.0.2']);
      assert.equal(ping.transmitted, 50, ping.output);
      assert.equal(ping.received, 50, ping.output);
      assert.equal(await tp.stop('SIGINT'), 0, tp.stderr());

      const requests = tcpdumpRead(file).filter((l) => /198\.18\.0\.1 > 198\.18\.0\.2: ICMP echo request/.test(l));
      assert.equal(requests.length, ping.transmitted, `one record per ping sent:\n${requests.join('\n')}`);
      const seqs = requests.map((l) => Number(/seq (\d+)/.exec(l)?.[1])).sort((a, b) => a - b);
      assert.deepEqual(seqs, Array.from({ length: 50 }, (_, i) => i + 1), 'every sequence number once');
      assert.equal(statSync(file).mode & 0o777, 0o600, 'captures hold traffic: owner only');
      const rows = parseCounters(tp.stderr());
      assert.equal(stageRow(rows, 'pcap').in, stageRow(rows, 'parse').out, 'the tap saw every parsed packet');
      assert.ok(tcpdumpRead(file).length >= stageRow(rows, 'pcap').out, 'and wrote them all');
    } finally {
      await tp.stop('SIGKILL', 1000);
    }
  }, 'tpcap');
});

test("pcap - streams the requests live into 'tcpdump -n -r -' while tunpipe runs", { skip }, async () => {
  await withNetns(async (ns) => {
    const tcpdump = watchProcess(spawnInNetns(ns, ['tcpdump', '-n', '-l', '-r', '-'], { stdio: ['pipe', 'pipe', 'pipe'] }));
    const tp = startTunpipeWith(ns, ['--dev', 'tpl0', '--addr', '198.18.0.1/24', 'parse | pcap - | icmp-echo | checksum'], {
      stdio: ['ignore', tcpdump.child.stdin!, 'pipe'],
    });
    // tunpipe holds the only write end: tcpdump sees the end of the capture when tunpipe exits.
    tcpdump.child.stdin!.destroy();
    try {
      await tp.waitFor(/reading/);
      const ping = pingIn(ns, ['-c', '5', '-i', '0.05', '-w', '5', '198.18.0.2']);
      assert.equal(ping.received, 5, ping.output);
      const requests = () => tcpdump.stdout().split('\n').filter((l) => /198\.18\.0\.1 > 198\.18\.0\.2: ICMP echo request/.test(l));
      await waitUntil(() => requests().length >= 5, () => `5 echo requests from tcpdump; it printed:\n${tcpdump.stdout()}${tcpdump.stderr()}`);
      assert.equal(tp.child.exitCode, null, 'tunpipe is still running');
      assert.equal(tcpdump.child.exitCode, null, 'tcpdump is still reading');
      assert.equal(requests().length, 5);

      assert.equal(await tp.stop('SIGINT'), 0, tp.stderr());
      const ended = await Promise.race([tcpdump.exited(), new Promise((r) => setTimeout(() => r('still running'), 3000))]);
      assert.equal(ended, 0, `tcpdump ends cleanly at the end of the stream: ${tcpdump.stderr()}`);
    } finally {
      await tp.stop('SIGKILL', 1000);
      await tcpdump.stop('SIGKILL', 1000);
    }
  }, 'tplive');
});
