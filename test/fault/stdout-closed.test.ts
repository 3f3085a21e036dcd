/**
 * `tunpipe ... 'parse | pcap - | ...' | head -c 1000`: once head has its bytes and exits, tunpipe must end
 * cleanly (exit 0, no stack trace) at the next packet, not hang and not crash.
 */
import { it } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { deviceTestSkipReason, TUNPIPE } from '../helpers/netns.js';
import { watchProcess, waitUntil } from '../helpers/netns-process.js';
import { DEVICE_ADDR, exitWithin, inScene, killPidFile, PEER, pingInBackground, shq, stackLines } from './support.js';

it('stdout closed by `| head -c 1000`: tunpipe ends cleanly soon after head exits', { skip: deviceTestSkipReason(), timeout: 30_000 }, () =>
  inScene('head', async ({ ns, dir, atEnd }) => {
    const errFile = join(dir, 'stderr');
    const pipeline = 'parse | pcap - | icmp-echo | checksum';
    // bash for PIPESTATUS: tunpipe's own exit status, not head's.
    const pidFile = join(dir, 'pid');
    // The subshell writes its pid and execs tunpipe, so that pid is tunpipe's (to kill it if it hangs).
    const script = `( echo $BASHPID > ${shq(pidFile)}; exec ${shq(process.execPath)} ${shq(TUNPIPE)} --dev tpf3 --addr ${DEVICE_ADDR} ${shq(pipeline)} 2>${shq(errFile)} ) | head -c 1000 | wc -c; echo "tunpipe-status=\${PIPESTATUS[0]}"`;
    const sh = watchProcess(ns.spawn('bash', ['-c', script]));
    atEnd(() => sh.stop('SIGKILL'));
    atEnd(() => killPidFile(pidFile));
    const stderr = () => {
      try {
        return readFileSync(errFile, 'utf8');
      } catch {
        return '';
      }
    };
    await waitUntil(() => /device \S+ open/.test(stderr()), () => `tunpipe to open its device:\n${stderr()}${sh.stderr()}`, 10_000);
    // 100 requests a second for 3 s; head has its 1000 bytes after about ten of them.
    const pings = pingInBackground(ns, ['-c', '300', '-i', '0.01', '-w', '6', '-q', PEER]);
    const code = await exitWithin(sh, 3000);
    await pings.stop();
    assert.notEqual(code, 'timeout', `tunpipe still running 3 s after head exited, while packets kept coming:\n${stderr()}`);
    const out = sh.stdout();
    assert.match(out, /^1000$/m, 'head got its 1000 bytes');
    assert.match(out, /tunpipe-status=0/, `tunpipe's exit status:\n${out}\n${stderr()}`);
    assert.deepEqual(stackLines(stderr()), [], stderr());
    assert.doesNotMatch(stderr(), /internal error|EPIPE.*at /);
  }),
);
