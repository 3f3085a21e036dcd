/**
 * The tunpipe command line: device options split off per device (./args.ts), the rest parsed from the
 * option table (./options.ts; yargs, ./help.ts, for --help and unusual command lines), the program checked
 * whole before anything is opened, then run, and counters printed on exit. Errors
 * meant for the user are one line without a stack trace; pipeline text errors show a caret.
 * Exit codes: 0 after a normal stop (Ctrl-C, --count, end of the input, the reader of stdout gone),
 * 1 when the run failed (device gone, capture not writable), 2 for a usage error (nothing was started).
 *
 * Order of work on devices, so that nothing runs as root that need not and a mistake changes nothing:
 * check the options and the program; create the stages (captures opened, users' modules loaded, in the
 * worker thread that will run them); open the devices (in their namespaces); hand them to the worker;
 * only then drop root (--user/--group).
 *
 * Start-up loads only what the run needs: yargs only for --help and what quickParse leaves to it, a stage
 * module only when the program names it (--list and --help load them all), the device layer (koffi) only
 * for a device, libpcap only for a filter.
 */
import { closeSync, openSync, writeSync } from 'node:fs';
import { TunpipeError, UsageError } from '../errors.js';
import type { TunDevice } from '../device/tun.js';
import { PipelineSyntaxError } from '../pipeline/language.js';
import { checkStageArgs, pipelineStages, programStages, resolveProgram, type ResolvedProgram } from '../pipeline/resolve.js';
import type { ResolvedStage } from '../pipeline/program.js';
import { builtinStageNames } from '../pipeline/stage-modules.js';
import { routeProgram, rereadWarnings } from '../pipeline/routing.js';
import { watchUsersCode } from '../pipeline/user-code-watch.js';
import { checkOutputs } from '../pipeline/outputs.js';
import type { RunResult } from '../pipeline/run.js';
import type { StageStats } from '../pipeline/stage.js';
import { formatCounters } from './format.js';
import { splitDeviceOptions, type DeviceSpec } from './args.js';
import { OPTIONS, quickParse, type CliArgs } from './options.js';
import { version } from './version.js';
import { attachKernelFilter, compileKernelFilters, kernelDropsNote, kernelFilterNote } from './kernel-filter.js';
import { readRunOptions, type RunSettings } from './run-options.js';
import { parseDuration } from '../pipeline/units.js';
import { LiveStats } from './stats.js';
import { checkQueuedProgram, MAX_SHARED_COUNT } from '../pipeline/queues.js';

/**
 * yargs takes a lone '-' for a positional argument, so `--write -` would lose its value: an option that
 * takes one gets it bound (`--write=-`), whichever option it is (stdin and stdout for files, an error
 * that names the option for the others).
 */
function bindDashValues(argv: string[]): string[] {
  const takesValue = new Set(OPTIONS.filter((o) => o.type !== 'boolean').map((o) => `--${o.name}`));
  const out: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    if (takesValue.has(argv[i]) && argv[i + 1] === '-') out.push(`${argv[i++]}=-`);
    else out.push(argv[i]);
  }
  return out;
}

/** Writes to stderr without ever throwing: a closed stderr (`2>&1 | head -1`) must not end a running pipeline. */
function say(line: string): void {
  try {
    process.stderr.write(`tunpipe: ${line}\n`);
  } catch {
    /* stderr is gone */
  }
}

function sayRaw(text: string): void {
  try {
    process.stderr.write(text);
  } catch {
    /* stderr is gone */
  }
}

/** --list: every stage's declaration is loaded for it (a run loads only the stages it names). */
async function listStages(name: string | undefined): Promise<number> {
  const { builtinStages, findStage } = await import('../pipeline/registry.js');
  const { formatStageHelp, formatStageList } = await import('./format.js');
  if (name === undefined) {
    process.stdout.write(`Stages (tunpipe --list NAME for details):\n${formatStageList(builtinStages())}\n`);
    return 0;
  }
  const def = findStage(name);
  if (!def) {
    say(`unknown stage '${name}'; known stages: ${builtinStages().map((d) => d.name).join(', ')}`);
    return 2;
  }
  process.stdout.write(`${formatStageHelp(def)}\n`);
  return 0;
}

/** A value given once: yargs makes an array of an option given twice. */
function once<T>(v: T | T[] | undefined, flag: string): T | undefined {
  if (Array.isArray(v)) throw new UsageError(`${flag} is given ${v.length} times; give it once`);
  return v;
}

interface Checked {
  devices: DeviceSpec[];
  read?: string;
  write?: string;
  count?: number;
  queue: number;
  user?: string;
  group?: string;
  quiet: boolean;
  text: string;
  /** --stats / --stats-json: the interval in ms (0: off), and the JSON file. */
  statsMs: number;
  statsJson?: string;
  /** --stats was given (not only --stats-json): the counters go to stderr too. */
  statsOnStderr: boolean;
  /** --offload: every device with virtio headers and TCP/UDP segmentation offloads. */
  offload: boolean;
}

/** --queue given for a program with no asynchronous stage: the option one letter away may have been meant. */
const QUEUE_UNUSED = "--queue is the number of packets that may wait in front of an asynchronous stage, and only your own stages can be asynchronous: this program has none. A device with several queues is --queues N";

/** Only users' stages can return promises; the built-in ones never do. */
function mayBeAsync(s: ResolvedStage): boolean {
  return s.module !== undefined || !builtinStageNames().includes(s.def.name);
}

function checkArgs(args: CliArgs, devices: DeviceSpec[]): Checked {
  const read = once(args.read, '--read');
  const write = once(args.write, '--write');
  const count = once(args.count, '--count');
  const queue = once(args.queue, '--queue') ?? 1024;
  const user = once(args.user, '--user');
  const group = once(args.group, '--group');
  if (count !== undefined && (!Number.isInteger(count) || count < 0)) throw new UsageError('--count takes a whole number of packets');
  if (!Number.isInteger(queue) || queue < 1) throw new UsageError('--queue takes a whole number of packets, at least 1');
  if (read !== undefined) {
    if (read === '') throw new UsageError("--read needs a file name ('-' for stdin)");
    if (devices.some((d) => d.queues !== undefined)) throw new UsageError('--queues is for devices (a worker per queue of a multi-queue device); offline, one reader takes the file in order: leave out --queues');
    if (devices.length) throw new UsageError('--read is offline, with no device: leave out --dev and the device options, or --read');
    if (user !== undefined || group !== undefined) throw new UsageError('--user/--group drop root after devices are open; offline there is none: run tunpipe as that user instead');
  }
  if (write !== undefined && read === undefined) throw new UsageError('--write is for offline mode; give --read too (on a device, packets go back to the device: use a pcap stage to capture)');
  if (write === '') throw new UsageError("--write needs a file name ('-' for stdout)");
  const stats = once(args.stats, '--stats');
  const statsJson = once(args['stats-json'], '--stats-json');
  let statsMs = 0;
  if (stats !== undefined || statsJson !== undefined) {
    const ms = stats === undefined || stats === '' ? 1000 : parseDuration(stats);
    if (typeof ms === 'string') throw new UsageError(`--stats: ${ms}`);
    if (ms < 100) throw new UsageError('--stats: an interval of at least 100ms');
    if (read !== undefined) throw new UsageError('--stats is for devices: offline runs print their counters at the end');
    if (statsJson === '') throw new UsageError('--stats-json needs a file name');
    statsMs = ms;
  }
  if (count !== undefined && count > MAX_SHARED_COUNT && devices.some((d) => (d.queues ?? 1) > 1)) throw new UsageError(`--count with --queues: at most ${MAX_SHARED_COUNT} packets (the queues share one 32-bit counter)`);
  if (args._.length !== 1) throw new UsageError(args._.length === 0 ? "give a pipeline, e.g. 'parse | icmp-echo | checksum'" : "give the pipeline as one argument: quote it ('parse | icmp-echo | checksum')");
  return { devices: read === undefined && devices.length === 0 ? [{ mode: 'tun', addresses: [] }] : devices, read, write, count, queue, user, group, quiet: args.quiet === true, text: String(args._[0]), statsMs, statsJson, statsOnStderr: stats !== undefined, offload: args.offload === true };
}

/**
 * With --offload every packet read starts with a virtio_net_hdr and may be a TCP/UDP super-packet: the
 * stages that take super-packets see them whole, and a `segment` stage is put in front of the others (and
 * of a device without offloads) by the run (src/pipeline/offload.ts). Offline there are no super-packets.
 */
function checkOffloadProgram(offline: boolean): void {
  if (offline) throw new UsageError('--offload is for devices (it opens them with virtio headers and segmentation offloads); offline there is none: leave it out with --read');
}

/** Every --addr is checked before anything starts: a typo is a usage error that changes nothing. */
async function checkAddresses(specs: DeviceSpec[]): Promise<void> {
  const { parseCidr } = await import('../device/ifconfig.js');
  for (const s of specs) {
    for (const a of s.addresses) {
      try {
        parseCidr(a);
      } catch (err) {
        throw new UsageError(`--addr: ${(err as Error).message}`);
      }
    }
  }
}

/** Opens every device, each in its namespace; closes the ones opened so far if one fails. */
async function openDevices(specs: DeviceSpec[], readiness?: 'pipe' | 'poll', offload = false): Promise<TunDevice[]> {
  // The device layer (koffi and its native library) is loaded only for a device: offline runs start faster.
  const { openTun } = await import('../device/tun.js');
  const { inNetns } = await import('../device/netns.js');
  const opened: TunDevice[] = [];
  try {
    for (const s of specs) {
      const { listAddresses } = await import('../device/ifconfig.js');
      // What the device has once configured, for the line that says it is open (a persistent device may
      // already have addresses of its own).
      let present: string[] = [];
      const open = () => {
        const d = openTun({ name: s.name, mode: s.mode, addresses: s.addresses, mtu: s.mtu, up: s.up, persist: s.persist, readiness, offload, queues: s.queues });
        try {
          present = listAddresses(d.name).filter((a) => a.scope === 0).map((a) => a.text);
        } catch {
          present = [];
        }
        return d;
      };
      const dev = s.netns !== undefined ? inNetns(s.netns, open) : open();
      addressesOf.set(dev, present);
      opened.push(dev);
      if (s.mac !== undefined) {
        const { setMac } = await import('../device/link.js');
        (s.netns !== undefined ? inNetns : (_n: string, f: () => void) => f())(s.netns ?? '', () => setMac(dev.name, s.mac!));
      }
      await attachKernelFilter(s, dev);
    }
  } catch (err) {
    for (const d of opened) d.closeFd();
    throw err;
  }
  return opened;
}

/** The global addresses each opened device has (its own and those --addr gave it). */
const addressesOf = new WeakMap<TunDevice, string[]>();

function deviceLine(spec: DeviceSpec, dev: TunDevice): string {
  const where = spec.netns ? ` in namespace ${spec.netns}` : '';
  const present = addressesOf.get(dev) ?? [];
  const given = new Set(spec.addresses.map((a) => a.toLowerCase()));
  const others = present.filter((a) => !given.has(a.toLowerCase()));
  const addrs = spec.addresses.length
    ? ` with ${spec.addresses.join(', ')}${others.length ? ` (it also has ${others.join(', ')})` : ''}`
    : others.length
      ? ` with ${others.join(', ')} (already there)`
      : ' (no address: configure it yourself, or use --addr)';
  const queues = dev.queueFds.length > 1 ? `, ${dev.queueFds.length} queues` : '';
  return `${dev.mode === 'tap' ? 'TAP ' : ''}device ${dev.name}${where} open${addrs}${kernelFilterNote(spec)}${queues}`;
}

function stopReason(result: RunResult, c: Checked): string {
  const epipe = result.error instanceof TunpipeError && result.error.code === 'EPIPE';
  if (epipe) return 'the reader of stdout went away';
  if (result.stoppedBy === 'signal') return 'stopped by signal';
  if (result.stoppedBy === 'count') return `stopped after --count ${c.count}`;
  if (result.stoppedBy === 'end') return 'end of input';
  return 'stopped by an error';
}

function printCounters(stages: StageStats[], reports: Map<string, string>): void {
  if (stages.length) sayRaw(`${formatCounters({ stages, reports } as RunResult)}\n`);
}

/** Runs the CLI with `argv` (without node and script); resolves to the exit code. */
export async function main(argv: string[] = process.argv.slice(2)): Promise<number> {
  // A closed stderr or stdout is an error event on the stream; unhandled, it would end the process.
  process.stderr.on('error', () => {});
  process.stdout.on('error', () => {});
  argv = bindDashValues(argv);
  if (argv.includes('--help') || argv.includes('-h')) {
    const { helpText } = await import('./help.js');
    process.stdout.write(`${await helpText()}\n`);
    return 0;
  }
  if (argv.includes('--version')) {
    process.stdout.write(`${version()}\n`);
    return 0;
  }
  let checked: Checked;
  let settings: RunSettings;
  let program: ResolvedProgram;
  try {
    const { devices, rest } = splitDeviceOptions(argv);
    // The common command lines without yargs (./options.ts); yargs reads the rest, with its own errors.
    // Users' modules loaded on this thread (--list, offline, TUNPIPE_THREAD=main) are watched for a call that
    // never returns.
    watchUsersCode();
    const args = quickParse(rest) ?? (await (await import('./help.js')).parseWithYargs(rest));
    if (args.list) return listStages(args._[0] === undefined ? undefined : String(args._[0]));
    checked = checkArgs(args, devices);
    settings = readRunOptions(process.env);
    if (checked.read === undefined) await checkAddresses(checked.devices);
    if (checked.read === undefined) await compileKernelFilters(checked.devices);
    if (checked.statsMs > 0 && settings.thread === 'main') throw new UsageError('--stats needs the worker thread (leave out TUNPIPE_THREAD=main)');
    if (settings.thread === 'main' && checked.devices.some((d) => (d.queues ?? 1) > 1)) throw new UsageError('--queues runs a worker thread per queue: leave out TUNPIPE_THREAD=main (the event loop reads one queue)');
    // Check the whole program before touching any device, so a typo changes nothing on the system. In a
    // worker, users' modules are imported there, once.
    const inWorker = checked.read === undefined && settings.thread === 'worker';
    program = await resolveProgram(checked.text, { deferModules: inWorker });
    const names = checked.read === undefined ? checked.devices.map((d, i) => d.name ?? (checked.devices.length === 1 ? '' : `#${i + 1}`)) : null;
    const routing = routeProgram(program, names);
    if (names !== null) {
      // Arguments that depend on the packets' link type (a filter for Ethernet on a TUN device) are checked
      // for the device each pipeline reads, before any device exists.
      program.pipelines.forEach((pl, i) => {
        const d = routing.pipelineOf.indexOf(i);
        if (d >= 0) checkStageArgs(pipelineStages(pl), program.text, checked.devices[d].mode === 'tap' ? 1 : 101);
      });
    }
    if (names !== null) checkQueuedProgram(program, routing.pipelineOf, checked.devices.map((d) => d.queues ?? 1), names);
    checkOutputs(program, { read: checked.read, write: checked.write, statsJson: checked.statsJson });
    if (checked.offload) checkOffloadProgram(checked.read !== undefined);
    if (names !== null) for (const w of rereadWarnings(program, routing, names.map((n) => n || 'the device'))) say(`warning: ${w}`);
    if (rest.some((a) => a === '--queue' || a.startsWith('--queue=')) && !programStages(program).some(mayBeAsync)) say(`warning: ${QUEUE_UNUSED}`);
  } catch (err) {
    if (err instanceof PipelineSyntaxError) {
      sayRaw(`tunpipe: ${err.format()}\n`);
      return 2;
    }
    if (err instanceof TunpipeError) {
      say(`${err.message}${err instanceof UsageError || !(err instanceof TunpipeError) ? ' (see tunpipe --help)' : ''}`);
      return 2;
    }
    if (err instanceof Error && !(err instanceof TypeError) && !(err instanceof RangeError)) {
      // yargs' own usage errors.
      say(`${err.message} (see tunpipe --help)`);
      return 2;
    }
    throw err;
  }
  return run(checked, settings, program);
}

async function run(c: Checked, settings: RunSettings, program: ResolvedProgram): Promise<number> {
  const controller = new AbortController();
  let signals = 0;
  const onSignal = (sig: NodeJS.Signals) => {
    signals++;
    if (signals > 1) {
      say(`second ${sig}: exiting now`);
      process.exit(130);
    }
    controller.abort();
  };
  let live: (() => void) | null = null;
  const onUsr1 = () => live?.();
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  process.on('SIGHUP', onSignal);
  process.on('SIGUSR1', onUsr1);
  let devices: TunDevice[] = [];
  try {
    let result: RunResult;
    if (c.read !== undefined) {
      const { runPipeline } = await import('../pipeline/run.js');
      result = await runPipeline({ pipeline: program, read: c.read, write: c.write, count: c.count, queueLength: c.queue, signal: controller.signal });
    } else {
      result = await runDevices(c, settings, program, controller.signal, (fn) => (live = fn), (d) => (devices = d));
    }
    const epipe = result.error instanceof TunpipeError && result.error.code === 'EPIPE';
    if (result.error && !epipe) say(result.error.message);
    if (!c.quiet) {
      sayRaw(`tunpipe: ${stopReason(result, c)}: ${result.packetsIn} packets in, ${result.packetsOut} out\n`);
      printCounters(result.stages, result.reports);
      for (const [i, d] of devices.entries()) {
        const k = d.counters;
        const kernel = await kernelDropsNote(c.devices[i], d);
        sayRaw(`device ${d.name}: read ${k.rxPackets}, written ${k.txPackets}, write errors ${k.txErrors}${kernel} (${result.io})
`);
        if (d.queueCounters.length > 1) sayRaw(`${queueLine(d)}\n`);
        if (k.readsRearmed) sayRaw(`device ${d.name}: every receive buffer taken ${k.readsRearmed} times, the read re-armed each time (TUNPIPE_IO_BUFFERS)
`);
      }
    }
    return result.error && !epipe ? 1 : 0;
  } catch (err) {
    if (err instanceof PipelineSyntaxError) {
      sayRaw(`tunpipe: ${err.format()}\n`);
      return 2;
    }
    if (err instanceof UsageError) {
      say(err.message);
      return 2;
    }
    if (err instanceof TunpipeError) {
      say(err.message);
      return 1;
    }
    throw err;
  } finally {
    for (const d of devices) d.closeFd();
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    process.off('SIGHUP', onSignal);
    process.off('SIGUSR1', onUsr1);
  }
}

/** The run on devices: stages first (in the worker), then the devices, then root dropped, then packets. */
async function runDevices(
  c: Checked,
  settings: RunSettings,
  program: ResolvedProgram,
  signal: AbortSignal,
  setLive: (fn: () => void) => void,
  setDevices: (d: TunDevice[]) => void,
): Promise<RunResult> {
  const dropRoot = async () => {
    if (c.user !== undefined || c.group !== undefined) (await import('./privileges.js')).dropPrivileges(c.user, c.group);
  };
  const reading = (devices: TunDevice[]) => {
    for (let i = 0; i < devices.length; i++) say(`${deviceLine(c.devices[i], devices[i])}${i === devices.length - 1 ? '; reading (Ctrl-C to stop)' : ''}`);
  };
  if (settings.thread === 'main') {
    const { runPipeline } = await import('../pipeline/run.js');
    const devices = await openDevices(c.devices, settings.readiness, c.offload);
    setDevices(devices);
    return runPipeline({
      pipeline: program,
      devices,
      count: c.count,
      queueLength: c.queue,
      signal,
      onReady: () => {
        void dropRoot().catch((err) => {
          say((err as Error).message);
          process.exit(1);
        });
        reading(devices);
      },
    });
  }
  const ports = c.devices.map((d, i) => ({ name: d.name ?? (c.devices.length === 1 ? '' : `#${i + 1}`), linkType: d.mode === 'tap' ? 1 : 101, kind: 'device' as const, addresses: d.addresses, offload: c.offload }));
  const routing = routeProgram(program, ports.map((p) => p.name));
  const queues = c.devices.map((d) => d.queues ?? 1);
  const workerRouting = { ports, pipelineOf: routing.pipelineOf, defaultSink: routing.defaultSink };
  // Ctrl-C while the stages are being created ends the workers (a user's module stuck loading).
  const workerOptions = { routing: workerRouting, count: c.count, queueLength: c.queue, io: settings.io, ioBuffers: settings.ioBuffers, signal };
  // Several queues: a worker per queue (../pipeline/queue-workers.ts); one queue: the one worker, as always.
  const worker = queues.some((n) => n > 1)
    ? await (await import('../pipeline/queue-workers.js')).QueueWorkers.start({ ...workerOptions, program, queues })
    : await (await import('../pipeline/device-worker.js')).PipelineWorker.start({ ...workerOptions, program: (await import('../pipeline/resolve.js')).programSpec(program) });
  const stop = () => worker.stop();
  signal.addEventListener('abort', stop, { once: true });
  try {
    let devices: TunDevice[];
    try {
      devices = await openDevices(c.devices, undefined, c.offload);
    } catch (err) {
      worker.stop();
      await worker.cancel();
      throw err;
    }
    setDevices(devices);
    await worker.attach(devices);
    // The stats file is opened now, with everything else, before root is dropped.
    const statsFile = c.statsJson !== undefined ? openStatsFile(c.statsJson) : null;
    await dropRoot();
    setLive(() => void worker.liveCounters().then((s) => s && printCounters(s.stages, s.reports)));
    const stopStats = c.statsMs > 0 ? startStats(c, worker, devices, statsFile) : () => {};
    if (signal.aborted) stop();
    reading(devices);
    const result = await worker.finished();
    stopStats();
    result.counters.forEach((k, i) => Object.assign(devices[i].counters, k));
    const perQueue = (result as { queueCounters?: TunDevice['queueCounters'][] }).queueCounters;
    perQueue?.forEach((qs, i) => (devices[i].queueCounters = qs));
    return result;
  } finally {
    signal.removeEventListener('abort', stop);
  }
}

/** A device's counters per queue, for the exit report: how the kernel spread the flows. */
function queueLine(d: TunDevice): string {
  return `device ${d.name} per queue: ${d.queueCounters.map((q, k) => `${k}: read ${q.rxPackets}, written ${q.txPackets}`).join('; ')}`;
}

function openStatsFile(path: string): number {
  if (path === '-') return 1;
  try {
    return openSync(path, 'w', 0o600);
  } catch (err) {
    throw new TunpipeError(`cannot create --stats-json file ${path}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
}

/** Every interval: the live table on a terminal (stderr), JSON lines on stderr otherwise and into the file. */
function startStats(c: Checked, worker: { liveCounters(): Promise<import('../pipeline/device-worker.js').LiveSnapshot | null> }, devices: TunDevice[], file: number | null): () => void {
  const live = new LiveStats(() => devices.map((d) => d.name));
  const tty = process.stderr.isTTY === true;
  let busy = false;
  const timer = setInterval(() => {
    if (busy) return;
    busy = true;
    void worker.liveCounters().then((snap) => {
      busy = false;
      if (!snap) return;
      const { json, table } = live.next(snap);
      if (file !== null) {
        try {
          writeSync(file, `${json}\n`);
        } catch {
          /* a full disk stops the stats file, not the run */
        }
      }
      if (c.statsOnStderr) sayRaw(tty ? live.redraw(table) : `${json}\n`);
    });
  }, c.statsMs);
  return () => {
    clearInterval(timer);
    if (file !== null && file !== 1) closeSync(file);
  };
}
