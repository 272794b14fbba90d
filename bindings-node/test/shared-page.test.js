'use strict';
// Stress: checkChanges() stays synchronous on a page other threads keep
// writing. Two worker threads write bytes of the same page just outside the
// watched 16 bytes; under protect each of their writes after a
// re-protection faults, and their SIGSEGV handler opens the page. The main
// thread writes one watched byte and calls checkChanges(), thousands of
// times: every call returns exactly that one change. (This was the
// "emitter: on/once/off" flake: a handler on another thread had made the
// page writable but not yet announced it, so the main thread's write did
// not fault and checkChanges() did not look at the page.)

const { test } = require('node:test');
const assert = require('node:assert/strict');
const { Worker } = require('node:worker_threads');
const memwatch = require('..');

const DURATION_MS = 2000;
const WRITERS = 2;

for (const backend of ['protect', 'writewatch']) {
  test(`[${backend}] write + checkChanges() on a page two other threads keep writing`, { timeout: 60000 }, async () => {
    // [0, 16) watched; the writers write bytes 16 and 17 (the same page but
    // for a boundary at exactly 16); byte 18 tells them to stop.
    const sab = new SharedArrayBuffer(64);
    const bytes = new Uint8Array(sab);
    const workers = [];
    const started = [];
    for (let t = 0; t < WRITERS; t++) {
      const worker = new Worker(
        `const { workerData, parentPort } = require('node:worker_threads');
         const b = new Uint8Array(workerData.sab);
         const at = 16 + workerData.t;
         parentPort.postMessage('go');
         for (let i = 0; Atomics.load(b, 18) === 0; i++) b[at] = i & 0xff;`,
        { eval: true, workerData: { sab, t } },
      );
      started.push(new Promise((resolve, reject) => {
        worker.once('message', resolve);
        worker.once('error', reject);
      }));
      workers.push(new Promise((resolve, reject) => {
        worker.on('error', reject);
        worker.on('exit', (code) => (code === 0 ? resolve() : reject(new Error(`writer exited ${code}`))));
      }));
    }
    const w = memwatch.create({ backend });
    let rounds = 0;
    let faults = 0;
    const wrong = [];
    try {
      await Promise.all(started);
      // Watched only now, and checked at once and nonstop: every
      // checkChanges() re-protects the page, so it never counts as written
      // nonstop (which would leave it open, where the race cannot happen).
      w.watch(new Uint8Array(sab, 0, 16), 'shared');
      const end = Date.now() + DURATION_MS;
      while (Date.now() < end) {
        const off = rounds % 16;
        const old = bytes[off];
        const nu = (old + 1) & 0xff;
        bytes[off] = nu;
        const events = w.checkChanges();
        const e = events[0];
        const ok =
          events.length === 1 &&
          e.changedRanges.length === 1 &&
          e.changedRanges[0].offset === off &&
          e.changedRanges[0].length === 1 &&
          e.oldValue[off] === old &&
          e.newValue[off] === nu;
        if (!ok) wrong.push([rounds, events.length]);
        rounds++;
      }
      faults = w.getStats().faults;
    } finally {
      Atomics.store(bytes, 18, 1);
      await Promise.all(workers);
      w.close();
    }
    assert.ok(rounds > 100, `only ${rounds} rounds`);
    // The race needs the page to leave and re-enter protection (faults
    // counted process-wide, so this is a lower bound's sanity check).
    if (backend === 'protect') assert.ok(faults > 100, `only ${faults} faults: the page never cycled`);
    assert.deepEqual(wrong.slice(0, 10), [], `${wrong.length} of ${rounds} rounds wrong ([round, events])`);
  });
}
