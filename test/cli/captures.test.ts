/**
 * Captures end to end through the CLI: pcapng from tshark replayed with --read (file and stdin), `pcap -`
 * feeding `tshark -i -` live, rotation and limits with the exact file set, append after a cut file, mode
 * bits refused, and `print` on stdout, into `| head -1`, and to a reader that never reads.
 */
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { existsSync, linkSync, readdirSync, readFileSync, statSync, truncateSync, writeFileSync } from 'node:fs';
import { echoRequest, readPcapRecords, writePcap } from '../helpers/packets.js';
import { lines, runCli, stackTraceLines, tempDir, TUNPIPE_BIN } from '../helpers/cli.js';
import { tcpdumpRead } from '../helpers/pcap-tools.js';
import { tsharkFields } from '../helpers/capture-tools.js';

const dir = tempDir('tunpipe-captures-');
after(() => dir.remove());

const UTC = { ...process.env, TZ: 'UTC' };
const requests = (n: number) => Array.from({ length: n }, (_, i) => echoRequest({ seq: i }));

/** Runs `tunpipe ARGS | CONSUMER` in bash; the exit codes of both and what each printed. */
function pipeline(args: string[], consumer: string, timeout = 30_000): { codes: number[]; stdout: string; stderr: string } {
  const quoted = args.map((a) => `'${a.replace(/'/g, `'\\''`)}'`).join(' ');
  const r = spawnSync('bash', ['-c', `set -o pipefail; "${process.execPath}" "${TUNPIPE_BIN}" ${quoted} | ${consumer}; echo "codes \${PIPESTATUS[*]}" >&2`], { encoding: 'utf8', timeout, env: UTC });
  const m = /codes ([\d ]+)\s*$/.exec(r.stderr);
  return { codes: m ? m[1].trim().split(' ').map(Number) : [], stdout: r.stdout, stderr: r.stderr.replace(/codes [\d ]+\s*$/, '') };
}

describe('--read pcapng', () => {
  const classic = dir.file('echo.pcap');
  const ng = dir.file('echo-tshark.pcapng');
  writePcap(classic, requests(8));
  execFileSync('tshark', ['-r', classic, '-w', ng, '-F', 'pcapng'], { stdio: 'ignore', timeout: 30_000 });

  test('a pcapng file written by tshark replays as its classic original does: the same replies, the same times', async () => {
    const a = await runCli(['--read', classic, '--write', dir.file('from-classic.pcap'), 'parse | icmp-echo | checksum']);
    const b = await runCli(['--read', ng, '--write', dir.file('from-ng.pcap'), 'parse | icmp-echo | checksum']);
    assert.equal(a.code, 0, a.stderr);
    assert.equal(b.code, 0, b.stderr);
    const replies = readFileSync(dir.file('from-ng.pcap'));
    assert.deepEqual(replies, readFileSync(dir.file('from-classic.pcap')));
    assert.equal(readPcapRecords(replies).packets.length, 8);
    assert.ok(tcpdumpRead(dir.file('from-ng.pcap')).every((l) => /ICMP echo reply/.test(l)));
  });

  test('pcapng on stdin (--read -): the format is told from the first bytes of the pipe', () => {
    const s = spawnSync('bash', ['-c', `cat "${ng}" | "${process.execPath}" "${TUNPIPE_BIN}" --read - --write "${dir.file('stdin.pcap')}" 'parse | icmp-echo | checksum'`], { encoding: 'utf8', timeout: 30_000 });
    assert.equal(s.status, 0, s.stderr);
    assert.deepEqual(readFileSync(dir.file('stdin.pcap')), readFileSync(dir.file('from-classic.pcap')));
  });
});

describe('pcap - into tshark live', () => {
  const input = dir.file('live.pcap');
  writePcap(input, requests(20));
  for (const format of ['pcap', 'pcapng']) {
    test(`tunpipe --read x.pcap 'parse | pcap - format=${format}' | tshark -i - -c 10`, () => {
      const r = pipeline(['--read', input, `parse | pcap - format=${format} | icmp-echo | checksum`], 'tshark -i - -c 10 -T fields -e icmp.seq -e icmp.type 2>/dev/null');
      assert.deepEqual(
        lines(r.stdout),
        Array.from({ length: 10 }, (_, i) => `${i}\t8`),
      );
      // tshark stops reading after 10 packets: tunpipe ends quietly (EPIPE) with exit 0.
      assert.equal(r.codes[0], 0, r.stderr);
      assert.deepEqual(stackTraceLines(r.stderr), []);
    });
  }
});

describe('rotation, limits, append, mode through the CLI', () => {
  const input = dir.file('rot-in.pcap');
  writePcap(input, requests(100), { startSec: 1_700_006_400 });

  test("size=2kB files=3 leaves exactly the three newest files; the exit report names them", async () => {
    const sub = tempDir('tunpipe-rot-');
    try {
      const r = await runCli(['--read', input, `parse | pcap ${sub.file('cap.pcap')} size=2kB files=3`]);
      assert.equal(r.code, 0, r.stderr);
      assert.deepEqual(readdirSync(sub.path).sort(), ['cap-00003.pcap', 'cap-00004.pcap', 'cap-00005.pcap']);
      for (const f of readdirSync(sub.path)) {
        assert.ok(statSync(sub.file(f)).size <= 2000);
        assert.equal(tcpdumpRead(sub.file(f)).length, 20);
      }
      assert.match(r.stderr, /100 packets written to 5 files, the newest 3 kept/);
    } finally {
      sub.remove();
    }
  });

  // The names of a rotation are made as it goes, after the start-up check of the names written: each file
  // is checked again, by inode, just before it is opened.
  test('a rotation never writes over the file being read: a numbered name that is the input, or a hard link to it, stops the capture', async () => {
    for (const how of ['the input itself', 'a hard link to it'] as const) {
      const sub = tempDir('tunpipe-rot-in-');
      try {
        const original = readFileSync(input);
        const read = how === 'the input itself' ? sub.file('cap-00002.pcap') : sub.file('in.pcap');
        writeFileSync(read, original);
        if (how === 'a hard link to it') linkSync(read, sub.file('cap-00002.pcap'));
        const r = await runCli(['--read', read, `parse | pcap ${sub.file('cap.pcap')} size=2kB | drop`]);
        assert.equal(r.code, 1, `${how}: ${r.stderr}`);
        assert.match(r.stderr, new RegExp(`^tunpipe: will not write capture file .*cap-00002\\.pcap: it is the file being read \\(--read .*${how === 'the input itself' ? 'cap-00002' : 'in'}\\.pcap\\)`, 'm'));
        assert.deepEqual(readFileSync(read), original, `${how}: the input is untouched`);
        assert.equal(tcpdumpRead(sub.file('cap-00001.pcap')).length, 20, `${how}: the file before it is whole`);
      } finally {
        sub.remove();
      }
    }
  });

  test("a rotation never writes over another capture of the run: the name is refused (onerror=continue: that capture stops, the run goes on)", async () => {
    const sub = tempDir('tunpipe-rot-two-');
    try {
      const r = await runCli(['--read', input, `parse | tee { pcap ${sub.file('cap-00002.pcap')} } | pcap ${sub.file('cap.pcap')} size=2kB onerror=continue | drop`]);
      assert.equal(r.code, 0, r.stderr);
      assert.match(r.stderr, /will not write capture file .*cap-00002\.pcap: it is written by another capture of this run/);
      assert.equal(tcpdumpRead(sub.file('cap-00002.pcap')).length, 100, "the tee's capture has every packet");
      assert.equal(tcpdumpRead(sub.file('cap-00001.pcap')).length, 20);
    } finally {
      sub.remove();
    }
  });

  test("time=30s with a strftime name, offline on the file's clock: one pcapng per period, named by its start", async () => {
    const sub = tempDir('tunpipe-rot-');
    try {
      // One packet a second from 2023-11-15 00:00:00 UTC: periods at :00, :30, :60, :90.
      const r = await runCli(['--read', input, `parse | pcap '${sub.file('c-%H%M%S.pcapng')}' time=30s`], { env: UTC });
      assert.equal(r.code, 0, r.stderr);
      assert.deepEqual(readdirSync(sub.path).sort(), ['c-000000.pcapng', 'c-000030.pcapng', 'c-000100.pcapng', 'c-000130.pcapng']);
      assert.deepEqual(
        readdirSync(sub.path)
          .sort()
          .map((f) => tsharkFields(sub.file(f), ['frame.number']).length),
        [30, 30, 30, 10],
      );
    } finally {
      sub.remove();
    }
  });

  test('limit=1kB stops the capture, not the pipeline', async () => {
    const out = dir.file('lim.pcap');
    const r = await runCli(['--read', input, '--write', dir.file('lim-out.pcap'), `parse | pcap ${out} limit=1kB | icmp-echo | checksum`]);
    assert.equal(r.code, 0, r.stderr);
    assert.ok(statSync(out).size <= 1000);
    assert.equal(tcpdumpRead(out).length, 10);
    assert.equal(readPcapRecords(readFileSync(dir.file('lim-out.pcap'))).packets.length, 100, 'every reply still written');
    assert.match(r.stderr, /capture stopped at limit=1000 bytes, the pipeline went on/);
  });

  test('append=true onto a capture cut short: cut back with a word on stderr, then every record reads', async () => {
    for (const name of ['cut.pcap', 'cut.pcapng']) {
      const out = dir.file(name);
      assert.equal((await runCli(['--read', input, `pcap ${out}`])).code, 0);
      truncateSync(out, statSync(out).size - 7);
      const r = await runCli(['--read', input, `pcap ${out} append=true`]);
      assert.equal(r.code, 0, r.stderr);
      assert.match(r.stderr, /ended inside a (record|block) .*cut back from \d+ to \d+ bytes/);
      assert.equal(tcpdumpRead(out).length, 199, name);
      assert.equal(tsharkFields(out, ['frame.number']).length, 199, name);
    }
  });

  test('mode=6777 (setuid, setgid, sticky) is a usage error with a caret, before any file exists', async () => {
    const out = dir.file('mode.pcap');
    const r = await runCli(['--read', input, `parse | pcap ${out} mode=6777`]);
    assert.equal(r.code, 2, r.stderr);
    const l = lines(r.stderr);
    assert.match(l[0], /pcap mode: expected permission bits in octal, 0 to 777.*got '6777'/);
    assert.equal(l[2].indexOf('^'), l[1].indexOf('mode=6777'));
    assert.equal(existsSync(out), false);
  });

  test('arguments that do not go together are usage errors at the stage, before anything starts', async () => {
    const out = dir.file('combo.pcap');
    for (const [args, re] of [
      ['files=3', /pcap: files=N keeps the last N files of a rotation: add size= or time=/],
      ['size=10kB append=true', /pcap: append=true cannot be combined with size= or time=/],
      ['comment=hi', /pcap: comment= needs format=pcapng/],
    ] as const) {
      const r = await runCli(['--read', input, `parse | pcap ${out} ${args}`]);
      assert.equal(r.code, 2, r.stderr);
      const l = lines(r.stderr);
      assert.match(l[0], re);
      assert.equal(l[2].indexOf('^'), l[1].indexOf('pcap'));
      assert.equal(existsSync(out), false);
    }
  });
});

describe('print', () => {
  const input = dir.file('print-in.pcap');
  writePcap(input, requests(3), { startSec: 1_700_006_400 });

  test('lines on stdout, one per packet, and the packets go on', async () => {
    const r = await runCli(['--read', input, '--write', dir.file('print-out.pcap'), 'parse | print | icmp-echo | checksum | print'], { env: UTC });
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(lines(r.stdout.toString()), [
      // The first print's lines of the batch are written before the second's.
      '00:00:00.000000 IP 198.18.0.2 > 198.18.0.1: ICMP echo request, id 4660, seq 0, length 61',
      '00:00:01.000007 IP 198.18.0.2 > 198.18.0.1: ICMP echo request, id 4660, seq 1, length 61',
      '00:00:02.000014 IP 198.18.0.2 > 198.18.0.1: ICMP echo request, id 4660, seq 2, length 61',
      '00:00:00.000000 IP 198.18.0.1 > 198.18.0.2: ICMP echo reply, id 4660, seq 0, length 61',
      '00:00:01.000007 IP 198.18.0.1 > 198.18.0.2: ICMP echo reply, id 4660, seq 1, length 61',
      '00:00:02.000014 IP 198.18.0.1 > 198.18.0.2: ICMP echo reply, id 4660, seq 2, length 61',
    ]);
    assert.equal(readPcapRecords(readFileSync(dir.file('print-out.pcap'))).packets.length, 3);
  });

  test('with a capture on stdout (pcap -, --write -) the lines go to stderr and the capture stays whole', () => {
    for (const args of [
      ['--read', input, 'parse | print | pcap -'],
      ['--read', input, 'parse | pcap - | print'],
      ['--read', input, '--write', '-', 'parse | print'],
    ]) {
      const r = pipeline(args, 'tcpdump -nn -r - 2>/dev/null');
      assert.deepEqual(r.codes, [0, 0], r.stderr);
      assert.equal(lines(r.stdout).length, 3, `tcpdump reads the three packets: ${r.stdout}`);
      const printed = lines(r.stderr).filter((l) => /^\d\d:\d\d:\d\d\.\d{6} IP 198\.18\.0\.2 > 198\.18\.0\.1: ICMP echo request/.test(l));
      assert.equal(printed.length, 3, r.stderr);
    }
    // Asking for stdout twice is refused before anything starts (FILE is an output argument).
    const twice = pipeline(['--read', input, 'parse | pcap - | print -'], 'cat');
    assert.equal(twice.codes[0], 2, twice.stderr);
    assert.match(twice.stderr, /print file '-' is written by pcap file already/);
  });

  test('| head -1: the closed pipe stops the printing quietly, exit 0', () => {
    const big = dir.file('print-big.pcap');
    writePcap(big, requests(5000));
    const r = pipeline(['--read', big, 'parse | print'], 'head -1');
    assert.equal(lines(r.stdout).length, 1);
    assert.equal(r.codes[0], 0, r.stderr);
    assert.doesNotMatch(r.stderr, /EPIPE|error/i);
    assert.match(r.stderr, /its reader went away/);
  });

  test('a reader that never reads does not hold the pipeline: it ends, the lines it could not take are counted', async () => {
    const big = dir.file('print-huge.pcap');
    writePcap(big, requests(30000));
    const child = spawn(process.execPath, [TUNPIPE_BIN, '--read', big, 'parse | print'], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    // stdout is never read: the pipe fills after 64 KiB.
    const code = await new Promise<number | null>((resolve) => {
      const timer = setTimeout(() => child.kill('SIGKILL'), 25_000);
      child.once('close', (c) => {
        clearTimeout(timer);
        resolve(c);
      });
    });
    assert.equal(code, 0, stderr);
    assert.match(stderr, /30000 lines printed to stdout; \d+ dropped \(the reader was too slow\)/);
    child.stdout.destroy();
  });
});

