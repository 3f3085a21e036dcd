/**
 * The graph on a real device, in a namespace of its own: a tee capture of the echo requests while the
 * echo answers; an else capture of what filter-icmp-echo rejects; a capture-only pipeline that writes
 * nothing back (and the warning for one that would); pipeline errors that involve devices, refused before
 * any device exists; SIGUSR1 printing the live counters and never opening Node's inspector; a closed
 * stderr (`2>&1 | head -1`) that does not end the responder.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import { deviceTestSkipReason, withNetns, type Netns } from '../helpers/netns.js';
import { pingIn, runTunpipeIn, spawnInNetns, startTunpipeWith, tunpipeArgv, waitUntil, watchProcess } from '../helpers/netns-process.js';
import { parseCounters, stageRow } from '../helpers/counters.js';
import { readPcapRecords } from '../helpers/packets.js';
import { tempDir } from '../helpers/cli.js';

const skip = deviceTestSkipReason();

function devices(ns: Netns): string[] {
  return ns.run('ip', ['-o', 'link', 'show']).trim().split('\n').map((l) => l.split(':')[1].trim()).filter((n) => n !== 'lo');
}

test('a tee capture of the echo requests and an else capture of the rest, while the echo answers', { skip }, async () => {
  const dir = tempDir('tunpipe-devgraph-');
  try {
    await withNetns(async (ns) => {
      const req = dir.file('requests.pcap');
      const other = dir.file('other.pcap');
      const before = ns.nstat();
      const tp = startTunpipeWith(ns, ['--dev', 'tpg0', '--addr', '198.18.0.1/24', `parse | filter-icmp-echo else { pcap ${other} } | tee { pcap ${req} } | swap-addrs | to-reply | checksum`]);
      try {
        await tp.waitFor(/reading/);
        const ping = pingIn(ns, ['-c', '10', '-i', '0.01', '-w', '10', '198.18.0.2']);
        assert.equal(ping.received, 10, ping.output);
        // Something that is not an echo request: a UDP datagram to the peer.
        ns.run(process.execPath, ['-e', "const s=require('dgram').createSocket('udp4');s.send('x',9,'198.18.0.2',()=>s.close())"]);
        await new Promise((r) => setTimeout(r, 200));
        const after = ns.nstat();
        assert.ok(after.IcmpInEchoReps - before.IcmpInEchoReps >= 10);
        assert.equal(after.IcmpInCsumErrors, before.IcmpInCsumErrors);
        assert.equal(await tp.stop('SIGINT'), 0, tp.stderr());
        const requests = readPcapRecords(readFileSync(req)).packets;
        assert.equal(requests.length, 10);
        for (const r of requests) assert.equal(r[20], 8, 'an echo request, captured before it was turned into a reply');
        const rest = readPcapRecords(readFileSync(other)).packets;
        assert.ok(rest.some((p) => p[9] === 17), 'the UDP datagram went into the else branch');
        assert.ok(rest.every((p) => !(p[9] === 1 && p[20] === 8)), 'no echo request there');
        const rows = parseCounters(tp.stderr());
        assert.equal(stageRow(rows, 'filter-icmp-echo').dropped, 0);
        assert.equal(stageRow(rows, 'filter-icmp-echo').reasons.get('diverted'), rest.length);
      } finally {
        await tp.stop('SIGKILL', 1000);
      }
    }, 'tpgraph');
  } finally {
    dir.remove();
  }
});

test("a capture-only pipeline ending in 'drop' writes nothing back; one without a sink is warned about", { skip }, async () => {
  const dir = tempDir('tunpipe-devdrop-');
  try {
    await withNetns(async (ns) => {
      const cap = dir.file('all.pcap');
      const tp = startTunpipeWith(ns, ['--dev', 'tpg1', '--addr', '198.18.0.1/24', `parse | pcap ${cap} | drop`]);
      try {
        await tp.waitFor(/reading/);
        assert.doesNotMatch(tp.stderr(), /warning/);
        const ping = pingIn(ns, ['-c', '3', '-i', '0.05', '-w', '2', '198.18.0.2']);
        assert.equal(ping.received, 0, 'nothing answered');
        assert.equal(await tp.stop('SIGINT'), 0, tp.stderr());
        assert.match(tp.stderr(), /device tpg1: read \d+, written 0,/);
        assert.equal(readPcapRecords(readFileSync(cap)).packets.filter((p) => p[9] === 1).length, ping.transmitted);
      } finally {
        await tp.stop('SIGKILL', 1000);
      }
      const warned = startTunpipeWith(ns, ['--dev', 'tpg1', '--addr', '198.18.0.1/24', `parse | pcap ${dir.file('x.pcap')}`]);
      try {
        await warned.waitFor(/reading/);
        assert.match(warned.stderr(), /warning: names no sink, so what leaves it is written back to tpg1.*'drop'/);
      } finally {
        await warned.stop('SIGKILL', 1000);
      }
    }, 'tpdrop');
  } finally {
    dir.remove();
  }
});

test('pipeline errors that involve devices are refused with a caret, exit 2, before any device exists', { skip }, async () => {
  await withNetns(async (ns) => {
    const cases: [string[], string, RegExp][] = [
      [['--dev', 'tpe0'], 'from tpe1 | drop', /unknown device 'tpe1'/],
      [['--dev', 'tpe0'], 'parse | to nowhere', /unknown device 'nowhere'/],
      [['--dev', 'tpe0', '--dev', 'tpe1'], 'parse | drop', /reads no device: with several devices/],
      [['--dev', 'tpe0', '--dev', 'tpe1'], 'from tpe0 | drop; from tpe0 | to tpe1', /device 'tpe0' is read by pipeline 1 already/],
      [['--dev', 'tpe0'], 'from tpe0 | tee { from tpe0 | drop }', /'from' cannot start a branch/],
      [['--dev', 'tpe0', '--dev', 'tpe0'], 'parse', /--dev tpe0 is given twice/],
      // Device options refused before anything opens (in this namespace, so a bug could not make a device in the host's).
      [['--dev', 'tpe0', '--mtu', '0x500'], 'parse', /--mtu takes a whole number/],
      [['--dev', ''], 'parse', /--dev needs a name/],
      [['--dev', 'tpe0', '--mac', '02:00:00:00:00:01'], 'parse', /--mac is for TAP devices/],
      // Every output is in the collision check, --stats-json too.
      [['--dev', 'tpe0', '--stats-json', '/tmp/tpe-same.out'], 'parse | pcap /tmp/tpe-same.out', /pcap file '\/tmp\/tpe-same.out' is written by --stats-json already/],
      [['--dev', 'tpe0', '--stats-json', '-'], 'parse | pcap -', /written by --stats-json already.*stdout/],
    ];
    for (const [devs, text, re] of cases) {
      const r = await runTunpipeIn(ns, [...devs, text]);
      assert.equal(r.code, 2, `${text}\n${r.stderr}`);
      assert.match(r.stderr, re);
      assert.doesNotMatch(r.stderr, /\n\s+at /);
      assert.deepEqual(devices(ns), [], `no device after: ${text}`);
    }
  }, 'tperr');
});

test('SIGUSR1 prints the live counters and never opens an inspector port', { skip }, async () => {
  await withNetns(async (ns) => {
    const tp = startTunpipeWith(ns, ['--dev', 'tpu0', '--addr', '198.18.0.1/24', 'parse | icmp-echo | checksum']);
    try {
      await tp.waitFor(/reading/);
      assert.equal(pingIn(ns, ['-c', '5', '-i', '0.01', '-w', '5', '198.18.0.2']).received, 5);
      tp.child.kill('SIGUSR1');
      await waitUntil(() => /^stage\s+in\s+out/m.test(tp.stderr()), () => `counters after SIGUSR1:\n${tp.stderr()}`);
      const live = parseCounters(tp.stderr());
      assert.equal(stageRow(live, 'checksum').out, 5);
      await new Promise((r) => setTimeout(r, 300));
      assert.doesNotMatch(ns.run('ss', ['-Hltn']), /:9229\b/, 'no inspector listening');
      assert.doesNotMatch(tp.stderr(), /Debugger listening/);
      assert.equal(tp.child.exitCode, null, 'still running');
      assert.equal(pingIn(ns, ['-c', '2', '-i', '0.05', '-w', '5', '198.18.0.2']).received, 2, 'and still answering');
      // Under a flood: each SIGUSR1 gets its table, the counts grow, and no reply is lost to it.
      const flood = watchProcess(spawnInNetns(ns, ['ping', '-f', '-q', '-c', '30000', '-w', '15', '198.18.0.2']));
      const tablesBefore = (tp.stderr().match(/^stage\s+in\s+out/gm) ?? []).length;
      for (let i = 0; i < 3; i++) {
        await new Promise((r) => setTimeout(r, 150));
        tp.child.kill('SIGUSR1');
      }
      await flood.exited();
      await waitUntil(() => (tp.stderr().match(/^stage\s+in\s+out/gm) ?? []).length >= tablesBefore + 3, () => `3 more tables:\n${tp.stderr()}`);
      const summary = /(\d+) packets transmitted, (\d+) received/.exec(flood.stdout());
      assert.ok(summary, flood.stdout());
      assert.equal(summary[2], summary[1], `every request of the flood answered:\n${flood.stdout()}`);
      assert.equal(await tp.stop('SIGINT'), 0, tp.stderr());
    } finally {
      await tp.stop('SIGKILL', 1000);
    }
  }, 'tpusr1');
});

test('`2>&1 | head -1`: the responder goes on answering after its stderr closes', { skip }, async () => {
  await withNetns(async (ns) => {
    const argv = tunpipeArgv(['--dev', 'tpclosed0', '--addr', '198.18.0.1/24', 'parse | icmp-echo | checksum']).map((a) => `'${a.replace(/'/g, "'\\''")}'`).join(' ');
    const sh = watchProcess(spawnInNetns(ns, ['sh', '-c', `${argv} 2>&1 | head -1; sleep 30`]));
    try {
      await waitUntil(() => sh.stdout().includes('tunpipe:'), () => `first line:\n${sh.stdout()}`);
      await waitUntil(() => devices(ns).includes('tpclosed0'), () => 'the device', 5000);
      await new Promise((r) => setTimeout(r, 300));
      // head has exited: stderr is a broken pipe now. The kernel sends router solicitations and tunpipe may
      // warn; either way it must keep answering.
      const ping = pingIn(ns, ['-c', '5', '-i', '0.1', '-w', '5', '198.18.0.2']);
      assert.equal(ping.received, 5, ping.output);
    } finally {
      await sh.stop('SIGKILL', 1000);
      // What the shell left running (tunpipe, head): only processes inside this test's namespace.
      for (const pid of execFileSync('ip', ['netns', 'pids', ns.name], { encoding: 'utf8' }).split('\n').filter(Boolean)) {
        try {
          process.kill(Number(pid), 'SIGKILL');
        } catch {
          /* gone */
        }
      }
    }
  }, 'tppipe');
});

test('--stats: JSON lines when stderr is not a terminal, a table redrawn in place on one, and --stats-json FILE', { skip }, async () => {
  const dir = tempDir('tunpipe-stats-');
  try {
    await withNetns(async (ns) => {
      const file = dir.file('stats.jsonl');
      const tp = startTunpipeWith(ns, ['--dev', 'tps0', '--addr', '198.18.0.1/24', '--stats', '200ms', '--stats-json', file, 'parse | icmp-echo | checksum']);
      try {
        await tp.waitFor(/reading/);
        pingIn(ns, ['-c', '10', '-i', '0.05', '-w', '5', '198.18.0.2']);
        await new Promise((r) => setTimeout(r, 500));
        assert.equal(await tp.stop('SIGINT'), 0, tp.stderr());
      } finally {
        await tp.stop('SIGKILL', 1000);
      }
      const onStderr = tp.stderr().split('\n').filter((l) => l.startsWith('{'));
      const inFile = readFileSync(file, 'utf8').trim().split('\n');
      for (const lines of [onStderr, inFile]) {
        assert.ok(lines.length >= 3, `a line per interval:\n${lines.join('\n')}`);
        const last = JSON.parse(lines[lines.length - 1]) as { stages: { name: string; out: number }[]; devices: { name: string; written: number }[] };
        assert.equal(last.stages.find((s) => s.name === 'checksum')!.out, 10);
        assert.equal(last.devices[0].name, 'tps0');
        assert.equal(last.devices[0].written, 10);
        const rates = lines.map((l) => JSON.parse(l) as { stages: { name: string; out_per_s: number }[] }).map((o) => o.stages.find((s) => s.name === 'checksum')!.out_per_s);
        assert.ok(rates.some((r) => r > 0), `a rate while pings flowed: ${rates.join(', ')}`);
      }
      // On a terminal (script gives tunpipe a pseudo-terminal): the table, redrawn with cursor movements.
      const tty = spawnInNetns(ns, ['script', '-qc', `timeout -s INT 1.5 ${tunpipeArgv(['--dev', 'tps1', '--addr', '198.18.0.1/24', '--stats', '200ms', 'parse | drop']).map((a) => `'${a}'`).join(' ')}`, '/dev/null']);
      const w = watchProcess(tty);
      await w.exited();
      assert.match(w.stdout(), /stage\s+in\s+in\/s\s+out/);
      assert.match(w.stdout(), /\x1b\[\d+A\x1b\[J/, 'redrawn in place');
      assert.doesNotMatch(w.stdout(), /^\{"time"/m, 'no JSON on a terminal');
    }, 'tpstats');
  } finally {
    dir.remove();
  }
});
