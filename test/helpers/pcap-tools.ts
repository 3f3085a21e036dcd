/**
 * tcpdump and tshark as independent readers of the captures tunpipe writes: if they parse a file and find
 * no checksum problem, the file and the packets in it are right by someone else's reading.
 */
import { execFileSync, spawnSync } from 'node:child_process';

/** True when `cmd` can be run (found on PATH). */
export function hasCommand(cmd: string): boolean {
  const r = spawnSync(cmd, ['--version'], { stdio: 'ignore' });
  return !(r.error && (r.error as NodeJS.ErrnoException).code === 'ENOENT');
}

/** `tcpdump -r FILE -nn ARGS`: one entry per output line (a packet per line without -v). */
export function tcpdumpRead(file: string, args: string[] = []): string[] {
  const out = execFileSync('tcpdump', ['-r', file, '-nn', ...args], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], timeout: 20_000 });
  return out.split('\n').filter((l) => l !== '');
}

/** Lines in which `tcpdump -vv` complains about an IP header or ICMP checksum. */
export function tcpdumpChecksumComplaints(file: string): string[] {
  return tcpdumpRead(file, ['-vv']).filter((l) => /bad cksum|wrong icmp cksum/.test(l));
}

/**
 * tshark's verdict on each packet's IPv4 header and ICMP checksums, one [ip, icmp] pair per packet, as
 * Wireshark's checksum status values: 0 bad, 1 good, 2 unverified, 3 not present. The IPv4 check is off by
 * default in Wireshark, so it is switched on; ICMP checksums are always checked.
 */
export function tsharkChecksumStatus(file: string): [string, string][] {
  const out = execFileSync('tshark', ['-r', file, '-o', 'ip.check_checksum:TRUE', '-T', 'fields', '-e', 'ip.checksum.status', '-e', 'icmp.checksum.status'], {
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'pipe'],
    timeout: 30_000,
  });
  return out
    .split('\n')
    .filter((l) => l !== '')
    .map((l) => l.split('\t') as [string, string]);
}

/** Packets tshark flags with a bad IPv4 header or ICMP checksum (display filter on the checksum status). */
export function tsharkBadChecksums(file: string): string[] {
  const out = execFileSync('tshark', ['-r', file, '-o', 'ip.check_checksum:TRUE', '-Y', 'ip.checksum.status == "Bad" || icmp.checksum.status == "Bad"'], {
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'pipe'],
    timeout: 30_000,
  });
  return out.split('\n').filter((l) => l !== '');
}

/** Timestamps as tcpdump prints them with `-tt --nano` (seconds.nanoseconds), one per packet. */
export function tcpdumpNanoTimes(file: string): string[] {
  return tcpdumpRead(file, ['-tt', '--nano']).map((l) => l.split(' ')[0]);
}
