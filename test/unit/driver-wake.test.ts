/**
 * The driver's timing of releases: a wait for a release ends early by the learned wake-up lateness, and the
 * rest is waited out on the clock, so a held packet leaves at its time and never before; a wait that ran its
 * whole time teaches the lateness however it ended; spinning is bounded by an allowance.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Driver } from '../../src/pipeline/driver.js';
import type { Engine } from '../../src/pipeline/engine.js';

/** A clock that moves a little at each reading (a spin on it ends), and an engine with one due time. */
function setup() {
  const clock = { t: 0, now: () => (clock.t += 0.0001) };
  const state = { due: Infinity, ticks: [] as { now: number; due: number }[] };
  const engine = {
    readsTime: false,
    hasTimers: true,
    pendingOutput: false,
    clock,
    nextDue: () => state.due,
    tick: (now: number) => state.ticks.push({ now, due: state.due }),
    endBatch: () => {},
    pushInto: () => {},
  } as unknown as Engine;
  return { clock, state, driver: new Driver(engine, Infinity) };
}

/** One wait for a release due `inMs` from now, woken `lateMs` after the time the driver asked for. */
function waitOnce(s: ReturnType<typeof setup>, inMs: number, lateMs: number): number {
  s.state.due = s.clock.t + inMs;
  const ms = s.driver.waitMs(false);
  s.clock.t += ms + lateMs;
  s.driver.woke();
  s.driver.idle(false);
  return ms;
}

test('the lead converges to the lateness: a wait asks to end that much before the release', () => {
  const s = setup();
  for (let i = 0; i < 300; i++) waitOnce(s, 10, 0.2);
  s.state.due = s.clock.t + 10;
  const ms = s.driver.waitMs(false);
  assert.ok(Math.abs(ms - (10 - 0.2)) < 0.01, `waits ${ms} ms`);
});

test('a wake before the release is waited out on the clock: released at its time, never before', () => {
  const s = setup();
  for (let i = 0; i < 300; i++) waitOnce(s, 10, i % 2 ? 0.1 : 0.3);
  s.state.ticks.length = 0;
  for (let i = 0; i < 50; i++) waitOnce(s, 10, i % 2 ? 0.1 : 0.3);
  for (const t of s.state.ticks) assert.ok(t.now >= t.due, `released at ${t.now}, due ${t.due}`);
  const lateness = s.state.ticks.map((t) => t.now - t.due);
  assert.ok(Math.max(...lateness) < 0.01, `late by up to ${Math.max(...lateness)} ms`);
  assert.equal(s.state.ticks.length, 50);
});

test('spinning is bounded: back-to-back releases use up the allowance, then waits end at the release', () => {
  const s = setup();
  for (let i = 0; i < 300; i++) waitOnce(s, 10, 0.4);
  // Releases 0.5 ms apart: spinning 0.4 of every 0.5 ms is over the allowance.
  const waits: number[] = [];
  for (let i = 0; i < 400; i++) waits.push(waitOnce(s, 0.5, 0));
  assert.ok(waits.slice(-50).every((w) => Math.abs(w - 0.5) < 0.01), `late waits: ${waits.slice(-5)}`);
  for (const t of s.state.ticks) assert.ok(t.now >= t.due);
});

test('a wait cut short by a packet, a wait of no time, or one not for a release teaches nothing', () => {
  const s = setup();
  s.state.due = 10;
  s.driver.waitMs(false);
  s.clock.t = 3; // a packet arrived first
  s.driver.woke();
  s.state.due = 3; // already due: no wait
  assert.equal(s.driver.waitMs(false), 0);
  s.clock.t = 3.5;
  s.driver.woke();
  s.state.due = Infinity;
  assert.equal(s.driver.waitMs(false), -1);
  s.clock.t = 100;
  s.driver.woke();
  s.state.due = 110;
  assert.ok(Math.abs(s.driver.waitMs(false) - (110 - 100)) < 0.001);
});

test('with writes sent when told (io_uring): the due packets go through their pipelines first, and are sent at their time', () => {
  const s = setup();
  for (let i = 0; i < 300; i++) waitOnce(s, 10, 0.1);
  const sends: { at: number; ticks: number }[] = [];
  for (let i = 0; i < 50; i++) {
    s.state.ticks.length = 0;
    s.state.due = s.clock.t + 10;
    const due = s.state.due;
    s.clock.t += s.driver.waitMs(false); // woke exactly when asked: the lead is left
    s.driver.woke(() => sends.push({ at: s.clock.t, ticks: s.state.ticks.length }));
    assert.equal(s.state.ticks.length, 1, 'released once');
    assert.equal(s.state.ticks[0].now, due, 'stamped with its own time');
    s.state.due = Infinity;
    const sent = sends[sends.length - 1];
    assert.ok(sent.ticks === 1 && sent.at >= due && sent.at - due < 0.01, `sent at ${sent.at}, due ${due}`);
  }
  assert.equal(sends.length, 50);
});
