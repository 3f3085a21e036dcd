/**
 * A watch on users' code that runs on the CLI's main thread (offline, and TUNPIPE_THREAD=main): a
 * stage module that never returns, at import, in `create()` or on a packet, holds the thread that would see
 * Ctrl-C, so nothing in it can end the run. A second thread can: it is told each time users' code is
 * entered and left (two writes into shared memory), and the main thread's event loop beats a cell four
 * times a second. When one call has lasted USER_CODE_STALL_MS, or the loop has not come round for that
 * long (the continuation of an `async` stage after an `await` runs outside any call it sees), it prints one
 * line naming the stage and ends the process with exit 1. Before that it writes out the records the
 * captures still held: they are kept in shared memory for it (../pcap/salvage.ts).
 *
 * Stopping the stuck JavaScript instead (Runtime.terminateExecution through an in-process inspector
 * session), so that the main thread could write out its captures itself, was tried: it works from a
 * promise's continuation, but inside a timer's callback Node aborts on its own check of the async-hook stack.
 *
 * On a device, users' code runs in the pipeline's worker, which the main thread ends when it does not stop
 * in time (device-worker.ts): there the watch stays off and its calls cost a branch, as they do for the
 * library, which never starts it.
 */
import { fileURLToPath } from 'node:url';
import type { Worker } from 'node:worker_threads';
import { SALVAGE_LAYOUT, salvageWords, startSalvage, writeUnwritten } from '../pcap/salvage.js';

/** How long one call into a user's module may run before the process is ended. */
export const USER_CODE_STALL_MS = 10_000;

/**
 * Cells of the shared memory: calls entered and left (changes on both), depth, the innermost label; the
 * event loop's beat; the label last entered.
 */
const SEQ = 0;
const DEPTH = 1;
const LABEL = 2;
const BEAT = 3;
const LAST = 4;

/** How often the main thread's event loop beats. */
const BEAT_MS = 250;

/** Set by watchUsersCode(): the watch starts with the first user module. */
let wanted = false;
let cells: Int32Array | null = null;
let watcher: Worker | null = null;
const labels: string[] = [];
const stack: number[] = [];

/**
 * The watcher's code: every quarter second it looks at the cells; a call that is still running with
 * nothing entered or left since USER_CODE_STALL_MS, or a beat missing as long, ends the process. It writes
 * out what the captures held first, then ends the process by `_exit`, through koffi, loaded only then
 * (`process.exit` in a worker would end the worker alone), or failing that by SIGKILL.
 */
const WATCHER = `
const { workerData, parentPort } = require('node:worker_threads');
const fs = require('node:fs');
const { writeSync } = fs;
let libc = null;
const loadLibc = () => (libc ??= require(workerData.koffi).load('libc.so.6'));
const writeUnwritten = ${writeUnwritten.toString()};
const salvageWords = ${salvageWords.toString()};
const cells = new Int32Array(workerData.shared);
const labels = [];
const buffers = new Map();
parentPort.on('message', (m) => {
  if (m.label !== undefined) labels[m.index] = m.label;
  else if (m.buffer) buffers.set(m.id, m.buffer);
  else buffers.delete(m.id);
});
let seq = -1, since = performance.now(), beat = -1, beaten = since, ticked = since;
setInterval(() => {
  const now = performance.now();
  // A tick far later than asked: the process was stopped (Ctrl-Z, SIGSTOP, a paused machine) and the main
  // thread resumes with this thread; time since is not time stuck.
  if (now - ticked > 2000) { since = now; beaten = now; }
  ticked = now;
  const b = Atomics.load(cells, ${BEAT});
  if (b !== beat) { beat = b; beaten = now; }
  const s = Atomics.load(cells, ${SEQ});
  if (s !== seq || Atomics.load(cells, ${DEPTH}) === 0) { seq = s; since = now; }
  const inCall = now - since >= workerData.limitMs;
  if (!inCall && now - beaten < workerData.limitMs) return;
  const what = labels[Atomics.load(cells, inCall ? ${LABEL} : ${LAST})] ?? "a user's stage";
  let kept = { files: 0, skipped: 0 };
  let sendNow = () => -1;
  try {
    const send = loadLibc().func('intptr_t send(int, const void *, size_t, int)');
    // MSG_DONTWAIT | MSG_NOSIGNAL: never blocks, never raises SIGPIPE.
    sendNow = (fd, data) => send(fd, data, data.length, 0x40 | 0x4000);
  } catch {}
  try {
    kept = writeUnwritten(workerData.layout, workerData.salvage, buffers, { ...fs, sendNow });
  } catch {}
  const captures = salvageWords(kept, ' first') || 'files keep what was written';
  try {
    writeSync(2, 'tunpipe: ' + what + ' has not returned for ' + workerData.limitMs / 1000 + ' s (a loop in it?): tunpipe was ended; ' + captures + '\\n');
  } catch {}
  try {
    loadLibc().func('void _exit(int)')(1);
  } finally {
    process.kill(process.pid, 'SIGKILL');
  }
}, 250);
`;

/**
 * Asks for the watch on the main thread. It starts with the first user module, before the module is
 * imported: a second thread costs start-up time that a run without users' code need not pay. The CLI asks;
 * a program using the library decides for itself what a stuck call means, and the watch stays off for it.
 */
export function watchUsersCode(): void {
  wanted = true;
}

/** Starts the watch once, if asked for; worker_threads is loaded only then. */
async function start(): Promise<void> {
  if (!wanted || cells !== null) return;
  const { isMainThread, Worker } = await import('node:worker_threads');
  if (!isMainThread || cells !== null) return;
  const shared = new SharedArrayBuffer(5 * 4);
  cells = new Int32Array(shared);
  const beating = cells;
  setInterval(() => Atomics.add(beating, BEAT, 1), BEAT_MS).unref();
  // Captures opened from now on keep their records where the watcher can write them out.
  const salvage = startSalvage((id, buffer) => watcher?.postMessage({ id, buffer }));
  watcher = new Worker(WATCHER, { eval: true, workerData: { shared, limitMs: USER_CODE_STALL_MS, koffi: fileURLToPath(import.meta.resolve('koffi')), layout: SALVAGE_LAYOUT, salvage } });
  // It never keeps the process alive, and an error of its own is not the run's.
  watcher.unref();
  watcher.on('error', () => {});
  labels.forEach((label, index) => watcher!.postMessage({ index, label }));
}

/** Names a piece of users' code for the watcher's message (starting the watch if asked for); returns the label for enter(). */
export async function userCodeLabel(what: string): Promise<number> {
  const index = labels.length;
  labels.push(what);
  if (watcher !== null) watcher.postMessage({ index, label: what });
  else await start();
  return index;
}

/** Users' code labelled `label` starts running. */
export function enterUserCode(label: number): void {
  if (cells === null) return;
  stack.push(label);
  cells[LABEL] = label;
  cells[LAST] = label;
  cells[DEPTH] = stack.length;
  cells[SEQ]++;
}

/** The innermost users' code started returns (or throws). */
export function leaveUserCode(): void {
  if (cells === null) return;
  stack.pop();
  cells[LABEL] = stack.length > 0 ? stack[stack.length - 1] : 0;
  cells[DEPTH] = stack.length;
  cells[SEQ]++;
}

/** Runs `fn` as users' code labelled `label`. */
export function asUserCode<T>(label: number, fn: () => T): T {
  enterUserCode(label);
  try {
    return fn();
  } finally {
    leaveUserCode();
  }
}
