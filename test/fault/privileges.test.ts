/**
 * Running without root. `--user nobody` drops root once the device is open (the process's uid is nobody's
 * while it still answers pings); and a persistent device created for nobody (`ip tuntap add ... user
 * nobody`, address set by root) can be opened by nobody with no privileges at all. Without root nobody gets one
 * clear line for a new device (EPERM) and for an unreadable capture; `--group` alone drops only the group.
 */
import { it } from 'node:test';
import assert from 'node:assert/strict';
import { deviceTestSkipReason, TUNPIPE, type Netns } from '../helpers/netns.js';
import { watchProcess } from '../helpers/netns-process.js';
import { cpSync, mkdirSync, readdirSync, statSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { DEVICE_ADDR, hostRun, inScene, PEER, ping, procStatus, shq } from './support.js';

/** nobody's uid and primary gid, from the system's own tools rather than tunpipe's lookup. */
function nobody(): { uid: number; gid: number; group: string } {
  return { uid: Number(hostRun('id', ['-u', 'nobody'])), gid: Number(hostRun('id', ['-g', 'nobody'])), group: hostRun('id', ['-gn', 'nobody']) };
}

/** The four ids (real, effective, saved, filesystem) of a Uid:/Gid: line of /proc/PID/status. */
function ids(pid: number, field: 'Uid' | 'Gid'): number[] {
  const line = procStatus(pid, field);
  assert.ok(line, `no ${field} line for process ${pid}`);
  return line.split(/\s+/).map(Number);
}

/**
 * A copy of the built package (and the modules it runs with) that every user can read, in `dir`: so the
 * tests that run tunpipe as nobody do not depend on where the checkout lies (a clone in a 0700 directory).
 */
function readableInstall(dir: string): string {
  const root = join(dirname(TUNPIPE), '..', '..');
  const pkg = join(dir, 'pkg');
  mkdirSync(join(pkg, 'dist'), { recursive: true });
  for (const part of ['src', 'transforms', 'bin']) cpSync(join(root, 'dist', part), join(pkg, 'dist', part), { recursive: true });
  cpSync(join(root, 'package.json'), join(pkg, 'package.json'));
  for (const m of readdirSync(join(root, 'node_modules'))) {
    if (m === 'typescript' || m === '@types' || m === '.bin') continue;
    cpSync(join(root, 'node_modules', m), join(pkg, 'node_modules', m), { recursive: true, dereference: true });
  }
  hostRun('chmod', ['-R', 'a+rX', dir]);
  return join(pkg, 'dist', 'bin', 'tunpipe.js');
}

it('--user nobody: root is dropped after the device and the capture are opened, pings still answered', { skip: deviceTestSkipReason(), timeout: 30_000 }, async () => {
  const who = nobody();
  await inScene('user', async ({ ns, dir, startEcho }) => {
    // The capture is in a directory only root may write: it must be opened before root is dropped.
    const cap = join(dir, 'as-root.pcap');
    const tp = await startEcho('tpf10', `parse | pcap ${cap} | icmp-echo | checksum`, ['--user', 'nobody']);
    const pid = tp.child.pid!;
    const pings = await ping(ns, ['-c', '3', '-i', '0.2', '-w', '5', PEER]);
    assert.equal(pings.received, 3, `${pings.output}\n${tp.stderr()}`);
    assert.deepEqual(ids(pid, 'Uid'), [who.uid, who.uid, who.uid, who.uid], 'real, effective, saved and fs uid');
    assert.deepEqual(ids(pid, 'Gid'), [who.gid, who.gid, who.gid, who.gid]);
    const groups = (procStatus(pid, 'Groups') ?? '').split(/\s+/).filter(Boolean).map(Number);
    assert.ok(!groups.includes(0), `root's group kept: Groups ${groups.join(' ')}`);
    assert.equal(await tp.stop('SIGINT'), 0, tp.stderr());
    const st = statSync(cap);
    assert.equal(st.uid, 0, 'the capture was created by root, before the drop');
    assert.equal(st.mode & 0o7777, 0o600);
    assert.ok(st.size >= 24 + 3 * 100, `the capture holds the requests (${st.size} bytes)`);
  });
});

it('a persistent device owned by nobody is opened by nobody without root', { skip: deviceTestSkipReason(), timeout: 30_000 }, async (t) => {
  const who = nobody();
  await inScene('nobody', async ({ ns, dir }) => {
    // nobody runs a copy that every user can read, wherever the checkout is.
    const bin = readableInstall(dir);
    ns.run('setpriv', ['--reuid=nobody', `--regid=${who.group}`, '--clear-groups', process.execPath, '-e', `require('fs').accessSync(${JSON.stringify(bin)}, require('fs').constants.R_OK)`]);

    ns.run('ip', ['tuntap', 'add', 'dev', 'tpfu0', 'mode', 'tun', 'user', 'nobody']);
    try {
      ns.run('ip', ['addr', 'add', DEVICE_ADDR, 'dev', 'tpfu0']);
      ns.run('ip', ['link', 'set', 'tpfu0', 'up']);
      const setpriv = ['setpriv', '--reuid=nobody', `--regid=${who.group}`, '--clear-groups', process.execPath, bin, '--dev', 'tpfu0', 'parse | icmp-echo | checksum'];
      // Distributions make /dev/net/tun mode 0666 (the device's owner check is what guards a tun device).
      // Where it is not (some containers and VMs), give this test that usual node, in a private mount
      // namespace only: the host's /dev/net/tun is left alone.
      const usual = (statSync('/dev/net/tun').mode & 0o666) === 0o666;
      if (!usual) t.diagnostic(`/dev/net/tun is mode ${(statSync('/dev/net/tun').mode & 0o777).toString(8)} here; the test binds a 0666 node over it in a private mount namespace`);
      const node = join(dir, 'tun');
      const child = usual
        ? ns.spawn(setpriv[0], setpriv.slice(1))
        : ns.spawn('unshare', ['-m', 'sh', '-c', `mknod ${shq(node)} c 10 200 && chmod 666 ${shq(node)} && mount --bind ${shq(node)} /dev/net/tun && exec ${setpriv.map(shq).join(' ')}`]);
      const tp = watchProcess(child);
      try {
        await tp.waitFor(/device tpfu0 open/);
        const pid = child.pid!;
        assert.deepEqual(ids(pid, 'Uid'), [who.uid, who.uid, who.uid, who.uid], 'running as nobody from the start');
        assert.equal(procStatus(pid, 'CapEff'), '0000000000000000', 'no capabilities');
        const pings = await ping(ns, ['-c', '3', '-i', '0.2', '-w', '5', PEER]);
        assert.equal(pings.received, 3, `${pings.output}\n${tp.stderr()}`);
        assert.equal(await tp.stop('SIGINT'), 0, tp.stderr());
      } finally {
        await tp.stop('SIGKILL');
      }
      // The device was persistent: still there after tunpipe is gone.
      assert.match(ns.run('ip', ['link', 'show', 'dev', 'tpfu0']), /tpfu0/);
    } finally {
      try {
        ns.run('ip', ['tuntap', 'del', 'dev', 'tpfu0', 'mode', 'tun']);
      } catch {
        /* the namespace's deletion takes it anyway */
      }
    }
  });
});

/** Runs `argv` as nobody in the namespace, to its end; `needsTun`: with /dev/net/tun usable by everyone (see the test above). */
async function asNobody(ns: Netns, dir: string, argv: string[], needsTun = true): Promise<{ code: number | string; stderr: string }> {
  const who = nobody();
  const setpriv = ['setpriv', '--reuid=nobody', `--regid=${who.group}`, '--clear-groups', ...argv];
  const usual = !needsTun || (statSync('/dev/net/tun').mode & 0o666) === 0o666;
  const node = join(dir, 'tun');
  const child = usual
    ? ns.spawn(setpriv[0], setpriv.slice(1))
    : ns.spawn('unshare', ['-m', 'sh', '-c', `mknod ${shq(node)} c 10 200 && chmod 666 ${shq(node)} && mount --bind ${shq(node)} /dev/net/tun && exec ${setpriv.map(shq).join(' ')}`]);
  const tp = watchProcess(child);
  const timer = setTimeout(() => child.kill('SIGKILL'), 15_000);
  const code = await tp.exited();
  clearTimeout(timer);
  await new Promise((r) => setImmediate(r));
  return { code, stderr: tp.stderr() };
}

it('nobody asking for a new device: one line saying there is no permission and what to do, exit 1, no device', { skip: deviceTestSkipReason(), timeout: 60_000 }, async () => {
  await inScene('noperm', async ({ ns, dir }) => {
    const bin = readableInstall(dir);
    const r = await asNobody(ns, dir, [process.execPath, bin, '--dev', 'tpfn0', '--addr', DEVICE_ADDR, 'parse | icmp-echo | checksum']);
    assert.equal(r.code, 1, r.stderr);
    const lines = r.stderr.trim().split('\n');
    assert.equal(lines.length, 1, `one line:\n${r.stderr}`);
    assert.match(lines[0], /^tunpipe: no permission to open or create tpfn0 \(EPERM\): run as root \(or with CAP_NET_ADMIN\), or create a persistent device for your user first: sudo ip tuntap add dev tpfn0 mode tun user /);
    assert.doesNotMatch(ns.run('ip', ['link', 'show']), /tpfn0/, 'no device was made');

    // An unreadable capture (mode 000: root could read it, nobody cannot): one line naming the file.
    const cap = join(dir, 'secret.pcap');
    cpSync(join(dirname(bin), '..', '..', 'package.json'), cap);
    hostRun('chmod', ['000', cap]);
    const u = await asNobody(ns, dir, [process.execPath, bin, '--read', cap, 'parse'], false);
    assert.equal(u.code, 1, u.stderr);
    assert.equal(u.stderr.trim(), `tunpipe: cannot read ${cap}: permission denied`);
  });
});

it('--group alone: the group is dropped once the device is open, the uid stays, pings are answered', { skip: deviceTestSkipReason(), timeout: 30_000 }, async () => {
  const who = nobody();
  await inScene('group', async ({ ns, startEcho }) => {
    const tp = await startEcho('tpf17', 'parse | icmp-echo | checksum', ['--group', who.group]);
    const pid = tp.child.pid!;
    const pings = await ping(ns, ['-c', '3', '-i', '0.2', '-w', '5', PEER]);
    assert.equal(pings.received, 3, `${pings.output}\n${tp.stderr()}`);
    assert.deepEqual(ids(pid, 'Gid'), [who.gid, who.gid, who.gid, who.gid], 'real, effective, saved and fs gid');
    assert.deepEqual(ids(pid, 'Uid'), [0, 0, 0, 0], 'no --user: the uid stays');
    const groups = (procStatus(pid, 'Groups') ?? '').split(/\s+/).filter(Boolean).map(Number);
    assert.ok(!groups.includes(0), `root's group kept: Groups ${groups.join(' ')}`);
    assert.equal(await tp.stop('SIGINT'), 0, tp.stderr());
  });
});
